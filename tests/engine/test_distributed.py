"""Multi-process training under torchrun (gloo on CPU): sharded data and evaluation, metrics
summed over ranks, resuming with another number of processes, and how a job ends.

A launch costs tens of seconds on CI's two cores, so one job serves every test here: three
runs in turn in the same two processes (see distributed_worker.py).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from convzoo.config import TrainConfig
from convzoo.engine.optim import build_scheduler
from convzoo.engine.train import train

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("distributed_worker.py")
RUN = dict(model="lenet5", dataset="synthetic", epochs=2, batch_size=32, schedule="onecycle", lr=0.05,
           train_size=256, test_size=101, device="cpu", seed=3)
"""256 training images: 8 steps per epoch in one process, 4 in each of two; 101 test images,
an odd count that two shards must split without losing or repeating one."""


def train_args(out: Path, name: str, *extra: str) -> list[str]:
    return ["train", "--model", RUN["model"], "--dataset", RUN["dataset"], "--epochs", str(RUN["epochs"]),
            "--batch-size", str(RUN["batch_size"]), "--schedule", RUN["schedule"], "--lr", str(RUN["lr"]),
            "--seed", str(RUN["seed"]), "--set", f"train_size={RUN['train_size']}",
            "--set", f"test_size={RUN['test_size']}", "--device", "cpu", "--out", str(out), "--name", name, *extra]


def torchrun(records: Path, *commands: tuple[str, list[str]]) -> subprocess.CompletedProcess:
    """``(fault, convzoo arguments)`` after one another in one two-process job (see distributed_worker.py)."""
    records.mkdir(parents=True, exist_ok=True)
    separated = [arg for fault, command in commands for arg in ("--", fault, *command)]
    arguments = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(WORKER),
                 str(records), *separated]
    # A session of its own, so that a hung job's workers go with their launcher.
    with subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(arguments, launcher.returncode, stdout, stderr)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def final_lr_of_schedule(steps_per_epoch: int) -> float:
    """The learning rate one-cycle reaches after its last step, at this many steps per epoch."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=RUN["lr"], momentum=0.9)
    scheduler = build_scheduler(optimizer, TrainConfig(**RUN), steps_per_epoch)
    for _ in range(RUN["epochs"] * steps_per_epoch):
        optimizer.step()
        scheduler.step()
    return scheduler.get_last_lr()[0]


def epoch_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class Stopped(Exception):
    pass


def killed_after_epoch_1(config: TrainConfig) -> None:
    """Train ``config`` in this process until epoch 1's last.pt is written, and stop there."""
    import convzoo.engine.train as engine

    save = engine.atomic_save

    def save_then_stop(state, path):
        save(state, path)
        if str(path).endswith("last.pt"):
            raise Stopped

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "atomic_save", save_then_stop)
        with pytest.raises(Stopped):
            train(config, quiet=True)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One two-process job, seven commands: a run whose 4th step gives rank 1 (only) a NaN
    loss; a one-process run stopped after epoch 1, resumed with two processes; a run with
    mid-epoch checkpoints (the reference of the runs stopped and resumed); ``--sync-bn``,
    which gloo cannot do; the reference run again, SIGTERM sent to rank 1 only in its 2nd
    step, then resumed; a new run that rank 1 breaks at the start of epoch 2, after epoch
    1's last.pt exists (last: rank 0 is left in a collective that rank 1 never joins)."""
    out = tmp_path_factory.mktemp("job")
    killed_after_epoch_1(TrainConfig(**RUN, out=str(out), name="one"))
    completed = torchrun(
        out / "records",
        ("nan", train_args(out, "nan", "--epochs", "1")),
        ("none", ["train", "--resume", str(out / "one"), "--json"]),
        ("none", train_args(out, "reference", "--checkpoint-every", "3")),
        ("none", train_args(out, "syncbn", "--sync-bn")),
        ("sigterm", train_args(out, "terminated", "--checkpoint-every", "3")),
        ("none", ["train", "--resume", str(out / "terminated"), "--json"]),
        ("raise", train_args(out, "two")),
    )
    ended = time.time()
    ranks = [json.loads(path.read_text()) for path in sorted((out / "records").glob("rank*.json"))]
    return {"completed": completed, "ranks": ranks, "out": out, "ended": ended}


