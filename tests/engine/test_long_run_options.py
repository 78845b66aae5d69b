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
    import subprocess

    launched = {}

    class Torchrun:
        def __init__(self, argv, **kwargs):
            launched["argv"], launched["env"] = argv, kwargs["env"]
            self.stderr = iter([])

        def wait(self):
            return 0

    def replaced(*args):
        raise AssertionError("the process replaced itself with torchrun")

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(subprocess, "Popen", Torchrun)
    monkeypatch.setattr(os, "execv", replaced)
    cli("train", "--model", "lenet5", "--set", "train_size=64", "--set", "lr=0.1", "--no-amp", "--quiet",
        "--nproc-per-node", "3", "--out", tmp_path)
    argv = launched["argv"]
    assert argv[1:8] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3", "-m", "convzoo"]
    assert argv[8] == "train"
    given = argv[9:]
    assert given.count("--set") == 2 and "--no-amp" in given and "--quiet" in given and "--nproc-per-node" not in given
    assert given[given.index("--model") + 1] == "lenet5" and given[given.index("--out") + 1] == str(tmp_path)
    assert "--epochs" not in given  # defaults stay the config's
    assert "CONVZOO_STDERR_TAG" in launched["env"]


@pytest.mark.parametrize("arguments, message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--sync-bn", "--device", "cpu"], "--sync-bn needs GPUs"),
    (["--resume", "no-such-run"], "is not a convzoo run folder"),
])
def test_nproc_per_node_checks_the_options_before_starting_torchrun(cli, tmp_path, monkeypatch, arguments, message):
    import os
    import subprocess

    def started(*args, **kwargs):
        raise AssertionError("torchrun was started")

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(subprocess, "Popen", started)
    monkeypatch.setattr(os, "execv", started)
    if "--resume" not in arguments:
        arguments = [*TINY, *arguments]
    code, _, err = cli("train", *arguments, "--out", tmp_path, "--nproc-per-node", "2")
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err


def _torchrun_job(arguments, tmp_path, stop_at_checkpoint: bool = False):
    """``convzoo train --nproc-per-node 2 ARGS`` as a real process: (exit code, stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "convzoo", "train", "--nproc-per-node", "2", *arguments],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if stop_at_checkpoint:  # as a Ctrl-C would: SIGINT to the command the user started
        deadline = time.time() + 180
        while "checkpoint written" not in log.read_text() and process.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
    return process.wait(timeout=300), log.read_text()


@pytest.mark.slow
def test_a_failing_job_is_one_line_with_the_one_process_status(tmp_path):
    code, err = _torchrun_job([*TINY, "--dataset", "mnist", "--data-dir", str(tmp_path / "no-data"),
                               "--out", str(tmp_path / "runs"), "--name", "nodata"], tmp_path)
    assert code == 2, err
    assert "Traceback" not in err and "torch.distributed" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert "mnist files not found" in line


@pytest.mark.slow
def test_ctrl_c_of_a_job_is_one_line_exit_130_with_torchruns_log_in_the_run_folder(tmp_path):
    run_dir = tmp_path / "runs" / "stopped"
    code, err = _torchrun_job(["--model", "lenet5", "--epochs", "50", "--batch-size", "8", "--set", "train_size=4096",
                               "--set", "test_size=16", "--device", "cpu", "--checkpoint-every", "2",
                               "--out", str(tmp_path / "runs"), "--name", "stopped"], tmp_path, stop_at_checkpoint=True)
    assert code == 130, err
    assert "Traceback" not in err and "torch.distributed" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: stopped by SIGINT") and str(run_dir) in errors[0]
    assert (run_dir / "last.pt").is_file() and (run_dir / "torchrun.log").is_file()


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
