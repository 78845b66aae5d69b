"""Users' own detection data, streamed: ``coco:PATH`` and ``vocdet:PATH``.

``coco:PATH`` is COCO's layout: ``PATH/annotations/instances_train2017.json`` (or
``instances_train.json``) with the images in ``PATH/train2017/`` (or ``PATH/train/``), the
same for ``val``. It is read by torchvision's ``CocoDetection`` wrapped for the v2
transforms. Category ids, which COCO leaves gappy (1..90 for 80 classes), become labels
1..C in the order of their ids, 0 staying background as torchvision's detectors expect;
the class names are the JSON's category names after ``"background"``. Images with no
object are kept, with (0, 4) boxes: they teach the detector what no object looks like.
Crowd boxes (``iscrowd`` 1, a group of objects in one box) are dropped from the training
targets, as torchvision's references drop them, and kept in the evaluation targets with
``iscrowd`` 1, which COCOeval matches without counting as misses.

``vocdet:PATH`` is Pascal VOC's detection layout (PATH: the ``VOC2012`` folder, the
``VOCdevkit`` holding it, or the folder holding that, as for ``voc:``):
``ImageSets/Main/{train,val}.txt`` lists the ids, ``Annotations/<id>.xml`` the objects of
``JPEGImages/<id>.jpg``; 20 classes after background. Boxes are the XML's pixel
coordinates as they stand (torchvision's ``VOCDetection`` wrapper does the same). The
files are listed here, not by ``VOCDetection``, which insists on ``ROOT/VOCdevkit/VOC2012``
and does not say which objects are "difficult". VOC's rule ignores a difficult object:
detecting it is no true positive and missing it no miss. COCOeval has no such flag, so
difficult objects are kept in the evaluation targets as crowd boxes (``iscrowd`` 1), the
nearest it allows: a detection on one is neither a hit nor a false positive, and missing
it costs nothing. The difference: a crowd box may absorb several detections, where VOC
would count the second as a false positive. They are dropped from the training targets.

Training resizes the longer side of an image to ``image_size`` (its aspect kept), flips it
horizontally at random and pads it on the bottom and right to ``image_size`` x
``image_size``, boxes following; evaluation does the same without the flip. Boxes that
end up empty are dropped (``SanitizeBoundingBoxes``); an image left with none is kept.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch
from torch.utils.data import Dataset

from convzoo.data.catalog import COCO_PREFIX, IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from convzoo.data.image_decoding import read_image
from convzoo.data.segmentation import DEFAULT_IMAGE_SIZE, VOC_CLASSES, voc_folder
from convzoo.errors import ConvzooError

COCO_LAYOUT = ("annotations/instances_{train,val}2017.json with images in train2017/ and val2017/ "
               "(or instances_{train,val}.json with train/ and val/)")
VOCDET_LAYOUT = "JPEGImages/, Annotations/ and ImageSets/Main/{train,val}.txt"
VOCDET_WANTED = ("Annotations", "ImageSets/Main/train.txt", "ImageSets/Main/val.txt")


def detection_spec(name: str, *, image_size: int | None = None) -> DatasetSpec:
    """The spec of ``coco:PATH`` or ``vocdet:PATH``, once its layout is checked."""
    return DatasetSpec(name, 3, image_size or DEFAULT_IMAGE_SIZE, len(detection_class_names(name)), IMAGENET_MEAN,
                       IMAGENET_STD, "resize_flip_pad", in_memory=False, targets=("boxes",))


def coco_split(root: Path, train: bool) -> tuple[Path, Path]:
    """A split's annotations file and image folder, or a one-line error naming what is missing."""
    if not root.is_dir():
        raise ConvzooError(f"coco:{root}: no such folder. Pass the COCO folder, which holds {COCO_LAYOUT}.")
    split = "train" if train else "val"
    for suffix in ("2017", ""):
        annotations = root / "annotations" / f"instances_{split}{suffix}.json"
        if annotations.is_file():
            images = root / f"{split}{suffix}"
            if not images.is_dir():
                raise ConvzooError(f"coco:{root}: {annotations.name} has no image folder {images}/ "
                                   f"(expected {COCO_LAYOUT}).")
            return annotations, images
    raise ConvzooError(f"coco:{root}: no annotations/instances_{split}2017.json or annotations/instances_{split}.json "
                       f"(expected {COCO_LAYOUT}).")


@functools.lru_cache(maxsize=8)
def coco_categories(annotations: Path) -> tuple[tuple[int, str], ...]:
    """The (id, name) of each category of an annotations file, by id."""
    try:
        categories = json.loads(annotations.read_text())["categories"]
    except (OSError, ValueError, KeyError) as error:
        raise ConvzooError(f"cannot read the categories of {annotations}: {type(error).__name__}: {error}.") from None
    return tuple(sorted((int(category["id"]), str(category["name"])) for category in categories))


def detection_class_names(name: str) -> tuple[str, ...]:
    """``"background"`` then the classes of ``coco:PATH`` (its training JSON's categories) or ``vocdet:PATH``."""
    prefix, path = name.split(":", 1)
    root = Path(path).expanduser()
    if f"{prefix}:" == COCO_PREFIX:
        return ("background", *(category for _, category in coco_categories(coco_split(root, train=True)[0])))
    voc_folder(root, prefix="vocdet", wanted=VOCDET_WANTED, layout=VOCDET_LAYOUT)
    return VOC_CLASSES


