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

import warnings
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


DECODERS = ("tensor", "pil")
DEFAULT_DECODER = "tensor"
"""How image files become training tensors: ``tensor`` decodes with ``torchvision.io`` to
uint8 tensors and transforms them with ``transforms.v2``; ``pil`` is torchvision's classic
path (PIL images, ``transforms`` v1, ``ToTensor``). Chosen by ``benchmarks/bench_imagefolder.py``
(README: "Image folders")."""

# torchvision 0.29 deprecates its decoders in favour of TorchCodec, warning on every image
# read; they still work, and PIL remains the fallback should they be removed.
warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision are deprecated",
                        DeprecationWarning)

TENSOR_DECODABLE = (".jpg", ".jpeg", ".png", ".gif", ".webp")
"""What ``torchvision.io.decode_image`` reads; other formats (BMP, TIFF, PPM/PGM) go through PIL."""


def resize_side(size: int) -> int:
    """The side evaluation images are resized to before the centre crop: the 256 -> 224
    ratio of ImageNet practice."""
    return int(round(size * 256 / 224))


def read_rgb_uint8(path: str):
    """An image file as a (3, H, W) uint8 tensor, RGB whatever the file holds.

    JPEG, PNG, GIF and WebP are decoded by ``torchvision.io`` (libjpeg-turbo, libpng,
    libwebp; greyscale and palette images converted to RGB, alpha dropped); any other
    format, and any file it refuses, by PIL, as torchvision's ``ImageFolder`` reads it.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_image

    if path.lower().endswith(TENSOR_DECODABLE):
        try:
            image = decode_image(path, mode=ImageReadMode.RGB)
        except RuntimeError:
            image = None  # e.g. a PNG that is really a BMP, or a codec this build lacks
        if image is not None:
            if image.dtype != torch.uint8:  # 16-bit PNGs
                from torchvision.transforms.v2.functional import to_dtype

                image = to_dtype(image, torch.uint8, scale=True)
            return image
    from PIL import Image
    from torchvision.transforms.v2.functional import pil_to_tensor

    with open(path, "rb") as file:
        return pil_to_tensor(Image.open(file).convert("RGB"))


def imagefolder_transform(spec: DatasetSpec, train: bool, augment: bool, decoder: str = DEFAULT_DECODER):
    """The ImageNet-style transform: random-resized crop and flip for training, resize and
    centre crop for evaluation, then scaling to [0, 1] and the dataset's normalisation.

    ``tensor`` applies it to uint8 tensors with ``transforms.v2`` (cropping and resizing
    one byte per value; the float conversion comes last, on the small crop); ``pil`` to
    PIL images with ``transforms`` v1. Both resize bilinearly with antialiasing.
    """
    size = spec.image_size
    if decoder == "pil":
        from torchvision import transforms

        to_float = [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    else:
        import torch
        from torchvision.transforms import v2 as transforms

        to_float = [transforms.ToDtype(torch.float32, scale=True), transforms.Normalize(spec.mean, spec.std)]
    if train and augment:
        geometry = [transforms.RandomResizedCrop(size, antialias=True), transforms.RandomHorizontalFlip()]
    else:
        geometry = [transforms.Resize(resize_side(size), antialias=True), transforms.CenterCrop(size)]
    return transforms.Compose([*geometry, *to_float])


def build_imagefolder_dataset(spec: DatasetSpec, train: bool, augment: bool, decoder: str | None = None):
    """A torchvision ``ImageFolder`` (its file list and class indices) with the standard
    ImageNet-style transform, decoding as ``decoder`` says (None: ``DEFAULT_DECODER``)."""
    from torchvision import datasets

    decoder = decoder or DEFAULT_DECODER
    if decoder not in DECODERS:
        raise ConvzooError(f"image decoder must be one of {', '.join(DECODERS)}, got {decoder!r}.")
    root = Path(spec.name.split(":", 1)[1]).expanduser()
    transform = imagefolder_transform(spec, train, augment, decoder)
    loader = {"tensor": read_rgb_uint8, "pil": datasets.folder.default_loader}[decoder]
    folder = split_folder(root, train)
    try:
        return datasets.ImageFolder(str(folder), transform=transform, loader=loader, allow_empty=False)
    except TypeError:  # torchvision < 0.18 has no allow_empty
        return datasets.ImageFolder(str(folder), transform=transform, loader=loader)
    except (FileNotFoundError, RuntimeError) as error:
        raise ConvzooError(f"cannot read images in {folder}: {str(error).splitlines()[0]}") from None
