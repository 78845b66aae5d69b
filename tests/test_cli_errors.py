"""Errors that send the user the right way (issue 16, items 4 and 5): each names the flag or
file the user gave and what to do, on one line of stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import require_dataset
from convzoo.config import TrainConfig
from convzoo.engine.checkpoint import CHECKPOINT_FORMAT, atomic_save
from convzoo.registry import create_model


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def fashion_checkpoint(tmp_path_factory) -> str:
    """An untrained ResNet-20 checkpoint as a Fashion-MNIST run writes it (1 channel, 28x28)."""
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    model = create_model("resnet20", num_classes=10, in_channels=1, image_size=28)
    atomic_save({"format": CHECKPOINT_FORMAT, "model_name": "resnet20", "model": model.state_dict(), "epoch": 1,
                 "config": TrainConfig(model="resnet20", dataset="fashion-mnist").to_dict(), "num_classes": 10,
                 "image_size": 28}, path)
    return str(path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> str:
    from convzoo.engine.train import train

    out = tmp_path_factory.mktemp("runs")
    return train(TrainConfig(model="lenet5", epochs=1, train_size=64, test_size=64, batch_size=32, out=str(out),
                             name="r"), quiet=True)["run_dir"]


def test_eval_of_a_plain_state_dict_says_what_eval_needs(cli, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(create_model("lenet5").state_dict(), path)
    code, _, err = cli("eval", "--checkpoint", path)
    line = one_line(err)
    assert code != 0 and "holds plain weights" in line and "`convzoo eval` needs a run's best.pt" in line
    assert "--weights" not in line and "--model" not in line  # options eval does not have


def test_eval_on_a_dataset_with_other_channels_names_the_channels(cli, fashion_checkpoint):
    code, _, err = cli("eval", "--checkpoint", fashion_checkpoint, "--dataset", "synthetic")
    line = one_line(err)
    assert code != 0 and "takes 1-channel images; synthetic has 3" in line and "--dataset" in line
    assert "Check --model" not in line


def test_eval_of_a_folder_without_checkpoints_says_so(cli, tmp_path):
    code, _, err = cli("eval", "--checkpoint", tmp_path)
    line = one_line(err)
    assert code != 0 and f"run folder {tmp_path} holds no best.pt or last.pt" in line
    assert "does not exist" not in line


def test_eval_batch_size_zero_blames_the_flag(cli, fashion_checkpoint):
    code, _, err = cli("eval", "--checkpoint", fashion_checkpoint, "--batch-size", "0")
    line = one_line(err)
    assert code != 0 and "--batch-size must be at least 1, got 0" in line and "eval_batch_size" not in line


def test_a_garbage_checkpoint_is_described_without_torchs_cut_text(cli, tmp_path):
    path = tmp_path / "best.pt"
    path.write_text("not a checkpoint at all\n" * 10)
    code, _, err = cli("eval", "--checkpoint", path)
    line = one_line(err)
    assert code != 0 and f"cannot read checkpoint {path}" in line and "Re-running" not in line
    assert line.endswith("(--debug shows torch's message).")


def test_resume_accepts_the_runs_last_pt_and_reports_its_final_loss(cli, finished_run):
    code, out, err = cli("train", "--resume", f"{finished_run}/last.pt", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["already_complete"] is True and result["run_dir"] == finished_run
    record = json.loads((Path(finished_run) / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["final_loss"] == pytest.approx(record["test_loss"])  # not null


@pytest.mark.parametrize(("args", "expected", "absent"), [
    (["train", "--epochs", "abc"], "Invalid value for '--epochs'", "╭"),
    (["train", "--bogus"], "no such option --bogus.", "--out"),
    (["train", "--epoch", "2"], "no such option --epoch; did you mean --epochs?", "╭"),
    (["bogus"], "no such command 'bogus'.", "╭"),
])
def test_usage_errors_are_one_line_with_a_suggestion_only_when_close(cli, args, expected, absent):
    code, out, err = cli(*args)
    line = one_line(err)
    assert code == 2 and out == ""
    assert line.startswith("error: ") and expected in line and absent not in line


def test_eval_per_class_prints_the_datasets_class_names(cli, data_dir, tmp_path):
    require_dataset(data_dir, "FashionMNIST")
    checkpoint = tmp_path / "best.pt"
    model = create_model("lenet5", num_classes=10, in_channels=1, image_size=32)
    atomic_save({"format": CHECKPOINT_FORMAT, "model_name": "lenet5", "model": model.state_dict(), "epoch": 1,
                 "config": TrainConfig(model="lenet5", dataset="fashion-mnist").to_dict()}, checkpoint)
    code, out, err = cli("eval", "--checkpoint", checkpoint, "--per-class", "--data-dir", data_dir)
    assert code == 0, err
    assert "T-shirt/top" in out and "Ankle boot" in out and "class 0" not in out
