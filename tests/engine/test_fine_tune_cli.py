"""``convzoo train --weights`` into a model built for the user's data (issue 23): one line
says what loaded, the checkpoint records where the weights came from, a resumed run does
not read them again, and preprocessing follows torchvision's ImageNet weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torchvision
import yaml

from convzoo.data.catalog import IMAGENET_MEAN, IMAGENET_STD
from convzoo.registry import create_model
from tests.conftest import torchvision_standin

QUICK = ("--epochs", "1", "--batch-size", "4", "--device", "cpu", "--set", "num_workers=0")


@pytest.fixture
def three_classes(image_folder):
    """conftest's JPEG folder with a third class (a copy of the first)."""
    for split in ("train", "val"):
        shutil.copytree(image_folder / split / "cats", image_folder / split / "birds")
    return image_folder


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """torchvision's ResNet-18 ImageNet file where torch's hub cache looks for it: the real
    ``--weights torchvision`` path, offline (a stand-in with random values)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return torchvision_standin(tmp_path / "torch-home", "resnet18")


def lines_with(text: str, start: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(start)]


def test_imagenet_file_fine_tunes_on_a_three_class_folder_and_resumes_without_it(three_classes, tmp_path, cli,
                                                                                  one_thread):
    weights = tmp_path / "resnet18-imagenet.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    code, out, err = cli("train", "--model", "resnet18", "--dataset", f"imagefolder:{three_classes}", "--weights",
                         weights, "--set", "image_size=72", *QUICK, "--out", tmp_path / "runs", "--name", "tune",
                         "--json")
    assert code == 0, err
    assert lines_with(err, "loaded") == [
        f"loaded 120/122 tensors from {weights}; re-initialised fc.weight, fc.bias for 3 classes"]
    run = tmp_path / "runs" / "tune"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    source = torch.load(run / "last.pt", weights_only=True)["weights_source"]
    assert source["weights"] == str(weights) and source["loaded"] == 120 and source["tensors"] == 122

    # One more epoch, from last.pt alone: the weights file is gone and is not needed.
    weights.unlink()
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "epochs": 2}, sort_keys=False))
    code, _, err = cli("train", "--resume", run, "--device", "cpu")
    assert code == 0, err
    assert "resuming resnet18" in err and not lines_with(err, "loaded")
    assert torch.load(run / "last.pt", weights_only=True)["weights_source"] == source


def test_mnist_from_rgb_weights_adapts_the_first_convolution(data_dir, tmp_path, cli, one_thread):
    torch.manual_seed(0)
    rgb = create_model("resnet20", in_channels=3)
    weights = tmp_path / "resnet20-rgb.pt"
    torch.save(rgb.state_dict(), weights)
    code, _, err = cli("train", "--model", "resnet20", "--dataset", "mnist", "--data-dir", data_dir, "--weights",
                       weights, "--set", "train_size=64", "--set", "test_size=64", "--epochs", "1", "--batch-size",
                       "32", "--device", "cpu", "--out", tmp_path / "runs")
    assert code == 0, err
    assert lines_with(err, "loaded") == [f"loaded 116/116 tensors from {weights}; conv1.weight adapted from 3 to 1 channels"]


def test_reset_head_through_the_cli_starts_a_fitting_head_fresh_and_is_recorded(data_dir, tmp_path, cli, one_thread):
    """Fashion-MNIST weights for MNIST: same class count, other classes."""
    weights = tmp_path / "resnet20-fashion.pt"
    torch.save(create_model("resnet20", num_classes=10, in_channels=1, image_size=28).state_dict(), weights)
    code, _, err = cli("train", "--model", "resnet20", "--dataset", "mnist", "--data-dir", data_dir, "--weights",
                       weights, "--reset-head", "--set", "train_size=64", "--set", "test_size=64", "--epochs", "1",
                       "--batch-size", "32", "--device", "cpu", "--out", tmp_path / "runs", "--name", "reset")
    assert code == 0, err
    assert lines_with(err, "loaded") == [
        f"loaded 114/116 tensors from {weights}; re-initialised fc.weight, fc.bias for 10 classes (--reset-head)"]
    assert yaml.safe_load((tmp_path / "runs" / "reset" / "config.yaml").read_text())["reset_head"] is True


def test_weights_of_another_architecture_stop_in_one_line_unless_not_strict(tmp_path, cli, one_thread):
    weights = tmp_path / "mobilenet_v2.pt"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), weights)
    run = ("train", "--model", "resnet18", "--weights", weights, "--set", "train_size=8", "--set", "test_size=8",
           *QUICK, "--out", tmp_path / "runs")
    code, _, err = cli(*run)
    assert code != 0 and err.strip().splitlines() == [err.strip()] and "Traceback" not in err
    assert "do not fit model 'resnet18': missing conv1.weight" in err and "--weights-strict false" in err
    code, _, err = cli(*run, "--weights-strict", "false")
    assert code == 0, err
    [line] = lines_with(err, "loaded")
    assert line.startswith(f"loaded 0/122 tensors from {weights}") and "re-initialised (--weights-strict false)" in line
    code, _, err = cli(*run, "--weights-strict", "maybe")
    assert code != 0 and "--weights-strict takes true or false" in err


def test_torchvision_weights_offline_at_small_input_with_a_two_class_head(torch_home, image_folder, tmp_path, cli,
                                                                          one_thread):
    runs = tmp_path / "runs"
    common = ("train", "--model", "resnet18", "--weights", "torchvision", "--dataset", f"imagefolder:{image_folder}",
              "--set", "image_size=32", *QUICK, "--out", runs)
    code, _, err = cli(*common, "--name", "imagenet")
    assert code == 0, err
    assert lines_with(err, "loaded") == [
        "loaded 119/122 tensors from torchvision resnet18 (ImageNet); re-initialised fc.weight, fc.bias for 2 classes; "
        "conv1.weight starts fresh (shape (64, 3, 3, 3) here, (64, 3, 7, 7) in the weights)"]
    assert "Downloading" not in err
    config = yaml.safe_load((runs / "imagenet" / "config.yaml").read_text())
    assert config["mean"] == list(IMAGENET_MEAN) and config["std"] == list(IMAGENET_STD)

    code, _, err = cli(*common, "--name", "mine", "--set", "mean=[0.5, 0.5, 0.5]")
    assert code == 0, err
    config = yaml.safe_load((runs / "mine" / "config.yaml").read_text())
    assert config["mean"] == [0.5, 0.5, 0.5] and config["std"] == list(IMAGENET_STD)
    # eval, predict and the inspection commands rebuild the run's preprocessing from its checkpoint.
    from convzoo.inspection.source import resolve_model_source, source_spec

    spec, _ = source_spec(resolve_model_source(checkpoint=str(runs / "mine" / "best.pt")))
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == IMAGENET_STD
    code, out, err = cli("eval", "--checkpoint", runs / "mine" / "best.pt", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 6


def test_exact_torchvision_weights_load_silently(torch_home, one_thread):
    from convzoo.models.pretrained import load_pretrained

    model = create_model("resnet18")
    fit = load_pretrained(model, "resnet18", "torchvision")
    assert fit.exact and fit.line() is None
    assert torch.equal(model.fc.weight, torch.load(torch_home, weights_only=True)["fc.weight"])


def test_mean_and_std_keys(one_thread):
    from convzoo.config import config_from_dict, load_config
    from convzoo.engine.setup import dataset_spec_for
    from convzoo.errors import ConvzooError

    spec, _ = dataset_spec_for(config_from_dict({"model": "resnet20", "dataset": "cifar10", "mean": 0.5, "std": [0.25]}))
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.25, 0.25, 0.25)  # one value serves every channel
    with pytest.raises(ConvzooError, match="mean has 2 values but mnist has 1 channel"):
        dataset_spec_for(config_from_dict({"model": "resnet20", "dataset": "mnist", "mean": [0.1, 0.2]}))
    with pytest.raises(ConvzooError, match="'std' must be positive"):
        config_from_dict({"std": [0.2, 0]})
    with pytest.raises(ConvzooError, match="'mean' must be list"):
        config_from_dict({"mean": "grey"})
    # torchvision's weights bring ImageNet's statistics to 3-channel images only.
    imagenet = load_config(overrides={"model": "resnet18", "weights": "torchvision", "dataset": "cifar10"})
    assert imagenet.mean == list(IMAGENET_MEAN) and imagenet.std == list(IMAGENET_STD)
    assert load_config(overrides={"model": "resnet18", "weights": "torchvision", "dataset": "mnist"}).mean is None
    assert load_config(overrides={"model": "resnet18", "dataset": "cifar10"}).mean is None


def test_inspection_commands_load_partly_fitting_weights(data_dir, tmp_path, cli, one_thread):
    """``explain --model M --weights FILE --dataset mnist``: the model is built for MNIST and
    filled by the same loading as ``train`` (here: the RGB stem summed to one channel)."""
    weights = tmp_path / "resnet20-rgb.pt"
    torch.save(create_model("resnet20").state_dict(), weights)
    code, out, err = cli("explain", "--model", "resnet20", "--weights", weights, "--dataset", "mnist", "--data-dir",
                         data_dir, "--index", "0", "--method", "saliency", "--device", "cpu", "--out", tmp_path / "out",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["images"][0]["label"] == 7
    assert lines_with(err, "loaded") == [f"loaded 116/116 tensors from {weights}; conv1.weight adapted from 3 to 1 channels"]
