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
