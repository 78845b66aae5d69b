"""imagefolder:PATH's layout rule (issue 16, item 3): train/ plus val/ or test/, with the
same class folders; anything else is refused, saying what was found and what is expected."""

from __future__ import annotations

import pytest

from convzoo.data import get_dataset_spec
from convzoo.errors import ConvzooError


def make_images(root, split: str, classes: list[str]) -> None:
    from PIL import Image

    for name in classes:
        folder = root / split / name
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 0, 0)).save(folder / "0.png")


def test_train_without_an_evaluation_split_is_refused(tmp_path):
    make_images(tmp_path, "train", ["cat", "dog"])
    with pytest.raises(ConvzooError) as raised:
        get_dataset_spec(f"imagefolder:{tmp_path}")
    message = str(raised.value)
    assert "has no val/ (or test/)" in message and "found train/" in message
    assert "PATH/train/<class>/<image> and PATH/val/<class>/<image>" in message


def test_a_folder_of_class_folders_without_splits_is_refused(tmp_path):
    make_images(tmp_path, ".", ["cat", "dog"])
    with pytest.raises(ConvzooError, match=r"has no train/ and val/ \(or test/\) \(found cat/, dog/\)"):
        get_dataset_spec(f"imagefolder:{tmp_path}")


def test_a_class_in_one_split_only_is_refused(tmp_path):
    make_images(tmp_path, "train", ["cat", "dog", "emu"])
    make_images(tmp_path, "test", ["cat", "dog", "fox"])
    with pytest.raises(ConvzooError, match="emu only in train/; fox only in test/"):
        get_dataset_spec(f"imagefolder:{tmp_path}")


def test_train_and_test_with_the_same_classes_is_accepted(tmp_path):
    from convzoo.data.class_names import dataset_class_names

    make_images(tmp_path, "train", ["cat", "dog"])
    make_images(tmp_path, "test", ["cat", "dog"])
    spec = get_dataset_spec(f"imagefolder:{tmp_path}", image_size=8)
    assert spec.num_classes == 2 and dataset_class_names(spec) == ("cat", "dog")
