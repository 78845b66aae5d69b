"""``convzoo explain`` end to end, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path


def test_explain_writes_grids_and_the_sanity_table(cli, lenet_checkpoint, tmp_path):
    code, out, err = cli("explain", "--checkpoint", lenet_checkpoint, "--samples", "1", "--method", "saliency,gradcam",
                         "--sanity", "--sanity-layers", "2", "--out", tmp_path, "--name", "x", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["layer"] == "features.4"
    assert {Path(f).name for f in result["files"]} >= {
        "explain-saliency.png", "explain-gradcam.png", "predictions.csv", "sanity.csv", "sanity.png"}
    assert [row["randomised_down_to"] for row in result["sanity"] if row["method"] == "gradcam"] == [
        "original", "classifier.2", "classifier.0"]
    assert all(0 <= row["probability"] <= 1 for row in result["images"])


def test_explain_errors_are_one_line(cli, lenet_checkpoint, tmp_path):
    garbage = tmp_path / "broken.png"
    garbage.write_bytes(b"not an image")
    cases = [
        (["--method", "lime", "--samples", "1"], "unknown method"),
        (["--target", "10", "--samples", "1"], "out of range"),
        (["--method", "gradcam", "--layer", "features.44", "--samples", "1"], "unknown layer"),
        (["--image", str(garbage)], "cannot read image"),
    ]
    for arguments, message in cases:
        code, _, err = cli("explain", "--checkpoint", lenet_checkpoint, "--out", tmp_path, *arguments)
        assert code != 0
        assert message in err and len(err.strip().splitlines()) == 1, err
