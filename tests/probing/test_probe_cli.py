"""``convzoo probe`` from the command line: listing, errors, results files and --json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

FAST = ("--epochs", "1", "--train-size", "512", "--batch-size", "64")


def test_list_layers_prints_every_tappable_module_with_its_shape(cli):
    code, out, err = cli("probe", "--model", "lenet5", "--list-layers")
    assert code == 0, err
    rows = {line.split()[1] if line.split()[0] == "*" else line.split()[0]: line
            for line in (line.strip("│┃ ").replace("│", " ") for line in out.splitlines()) if line.split()}
    assert "6x28x28" in rows["features.0"] and "Conv2d" in rows["features.0"]
    assert rows["features.1"].startswith("*") and not rows["features.0"].startswith("*")
    assert "84" in rows["classifier.1"] and "1x32x32" in rows["input"]


def test_list_layers_as_json(cli, lenet_checkpoint):
    code, out, _ = cli("probe", "--checkpoint", lenet_checkpoint, "--list-layers", "--json")
    listing = json.loads(out)
    assert listing["model"] == "lenet5" and listing["input_shape"] == [1, 32, 32]
    by_name = {layer["name"]: layer for layer in listing["layers"]}
    assert by_name["features.4"] == {"name": "features.4", "type": "ReLU", "shape": [16, 10, 10], "calls": 1,
                                     "default_exit": True}
    assert [layer["name"] for layer in listing["layers"]][:2] == ["input", "features.0"]


@pytest.mark.parametrize("arguments, message", [
    (("--model", "lenet5"), "--random-init"),
    ((), "--checkpoint RUN/best.pt"),
    (("--model", "lenet5", "--random-init", "--layers", "feature.1"), "unknown layer 'feature.1'. Did you mean: features.1"),
    (("--model", "lenet5", "--random-init", "--layers", "layer*"), "matches no tappable module"),
    (("--model", "lenet5", "--random-init", "--compare-random"), "needs --checkpoint"),
    (("--model", "lenet", "--random-init"), "unknown model 'lenet'"),
    (("--model", "lenet5", "--random-init", "--features", "0"), "--features must be at least 1"),
    (("--model", "lenet5", "--random-init", "--train-size", "0"), "--train-size must be at least 1, got 0"),
    (("--model", "lenet5", "--random-init", "--num-workers", "-1"), "--num-workers must not be negative"),
])
def test_mistakes_are_one_line_errors(cli, tmp_path, arguments, message):
    code, out, err = cli("probe", *arguments, "--out", tmp_path)
    assert code == 2 and out == "", (code, out, err)
    assert message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())  # nothing written for a refused command


def test_a_checkpoint_of_another_model_is_refused(cli, lenet_checkpoint, tmp_path):
    code, _, err = cli("probe", "--checkpoint", lenet_checkpoint, "--model", "resnet20", "--out", tmp_path)
    assert code == 2 and "--model resnet20 does not match" in err and "lenet5" in err


def test_json_output_and_result_files(cli, lenet_checkpoint, tmp_path):
    code, out, err = cli("probe", "--checkpoint", lenet_checkpoint, "--compare-random", "--features", "1000",
                         *FAST, "--out", tmp_path, "--name", "p", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["model"], result["dataset"]) == ("lenet5", "synthetic")
    names = [row["name"] for row in result["layers"]]
    assert names == ["input", "features.1", "features.4", "features.7", "classifier.1"]
    for row in result["layers"]:
        assert set(row) == {"name", "dim", "train_acc", "test_acc", "random_test_acc"}
        assert all(0 <= row[key] <= 1 for key in ("train_acc", "test_acc", "random_test_acc"))
    # Pooled to about --features: 6x28x28 -> 6x13x13, 16x10x10 -> 16x8x8; the rest are whole.
    assert [row["dim"] for row in result["layers"]] == [1024, 1014, 1024, 120, 84]

    run_dir = tmp_path / "p"
    assert json.loads((run_dir / "probe.json").read_text()) == result
    with open(run_dir / "probe.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["exit"] for row in rows] == names
    for row, expected in zip(rows, result["layers"]):
        assert int(row["dim"]) == expected["dim"]
        for key in ("train_acc", "test_acc", "random_test_acc"):
            assert float(row[key]) == pytest.approx(expected[key], abs=1e-6)
    assert (run_dir / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(path.name.startswith("events.out.tfevents") for path in run_dir.iterdir())


def test_terminal_output_is_a_table_and_layers_can_be_chosen(cli, tmp_path):
    code, out, err = cli("probe", "--model", "lenet5", "--random-init", "--layers", "features.?,classifier.1",
                         *FAST, "--out", tmp_path)
    assert code == 0, err
    lines = [line for line in out.splitlines() if "features." in line or "input" in line or "classifier" in line]
    exits = [line.replace("│", " ").split()[0] for line in lines]
    assert exits == ["input", *(f"features.{i}" for i in range(8)), "classifier.1"]
    assert "random test" not in out  # no --compare-random, no such column
    (run_dir,) = Path(tmp_path).iterdir()
    assert run_dir.name.startswith("probe-lenet5-synthetic-")
    with open(run_dir / "probe.csv", newline="") as file:
        assert all(row["random_test_acc"] == "" for row in csv.DictReader(file))
    assert "random epoch 1/1" in err  # per-epoch progress on stderr


def test_help_is_not_cut_at_80_columns(cli):
    code, out, _ = cli("probe", "--help")
    assert code == 0 and "…" not in out and "--num-workers" in out


@pytest.mark.parametrize(("lowest", "chance", "bottom"), [(13.5, 10.0, 5.0), (12.0, 10.0, 5.0), (90.0, 10.0, 85.0)])
def test_the_chance_line_is_never_hidden_on_the_axis(lowest, chance, bottom):
    from convzoo.probing.report import y_axis_bottom

    assert y_axis_bottom(lowest, chance) == bottom
