"""Off a terminal a run is never silent for a whole epoch (issue 14): step lines on stderr."""

from __future__ import annotations

import re

from convzoo.engine.logging import EpochProgress

STEP_LINE = re.compile(r"epoch 1/1  step (\d+)/(\d+)  loss [\d.]+  acc [\d.]+%  lr [\d.e-]+  [\d,]+ img/s  ETA \d+s")


def _train_args(tmp_path, *extra):
    return ("train", "--model", "lenet5", "--epochs", "1", "--batch-size", "32", "--set", "train_size=320",
            "--set", "test_size=64", "--set", "log_interval=3", "--device", "cpu", "--out", tmp_path, *extra)


def test_step_lines_appear_during_an_epoch_off_a_terminal(cli, tmp_path):
    code, _, err = cli(*_train_args(tmp_path))
    assert code == 0, err
    steps = [int(match.group(1)) for match in map(STEP_LINE.search, err.splitlines()) if match]
    assert steps == [3, 6, 9], err  # 10 steps: every 3rd, the last one left to the epoch line
    assert "epoch 1/1  train loss" in err


def test_quiet_keeps_only_the_epoch_lines(cli, tmp_path):
    code, _, err = cli(*_train_args(tmp_path, "--quiet"))
    assert code == 0, err
    assert not any(STEP_LINE.search(line) for line in err.splitlines())
    assert "epoch 1/1  train loss" in err


def test_a_line_every_30_seconds_even_between_intervals(monkeypatch, capsys):
    import time

    clock = iter([0.0, 10.0, 31.0, 31.0, 40.0])  # start, due(0), due(1), update, due(2)
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    progress = EpochProgress("lines", total=1000, description="epoch 1/1", log_interval=500)
    assert not progress.due(0)  # 10 s after the start, step 1 of 500
    assert progress.due(1)      # 31 s: time for a line
    progress.update(2, "loss 1.0")
    assert not progress.due(2)  # 40 s: 9 s after that line
    assert "step 2/1000  loss 1.0  ETA" in capsys.readouterr().err
