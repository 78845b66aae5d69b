"""``coco:PATH`` and ``vocdet:PATH``: tiny datasets in the real formats (JPEGs, an instances
JSON with gappy category ids, VOC XML), read end to end through ``build_loaders``."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from convzoo.data import build_loaders, get_dataset_spec
from convzoo.data.class_names import dataset_class_names
from convzoo.data.detection import build_detection_dataset
from convzoo.data.segmentation import VOC_CLASSES
from convzoo.errors import ConvzooError

SIZE = 32
"""``image_size`` of the tests: every picture below is 64 or 48 pixels wide and 40 high, so a factor 1/2 or 2/3."""


def write_coco(root: Path) -> Path:
    """Three training images (one with a crowd box, one with none) and one validation image;
    categories 3 ("cat") and 7 ("dog")."""
    (root / "annotations").mkdir(parents=True)
    sizes = {"a.jpg": (40, 64), "b.jpg": (40, 48), "c.jpg": (40, 64)}  # (height, width)
    boxes = {  # file: [(x, y, w, h), category, iscrowd]
        "a.jpg": [((8, 4, 16, 20), 3, 0), ((32, 8, 24, 24), 7, 0)],
        "b.jpg": [((6, 10, 12, 12), 7, 0), ((24, 2, 18, 30), 3, 1)],
        "c.jpg": [],
    }
    for split, files in (("train2017", ["a.jpg", "b.jpg", "c.jpg"]), ("val2017", ["a.jpg", "b.jpg", "c.jpg"])):
        (root / split).mkdir()
        images, annotations = [], []
        for image_id, name in enumerate(files, 1):
            height, width = sizes[name]
            Image.new("RGB", (width, height), (90, 120, 150)).save(root / split / name, quality=95)
            images.append({"id": image_id, "file_name": name, "height": height, "width": width})
            for (x, y, w, h), category, crowd in boxes[name]:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                    "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd, "segmentation": []})
        categories = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


def write_voc(root: Path) -> Path:
    """VOCdevkit/VOC2012 with one training and one validation image; the validation image's person is difficult."""
    folder = root / "VOCdevkit" / "VOC2012"
    for name in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (folder / name).mkdir(parents=True)
    objects = {"t0": [("dog", (4, 6, 30, 36), 0)], "v0": [("cat", (10, 4, 40, 30), 0), ("person", (44, 2, 60, 38), 1)]}
    for split, name in (("train", "t0"), ("val", "v0")):
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text(f"{name}\n")
        Image.new("RGB", (64, 40), (30, 60, 90)).save(folder / "JPEGImages" / f"{name}.jpg")
        xml = "".join(f"<object><name>{label}</name><difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin>"
                      f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
                      for label, box, difficult in objects[name])
        (folder / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename>{xml}</annotation>")
    return root


def xyxy(x, y, w, h, scale_x, scale_y=None):
    """COCO's (x, y, w, h) as corners, resized by ``scale_x`` across and ``scale_y`` (default the same) down."""
    scale_y = scale_x if scale_y is None else scale_y
    return [x * scale_x, y * scale_y, (x + w) * scale_x, (y + h) * scale_y]


B_SCALE = (SIZE / 48, 26 / 40)
"""b.jpg, 48 x 40, resized to 32 x 26: the height rounds down from 26.67, and its boxes scale with the pixels."""


def test_coco_spec_maps_gappy_category_ids_to_labels_and_names(tmp_path):
    spec = get_dataset_spec(f"coco:{write_coco(tmp_path)}", image_size=SIZE)
    assert (spec.num_classes, spec.channels, spec.image_size, spec.targets) == (3, 3, SIZE, ("boxes",))
    assert dataset_class_names(spec) == ("background", "cat", "dog")  # by id: 3 -> 1, 7 -> 2
    assert get_dataset_spec(f"coco:{tmp_path}").image_size == 256


def test_coco_evaluation_targets_round_trip_with_crowd_and_empty_images(tmp_path):
    spec = get_dataset_spec(f"coco:{write_coco(tmp_path)}", image_size=SIZE)
    validation = build_detection_dataset(spec, train=False, augment=False)
    image, target = validation[0]  # 64 x 40 -> 32 x 20, padded to 32 x 32
    assert image.shape == (3, SIZE, SIZE) and image[:, 20:].eq(image[:, -1:, -1:]).all()
    torch.testing.assert_close(target["boxes"], torch.tensor([xyxy(8, 4, 16, 20, 0.5), xyxy(32, 8, 24, 24, 0.5)]))
    assert target["labels"].tolist() == [1, 2] and target["iscrowd"].tolist() == [0, 0]
    _, target = validation[1]  # the crowd box kept, flagged
    torch.testing.assert_close(target["boxes"], torch.tensor([xyxy(6, 10, 12, 12, *B_SCALE),
                                                              xyxy(24, 2, 18, 30, *B_SCALE)]))
    assert target["labels"].tolist() == [2, 1] and target["iscrowd"].tolist() == [0, 1]
    _, target = validation[2]
    assert target["boxes"].shape == (0, 4) and target["labels"].dtype == torch.int64 and len(target["iscrowd"]) == 0


def test_coco_training_drops_crowd_boxes_and_flips_boxes_with_images(tmp_path):
    spec = get_dataset_spec(f"coco:{write_coco(tmp_path)}", image_size=SIZE)
    training = build_detection_dataset(spec, train=True, augment=True)
    _, target = training[1]
    assert target["labels"].tolist() == [2] and target["iscrowd"].tolist() == [0]
    unflipped = torch.tensor(xyxy(6, 10, 12, 12, *B_SCALE))
    width = SIZE  # the flip happens before the padding: boxes mirror about the resized width
    flipped = torch.tensor([width - unflipped[2], unflipped[1], width - unflipped[0], unflipped[3]])
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        box = training[1][1]["boxes"][0]
        seen.add("flipped" if torch.allclose(box, flipped) else "kept" if torch.allclose(box, unflipped) else "other")
    assert seen == {"flipped", "kept"}


def test_vocdet_difficult_objects_are_crowd_in_evaluation_and_dropped_in_training(tmp_path):
    spec = get_dataset_spec(f"vocdet:{write_voc(tmp_path)}", image_size=SIZE)
    assert spec.num_classes == 21 and dataset_class_names(spec) == VOC_CLASSES
    _, target = build_detection_dataset(spec, train=False, augment=False)[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[5.0, 2, 20, 15], [22, 1, 30, 19]]))
    assert target["labels"].tolist() == [VOC_CLASSES.index("cat"), VOC_CLASSES.index("person")]
    assert target["iscrowd"].tolist() == [0, 1]
    training = build_detection_dataset(spec, train=True, augment=False)
    assert len(training) == 1 and training[0][1]["labels"].tolist() == [VOC_CLASSES.index("dog")]
    # VOC2012 itself, moved out of its VOCdevkit, is the same dataset.
    assert get_dataset_spec(f"vocdet:{tmp_path / 'VOCdevkit' / 'VOC2012'}").num_classes == 21