def test_a_rank_that_raises_stops_the_job_within_a_minute_with_one_line(job):
    """Its peer waits in an all-reduce it will never complete: the failing rank must not tear
    the process group down collectively (NCCL would hang for its 10-minute timeout), and the
    peer's broken collective is not a second error to report."""
    assert job["completed"].returncode != 0
    broken = next(command for command in job["ranks"][1] if command["fault"] == "raise")
    assert job["ended"] - broken["raised_at"] < 60
    (line,) = [line for line in error_lines(job["completed"].stderr) if "rank 1: RuntimeError" in line]
    assert line.startswith("error: rank 1: RuntimeError: injected failure on rank 1"), line
    assert len(error_lines(job["completed"].stderr)) == 4  # this one, the NaN run's, --sync-bn's and SIGTERM's


def test_a_two_process_run_resumes_with_one_process(job):
    """Epoch 1 took 4 steps per process; alone, an epoch takes 8. The schedule continues at
    epoch 1 and ends on its last step (one-cycle raised 'Tried to step' halfway before)."""
    run_dir = job["out"] / "two"
    saved = torch.load(run_dir / "last.pt", weights_only=True)
    assert (saved["epoch"], saved["world_size"], saved["steps_per_epoch"]) == (1, 2, 4)
    result = train(None, resume=run_dir, overrides={"device": "cpu"}, quiet=True)
    assert result["epochs"] == 2 and result["complete"]
    first, second = epoch_records(run_dir)
    assert (first["epoch"], second["epoch"]) == (1, 2)
    assert second["train_images"] == 256 and second["test_images"] == 101
    assert second["lr"] == pytest.approx(final_lr_of_schedule(steps_per_epoch=8), rel=1e-9)


def test_a_nan_on_one_rank_stops_every_rank_before_a_checkpoint(job):
    """Rank 1's NaN reaches every replica through the gradient all-reduce; the loss checked
    before last.pt is written must be the job's, not rank 0's own shard's. Failing, no rank
    tears the process group down (collective on NCCL: it would hang on a rank that left)."""
    assert [rank[0]["exit_code"] != 0 for rank in job["ranks"]] == [True, True]
    assert [rank[0].get("destroyed", False) for rank in job["ranks"]] == [False, False]
    assert not (job["out"] / "nan" / "last.pt").exists()
    (line,) = [line for line in error_lines(job["completed"].stderr) if "nan" in line]
    assert "the training loss became nan in epoch 1" in line


def test_a_one_process_run_resumes_with_two_processes(job):
    completed = job["completed"]
    assert [rank[1]["exit_code"] for rank in job["ranks"]] == [0, 0], completed.stderr
    run_dir = job["out"] / "one"
    results = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    (result,) = [result for result in results if result["run_dir"] == str(run_dir)]  # one, from rank 0 only
    assert result["complete"]
    assert "256 images" in completed.stderr and "x2" in completed.stderr
    assert (run_dir / "last.pt").is_file()
    first, second = epoch_records(run_dir)
    assert (first["epoch"], second["epoch"]) == (1, 2)
    assert second["lr"] == pytest.approx(final_lr_of_schedule(steps_per_epoch=4), rel=1e-9)
    assert second["train_images"] == 256


def test_sharded_evaluation_counts_every_test_image_once(job):
    evaluations = [rank[1]["evaluations"][-1] for rank in job["ranks"]]
    assert sorted(e["images_here"] for e in evaluations) == [50, 51]  # each rank its half, not all 101
    assert [e["n"] for e in evaluations] == [101, 101]
    assert epoch_records(job["out"] / "one")[-1]["test_images"] == 101


