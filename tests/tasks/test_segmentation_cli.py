"""Segmentation end to end through the CLI on mnist-scenes at tiny sizes (issue 25):
train -> eval -> predict -> export -> explain, for FCN-8s and U-Net; and the refusals."""

import json

import numpy as np
import pytest
from PIL import Image

TINY = ("--set", "image_size=32", "--set", "train_size=64", "--set", "test_size=32", "--set", "batch_size=16",
        "--epochs", "1")
MODELS = {"fcn8s_resnet18": (), "unet": ("--set", "model_kwargs={base_width: 8}")}


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory, request):
    """A test canvas of mnist-scenes saved as a PNG, as a user's image file."""
    from tests.conftest import real_data_dir

    from convzoo.data.scenes import load_scenes

    data_dir = real_data_dir()
    if data_dir is None:
        pytest.skip("real datasets not found: set CONVZOO_DATA to the folder holding MNIST/")
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    scenes = load_scenes(train=False, data_dir=data_dir, size=4, image_size=32)
    Image.fromarray(scenes.images[0, 0].numpy()).save(path)
    return path


@pytest.mark.parametrize("model", list(MODELS))
def test_train_eval_predict_export_explain(cli, tmp_path, data_dir, scene_file, model, monkeypatch):
    monkeypatch.setenv("CONVZOO_QUICK", "1")  # eval and explain on a smoke test's share of the test split
    code, out, err = cli("train", "--model", model, *TINY, *MODELS[model], "--data-dir", data_dir, "--out", tmp_path,
                         "--name", "run", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "segmentation" and result["dataset"] == "mnist-scenes" and result["metric"] == "miou"
    assert 0 <= result["best_acc"] <= 1
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"test_miou", "test_pixel_acc", "test_loss", "train_acc"} <= set(record)
    assert record["test_miou"] == pytest.approx(result["best_acc"])
    assert "mIoU" in err and "pixel acc" in err
    best = tmp_path / "run" / "best.pt"

    code, out, err = cli("eval", "--checkpoint", best, "--per-class", "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    assert evaluation["task"] == "segmentation" and len(evaluation["per_class"]) == 11
    assert evaluation["class_names"][:2] == ["background", "0"]
    code, out, err = cli("eval", "--checkpoint", best, "--per-class")
    assert code == 0 and "mIoU" in out and "background  IoU" in out

    code, out, err = cli("predict", "--checkpoint", best, scene_file, "--out", tmp_path / "masks", "--json")
    assert code == 0, err
    prediction = json.loads(out)["predictions"][0]
    mask = Image.open(prediction["mask"])
    assert mask.mode == "P" and mask.size == (32, 32) and np.asarray(mask).max() < 11
    overlay = Image.open(prediction["overlay"])
    assert overlay.mode == "RGB" and overlay.size == (32, 32)
    assert abs(sum(prediction["classes"].values()) - 1) < 1e-3

    code, out, err = cli("export", "--checkpoint", best, "--format", "onnx", "--json")
    assert code == 0, err

    code, out, err = cli("explain", "--checkpoint", best, "--image", scene_file, "--method", "gradcam",
                         "--region", "0,0,16,16", "--out", tmp_path, "--name", "why", "--json")
    assert code == 0, err
    assert (tmp_path / "why" / "explain-gradcam.png").is_file()


def test_dataset_and_task_refusals_are_one_line(cli, data_dir):
    code, _, err = cli("train", "--model", "resnet20", "--dataset", "mnist-scenes", "--data-dir", data_dir, *TINY)
    assert code != 0 and "has no labels" in err and "segmentation" in err and "Traceback" not in err
    code, _, err = cli("train", "--model", "fcn8s_resnet18", "--task", "classification", *TINY)
    assert code != 0 and "is a segmentation model" in err
    code, _, err = cli("train", "--model", "fcn8s_resnet18", "--mixup", "0.2", "--data-dir", data_dir, *TINY)
    assert code != 0 and "--mixup" in err and "targets would not follow" in err
    code, _, err = cli("explain", "--model", "resnet20", "--random-init", "--dataset", "mnist", "--samples", "1",
                       "--region", "0,0,4,4", "--data-dir", data_dir)
    assert code != 0 and "--region" in err