class CocoBoxes(Dataset):
    """A COCO split as (uint8 image (3, H, W), boxes (K, 4) x1 y1 x2 y2, labels 1..C, iscrowd)."""

    def __init__(self, root: Path, train: bool) -> None:
        from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2

        annotations, images = coco_split(root, train)
        # Both splits map ids by the training file's categories, so a label means one class.
        self.label_of = {category_id: label
                         for label, (category_id, _) in enumerate(coco_categories(coco_split(root, True)[0]), 1)}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress, which --json must not
            coco = CocoDetection(str(images), str(annotations))
        self.dataset = wrap_dataset_for_transforms_v2(coco, target_keys={"boxes", "labels", "image_id", "iscrowd"})

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        from torchvision.transforms.v2 import functional

        image, target = self.dataset[index]
        image = functional.pil_to_tensor(image.convert("RGB"))
        if "boxes" not in target:  # the wrapper's target of an image without annotations
            return image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        labels = torch.tensor([self.label_of[int(category)] for category in target["labels"]], dtype=torch.long)
        return (image, target["boxes"].as_subclass(torch.Tensor).float(), labels,
                torch.as_tensor(target["iscrowd"], dtype=torch.long))


def voc_ids(folder: Path, train: bool) -> list[str]:
    split_file = folder / "ImageSets" / "Main" / ("train.txt" if train else "val.txt")
    return [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]


def read_voc_objects(path: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes (K, 4), labels 1..20 and difficult flags of a VOC annotation XML."""
    try:
        objects = ElementTree.parse(path).getroot().findall("object")
        boxes = [[float(obj.find("bndbox").find(side).text) for side in ("xmin", "ymin", "xmax", "ymax")]
                 for obj in objects]
        labels = [VOC_CLASSES.index(obj.find("name").text.strip()) for obj in objects]
    except (OSError, ElementTree.ParseError, AttributeError, ValueError) as error:
        raise ConvzooError(f"cannot read VOC annotation {path}: {type(error).__name__}: {error}.") from None
    difficult = [int(obj.findtext("difficult", "0").strip() or 0) for obj in objects]
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.long),
            torch.tensor(difficult, dtype=torch.long))


class VocBoxes(Dataset):
    """A VOC detection split as (uint8 image, boxes, labels 1..20, difficult as iscrowd)."""

    def __init__(self, root: Path, train: bool) -> None:
        self.folder = voc_folder(root, prefix="vocdet", wanted=VOCDET_WANTED, layout=VOCDET_LAYOUT)
        self.ids = voc_ids(self.folder, train)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        name = self.ids[index]
        image = read_image(str(self.folder / "JPEGImages" / f"{name}.jpg"), 3)
        return image, *read_voc_objects(self.folder / "Annotations" / f"{name}.xml")


class DetectionSamples(Dataset):
    """Items of a ``CocoBoxes`` or ``VocBoxes`` transformed: a normalised float image
    (3, S, S) and a dict of ``boxes``, ``labels`` and ``iscrowd``; crowd boxes are dropped
    unless ``keep_crowd`` (evaluation)."""

    def __init__(self, source: Dataset, transform, keep_crowd: bool) -> None:
        self.source, self.transform, self.keep_crowd = source, transform, keep_crowd

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        image, boxes, labels, iscrowd = self.source[index]
        if not self.keep_crowd:
            kept = iscrowd == 0
            boxes, labels, iscrowd = boxes[kept], labels[kept], iscrowd[kept]
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:])),
                  "labels": labels, "iscrowd": iscrowd}
        image, target = self.transform(tv_tensors.Image(image), target)
        return image.as_subclass(torch.Tensor), {key: value.as_subclass(torch.Tensor) for key, value in target.items()}


def pad_to(size: int, image, target):
    """Pad on the bottom and right up to ``size`` x ``size``: boxes stay, their canvas grows."""
    from torchvision.transforms.v2 import functional

    height, width = image.shape[-2:]
    padding = [0, 0, size - width, size - height]
    return functional.pad(image, padding, fill=0), {**target, "boxes": functional.pad(target["boxes"], padding)}


def labels_and_crowd(inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``SanitizeBoundingBoxes`` drops with a box (a function, not a lambda: workers pickle it)."""
    return inputs[1]["labels"], inputs[1]["iscrowd"]


def detection_transform(spec: DatasetSpec, train: bool, augment: bool):
    """The joint transform of an image and its target dict; see the module's docstring."""
    from torchvision.transforms import v2 as transforms

    flip = [transforms.RandomHorizontalFlip()] if train and augment else []
    return transforms.Compose([
        transforms.Resize(size=None, max_size=spec.image_size, antialias=True), *flip,
        functools.partial(pad_to, spec.image_size),
        # Resizing can squash a thin box to nothing; it goes with its label and crowd flag.
        transforms.SanitizeBoundingBoxes(labels_getter=labels_and_crowd),
        transforms.ToDtype(torch.float32, scale=True), transforms.Normalize(spec.mean, spec.std),
    ])


def build_detection_dataset(spec: DatasetSpec, train: bool, augment: bool) -> DetectionSamples:
    """A split of ``coco:`` or ``vocdet:`` data with its joint transform; the training split
    drops crowd (difficult) boxes, the validation split keeps them flagged."""
    prefix, path = spec.name.split(":", 1)
    root = Path(path).expanduser()
    source = CocoBoxes(root, train) if f"{prefix}:" == COCO_PREFIX else VocBoxes(root, train)
    return DetectionSamples(source, detection_transform(spec, train, augment), keep_crowd=not train)


def collate_detection(batch):
    """Images stacked (all are padded to one size) and a list of target dicts, one per image."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
