"""``imagefolder:PATH``: a user's own images, one sub-folder per class (ImageNet layout).

Large image sets do not fit in memory, so they are decoded by a multi-worker DataLoader
with the standard ImageNet transforms: random-resized crop and flip for training,
resize then centre crop for evaluation.

The layout rule: ``PATH`` holds ``train/`` and ``val/`` (or ``test/``), each with the same
class sub-folders (``PATH/train/cat/1.jpg``, ``PATH/val/cat/7.jpg``). Anything else is
refused: a missing evaluation split would otherwise be guessed (the folder itself, one
class called "train" holding every training image), and a class present in one split
only would shift every label after it, so the reported accuracy would mean nothing.
"""

from __future__ import annotations

from pathlib import Path

from convzoo.data.catalog import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from convzoo.errors import ConvzooError

DEFAULT_IMAGE_SIZE = 224
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


LAYOUT = "PATH/train/<class>/<image> and PATH/val/<class>/<image> (or test/), with the same class folders"


def split_folder(root: Path, train: bool) -> Path:
    """The folder holding one split, ``train/`` or ``val/`` (else ``test/``), once the
    layout rule is checked (``check_layout``)."""
    train_folder, eval_folder, _ = check_layout(root)
    return train_folder if train else eval_folder


def check_layout(root: Path) -> tuple[Path, Path, list[str]]:
    """``(train folder, evaluation folder, class names)``, or an error saying what was found
    and what is expected."""
    if not root.is_dir():
        raise ConvzooError(f"image folder {root} does not exist. Pass imagefolder:PATH with {LAYOUT}.")
    train_folder = root / "train"
    eval_folder = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if not train_folder.is_dir() or eval_folder is None:
        found = sorted(entry.name + "/" for entry in root.iterdir() if entry.is_dir())[:6]
        missing = " and ".join(name for name, absent in (("train/", not train_folder.is_dir()),
                                                          ("val/ (or test/)", eval_folder is None)) if absent)
        raise ConvzooError(
            f"image folder {root} has no {missing} (found {', '.join(found) if found else 'no sub-folders'}). "
            f"Expected {LAYOUT}."
        )
    train_classes, eval_classes = _class_folders(train_folder), _class_folders(eval_folder)
    if train_classes != eval_classes:
        only_train = sorted(set(train_classes) - set(eval_classes))
        only_eval = sorted(set(eval_classes) - set(train_classes))
        where = "; ".join(
            f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''} only in {folder.name}/"
            for names, folder in ((only_train, train_folder), (only_eval, eval_folder)) if names
        )
        raise ConvzooError(
            f"image folder {root}: the splits have different classes ({where}). "
            "Give train/ and its evaluation split the same class folders, since labels are their sorted names."
        )
    return train_folder, eval_folder, train_classes


def _class_folders(folder: Path) -> list[str]:
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    if not classes:
        raise ConvzooError(f"image folder {folder} has no class sub-folders (expected {folder}/<class>/<image>.jpg).")
    return classes


def imagefolder_spec(path: str, *, image_size: int | None = None) -> DatasetSpec:
    root = Path(path).expanduser()
    num_classes = len(check_layout(root)[2])
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
