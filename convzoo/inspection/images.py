"""Images as the run's dataset preprocessed them, from files or from the dataset itself.

A user's 640x480 photo of a shoe must reach a Fashion-MNIST model exactly as a test image
did: one grey channel, 28x28, zero-padded to 32x32 for LeNet-5, normalised with the
dataset's mean and std. ``Preprocessing`` holds those rules (from the dataset spec and
the model's padding) and ``select_images`` is the one way every inspection command gets
its images: ``--image FILE...`` | ``--dataset NAME --index I...`` | ``--samples N``.

Images travel as float pixels in [0, 1] at the model's input side (what attacks perturb
and what pictures show); ``Preprocessing.normalize`` makes them model inputs, and
``PixelInputModel`` folds that normalisation into a model for methods that must act on
pixels (adversarial examples, maximum-response images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from convzoo.data.catalog import DatasetSpec
from convzoo.data.image_decoding import UnreadableImage, read_image
from convzoo.errors import ConvzooError


@dataclass(frozen=True)
class Preprocessing:
    """How the run turned a stored image into the model's input."""

    channels: int
    dataset_side: int
    """Side of the dataset's images (28 for MNIST, the crop size for image folders)."""
    model_side: int
    """Side the model sees: ``dataset_side`` zero-padded for fixed-size models (LeNet-5: 32)."""
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize_crop: bool
    """Image folders and ImageNet: resize the short side to side x 256/224, then centre-crop."""

    @classmethod
    def for_spec(cls, spec: DatasetSpec, model_side: int | None = None) -> "Preprocessing":
        side = model_side or spec.image_size
        return cls(spec.channels, min(spec.image_size, side), side, tuple(spec.mean), tuple(spec.std),
                   resize_crop=not spec.in_memory)

    def fit(self, image: torch.Tensor) -> torch.Tensor:
        """A uint8 (C, H, W) image of any size brought to (channels, model_side, model_side)."""
        from torchvision.transforms.v2 import functional as TF

        side = self.dataset_side
        if self.resize_crop:
            from convzoo.data.imagefolder import resize_side

            image = TF.resize(image, [resize_side(side)], antialias=True)
            image = TF.center_crop(image, [side, side])
        elif tuple(image.shape[-2:]) != (side, side):
            image = TF.resize(image, [side], antialias=True)  # short side to the dataset's, then crop the middle
            image = TF.center_crop(image, [side, side])
        return pad_to_side(image, self.model_side)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Model inputs from pixels in [0, 1] (N, C, H, W)."""
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, -1, 1, 1)
        return (pixels - mean) / std


def pad_to_side(images: torch.Tensor, side: int) -> torch.Tensor:
    """Zero-pad (C, H, W) or (N, C, H, W) images symmetrically to ``side`` (LeNet-5's 32x32)."""
    height, width = images.shape[-2:]
    if height >= side and width >= side:
        return images
    top, left = (side - height) // 2, (side - width) // 2
    return torch.nn.functional.pad(images, (left, side - width - left, top, side - height - top))


class PixelInputModel(nn.Module):
    """``model`` taking pixels in [0, 1]: the dataset's normalisation is its first step.

    Attacks clamp to [0, 1] and measure epsilon in pixel units, and activation maximisation
    optimises pixels, so both need the normalisation inside the differentiated function.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model((pixels - self.mean) / self.std)


@dataclass
class InputImages:
    """A batch of images ready for inspection, with where each came from."""

    pixels: torch.Tensor
    """Float pixels in [0, 1], (N, C, S, S) at the model's side, on the CPU."""
    labels: torch.Tensor
    """(N,) int64 true classes; -1 where unknown (image files)."""
    names: list[str]
    """``path`` for files, ``DATASET[split][index]`` for dataset images."""
    indices: list[int | None]
    """Index in the dataset split, None for files."""


def read_image_file(path: str | Path, channels: int) -> torch.Tensor:
    """A uint8 (channels, H, W) image, decoded as training decodes it (``convzoo.data.image_decoding``).

    A missing or unreadable file raises ``UnreadableImage``, a one-line error naming it.
    """
    if not Path(path).is_file():
        raise UnreadableImage(str(path), "no such file")
    return read_image(path, channels)


def load_image_files(paths: Sequence[str | Path], preprocessing: Preprocessing) -> InputImages:
    """The readable ones of ``paths``; each file that is not is named on stderr and skipped."""
    import sys

    images, names, skipped = [], [], []
    for path in paths:
        try:
            images.append(preprocessing.fit(read_image_file(path, preprocessing.channels)))
            names.append(str(path))
        except UnreadableImage as error:
            skipped.append(error)
    if skipped and not images:
        raise skipped[0] if len(skipped) == 1 else ConvzooError(
            f"none of the {len(skipped)} image files can be read ({skipped[0]}).")
    for error in skipped:
        print(f"warning: skipped unreadable image {error.path} ({error.reason}).", file=sys.stderr)
    if skipped:
        print(f"warning: {len(skipped)} of {len(paths)} image files skipped (listed above).", file=sys.stderr)
    pixels = torch.stack(images).float().div_(255)
    return InputImages(pixels, torch.full((len(images),), -1, dtype=torch.long), names, [None] * len(images))


def check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ConvzooError(f"--split must be train or test, got {split!r}.")
    return split


def dataset_split(spec: DatasetSpec, split: str, data_dir: str | None) -> tuple[Any, torch.Tensor]:
    """A split's images (uint8 tensor (N, C, H, W), or an image folder's file paths) and labels."""
    check_split(split)
    if spec.in_memory:
        from convzoo.data import load_tensors

        return load_tensors(spec, train=split == "train", data_dir=data_dir)
    from convzoo.data.imagefolder import image_folder_split, split_folder

    root = Path(spec.name.split(":", 1)[1]).expanduser()
    folder = image_folder_split(split_folder(root, train=split == "train"))
    return [path for path, _ in folder.samples], torch.tensor([label for _, label in folder.samples], dtype=torch.long)


def load_dataset_images(
    spec: DatasetSpec, preprocessing: Preprocessing, indices: Sequence[int], *, split: str = "test",
    data_dir: str | None = None,
) -> InputImages:
    """Images ``indices`` of ``spec``'s ``split``, preprocessed as the run's evaluation did."""
    images, labels = dataset_split(spec, split, data_dir)
    total = len(labels)
    bad = [index for index in indices if not 0 <= index < total]
    if bad:
        raise ConvzooError(f"--index {bad[0]} is out of range: {spec.name}'s {split} split has {total:,} images "
                           f"(0..{total - 1}).")
    if isinstance(images, torch.Tensor):
        picked = pad_to_side(images[list(indices)], preprocessing.model_side).float().div_(255)
    else:  # an image folder's files: those that are not images are skipped, as in training
        files = load_image_files([images[index] for index in indices], preprocessing)
        kept = set(files.names)
        indices = [index for index in indices if str(images[index]) in kept]
        picked = files.pixels
    names = [f"{spec.name}[{split}][{index}]" for index in indices]
    return InputImages(picked, labels[list(indices)].clone(), names, list(indices))


def sample_indices(count: int, total: int, seed: int) -> list[int]:
    """``count`` distinct indices of ``total``, drawn with ``seed``, in increasing order."""
    if count < 1:
        raise ConvzooError(f"--samples must be at least 1, got {count}.")
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(total, generator=generator)[: min(count, total)].tolist())


def select_images(
    spec: DatasetSpec,
    preprocessing: Preprocessing,
    *,
    image_paths: Sequence[str] | None = None,
    indices: Sequence[int] | None = None,
    samples: int | None = None,
    split: str = "test",
    data_dir: str | None = None,
    seed: int = 0,
) -> InputImages:
    """The images an inspection command works on: files, dataset indices, or N random samples."""
    given = [flag for flag, value in (("--image", image_paths), ("--index", indices), ("--samples", samples))
             if value]
    if len(given) > 1:
        raise ConvzooError(f"pass images one way: {' or '.join(given)}, not both.")
    if image_paths:
        return load_image_files(image_paths, preprocessing)
    if indices:
        return load_dataset_images(spec, preprocessing, indices, split=split, data_dir=data_dir)
    if samples:
        _, labels = dataset_split(spec, split, data_dir)
        return load_dataset_images(spec, preprocessing, sample_indices(samples, len(labels), seed), split=split,
                                   data_dir=data_dir)
    raise ConvzooError("no images given: pass --image FILE..., --index I... (of --dataset's test split) or --samples N.")
