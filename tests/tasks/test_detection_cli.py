"""Detection end to end through the CLI on mnist-scenes at tiny sizes (issue 26):
train -> eval -> predict (a PNG with boxes, COCO-format JSON) -> export's refusal."""

import json

import pytest
from PIL import Image

TINY = ("--set", "image_size=32", "--set", "train_size=32", "--set", "test_size=16", "--set", "batch_size=8",
        "--epochs", "1", "--set", "model_kwargs={fpn_channels: 32}")


def test_train_eval_predict_and_export_refusal(cli, tmp_path, data_dir, monkeypatch):
    from convzoo.data.scenes import load_scenes

    monkeypatch.setenv("CONVZOO_QUICK", "1")
    code, out, err = cli("train", "--model", "fasterrcnn_resnet18_fpn", *TINY, "--data-dir", data_dir,
                         "--out", tmp_path, "--name", "run", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "detection" and result["metric"] == "map" and result["dataset"] == "mnist-scenes"
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"test_map", "test_map50", "test_map75", "train_loss"} <= set(record) and "train_acc" not in record
    assert "mAP@0.5" in err
    best = tmp_path / "run" / "best.pt"

    code, out, err = cli("eval", "--checkpoint", best, "--per-class", "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    assert {"map", "map50", "map75", "per_class"} <= set(evaluation) and len(evaluation["per_class"]) == 10

    image = tmp_path / "scene.png"
    Image.fromarray(load_scenes(train=False, data_dir=data_dir, size=2, image_size=32).images[0, 0].numpy()).save(image)
    code, out, err = cli("predict", "--checkpoint", best, image, "--out", tmp_path / "boxes", "--score-threshold", "0",
                         "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert Image.open(summary["predictions"][0]["picture"]).size == (32, 32)
    detections = json.loads((tmp_path / "boxes" / "detections.json").read_text())
    assert all({"image_id", "category_id", "bbox", "score"} <= set(entry) for entry in detections)
    for entry in detections:  # COCO's [x, y, width, height], inside the image
        x, y, width, height = entry["bbox"]
        assert 0 <= x and 0 <= y and width >= 0 and height >= 0 and x + width <= 32.01 and y + height <= 32.01

    code, _, err = cli("export", "--checkpoint", best, "--format", "onnx")
    assert code != 0 and "is a detector" in err and "Traceback" not in err


def test_bad_postprocessing_values_are_one_line_errors(cli, tmp_path):
    from convzoo.deploy.detect import set_postprocessing
    from convzoo.errors import ConvzooError

    with pytest.raises(ConvzooError, match="--score-threshold"):
        set_postprocessing(None, 1.5, 0.5)
    with pytest.raises(ConvzooError, match="--nms-iou"):
        set_postprocessing(None, 0.5, 0.0)


@pytest.mark.parametrize("kind", ["coco", "vocdet"])
def test_a_detector_trains_and_evaluates_on_users_coco_and_voc_files(cli, tmp_path, kind):
    from tests.data.test_detection_folders import write_coco, write_voc

    root = write_coco(tmp_path / "coco") if kind == "coco" else write_voc(tmp_path / "voc")
    code, out, err = cli("train", "--model", "fasterrcnn_resnet18_fpn", "--dataset", f"{kind}:{root}",
                         "--set", "image_size=32", "--set", "batch_size=1", "--epochs", "1",
                         "--set", "model_kwargs={fpn_channels: 32}", "--set", "num_workers=0",
                         "--out", tmp_path, "--name", "run", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "detection" and result["dataset"].startswith(kind)
    code, out, err = cli("eval", "--checkpoint", tmp_path / "run" / "best.pt", "--per-class", "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    assert evaluation["class_names"][0] == "background" and len(evaluation["per_class"]) == len(
        evaluation["class_names"]) - 1
