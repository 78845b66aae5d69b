"""``imagefolder:PATH``: a user's own images, one sub-folder per class (ImageNet layout).

Large image sets do not fit in memory, so they are decoded by a multi-worker DataLoader
with the standard ImageNet transforms: random-resized crop and flip for training,
resize then centre crop for evaluation. ``PATH`` holds ``train/`` and ``val/`` (or
``test/``) sub-folders; a folder with neither is used for both splits.
"""

from __future__ import annotations

from pathlib import Path

from convzoo.data.catalog import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from convzoo.errors import ConvzooError

DEFAULT_IMAGE_SIZE = 224
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def split_folder(root: Path, train: bool) -> Path:
    """The folder holding one split: ``train/``, else ``val/`` or ``test/``, else ``root``."""
    if not root.is_dir():
        raise ConvzooError(f"image folder {root} does not exist. Pass imagefolder:PATH with a folder of class sub-folders.")
    candidates = ("train",) if train else ("val", "test")
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    return root


def _class_folders(folder: Path) -> list[str]:
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if not classes:
        raise ConvzooError(f"image folder {folder} has no class sub-folders (expected {folder}/<class>/<image>.jpg).")
    return classes


def imagefolder_spec(path: str, *, image_size: int | None = None) -> DatasetSpec:
    root = Path(path).expanduser()
    num_classes = len(_class_folders(split_folder(root, train=True)))
    return DatasetSpec(
        f"imagefolder:{path}", 3, image_size or DEFAULT_IMAGE_SIZE, num_classes,
        IMAGENET_MEAN, IMAGENET_STD, "resized_crop_flip", in_memory=False,
    )


def build_imagefolder_dataset(spec: DatasetSpec, train: bool, augment: bool):
    """A torchvision ``ImageFolder`` with the standard ImageNet-style transform."""
    from torchvision import datasets, transforms

    root = Path(spec.name.split(":", 1)[1]).expanduser()
    size = spec.image_size
    if train and augment:
        transform = transforms.Compose([
            transforms.RandomResizedCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ])
    else:
        transform = transforms.Compose([
            transforms.Resize(int(round(size * 256 / 224))),  # the 256 -> 224 ratio of ImageNet practice
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(spec.mean, spec.std),
        ])
    folder = split_folder(root, train)
    try:
        return datasets.ImageFolder(str(folder), transform=transform, allow_empty=False)
    except TypeError:  # torchvision < 0.18 has no allow_empty
        return datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as error:
        raise ConvzooError(f"cannot read images in {folder}: {str(error).splitlines()[0]}") from None
