"""The in-memory batcher: small datasets as uint8 tensors on the training device.

A CIFAR or MNIST epoch is tiny next to the per-sample cost of a classic DataLoader
(PIL decode, ToTensor, Normalize for each image in Python). Here the whole split is
moved to the device once; each batch is gathered by index, augmented as a batch and
normalised in one fused multiply-add. The epoch's order comes from a generator seeded
by (seed, epoch), the same on every rank, so a resumed run sees exactly the batches an
uninterrupted one would and each DDP rank takes its own shard of one order; crops and
flips come from a generator seeded by (seed, epoch, rank), so ranks augment differently,
and so do the per-image ops of an ``auto_augment`` policy and the boxes of random erasing
(data/batched_augment.py). All are drawn once per epoch and sent to the device without
blocking: a batch never waits for the host. ``set_epoch(epoch, start_step)`` starts an epoch at a later
batch (a run resumed from a mid-epoch checkpoint), which is then exactly the batch an
uninterrupted epoch would have yielded there.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from convzoo.data.batched_augment import EpochPolicy, draw_erasing, erase
from convzoo.seeding import derived_seed


def pad_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (background) uint8 images symmetrically up to ``size`` x ``size``."""
    height, width = images.shape[-2:]
    if height == size and width == size:
        return images
    top, left = (size - height) // 2, (size - width) // 2
    return torch.nn.functional.pad(images, (left, size - width - left, top, size - height - top))


def pad_targets(targets: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    """The targets of ``height`` x ``width`` images once ``pad_images`` pads them to ``size``:
    labels as they are; masks (N, H, W) padded with background (0); boxes (N, K, 5) of
    x1, y1, x2, y2, label moved with their image (padding rows, label -1, stay as they are)."""
    if targets.ndim == 3 and targets.shape[-2:] == (height, width):
        return pad_images(targets, size)
    if targets.ndim == 3 and targets.shape[-1] == 5 and size > max(height, width):
        top, left = (size - height) // 2, (size - width) // 2
        shift = torch.tensor([left, top, left, top, 0], dtype=targets.dtype)
        return torch.where(targets[..., 4:] >= 0, targets + shift, targets)
    return targets


def draw_crops_and_flips(count: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` crop offsets (2, count) in [0, 2 * padding] and horizontal flips (count,), on the CPU."""
    offsets = torch.randint(0, 2 * padding + 1, (2, count), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    return offsets, flips


def crop_and_flip(images: torch.Tensor, padding: int, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Crop each image after zero padding at ``offsets`` (rows; columns) and mirror it where
    ``flips``, in one gather; offsets and flips are on the images' device."""
    batch, channels, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    rows = offsets[0, :, None] + torch.arange(height, device=images.device)
    cols = offsets[1, :, None] + torch.arange(width, device=images.device)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=images.device)[:, None, None, None]
    channel_index = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device`` without blocking the host: from pinned memory, whose
    block torch keeps until the copy has finished (a pageable copy waits for the GPU)."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class InMemoryLoader:
    """Yields normalised float batches ``(images, labels)`` from uint8 tensors on a device.

    ``labels`` may be any per-image targets with the images' first dimension: class
    labels (N,), uint8 masks (N, H, W), which stay uint8 on the device (an eighth of the
    memory) and come out as int64, as cross-entropy takes them, or boxes (N, K, 5).

    ``rank``/``world_size`` give each DDP process a disjoint shard of every epoch's order.
    ``repeats`` > 1 puts each image that many times in a row in the order, before it is dealt
    out, so consecutive ranks get the same image (repeated augmentation, ``TrainConfig.repeated_aug``).
    With ``drop_last`` (training) the shards have equal length, the order cut to a multiple
    of ``world_size`` as ``DistributedSampler`` does, so every rank takes the same number of
    steps; without it (evaluation) every image is in exactly one shard.
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
        auto_augment: tuple[str, int, int] | None = None,
        random_erasing: float = 0.0,
        repeats: int = 1,
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
        self.auto_augment, self.random_erasing, self.repeats = auto_augment, random_erasing, repeats
        self.epoch, self.start_step = 0, 0
        # (x / 255 - mean) / std as one multiply-add on the uint8 batch.
        std_tensor = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_tensor)
        self.shift = -torch.tensor(mean, device=device).view(1, -1, 1, 1) / std_tensor

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch."""
        if self.drop_last:
            return len(self.labels) // self.world_size
        return len(range(self.rank, len(self.labels), self.world_size))

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """The epoch the next pass yields, from its batch ``start_step`` on (0: all of it)."""
        self.epoch, self.start_step = epoch, start_step

    def _epoch_order(self) -> torch.Tensor:
        """This rank's share of the epoch's order, on the CPU."""
        total = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, "order", self.epoch))
            order = torch.randperm(total, generator=generator)
        else:
            order = torch.arange(total)
        if self.repeats > 1:
            order = order.repeat_interleave(self.repeats)[:total]
        if self.drop_last:
            order = order[: self.num_samples * self.world_size]
        return order[self.rank :: self.world_size]

    def _generator(self, purpose: str) -> torch.Generator:
        """A CPU generator seeded for ``purpose`` in this epoch on this rank."""
        return torch.Generator().manual_seed(derived_seed(self.seed, purpose, self.epoch, self.rank))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.images.device
        order = self._epoch_order()
        height, width = self.images.shape[-2:]
        if self.augmentation == "crop_flip":
            offsets, flips = (to_device(t, device) for t in draw_crops_and_flips(len(order), 4, self._generator("augment")))
        if self.auto_augment is not None:
            policy = EpochPolicy.draw(self.auto_augment, len(order), self.batch_size, height, width,
                                      self._generator("auto_augment")).to(device)
        if self.random_erasing > 0:
            boxes = to_device(draw_erasing(len(order), self.random_erasing, height, width,
                                           self._generator("erasing")), device)
            # The noise of each batch from its own seed: the same wherever the epoch starts.
            noise = torch.Generator(device)
        order = to_device(order, device)
        for batch_index in range(self.start_step, len(self)):
            batch = slice(batch_index * self.batch_size, (batch_index + 1) * self.batch_size)
            index = order[batch]
            images = self.images[index]
            if self.augmentation == "crop_flip":
                images = crop_and_flip(images, 4, offsets[:, batch], flips[batch])
            if self.auto_augment is not None:
                images = policy.apply(images, batch_index)
            images = images.float().mul_(self.scale).add_(self.shift)
            if self.random_erasing > 0:
                noise.manual_seed(derived_seed(self.seed, "erasing noise", self.epoch, self.rank, batch_index))
                images = erase(images, boxes[batch], noise)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = self.labels[index]
            yield images, targets.long() if targets.dtype == torch.uint8 else targets
