"""Run folders are claimed atomically: runs started together never share one (issue 16, item 1)."""

from __future__ import annotations

import threading

import pytest

from convzoo.config import TrainConfig
from convzoo.engine.train import new_run_dir
from convzoo.errors import ConvzooError


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    config = TrainConfig(model="lenet5", out=str(tmp_path))
    folders: list = []
    start = threading.Barrier(4)

    def claim() -> None:
        start.wait()
        folders.append(new_run_dir(config))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 4  # lenet5-synthetic-TIME, -2, -3, -4 (or later seconds)
    assert all(folder.is_dir() for folder in folders)  # claimed, not merely named


def test_a_named_folder_is_claimed_once(tmp_path):
    config = TrainConfig(model="lenet5", out=str(tmp_path), name="mine")
    assert new_run_dir(config).is_dir()
    with pytest.raises(ConvzooError, match="another --name"):
        new_run_dir(config)


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.datasets.mnist

    from convzoo.engine.train import train

    def offline(*args, **kwargs):
        raise URLError("offline")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)

    config = TrainConfig(model="lenet5", dataset="mnist", data_dir=str(tmp_path / "no-data"), out=str(tmp_path / "runs"),
                         name="failed")
    with pytest.raises(ConvzooError):
        train(config, quiet=True)
    assert not (tmp_path / "runs" / "failed").exists()  # so the same --name works once the data is there


@pytest.mark.parametrize("rank", [0, 1])
def test_under_torchrun_rank_0_claims_the_folder_and_the_others_receive_its_name(tmp_path, monkeypatch, rank):
    """The process group is faked (a real two-process torchrun costs ~20 s on 2 cores; the
    DDP test in test_distributed.py runs one): rank 0 claims, every rank returns its name."""
    import torch.distributed as dist

    broadcasts = []

    def broadcast_object_list(objects, src):
        broadcasts.append(list(objects))
        if rank != 0:
            objects[0] = ("value", str(tmp_path / "runs" / "lenet5-synthetic-claimed-by-rank-0"))

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: rank)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast_object_list)
    run_dir = new_run_dir(TrainConfig(model="lenet5", out=str(tmp_path / "runs")))
    assert len(broadcasts) == 1
    if rank == 0:
        assert run_dir.is_dir() and broadcasts[0] == [("value", str(run_dir))]
    else:
        assert run_dir.name == "lenet5-synthetic-claimed-by-rank-0" and broadcasts[0] == [None]
        assert not (tmp_path / "runs").exists()  # only rank 0 creates folders


@pytest.mark.parametrize("checkpointed", [False, True], ids=["before-its-first-last.pt", "after-a-last.pt"])
def test_a_second_resume_auto_start_refuses_while_the_first_runs(tmp_path, checkpointed):
    """Two real processes, as a scheduler starting a job twice would: the second finds the
    first alive in the folder (before or after its first checkpoint) and refuses in one line."""
    import os
    import subprocess
    import sys
    import time

    arguments = [sys.executable, "-m", "convzoo", "train", "--model", "lenet5", "--epochs", "50", "--batch-size", "8",
                 "--set", "train_size=4096", "--set", "test_size=16", "--device", "cpu", "--out", str(tmp_path),
                 "--name", "job", "--resume", "auto", "--checkpoint-every", "2"]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    log = tmp_path / "first.log"
    with open(log, "w") as stderr:
        first = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=stderr, env=environment)
    try:
        ready = (lambda: "checkpoint written" in log.read_text()) if checkpointed \
            else (lambda: (tmp_path / "job" / "config.yaml").exists())
        deadline = time.time() + 120
        while not ready() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, log.read_text()
        second = subprocess.run(arguments, capture_output=True, text=True, env=environment, timeout=120)
        assert second.returncode == 2, second.stderr
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "in use" in errors[0] and "Traceback" not in second.stderr, second.stderr
        assert first.poll() is None  # the first run goes on, alone
    finally:
        first.kill()
        first.wait()
