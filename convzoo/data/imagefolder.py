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

import sys
from pathlib import Path

from torchvision import datasets

from convzoo.data.catalog import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from convzoo.data.image_decoding import UnreadableImage, is_image_file, read_image
from convzoo.errors import ConvzooError

DEFAULT_IMAGE_SIZE = 224


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


def resize_side(size: int) -> int:
    """The side evaluation images are resized to before the centre crop: the 256 -> 224
    ratio of ImageNet practice."""
    return int(round(size * 256 / 224))


def read_rgb_pil(path: str):
    """The ``pil`` decoder's image: PIL decodes, by ``read_image``'s rules (first frame,
    16-bit to 8-bit, RGB)."""
    from torchvision.transforms.v2.functional import to_pil_image

    return to_pil_image(read_image(path, 3, use_pil=True))


def imagefolder_transform(spec: DatasetSpec, train: bool, augment: bool, decoder: str = DEFAULT_DECODER, *,
                          auto_augment: str | None = None, random_erasing: float = 0.0):
    """The ImageNet-style transform: random-resized crop and flip for training, resize and
    centre crop for evaluation, then scaling to [0, 1] and the dataset's normalisation.
    Training images then go through the ``auto_augment`` policy (torchvision's, per image,
    before the float conversion as in torchvision's references) and, with probability
    ``random_erasing``, torchvision's ``RandomErasing(value="random")`` after normalisation.

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
    policy, erasing = [], []
    if train and auto_augment:
        from convzoo.config import parse_auto_augment

        name, num_ops, magnitude = parse_auto_augment(auto_augment)
        if name == "randaugment":
            policy = [transforms.RandAugment(num_ops=num_ops, magnitude=magnitude)]
        elif name == "trivialaugment":
            policy = [transforms.TrivialAugmentWide()]
        else:
            policy = [transforms.AutoAugment(transforms.AutoAugmentPolicy.IMAGENET)]
    if train and random_erasing > 0:
        erasing = [transforms.RandomErasing(p=random_erasing, value="random")]
    return transforms.Compose([*geometry, *policy, *to_float, *erasing])


def build_imagefolder_dataset(spec: DatasetSpec, train: bool, augment: bool, decoder: str | None = None, **extra):
    """A torchvision ``ImageFolder`` (its file list and class indices) with the standard
    ImageNet-style transform, decoding as ``decoder`` says (None: ``DEFAULT_DECODER``);
    ``extra``: ``imagefolder_transform``'s ``auto_augment`` and ``random_erasing``."""
    decoder = decoder or DEFAULT_DECODER
    if decoder not in DECODERS:
        raise ConvzooError(f"image decoder must be one of {', '.join(DECODERS)}, got {decoder!r}.")
    root = Path(spec.name.split(":", 1)[1]).expanduser()
    transform = imagefolder_transform(spec, train, augment, decoder, **extra)
    loader = {"tensor": read_image, "pil": read_rgb_pil}[decoder]
    dataset = image_folder_split(split_folder(root, train), transform=transform, loader=loader)
    if not train:
        # Accuracy is over the images there are: a file that does not open as one is left
        # out (named, counted) rather than replaced by its neighbour, which would count twice.
        # Training's split is not checked up front (a million header reads); see ReadableImageFolder.
        from convzoo.data.image_decoding import readable_files

        dataset.samples = [dataset.samples[index] for index in readable_files([path for path, _ in dataset.samples])]
        dataset.imgs, dataset.targets = dataset.samples, [label for _, label in dataset.samples]
    return dataset


def image_folder_split(folder: Path, **options) -> "ReadableImageFolder":
    """One split's files and class indices, as training, evaluation and the inspection
    commands all list them (every suffix ``read_image`` reads, GIF included)."""
    try:
        return ReadableImageFolder(str(folder), is_valid_file=is_image_file, allow_empty=False, **options)
    except (FileNotFoundError, RuntimeError) as error:
        raise ConvzooError(f"cannot read images in {folder}: {str(error).splitlines()[0]}") from None


class ReadableImageFolder(datasets.ImageFolder):
    """torchvision's ``ImageFolder``, skipping files that are not images it can decode.

    A text file named ``.jpg`` among a million photos should cost one image, not the run:
    it is named on stderr (once per decoding process) and its place in the batch goes to
    the next readable image, so an epoch keeps its length and a batch its shape.
    """

    def __getitem__(self, index: int):
        for offset in range(len(self.samples)):
            try:
                return super().__getitem__((index + offset) % len(self.samples))
            except UnreadableImage as error:
                self._report(error)
        raise ConvzooError(f"no file in {self.root} is an image convzoo can read.")

    def _report(self, error: UnreadableImage) -> None:
        reported = self.__dict__.setdefault("_reported", set())
        if error.path not in reported:
            reported.add(error.path)
            print(f"warning: skipped unreadable image {error.path} ({error.reason}); its place goes to the next "
                  f"image ({len(reported)} skipped so far by this process).", file=sys.stderr, flush=True)
