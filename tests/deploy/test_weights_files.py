"""``--weights FILE`` on ``predict`` and ``train`` (issue 22, item 14): a run's best.pt or a
convzoo .safetensors file brings its dataset, normalisation and class names; bare
weights need --dataset; export files for other runtimes are refused, saying what
--weights takes."""

from __future__ import annotations

import json

import pytest
import torch

from tests.deploy.test_predict import write_mnist_pngs


@pytest.fixture
def digits(mnist_checkpoint, data_dir, tmp_path):
    write_mnist_pngs(tmp_path / "digits", data_dir, 8)
    return tmp_path / "digits"


def predictions(cli, *arguments):
    code, out, err = cli("predict", *arguments, "--top-k", "3", "--device", "cpu", "--json")
    assert code == 0, err
    return [entry["top_k"] for entry in json.loads(out)["predictions"]], err


def test_a_run_checkpoint_as_weights_predicts_as_the_checkpoint(mnist_checkpoint, digits, cli):
    expected, _ = predictions(cli, "--checkpoint", mnist_checkpoint, digits)
    for model in ((), ("--model", "lenet5")):
        got, err = predictions(cli, *model, "--weights", mnist_checkpoint, digits)
        assert got == expected  # MNIST's normalisation and digit names, not synthetic's
        assert "stores no class names" not in err


def test_bare_weights_need_the_dataset_they_were_trained_on(mnist_checkpoint, digits, tmp_path, cli):
    bare = tmp_path / "statedict.pt"
    torch.save(torch.load(mnist_checkpoint, weights_only=True)["model"], bare)
    code, _, err = cli("predict", "--model", "lenet5", "--weights", bare, digits, "--device", "cpu")
    assert code != 0 and "--dataset" in err and len(err.strip().splitlines()) == 1
    expected, _ = predictions(cli, "--checkpoint", mnist_checkpoint, digits)
    got, err = predictions(cli, "--model", "lenet5", "--weights", bare, "--dataset", "mnist", digits)
    assert got == expected and "stores no class names" not in err


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_predict_runs_onnx_and_torchscript_exports_as_their_run(fmt, mnist_checkpoint, digits, tmp_path, cli):
    from convzoo.deploy.export import export_model
    from convzoo.inspection import resolve_model_source

    path = tmp_path / f"best.{'onnx' if fmt == 'onnx' else 'torchscript.pt'}"
    export_model(resolve_model_source(checkpoint=mnist_checkpoint), fmt, path)
    expected, _ = predictions(cli, "--checkpoint", mnist_checkpoint, digits)
    got, _ = predictions(cli, "--weights", path, digits)
    for mine, theirs in zip(got, expected):  # the same classes, names and (to float rounding) probabilities
        assert [top["name"] for top in mine] == [top["name"] for top in theirs]
        assert [top["probability"] for top in mine] == pytest.approx([top["probability"] for top in theirs],
                                                                     abs=1e-5)


@pytest.mark.parametrize("name", ["best.onnx", "best.torchscript.pt", "best.pt2"])
def test_export_files_are_refused_saying_which_files_weights_takes(name, tmp_path, cli):
    (tmp_path / name).write_bytes(b"exported")
    code, _, err = cli("train", "--weights", tmp_path / name, "--epochs", "1")
    assert code != 0
    assert "--weights does not read: it takes 'torchvision', a run's best.pt" in err
    if name == "best.pt2":  # predict reads the others
        code, _, err = cli("predict", "--weights", tmp_path / name, tmp_path / name)
        assert code != 0
        assert "predict --weights takes a run's best.pt, a .safetensors, .onnx or .torchscript.pt export" in err


def test_train_from_a_runs_weights_trains_on_its_dataset(mnist_checkpoint, tmp_path, cli):
    from convzoo.deploy.export import export_model
    from convzoo.inspection import resolve_model_source

    safetensors = tmp_path / "best.safetensors"
    export_model(resolve_model_source(checkpoint=mnist_checkpoint), "safetensors", safetensors)
    for weights in (mnist_checkpoint, safetensors):
        code, out, err = cli("train", "--weights", weights, "--epochs", "1", "--set", "train_size=64",
                             "--set", "test_size=64", "--batch-size", "32", "--device", "cpu", "--out", tmp_path / "runs",
                             "--json")
        assert code == 0, err
        assert "training lenet5 on mnist" in err and f"note: {weights} was trained on mnist" in err