def test_build_loaders_yields_images_and_a_list_of_target_dicts(tmp_path):
    spec = get_dataset_spec(f"coco:{write_coco(tmp_path)}", image_size=SIZE)
    loaders = build_loaders(spec, batch_size=1, eval_batch_size=3, device="cpu", num_workers=0, targets="boxes")
    images, targets = next(iter(loaders.test))
    assert images.shape == (3, 3, SIZE, SIZE) and isinstance(targets, list) and len(targets) == 3
    assert [sorted(target) for target in targets] == [["boxes", "iscrowd", "labels"]] * 3
    assert [len(target["boxes"]) for target in targets] == [2, 2, 0]
    # An epoch resumed at its second batch goes on as the whole epoch did: same images, same flips.
    loaders.train.set_epoch(3)
    whole = [(images, targets[0]["boxes"]) for images, targets in loaders.train]
    loaders.train.set_epoch(3, start_step=1)
    resumed = [(images, targets[0]["boxes"]) for images, targets in loaders.train]
    assert len(whole) == 3 and len(resumed) == 2
    for (image, boxes), (image_again, boxes_again) in zip(whole[1:], resumed):
        assert torch.equal(image, image_again) and torch.equal(boxes, boxes_again)


@pytest.mark.parametrize("broken, message", [
    (lambda root: (root / "annotations" / "instances_val2017.json").unlink(), "instances_val2017.json"),
    (lambda root: [path.unlink() for path in (root / "val2017").iterdir()] and (root / "val2017").rmdir(),
     "no image folder"),
])
def test_coco_missing_files_are_one_line_errors(tmp_path, broken, message):
    root = write_coco(tmp_path)
    broken(root)
    spec = get_dataset_spec(f"coco:{root}")
    with pytest.raises(ConvzooError, match=message) as error:
        build_detection_dataset(spec, train=False, augment=False)
    assert "\n" not in str(error.value)


def test_missing_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ConvzooError, match="no such folder"):
        get_dataset_spec(f"coco:{tmp_path / 'nowhere'}")
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(ConvzooError, match="Annotations") as error:
        get_dataset_spec(f"vocdet:{tmp_path}")
    assert "\n" not in str(error.value) and str(error.value).startswith("vocdet:")


def test_coco_plain_split_names(tmp_path):
    """``instances_train.json`` with ``train/``, as a dataset made without a year names them."""
    root = write_coco(tmp_path)
    for split in ("train", "val"):
        (root / "annotations" / f"instances_{split}2017.json").rename(root / "annotations" / f"instances_{split}.json")
        (root / f"{split}2017").rename(root / split)
    spec = get_dataset_spec(f"coco:{root}", image_size=SIZE)
    assert dataset_class_names(spec) == ("background", "cat", "dog")
    assert len(build_detection_dataset(spec, train=False, augment=False)) == 3
