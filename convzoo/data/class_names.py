"""Human-readable class names of every dataset, so predictions and pictures say "Sneaker", not 7.

The names follow torchvision's ``classes`` attributes (CIFAR-100's are its meta file's
fine labels, in label order) and are known without reading a data file; an image
folder's classes are its sorted sub-folder names, as ``ImageFolder`` numbers them; a
segmentation folder's are its ``classes.txt`` lines, else its class indices; a COCO
folder's are "background" and its categories.
"""

from __future__ import annotations

from convzoo.data.catalog import (
    COCO_PREFIX, IMAGEFOLDER_PREFIX, SEGFOLDER_PREFIX, VOC_PREFIX, VOCDET_PREFIX, DatasetSpec,
)

FASHION_MNIST = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100 = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)


def dataset_class_names(spec: DatasetSpec) -> tuple[str, ...]:
    """The names of ``spec``'s classes, index for index; ``"0"``, ``"1"``, ... when unnamed."""
    if spec.name == "mnist":
        return tuple(str(digit) for digit in range(10))
    if spec.name == "fashion-mnist":
        return FASHION_MNIST
    if spec.name == "cifar10":
        return CIFAR10
    if spec.name == "cifar100":
        return CIFAR100
    if spec.name == "synthetic":
        from convzoo.data.synthetic import CLASS_NAMES

        return CLASS_NAMES
    if spec.name.startswith(IMAGEFOLDER_PREFIX):
        from pathlib import Path

        from convzoo.data.imagefolder import split_folder

        root = Path(spec.name[len(IMAGEFOLDER_PREFIX):]).expanduser()
        folder = split_folder(root, train=True)
        return tuple(sorted(entry.name for entry in folder.iterdir() if entry.is_dir()))
    if spec.name == "mnist-scenes":
        from convzoo.data.scenes import CLASS_NAMES

        return CLASS_NAMES
    if spec.name.startswith((VOC_PREFIX, SEGFOLDER_PREFIX)):
        from convzoo.data.segmentation import segmentation_class_names

        return segmentation_class_names(spec)
    if spec.name.startswith((COCO_PREFIX, VOCDET_PREFIX)):
        from convzoo.data.detection import detection_class_names

        return detection_class_names(spec.name)
    return tuple(str(index) for index in range(spec.num_classes))
