"""Seeds derived from a run's seed: one independent stream per purpose, epoch and rank.

Every random draw of an epoch (batch order, crops and flips, dropout masks) comes from a
generator seeded here, so the numbers of epoch ``e`` are a function of ``(seed, e)`` and
where they are drawn (rank, step, image) alone: a run resumed at an epoch's start or
within it draws what an uninterrupted one would without carrying generator states in its
checkpoint, and no two ranks of a torchrun job draw the same masks or crops for the same batch.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch


def derived_seed(seed: int, *parts: object) -> int:
    """A seed for ``torch.manual_seed``/``Generator.manual_seed`` that depends on ``seed`` and
    every one of ``parts`` (e.g. ``"augment", epoch, rank``), in [0, 2**63).

    A hash, not arithmetic such as ``seed * 1000 + rank``: nearby inputs (seed 1 rank 0,
    seed 0 rank 1000) must not collide.
    """
    text = "/".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def seed_generators(seed: int, device: torch.device | None = None) -> None:
    """Seed torch's CPU generator and ``device``'s (a GPU's), as ``torch.manual_seed`` would.

    ``torch.manual_seed`` also queues a seed for every CUDA device while CUDA is not yet
    initialised, capturing a stack trace each time (about 0.4 ms): too slow to pay for every
    training step and every augmented image, which are seeded here.
    """
    import torch

    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()].manual_seed(seed)
    elif device is not None and device.type == "mps":
        torch.mps.manual_seed(seed)


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Inside, torch's CPU generator and ``device``'s are seeded with ``seed``; afterwards both
    are as they were. For library code that draws from the global generators (captum's PGD
    start, SmoothGrad's noise): its draws repeat, and the caller's random stream is untouched."""
    import torch

    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        seed_generators(seed, device)
        yield
