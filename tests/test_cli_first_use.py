"""What a new user meets first (issue 22, item 22): the version, a mistyped model name,
evaluating on another dataset, a wrong --data-dir, and options one command lacked."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def fashion_checkpoint(tmp_path_factory) -> str:
    """A LeNet-5 run relabelled as a Fashion-MNIST run (same 1x32x32 input, 10 classes, its
    garment names), without the minutes of training on Fashion-MNIST."""
    from convzoo.config import config_from_dict
    from convzoo.data import get_dataset_spec
    from convzoo.data.class_names import dataset_class_names
    from convzoo.engine.train import train

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("runs")
    settings = {"model": "lenet5", "dataset": "synthetic", "epochs": 1, "batch_size": 64, "train_size": 256,
                "test_size": 64, "optimizer": "adamw", "out": str(folder), "name": "tiny"}
    checkpoint = torch.load(train(config_from_dict(settings), quiet=True)["run_dir"] + "/best.pt", weights_only=True)
    checkpoint["config"].update(dataset="fashion-mnist")
    checkpoint["class_names"] = list(dataset_class_names(get_dataset_spec("fashion-mnist")))
    torch.save(checkpoint, folder / "fashion.pt")
    return str(folder / "fashion.pt")


def test_version(cli):
    from convzoo import __version__

    code, out, err = cli("--version")
    assert code == 0 and out.strip() == f"convzoo {__version__}"


@pytest.mark.parametrize("typed, suggested", [("lenet", "lenet5"), ("resnt20", "resnet20"), ("alexnt", "alexnet")])
def test_a_mistyped_model_suggests_only_the_closest_names(cli, typed, suggested):
    code, _, err = cli("summary", "--model", typed)
    assert code != 0
    assert f"Did you mean: {suggested}?" in err  # that one name, not five loosely alike


def test_eval_on_another_dataset_says_whose_classes_are_compared(fashion_checkpoint, data_dir, cli, monkeypatch):
    from tests.conftest import require_dataset

    require_dataset(data_dir, "MNIST")
    monkeypatch.setenv("CONVZOO_QUICK", "1")  # a few hundred test images are enough to be told
    code, out, err = cli("eval", "--checkpoint", fashion_checkpoint, "--dataset", "mnist", "--data-dir", data_dir,
                         "--device", "cpu", "--json")
    assert code == 0, err
    assert "trained on fashion-mnist, whose classes are not mnist's" in err and "label '1' = 'Trouser'" in err
    assert "note" in json.loads(out)


def test_eval_with_a_wrong_data_dir_names_the_test_files_it_needs(fashion_checkpoint, tmp_path, cli):
    code, _, err = cli("eval", "--checkpoint", fashion_checkpoint, "--data-dir", tmp_path / "empty", "--device", "cpu")
    assert code != 0
    assert "t10k-images-idx3-ubyte" in err and "train" not in err.replace("torchvision", "")


def test_visualize_features_takes_samples(fashion_checkpoint, data_dir, cli, tmp_path):
    from tests.conftest import require_dataset

    require_dataset(data_dir, "FashionMNIST")
    code, out, err = cli("visualize", "features", "--checkpoint", fashion_checkpoint, "--samples", "2",
                         "--layers", "features.0", "--data-dir", data_dir, "--device", "cpu", "--out", tmp_path,
                         "--json")
    assert code == 0, err
    assert len(json.loads(out)["images"]) == 2


def test_probe_takes_a_test_size(cli, tmp_path):
    code, out, err = cli("probe", "--model", "lenet5", "--random-init", "--epochs", "1", "--train-size", "128",
                         "--test-size", "100", "--batch-size", "64", "--layers", "features.0", "--device", "cpu",
                         "--out", tmp_path)
    assert code == 0, err
    assert "128 training images, 100 test images" in out + err
