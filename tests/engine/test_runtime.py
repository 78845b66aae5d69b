"""engine/runtime.py: what a run switches for CUDA is put back, a collective a peer never
joins fails after a bounded wait with the line that says how to resume, and one process
under torchrun trains as eight do (process group, DDP)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import convzoo.engine.runtime as runtime
import convzoo.engine.train as engine
from convzoo.config import TrainConfig
from convzoo.errors import ConvzooError

WORKER = Path(__file__).with_name("runtime_worker.py")


def small_config(tmp_path, **changes) -> TrainConfig:
    values = dict(model="lenet5", dataset="synthetic", epochs=1, batch_size=16, train_size=64, test_size=32,
                  lr=0.05, out=str(tmp_path / "runs"), name="run", seed=3, device="cpu")
    values.update(changes)
    return TrainConfig(**values)


@pytest.fixture
def float32_math():
    """The process's float32 settings as a notebook leaves them; restored after the test."""
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = False
    yield
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cudnn.benchmark = before[1]


@pytest.mark.parametrize("fails", [False, True])
def test_train_on_cuda_puts_tf32_and_cudnn_autotuning_back(tmp_path, monkeypatch, float32_math, fails):
    """A CUDA run trains with TF32 and autotuning (runtime's choice), and a notebook that
    compares float32 results afterwards gets full float32 again, whether the run ended
    well or not. No GPU here: the device pick says CUDA, and the run itself is a stand-in."""
    monkeypatch.setattr(runtime, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    during = []

    def cuda_run(*args, **kwargs):
        during.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark))
        if fails:
            raise RuntimeError("CUDA out of memory")
        return {"complete": True}

    monkeypatch.setattr(engine, "_train", cuda_run)
    if fails:
        with pytest.raises(RuntimeError, match="out of memory"):
            engine.train(small_config(tmp_path), quiet=True)
    else:
        assert engine.train(small_config(tmp_path), quiet=True) == {"complete": True}
    assert during == [("high", True)]
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark) == ("highest", False)


@pytest.fixture
def init_arguments(monkeypatch):
    """Rank 0 of two under a launcher, with ``init_process_group`` recording its arguments
    (and the environment NCCL would read) instead of waiting for a peer."""
    calls = []
    import torch.distributed as dist

    def init_process_group(**kwargs):
        calls.append({**kwargs, "async_error_handling": os.environ.get("TORCH_NCCL_ASYNC_ERROR_HANDLING")})

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "unset")  # so that the test's end restores its absence
    monkeypatch.delenv("TORCH_NCCL_ASYNC_ERROR_HANDLING")
    monkeypatch.delenv("CONVZOO_COLLECTIVE_TIMEOUT_S", raising=False)
    return calls


