"""A DataLoader epoch that can start at any batch and still yield what an uninterrupted
one would there: the sampler and per-sample augmentation of ``imagefolder:`` training.

A stock DataLoader cannot do this. Its random transforms run in worker processes whose
generators are seeded once, when the workers start, and then advance with every image
the worker happens to get, so skipping the first batches of an epoch changes which
worker decodes which image and every crop after that. Here each image's crop and flip
are drawn from a generator seeded by (seed, epoch, dataset index) just before its
transform runs, wherever it runs; the sampler yields ``(epoch, index)`` pairs so that
the epoch reaches persistent workers with each index rather than through a dataset
attribute they hold a stale copy of.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler

from convzoo.seeding import derived_seed, seed_generators


class SeededPerSample(Dataset):
    """``dataset`` whose item ``(epoch, index)`` is ``dataset[index]`` with torch's global
    generator (which torchvision's random transforms draw from) seeded by ``(seed, epoch,
    index)``, and restored afterwards (with no workers this runs in the training process).
    The same image in the same epoch is augmented alike on any rank and any number of ranks;
    an item ``(epoch, index, copy)`` is its ``copy``-th repetition (repeated augmentation),
    seeded by the copy too."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, ...]) -> Any:
        epoch, index, *copy = key
        with torch.random.fork_rng(devices=[]):
            seed_generators(derived_seed(self.seed, "augment", epoch, index, *copy))
            return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (this rank's shard of an order drawn from seed + epoch)
    yielding ``(epoch, index)`` for ``SeededPerSample``, from sample ``start`` of the shard on.

    ``len()`` stays the whole shard's length: it sizes the epoch (steps, schedule), which
    a resumed epoch only enters part-way.

    ``repeats`` > 1 is timm's ``RepeatAugSampler`` with the epoch's length kept: each index of
    the order ``repeats`` times in a row before the order is dealt out to the ranks, yielded
    as ``(epoch, index, copy)`` so that every copy is augmented its own way.
    """

    def __init__(self, dataset: Any, repeats: int = 1, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.start, self.repeats = 0, repeats

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch of the next pass, starting at the shard's sample ``start``."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        if self.repeats == 1:
            shard = list(super().__iter__())
            return iter([(self.epoch, index) for index in shard[self.start:]])
        generator = torch.Generator().manual_seed(self.seed + self.epoch)  # DistributedSampler's order
        order = torch.randperm(len(self.dataset), generator=generator) if self.shuffle else torch.arange(len(self.dataset))
        repeated = [(self.epoch, index, copy) for index in order.tolist() for copy in range(self.repeats)]
        repeated = (repeated * math.ceil(self.total_size / len(repeated)))[: self.total_size]
        return iter(repeated[self.rank :: self.num_replicas][self.start:])
