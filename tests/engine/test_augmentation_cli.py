"""``--auto-augment``, ``--random-erasing`` and ``--repeated-aug`` (issue 24) through ``convzoo train``:
on real MNIST (in memory, batched on the device) and on a JPEG image folder (torchvision, in the workers)."""

import json

import pytest
import yaml

from tests.conftest import require_dataset

TINY = ("--epochs", "1", "--batch-size", "16", "--set", "train_size=64", "--set", "test_size=64", "--device", "cpu")


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment:2:9", "autoaugment"])
def test_mnist_trains_with_each_policy_and_random_erasing(cli, data_dir, tmp_path, policy):
    require_dataset(data_dir, "MNIST")
    code, out, err = cli("train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", data_dir, *TINY,
                         "--auto-augment", policy, "--random-erasing", "0.25", "--repeated-aug", "2", "--out", tmp_path,
                         "--name", "run", "--json")
    assert code == 0, err
    assert json.loads(out)["complete"]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["auto_augment"], saved["random_erasing"], saved["repeated_aug"]) == (policy, 0.25, 2)


def test_an_image_folder_trains_with_a_policy_and_random_erasing(cli, image_folder, tmp_path):
    code, out, err = cli("train", "--model", "resnet20", "--dataset", f"imagefolder:{image_folder}", *TINY,
                         "--set", "image_size=16", "--set", "num_workers=0", "--auto-augment", "randaugment:2:15",
                         "--random-erasing", "0.5", "--repeated-aug", "2", "--out", tmp_path, "--name", "own", "--json")
    assert code == 0, err
    assert json.loads(out)["complete"]
    saved = yaml.safe_load((tmp_path / "own" / "config.yaml").read_text())
    assert (saved["auto_augment"], saved["random_erasing"], saved["repeated_aug"]) == ("randaugment:2:15", 0.5, 2)


def test_augmentation_is_off_unless_asked_for(cli, tmp_path):
    code, _, err = cli("train", "--model", "resnet20", "--dataset", "synthetic", *TINY, "--out", tmp_path, "--name", "r")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (saved["auto_augment"], saved["random_erasing"], saved["repeated_aug"]) == (None, 0.0, 1)


@pytest.mark.parametrize(("flags", "fragment"), [
    (["--auto-augment", "foo"], "--auto-augment must be one of trivialaugment, randaugment[:N:M], autoaugment, got 'foo'"),
    (["--auto-augment", "randaugment:2:40"], "--auto-augment randaugment takes :N:M"),
    (["--random-erasing", "1.5"], "--random-erasing must be a probability in [0, 1], got 1.5"),
    (["--set", "random_erasing=-0.1"], "--set random_erasing must be a probability"),
    (["--repeated-aug", "0"], "--repeated-aug must be at least 1, got 0"),
])
def test_bad_augmentation_values_are_one_line_refusals(cli, tmp_path, flags, fragment):
    code, out, err = cli("train", "--model", "lenet5", *flags, "--out", tmp_path)
    assert code != 0 and fragment in err, err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_resume_refuses_to_change_the_augmentation(cli, tmp_path):
    code, _, err = cli("train", "--model", "lenet5", *TINY, "--out", tmp_path, "--name", "r")
    assert code == 0, err
    code, _, err = cli("train", "--resume", tmp_path / "r", "--auto-augment", "trivialaugment")
    assert code != 0 and "auto_augment" in err
