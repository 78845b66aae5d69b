"""Two processes as two nodes (issue 21): each is rank 0 of its node (``LOCAL_RANK`` 0) and
has folders of its own, started as env:// ranks with the worker of test_distributed.py.
Whatever each one finds on its own disk, they must go through the same collectives: a
mismatch is a job that waits forever without a word.
"""

import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from convzoo.config import TrainConfig
from tests.conftest import real_data_dir
from tests.engine.test_distributed import RUN, WORKER, error_lines, killed_after_epoch_1, train_args

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_nodes(root: Path, *commands: tuple[str, list[str]], timeout: float = 150, **variables: str) -> dict:
    """``(fault, convzoo arguments)`` after one another in a job of two processes, each the
    first of its node and working in a folder of its own, ``root/node0`` and ``root/node1``
    (so that a relative ``--out runs`` is a node-local disk); returns both processes' output
    and each rank's records (see distributed_worker.py), with ``variables`` in their
    environment. A job still running after ``timeout`` seconds is killed: hung."""
    records = root / "records"
    records.mkdir(parents=True, exist_ok=True)
    separated = [arg for fault, command in commands for arg in ("--", fault, *command)]
    port, processes = free_port(), []
    for rank in (0, 1):
        (root / f"node{rank}").mkdir(exist_ok=True)
        environment = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", **variables)
        with open(records / f"out{rank}", "w") as stdout, open(records / f"err{rank}", "w") as stderr:
            processes.append(subprocess.Popen([sys.executable, str(WORKER), str(records), *separated], stdout=stdout,
                                              stderr=stderr, env=environment, cwd=root / f"node{rank}",
                                              start_new_session=True))
    deadline = time.time() + timeout
    while any(process.poll() is None for process in processes) and time.time() < deadline:
        time.sleep(0.2)
    hung = [process for process in processes if process.poll() is None]
    for process in hung:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    stderr = "".join((records / f"err{rank}").read_text() for rank in (0, 1))
    assert not hung, f"the job hung ({timeout:.0f} s):\n{stderr}"
    ranks = [json.loads((records / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return {"stderr": stderr, "ranks": ranks}


def mnist_args(data_dir: str, name: str) -> list[str]:
    return ["train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", data_dir, "--epochs", "1",
            "--batch-size", "32", "--set", "train_size=64", "--set", "test_size=64", "--device", "cpu",
            "--out", "runs", "--name", name]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def mnist_archives() -> Path | None:
    """The folder of MNIST's four .gz archives, as torchvision downloads them, if at hand."""
    found = real_data_dir()
    archives = found / "MNIST" / "raw" if found else None
    return archives if archives and (archives / "train-images-idx3-ubyte.gz").is_file() else None


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One job, a process start for every test here: two ``--resume auto`` commands whose
    ranks see different things in ``--out runs`` (rank 0 a last.pt that rank 1 has not,
    then rank 1 an old last.pt where rank 0 has none); then, where MNIST's archives are at
    hand, two MNIST runs with torchvision downloading from a local web server: with a data
    folder each (rank 0's holds MNIST, rank 1's is empty), then with one empty folder both
    share."""
    root = tmp_path_factory.mktemp("nodes")
    for rank, name in ((0, "seen-by-0"), (1, "seen-by-1")):
        killed_after_epoch_1(TrainConfig(**RUN, out=str(root / f"node{rank}" / "runs"), name=name))
    commands = [("none", train_args(Path("runs"), "seen-by-0", "--resume", "auto")),
                ("none", train_args(Path("runs"), "seen-by-1", "--resume", "auto"))]
    archives, variables, server = mnist_archives(), {}, None
    if archives is not None:
        own = root / "node0" / "data" / "MNIST" / "raw"
        own.mkdir(parents=True)
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                     "t10k-labels-idx1-ubyte"):
            (own / name).symlink_to(archives / name)
        commands += [("none", mnist_args("data", "own-folders")),
                     ("none", mnist_args(str(root / "shared"), "shared-folder"))]
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 functools.partial(QuietHandler, directory=str(archives)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        variables["CONVZOO_TEST_MNIST_MIRROR"] = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        completed = two_nodes(root, *commands, **variables)
    finally:
        if server is not None:
            server.shutdown()
    return {**completed, "root": root}


@pytest.fixture
def downloads(job):
    if mnist_archives() is None:
        pytest.skip("MNIST's archives not found: set CONVZOO_DATA to the folder holding MNIST/raw/*.gz")
    return job


def test_resume_auto_that_rank_1_cannot_see_stops_the_job_with_one_line(job):
    """Rank 0 decides; rank 1, whose --out holds no such run, says so instead of starting a
    run of its own and waiting in collectives rank 0 never enters (issue 21, item 2)."""
    assert all(rank[0]["exit_code"] != 0 for rank in job["ranks"])
    (line,) = [line for line in error_lines(job["stderr"]) if "--resume auto" in line]
    assert "--resume auto: rank 0 continues runs/seen-by-0, but rank 1 cannot see its last.pt" in line
    assert "file system all nodes share" in line


def test_resume_auto_follows_rank_0_when_only_another_rank_sees_an_old_run(job):
    """Rank 0 sees no run of that name: the job starts it there, whatever rank 1's folder holds."""
    assert [rank[1]["exit_code"] for rank in job["ranks"]] == [0, 0], job["stderr"]
    started = job["root"] / "node0" / "runs" / "seen-by-1"
    assert json.loads(started.joinpath("metrics.jsonl").read_text().splitlines()[-1])["epoch"] == RUN["epochs"]
    old = job["root"] / "node1" / "runs" / "seen-by-1" / "last.pt"
    assert torch.load(old, weights_only=True)["epoch"] == 1  # left alone


def test_nodes_with_different_data_go_through_the_same_collectives(downloads):
    """Rank 1's folder lacks MNIST, rank 0's has it: rank 1 downloads while rank 0 goes on,
    and no collective waits on one of them alone (issue 21, item 5: the download's barrier
    was reached only where files were missing)."""
    assert [rank[2]["exit_code"] for rank in downloads["ranks"]] == [0, 0], downloads["stderr"]
    assert [len(rank[2].get("downloads", [])) for rank in downloads["ranks"]] == [0, 4]
    assert (downloads["root"] / "node1" / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_one_process_at_a_time_downloads_into_a_shared_data_folder(downloads):
    """Both nodes start with the same empty folder: one downloads, the other waits for it
    and reads its files (issue 21, item 5: every node's first process downloaded into the
    same files at once)."""
    assert [rank[3]["exit_code"] for rank in downloads["ranks"]] == [0, 0], downloads["stderr"]
    assert sorted(len(rank[3].get("downloads", [])) for rank in downloads["ranks"]) == [0, 4]
    assert not list((downloads["root"] / "shared").glob(".*lock"))
