"""Datasets by name: what each one is (shape, classes, normalisation, augmentation).

The shape is known without loading a byte, so a model can be sized for a dataset (and
``convzoo summary --dataset`` can print it) before any file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from convzoo.errors import ConvzooError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: str
    """``none``, ``crop_flip`` (CIFAR: random crop with 4-pixel padding, horizontal flip),
    ``resized_crop_flip`` (ImageNet-style, for image folders) or ``scale_crop_flip``
    (segmentation folders: random rescale, crop and flip of image and mask together) or
    ``resize_flip_pad`` (detection folders: resize, flip and pad of image and boxes together)."""
    in_memory: bool = True
    """Small datasets live on the device as uint8 tensors; image folders are streamed."""
    targets: tuple[str, ...] = ("labels",)
    """What a sample's target can be: ``labels`` (one class per image), ``masks`` (a class
    per pixel), ``boxes`` (a box and class per object); the first is the dataset's own."""


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec("synthetic", 3, 32, 10, (0.5, 0.5, 0.5), (0.29, 0.29, 0.29), "none"),
    "mnist": DatasetSpec("mnist", 1, 28, 10, (0.1307,), (0.3081,), "none"),
    "fashion-mnist": DatasetSpec("fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,), "none"),
    "cifar10": DatasetSpec(
        "cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "crop_flip"
    ),
    "cifar100": DatasetSpec(
        "cifar100", 3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "crop_flip"
    ),
    # Statistics of the 20 000 default training scenes (about 7 % of a canvas is ink).
    "mnist-scenes": DatasetSpec("mnist-scenes", 1, 64, 11, (0.0686,), (0.2217,), "none",
                                targets=("masks", "boxes")),
}
IMAGEFOLDER_PREFIX = "imagefolder:"
VOC_PREFIX = "voc:"
SEGFOLDER_PREFIX = "segfolder:"
COCO_PREFIX = "coco:"
VOCDET_PREFIX = "vocdet:"
TARGETS = ("labels", "masks", "boxes")


def dataset_names() -> list[str]:
    return [*DATASETS, *(f"{prefix}PATH" for prefix in (IMAGEFOLDER_PREFIX, VOC_PREFIX, SEGFOLDER_PREFIX, COCO_PREFIX, VOCDET_PREFIX))]


def get_dataset_spec(
    name: str, *, image_size: int | None = None, channels: int | None = None
) -> DatasetSpec:
    """The spec for ``name``; synthetic data, scenes and folders take the requested shape."""
    if name.startswith(IMAGEFOLDER_PREFIX):
        from convzoo.data.imagefolder import imagefolder_spec

        return imagefolder_spec(name[len(IMAGEFOLDER_PREFIX):], image_size=image_size)
    if name.startswith((VOC_PREFIX, SEGFOLDER_PREFIX)):
        from convzoo.data.segmentation import segmentation_spec

        return segmentation_spec(name, image_size=image_size)
    if name.startswith((COCO_PREFIX, VOCDET_PREFIX)):
        from convzoo.data.detection import detection_spec

        return detection_spec(name, image_size=image_size)
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, list(DATASETS), n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ConvzooError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(dataset_names())}.")
    spec = DATASETS[name]
    if name == "synthetic" and (image_size or channels):
        channels = channels or spec.channels
        return DatasetSpec(
            name, channels, image_size or spec.image_size, spec.num_classes,
            spec.mean[:1] * channels, spec.std[:1] * channels, spec.augmentation,
        )
    if name == "mnist-scenes" and image_size:
        return replace(spec, image_size=image_size)
    return spec


def check_targets(spec: DatasetSpec, targets: str) -> None:
    """One line saying which targets ``spec`` has, when it has no ``targets``."""
    if targets not in TARGETS:
        raise ConvzooError(f"targets must be one of {', '.join(TARGETS)}, got {targets!r}.")
    if targets not in spec.targets:
        task_of = {"labels": "classification", "masks": "segmentation", "boxes": "detection"}
        fits = " or ".join(task_of[kind] for kind in spec.targets)
        raise ConvzooError(f"dataset {spec.name} has no {targets} (it has {' and '.join(spec.targets)}): a "
                           f"{task_of[targets]} model cannot train on it. Choose a {fits} model (`convzoo list` shows "
                           f"each model's task), or a dataset with {targets}.")


def dataset_shape(name: str) -> tuple[int, int, int, int]:
    """(channels, height, width, num_classes) of a dataset, without loading it."""
    spec = get_dataset_spec(name)
    return spec.channels, spec.image_size, spec.image_size, spec.num_classes
