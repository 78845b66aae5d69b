"""Users' own segmentation data, streamed: ``voc:PATH`` and ``segfolder:PATH``.

``voc:PATH`` is Pascal VOC 2012's segmentation layout as its archive extracts: PATH may be
the ``VOC2012`` folder itself, the ``VOCdevkit`` folder holding it, or the folder holding
that. The files of a split are torchvision's ``VOCSegmentation`` rule:
``ImageSets/Segmentation/{train,val}.txt`` lists the ids, ``JPEGImages/<id>.jpg`` is the
image, ``SegmentationClass/<id>.png`` its palette PNG of class indices (21 classes, 255
void: the outlines and "difficult" parts that no metric counts). The files are listed
here rather than by ``VOCSegmentation`` itself, which insists on ``ROOT/VOCdevkit/VOC2012``
and so refuses a VOC2012 folder that was moved or renamed; tests check both list the same files.

``segfolder:PATH`` is a plain pair of folders per split: ``PATH/train/images/*`` and
``PATH/train/masks/*``, the same for ``val/`` (or ``test/``). A mask has its image's stem
(``a.jpg`` and ``a.png``) and holds a class index per pixel (greyscale or palette PNG), 255
for void. The classes: ``PATH/classes.txt``, one name per line, index for index, when there
is one; else the largest index found in any mask of either split, plus one (every mask is
then read once, when the spec is first asked for; a ``classes.txt`` saves that).

Training crops scale each image by a random factor (its shorter side between half and
twice ``image_size``), crop ``image_size`` x ``image_size`` (padding where the image is
smaller) and flip horizontally, image and mask together; evaluation resizes the longer side
to ``image_size`` and pads the rest. Masks are resized by nearest neighbour (a class index
is never blended), and padded with void (255), so padding is no class and costs no loss.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch.utils.data import Dataset

from convzoo.data.catalog import IMAGENET_MEAN, IMAGENET_STD, VOC_PREFIX, DatasetSpec
from convzoo.data.image_decoding import is_image_file, read_image
from convzoo.errors import ConvzooError

DEFAULT_IMAGE_SIZE = 256
VOID = 255
"""The mask value of pixels that belong to no class (VOC's outlines, padding): losses and metrics ignore it."""
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
VOC_LAYOUT = "JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/{train,val}.txt"
SEGFOLDER_LAYOUT = "PATH/train/images/<name>.jpg with PATH/train/masks/<name>.png, the same under val/ (or test/)"


def segmentation_spec(name: str, *, image_size: int | None = None) -> DatasetSpec:
    """The spec of ``voc:PATH`` or ``segfolder:PATH``, once its layout is checked."""
    prefix, path = name.split(":", 1)
    root = Path(path).expanduser()
    if f"{prefix}:" == VOC_PREFIX:
        voc_folder(root)
        num_classes = len(VOC_CLASSES)
    else:
        num_classes = len(segfolder_class_names(root))
    return DatasetSpec(name, 3, image_size or DEFAULT_IMAGE_SIZE, num_classes, IMAGENET_MEAN, IMAGENET_STD,
                       "scale_crop_flip", in_memory=False, targets=("masks",))


def voc_folder(path: Path, *, prefix: str = "voc",
               wanted: tuple[str, ...] = ("SegmentationClass", "ImageSets/Segmentation/train.txt",
                                          "ImageSets/Segmentation/val.txt"),
               layout: str = VOC_LAYOUT) -> Path:
    """The ``VOC2012`` folder that ``path`` is or holds, or a one-line error naming what is
    missing: of the ``wanted`` files of a task (segmentation's by default; ``vocdet:`` asks
    for detection's), whose ``layout`` the error gives."""
    candidates = (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012")
    folder = next((candidate for candidate in candidates if (candidate / "JPEGImages").is_dir()), None)
    if folder is None:
        raise ConvzooError(f"{prefix}:{path}: no JPEGImages/ in {path}, {path}/VOC2012 or {path}/VOCdevkit/VOC2012. "
                           f"Pass the Pascal VOC 2012 folder, which holds {layout}.")
    missing = [name for name in wanted if not (folder / name).exists()]
    if missing:
        raise ConvzooError(f"{prefix}:{path}: {folder} has no {' or '.join(missing)} (expected {layout}).")
    return folder


def voc_files(path: Path, train: bool) -> tuple[list[str], list[str]]:
    """A split's image and mask files, as ``VOCSegmentation`` lists them."""
    folder = voc_folder(path)
    split_file = folder / "ImageSets" / "Segmentation" / ("train.txt" if train else "val.txt")
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    return ([str(folder / "JPEGImages" / f"{name}.jpg") for name in ids],
            [str(folder / "SegmentationClass" / f"{name}.png") for name in ids])


def segfolder_split(root: Path, train: bool) -> Path:
    """``train/``, or ``val/`` (else ``test/``), each with ``images/`` and ``masks/``."""
    if not root.is_dir():
        raise ConvzooError(f"segmentation folder {root} does not exist. Pass segfolder:PATH with {SEGFOLDER_LAYOUT}.")
    names = ("train",) if train else ("val", "test")
    split = next((root / name for name in names if (root / name).is_dir()), None)
    if split is None or not (split / "images").is_dir() or not (split / "masks").is_dir():
        where = f"{split.name}/images/ and {split.name}/masks/" if split else " or ".join(f"{name}/" for name in names)
        raise ConvzooError(f"segmentation folder {root} has no {where}. Expected {SEGFOLDER_LAYOUT}.")
    return split


def segfolder_files(root: Path, train: bool) -> tuple[list[str], list[str]]:
    """A split's images, sorted by name, and the mask of each (the file of ``masks/`` with its stem)."""
    split = segfolder_split(root, train)
    images = sorted(entry for entry in (split / "images").iterdir() if is_image_file(entry.name))
    masks = {entry.stem: entry for entry in (split / "masks").iterdir() if is_image_file(entry.name)}
    if not images:
        raise ConvzooError(f"segmentation folder {split / 'images'} holds no images. Expected {SEGFOLDER_LAYOUT}.")
    unmatched = [image.name for image in images if image.stem not in masks]
    if unmatched:
        raise ConvzooError(f"{len(unmatched)} images of {split / 'images'} have no mask of the same name in "
                           f"{split / 'masks'} ({', '.join(unmatched[:3])}{' ...' if len(unmatched) > 3 else ''}).")
    return [str(image) for image in images], [str(masks[image.stem]) for image in images]


def segfolder_class_names(root: Path) -> tuple[str, ...]:
    """``classes.txt``'s lines, else ``"0"`` ... up to the largest class index of any mask."""
    listed = root / "classes.txt"
    if listed.is_file():
        names = tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
        if not 0 < len(names) < VOID:
            raise ConvzooError(f"{listed} names {len(names)} classes; a mask can hold 1 to {VOID - 1} (255 is void).")
        return names
    return tuple(str(index) for index in range(_largest_class(root) + 1))


@functools.lru_cache(maxsize=8)
def _largest_class(root: Path) -> int:
    """The largest class index in the masks of both splits (read once per process: the spec,
    the class names and every rebuilt loader ask for it)."""
    largest = -1
    for train in (True, False):
        for mask_file in segfolder_files(root, train)[1]:
            values = read_mask(mask_file).unique()
            values = values[values != VOID]
            if len(values):
                largest = max(largest, int(values.max()))
    if largest < 0:
        raise ConvzooError(f"every mask of segmentation folder {root} is void (255); a mask holds class indices.")
    return largest


def read_mask(path: str) -> torch.Tensor:
    """A uint8 (H, W) mask of class indices: a palette PNG's indices (VOC), a greyscale PNG's values."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "1"):
                raise ConvzooError(f"mask {path} is a {image.mode} image; a mask holds one class index per pixel "
                                   "(a palette or greyscale PNG).")
            return torch.from_numpy(np.array(image, dtype=np.uint8))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise ConvzooError(f"cannot read mask {path}: {str(error).splitlines()[0] or type(error).__name__}.") from None


class SegmentationFiles(Dataset):
    """Pairs of image and mask files, each pair transformed together: items are a float
    image (3, S, S), normalised, and an int64 mask (S, S)."""

    def __init__(self, images: list[str], masks: list[str], transform) -> None:
        self.images, self.masks, self.transform = images, masks, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision import tv_tensors

        image, mask = read_image(self.images[index], 3), read_mask(self.masks[index])
        if image.shape[-2:] != mask.shape:
            raise ConvzooError(f"image {self.images[index]} is {tuple(image.shape[-2:])} pixels and its mask "
                               f"{self.masks[index]} {tuple(mask.shape)}; a mask has its image's size.")
        image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).long()


class PadTo:
    """Pad an image and its mask on the bottom and right up to ``size`` x ``size``: the
    image with 0, the mask with void."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image, mask):
        from torchvision.transforms.v2 import functional

        height, width = image.shape[-2:]
        padding = [0, 0, self.size - width, self.size - height]
        return functional.pad(image, padding, fill=0), functional.pad(mask, padding, fill=VOID)


def segmentation_transform(spec: DatasetSpec, train: bool, augment: bool):
    """The joint transform of an (image, mask) pair of ``tv_tensors``; see the module's docstring."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2 as transforms

    size = spec.image_size
    if train and augment:
        geometry = [
            transforms.RandomResize(size // 2, 2 * size, antialias=True),
            transforms.RandomCrop(size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: VOID}),
            transforms.RandomHorizontalFlip(),
        ]
    else:
        geometry = [transforms.Resize(size=None, max_size=size, antialias=True), PadTo(size)]
    to_float = [transforms.ToDtype(torch.float32, scale=True), transforms.Normalize(spec.mean, spec.std)]
    return transforms.Compose([*geometry, *to_float])


def segmentation_files(spec: DatasetSpec, train: bool) -> tuple[list[str], list[str]]:
    prefix, path = spec.name.split(":", 1)
    root = Path(path).expanduser()
    return voc_files(root, train) if f"{prefix}:" == VOC_PREFIX else segfolder_files(root, train)


def build_segmentation_dataset(spec: DatasetSpec, train: bool, augment: bool) -> SegmentationFiles:
    """A split of ``voc:`` or ``segfolder:`` data with its joint transform."""
    images, masks = segmentation_files(spec, train)
    return SegmentationFiles(images, masks, segmentation_transform(spec, train, augment))


def segmentation_class_names(spec: DatasetSpec) -> tuple[str, ...]:
    prefix, path = spec.name.split(":", 1)
    if f"{prefix}:" == VOC_PREFIX:
        return VOC_CLASSES
    return segfolder_class_names(Path(path).expanduser())
