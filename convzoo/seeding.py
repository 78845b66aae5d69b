"""Seeds derived from a run's seed: one independent stream per purpose, epoch and rank.

Every random draw of an epoch (batch order, crops and flips, dropout masks) comes from a
generator seeded here, so the numbers of epoch ``e`` on rank ``r`` are a function of
``(seed, e, r)`` alone: a resumed run draws what an uninterrupted one would without
carrying generator states in its checkpoint, and no two ranks of a torchrun job draw
the same masks or crops for the same batch.
"""

from __future__ import annotations

import hashlib


def derived_seed(seed: int, *parts: object) -> int:
    """A seed for ``torch.manual_seed``/``Generator.manual_seed`` that depends on ``seed`` and
    every one of ``parts`` (e.g. ``"augment", epoch, rank``), in [0, 2**63).

    A hash, not arithmetic such as ``seed * 1000 + rank``: nearby inputs (seed 1 rank 0,
    seed 0 rank 1000) must not collide.
    """
    text = "/".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
