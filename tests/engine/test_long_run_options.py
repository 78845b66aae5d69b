"""The options of long runs (issue 14): ``checkpoint_every``, ``--resume auto``,
``--nproc-per-node`` and ``--sync-bn``, and the one-line errors of their misuse."""

import json

import pytest

from convzoo.config import config_from_dict, parse_checkpoint_every
from convzoo.errors import ConvzooError

TINY = ("--model", "lenet5", "--epochs", "1", "--batch-size", "32", "--set", "train_size=64", "--set", "test_size=32",
        "--device", "cpu")


@pytest.mark.parametrize(("value", "parsed"), [(200, (200, None)), ("200", (200, None)), ("10min", (None, 10.0)),
                                               ("0.5min", (None, 0.5)), ("2 min", (None, 2.0))])
def test_checkpoint_every_takes_steps_or_minutes(value, parsed):
    assert parse_checkpoint_every(value) == parsed
    assert config_from_dict({"checkpoint_every": value}).checkpoint_every == value


@pytest.mark.parametrize("value", ["10m", "10 minutes", 0, -5, 2.5, "0min", True, "every epoch"])
def test_a_bad_checkpoint_every_is_one_line_naming_both_forms(value):
    with pytest.raises(ConvzooError, match=r"^run.yaml: 'checkpoint_every' must be (a number of steps \(200\) or "
                                           r"minutes \('10min'\)|at least 1 step|a positive number of minutes), got"):
        config_from_dict({"checkpoint_every": value}, source="run.yaml")


def test_the_checkpoint_every_flag_is_checked_like_the_key(cli, tmp_path):
    code, _, err = cli("train", *TINY, "--out", tmp_path, "--checkpoint-every", "5m")
    assert code == 2 and err.strip().splitlines() == [
        "error: --checkpoint-every must be a number of steps (200) or minutes ('10min'), got '5m'."]


def test_resume_auto_needs_a_name(cli, tmp_path):
    code, _, err = cli("train", *TINY, "--out", tmp_path, "--resume", "auto")
    assert code == 2 and err.strip() == (
        "error: --resume auto needs --name: it continues the run of that name in --out, or starts it.")


def test_resume_auto_starts_then_finds_the_run_complete(cli, tmp_path):
    """Started, then the same command again (a restarted job): nothing left to do. A folder an
    earlier attempt claimed but left without a checkpoint is taken over, not refused."""
    (tmp_path / "auto").mkdir()
    (tmp_path / "auto" / "config.yaml").write_text("model: lenet5\n")
    for attempt in range(2):
        code, out, err = cli("train", *TINY, "--out", tmp_path, "--name", "auto", "--resume", "auto", "--json")
        assert code == 0, err
        assert json.loads(out).get("already_complete", False) == (attempt == 1)


def test_resume_auto_refuses_a_run_of_another_configuration(cli, tmp_path):
    assert cli("train", *TINY, "--out", tmp_path, "--name", "run")[0] == 0
    code, _, err = cli("train", *TINY, "--out", tmp_path, "--name", "run", "--resume", "auto", "--lr", "0.2")
    assert code == 2 and "holds a run with other lr" in err and len(err.strip().splitlines()) == 1


def test_nproc_per_node_under_torchrun_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = cli("train", *TINY, "--out", tmp_path, "--nproc-per-node", "2")
    assert code == 2 and err.startswith("error: --nproc-per-node starts torchrun itself, but this process already")


def test_nproc_per_node_relaunches_with_the_options_given(cli, tmp_path, monkeypatch):
    """torchrun gets the command's own options (not defaults) minus --nproc-per-node."""
    import os

    launched = {}

    def execv(path, argv):
        launched["argv"] = argv
        raise SystemExit(0)  # as the real one never returns

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "execv", execv)
    cli("train", "--model", "lenet5", "--set", "train_size=64", "--set", "lr=0.1", "--no-amp", "--quiet",
        "--nproc-per-node", "3", "--out", tmp_path)
    argv = launched["argv"]
    assert argv[1:8] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3", "-m", "convzoo"]
    assert argv[8] == "train"
    given = argv[9:]
    assert given.count("--set") == 2 and "--no-amp" in given and "--quiet" in given and "--nproc-per-node" not in given
    assert given[given.index("--model") + 1] == "lenet5" and given[given.index("--out") + 1] == str(tmp_path)
    assert "--epochs" not in given  # defaults stay the config's


def test_sync_bn_alone_says_there_is_nothing_to_sync(cli, tmp_path):
    code, _, err = cli("train", *TINY, "--out", tmp_path, "--sync-bn")
    assert code == 0, err
    assert "--sync-bn: one process" in err


def test_minutes_count_from_the_last_checkpoint_written(monkeypatch):
    """``10min``: due 10 minutes after the last checkpoint (mid-epoch or an epoch end's)."""
    import time

    import torch

    from convzoo.engine.interrupts import StopSignals
    from convzoo.engine.mid_epoch import CheckpointSchedule
    from convzoo.engine.runtime import Runtime

    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    schedule = CheckpointSchedule("10min", Runtime(torch.device("cpu")), StopSignals())
    clock[0] += 599
    assert schedule.after_step(1) == (False, False)
    clock[0] += 2
    assert schedule.after_step(2) == (True, False)
    schedule.written()
    clock[0] += 300
    assert schedule.after_step(3) == (False, False)
