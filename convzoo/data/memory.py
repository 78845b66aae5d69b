"""The in-memory batcher: small datasets as uint8 tensors on the training device.

A CIFAR or MNIST epoch is tiny next to the per-sample cost of a classic DataLoader
(PIL decode, ToTensor, Normalize for each image in Python). Here the whole split is
moved to the device once; each batch is gathered by index, augmented as a batch and
normalised in one fused multiply-add. All randomness of an epoch (order, crops, flips)
comes from a generator seeded by (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted one would, and a DDP rank takes its own shard of the order.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch


def pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (background) uint8 images symmetrically up to ``size`` x ``size``."""
    height, width = images.shape[-2:]
    if height == size and width == size:
        return images
    top, left = (size - height) // 2, (size - width) // 2
    return torch.nn.functional.pad(images, (left, size - width - left, top, size - height - top))


def random_crop_flip(
    images: torch.Tensor, padding: int, generator: torch.Generator, flip: bool = True
) -> torch.Tensor:
    """Random crop after zero padding plus a random horizontal flip, per image, in one gather."""
    batch, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, batch), generator=generator).to(images.device)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)
    if flip:
        flipped = torch.rand(batch, generator=generator).to(images.device) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=images.device)[:, None, None, None]
    channel_index = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


class InMemoryLoader:
    """Yields normalised float batches ``(images, labels)`` from uint8 tensors on a device.

    ``rank``/``world_size`` give each DDP process a disjoint shard of every epoch's order,
    of equal length (the order is cut to a multiple of ``world_size``, as
    ``DistributedSampler`` does with ``drop_last``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augmentation: str = "none",
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = False,
    ) -> None:
        device = torch.device(device)
        self.images = images.to(device, non_blocking=True)
        self.labels = labels.to(device, non_blocking=True)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.seed = seed
        self.drop_last = drop_last
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.epoch = 0
        # (x / 255 - mean) / std as one multiply-add on the uint8 batch.
        std_tensor = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_tensor)
        self.shift = -torch.tensor(mean, device=device).view(1, -1, 1, 1) / std_tensor

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch."""
        return len(self.labels) // self.world_size if self.world_size > 1 else len(self.labels)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = self._epoch_generator()
        total = len(self.labels)
        order = torch.randperm(total, generator=generator) if self.shuffle else torch.arange(total)
        if self.world_size > 1:
            order = order[: self.num_samples * self.world_size][self.rank :: self.world_size]
        order = order.to(self.images.device)
        for batch_index in range(len(self)):
            index = order[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            images = self.images[index]
            if self.augmentation == "crop_flip":
                images = random_crop_flip(images, padding=4, generator=generator)
            images = images.float().mul_(self.scale).add_(self.shift)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels[index]
