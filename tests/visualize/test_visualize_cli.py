"""`convzoo visualize KIND`: --json schemas, run folders, and one-line errors."""

from __future__ import annotations

import json

import pytest

COMMON = {"kind", "model", "source", "dataset", "device", "run_dir", "files"}


def _json(cli, *args):
    code, out, err = cli("visualize", *args, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert COMMON <= set(result)
    assert any(path.endswith("visualize.json") for path in result["files"])
    return result


def test_json_schemas_of_every_kind(cli, tmp_path, lenet_checkpoint):
    out = ("--out", tmp_path)
    features = _json(cli, "features", "--checkpoint", lenet_checkpoint, "--index", "0", "--index", "3", *out)
    assert features["layers"] == ["features.1", "features.4", "features.7"]  # exits with feature maps
    assert {"image", "layer", "shape", "mean_activation", "max_activation"} <= set(features["activations"][0])
    assert sum(path.endswith(".png") for path in features["files"]) == 2 * (1 + 3)

    patches = _json(cli, "patches", "--checkpoint", lenet_checkpoint, "--layer", "features.4", "--channels", "0-2",
                    "--top", "3", "--limit", "200", *out)
    assert patches["images_searched"] == 200 and patches["receptive_field"] == {"size": 14, "jump": 2, "start": 0}
    assert len(patches["patches"]) == 9
    assert set(patches["patches"][0]) == {"channel", "rank", "image_index", "row", "column", "activation",
                                          "box_rows", "box_columns"}

    maximized = _json(cli, "maximize", "--checkpoint", lenet_checkpoint, "--layer", "features.4", "--channels", "1,4",
                      "--steps", "3", *out)
    assert [t["target"] for t in maximized["targets"]] == [1, 4] and maximized["recipe"] == "lucid"
    assert set(maximized["targets"][0]) == {"target", "before", "after", "dataset_best", "dataset_best_index",
                                            "retried"}
    assert maximized["split"] == "test" and maximized["images_searched"] > 0
    for target in maximized["targets"]:
        short = target["after"] < target["dataset_best"]
        assert short == any(note.startswith(f"channel {target['target']}: ") and "3 steps are fewer" in note
                            for note in maximized["notes"])
    plain = _json(cli, "maximize", "--checkpoint", lenet_checkpoint, "--class", "3", "--plain", "--steps", "3", *out)
    assert plain["target_kind"] == "class" and plain["recipe"] == "plain"

    dream = _json(cli, "dream", "--checkpoint", lenet_checkpoint, "--index", "1", "--layer", "features.4",
                  "--steps", "2", "--octaves", "2", *out)
    assert dream["image_shape"] == [1, 32, 32] and dream["norm_after"] > dream["norm_before"]

    filters = _json(cli, "filters", "--checkpoint", lenet_checkpoint, *out)
    assert filters["layer"] == "features.0" and filters["filters"] == 6
    assert filters["run_dir"].split("/")[-1].startswith("visualize-filters-lenet5-")


@pytest.mark.parametrize("args, message", [
    (["patches", "--layer", "features.40"], "unknown layer 'features.40'. Did you mean: features.4"),
    (["patches", "--layer", "classifier.1"], "not (channels, height, width) feature maps"),
    (["features", "--index", "0", "--layers", "classifier.1"], "not (channels, height, width) feature maps"),
    (["patches", "--layer", "features.4", "--channels", "12-16"], "--channels 16 is out of range"),
    (["maximize", "--layer", "features.1", "--channels", "6"], "--channels 6 is out of range"),
    (["maximize", "--class", "10"], "--class 10 is out of range"),
    (["maximize", "--layer", "features.4", "--split", "val"], "--split must be train or test"),
    (["dream", "--layer", "features.4", "--image", "NOT_AN_IMAGE"], "cannot read image"),
    (["filters", "--model", "resnet20"], "does not match the checkpoint"),
    (["filters", "--layer", "features.1"], "not a 2-D convolution"),
])
def test_bad_input_is_one_line_error(cli, tmp_path, lenet_checkpoint, args, message):
    if "NOT_AN_IMAGE" in args:
        bad = tmp_path / "notes.png"
        bad.write_text("not a picture")
        args = [str(bad) if a == "NOT_AN_IMAGE" else a for a in args]
    code, out, err = cli("visualize", *args, "--checkpoint", lenet_checkpoint, "--out", tmp_path)
    assert code != 0 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_torchvision_weights_offline_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    code, _, err = cli("visualize", "filters", "--model", "resnet18", "--weights", "torchvision", "--out", tmp_path)
    if code == 0:
        pytest.skip("torchvision's weights are reachable here")
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")