def test_nccl_aborts_a_collective_a_peer_never_joins_after_the_timeout(init_arguments, monkeypatch, float32_math):
    """NCCL's default is to wait 10 minutes, then end the process with its kernels still
    spinning; convzoo's runs ask the watchdog to abort the communicator after two."""
    monkeypatch.setattr(runtime, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    setup = runtime.setup_runtime("cuda")
    (call,) = init_arguments
    assert call["backend"] == "nccl" and call["timeout"] == datetime.timedelta(seconds=runtime.COLLECTIVE_TIMEOUT_S)
    assert call["async_error_handling"] == runtime.NCCL_ERROR_HANDLING == "2"
    assert setup.distributed and setup.device == torch.device("cuda", 0)


@pytest.mark.parametrize("given, used", [("1", "2"), ("0", "0"), ("3", "3"), ("2", "2")])
def test_torchruns_nccl_error_handling_is_raised_to_clean_up_only(init_arguments, monkeypatch, float32_math,
                                                                  given, used):
    """torchrun puts 1 in every worker's environment (its process ends from NCCL's watchdog
    thread, silently); 2 lets the error reach Python, which names the resume command."""
    monkeypatch.setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", given)
    monkeypatch.setattr(runtime, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    runtime.setup_runtime("cuda")
    assert init_arguments[-1]["async_error_handling"] == used


def test_gloo_gets_the_timeout_and_a_users_settings_win(init_arguments, monkeypatch):
    monkeypatch.setenv("CONVZOO_COLLECTIVE_TIMEOUT_S", "7.5")
    runtime.setup_runtime("cpu")
    assert init_arguments[-1]["backend"] == "gloo" and init_arguments[-1]["timeout"] == datetime.timedelta(seconds=7.5)
    monkeypatch.setenv("CONVZOO_COLLECTIVE_TIMEOUT_S", "soon")
    with pytest.raises(ConvzooError, match="CONVZOO_COLLECTIVE_TIMEOUT_S must be a number of seconds"):
        runtime.setup_runtime("cpu")


def test_a_timed_out_collective_is_one_line_with_the_resume_command():
    """The words of NCCL's watchdog and gloo's timeouts: a peer never joined; the run can resume."""
    job = runtime.Runtime(torch.device("cpu"), rank=0, world_size=2)
    for message in ("Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9, OpType=ALLREDUCE) ran for "
                    "120000 milliseconds before timing out.",
                    "[gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 120000ms for recv operation"):
        error = runtime.failure_to_raise(job, RuntimeError(message), resume_hint="resume with --resume runs/x")
        assert str(error).startswith("rank 0: another process of the job did not join a collective within 120 s (")
        assert str(error).endswith("it died, was killed or hangs, and the job stops; resume with --resume runs/x.")


def torchrun(nproc: int, records: Path, fault: str, args: list[str], env: dict | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess:
    records.mkdir(parents=True, exist_ok=True)
    arguments = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                 str(WORKER), str(records), fault, "--", *args]
    # A session of its own, so that a hung job's workers go with their launcher.
    with subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, env={**os.environ, **(env or {})}) as launcher:
        try:
            stdout, stderr = launcher.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            for pid in records.glob("pid-rank*"):  # torchrun starts its workers in sessions of their own
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid.read_text()), signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(arguments, launcher.returncode, stdout, stderr)


def train_args(out: Path, name: str, *extra: str) -> list[str]:
    return ["train", "--model", "lenet5", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "16",
            "--set", "train_size=128", "--set", "test_size=32", "--device", "cpu", "--out", str(out),
            "--name", name, *extra]


@pytest.mark.slow
def test_one_process_under_torchrun_trains_in_a_process_group_with_ddp(tmp_path):
    """What one GPU can check of eight (the GPU check's ``--nproc-per-node 1`` step): the
    process group, DDP's gradient all-reduce, the end-of-run barrier. Here gloo on CPU."""
    completed = torchrun(1, tmp_path / "records", "none", train_args(tmp_path, "one", "--json"))
    assert completed.returncode == 0, completed.stderr
    (record,) = [json.loads(path.read_text()) for path in (tmp_path / "records").glob("rank*.json")]
    assert record["wrapped"] == [{"backend": "gloo", "world_size": 1}]
    assert json.loads(completed.stdout.strip().splitlines()[-1])["complete"]


@pytest.mark.slow
def test_a_peer_that_hangs_stops_the_job_within_the_timeout_with_one_line_saying_how_to_resume(tmp_path):
    """Rank 1 stops answering after the first mid-epoch last.pt. Rank 0's next collective
    fails after the timeout (20 s here; gloo's own is 30 minutes) with the resume command,
    and torchrun's SIGTERM then ends rank 1."""
    run_dir = tmp_path / "hung"
    try:
        completed = torchrun(2, tmp_path / "records", "hang", train_args(tmp_path, "hung", "--checkpoint-every", "2"),
                             env={"CONVZOO_COLLECTIVE_TIMEOUT_S": "20"}, timeout=150)
    except subprocess.TimeoutExpired:
        pytest.fail("the job still waited for its hung peer after 150 s")
    assert completed.returncode != 0
    records = {path.stem: json.loads(path.read_text()) for path in (tmp_path / "records").glob("rank*.json")}
    assert records["rank0"]["ended"] - records["rank1"]["hang_started"] < 20 + 30
    (line,) = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: rank 0: another process of the job did not join a collective within 20 s (")
    assert line.endswith(f"and the job stops; resume with --resume {run_dir}.")
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 2