def test_other_ranks_leave_only_after_rank_0_has_written_its_files(job):
    rank0, rank1 = (rank[1] for rank in job["ranks"])
    assert rank1["train_returned"] >= rank0["last_write_done"]


def test_sync_bn_on_cpu_processes_is_one_line_saying_it_needs_gpus(job):
    """PyTorch's SyncBatchNorm has no CPU kernel (gloo jobs): refused before training, in one line."""
    (line,) = [line for line in error_lines(job["completed"].stderr) if "--sync-bn" in line]
    assert "--sync-bn needs GPUs" in line and "--device cuda" in line
    assert not (job["out"] / "syncbn").exists()


@pytest.fixture(scope="module")
def killed_job(job):
    """The reference run of ``job`` again in a job of its own, rank 1 killed with SIGKILL just
    after the first mid-epoch last.pt (step 3 of 4); then resumed through
    ``convzoo train --nproc-per-node 2``, which starts torchrun itself."""
    out = job["out"]
    killed = torchrun(out / "records-kill", ("kill9", train_args(out, "killed", "--checkpoint-every", "3")))
    saved = torch.load(out / "killed" / "last.pt", weights_only=True)
    resumed = subprocess.run([sys.executable, "-m", "convzoo", "train", "--resume", str(out / "killed"),
                              "--nproc-per-node", "2", "--json"], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    return {"killed": killed, "saved": saved, "resumed": resumed, "out": out}


def test_kill_9_of_one_rank_stops_the_job_with_one_line_saying_how_to_resume(killed_job):
    completed, run_dir = killed_job["killed"], killed_job["out"] / "killed"
    assert completed.returncode != 0
    assert (killed_job["saved"]["epoch"], killed_job["saved"]["step"]) == (0, 3)
    (line,) = error_lines(completed.stderr)
    assert line.startswith("error: rank 0: lost another process of the job (")
    assert line.endswith(f"it died or was killed, and the job stops; resume with --resume {run_dir}.")


def test_a_job_resumed_after_kill_9_through_nproc_per_node_ends_bit_identical(killed_job):
    resumed = killed_job["resumed"]
    assert resumed.returncode == 0, resumed.stderr
    (line,) = resumed.stdout.strip().splitlines()
    assert json.loads(line)["complete"]
    assert "continuing epoch 1 at step 3/4" in resumed.stderr
    reference = torch.load(killed_job["out"] / "reference" / "last.pt", weights_only=True)["model"]
    weights = torch.load(killed_job["out"] / "killed" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[key], reference[key]) for key in reference)
    numbers = ("epoch", "train_loss", "train_acc", "train_images", "test_loss", "test_acc", "lr")
    logged = [[record[key] for key in numbers] for record in epoch_records(killed_job["out"] / "killed")]
    assert logged == [[record[key] for key in numbers] for record in epoch_records(killed_job["out"] / "reference")]


def test_sigterm_to_one_rank_stops_every_rank_at_the_same_step_and_the_resumed_run_is_bit_identical(job):
    """Rank 1 alone gets SIGTERM in its 2nd step: the ranks agree to stop after that step,
    rank 0 writes last.pt there and says so in one line, every rank exits 143; resumed, the
    run ends as the reference run (same arguments, never stopped) did."""
    stopped = [next(command for command in rank if command["fault"] == "sigterm") for rank in job["ranks"]]
    assert [command["exit_code"] for command in stopped] == [143, 143]
    run_dir = job["out"] / "terminated"
    (line,) = [line for line in error_lines(job["completed"].stderr) if "stopped by" in line]
    assert line == f"error: stopped by a signal to another rank at epoch 1 step 2; resume with --resume {run_dir}"
    results = [json.loads(line) for line in job["completed"].stdout.splitlines() if line.startswith("{")]
    assert [result["complete"] for result in results if result["run_dir"] == str(run_dir)] == [True]
    reference = torch.load(job["out"] / "reference" / "last.pt", weights_only=True)["model"]
    weights = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(weights[key], reference[key]) for key in reference)
