"""The one place that decides the device and the process's rank, and how ranks agree.

Under ``torchrun`` (even with one process) or another launcher that sets ``WORLD_SIZE`` > 1,
each process joins the process group, takes the GPU of its ``LOCAL_RANK`` and trains a
DistributedDataParallel replica on its shard of the data; only rank 0 logs and writes
files. Started alone, it is rank 0 of 1 with no process group.

How a run ends: after success every rank waits at a barrier (rank 0 may still be writing
checkpoints), then the process group is destroyed by whoever created it (a script that
created its own keeps it). After a failure nothing collective runs (NCCL's teardown is
collective, and a peer may be waiting in an all-reduce that will never complete): the
first rank to fail says why in one line, the others stop quietly, and torchrun ends the job.
A collective that a peer never joins (it was killed, or hangs) fails after
``collective_timeout()`` instead of waiting for ever (gloo's default is 30 minutes, NCCL's 10).
"""

from __future__ import annotations

import datetime
import itertools
import os
from dataclasses import dataclass

import torch

from convzoo.errors import ConvzooError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_process_group: bool = False
    """Whether ``setup_runtime`` created the process group (and teardown destroys it)."""
    run: int = 0
    """How many distributed runtimes this process set up before this one: the same on every
    rank, since every rank runs the same script, so each run's failures are counted apart."""
    in_process_group: bool = False
    """Whether this process trains in a process group: under torchrun (with one process too,
    so that one GPU exercises what eight do: DDP, NCCL) or with ``WORLD_SIZE`` > 1."""
    float32_math_before: tuple[str, bool] | None = None
    """float32 matmul precision and cuDNN autotuning as they were before this runtime switched
    them (CUDA only; ``restore_float32_math`` puts them back)."""

    @property
    def is_main(self) -> bool:
        """Only the main process logs, prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.in_process_group or self.world_size > 1


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes cuda, then mps, then cpu; an unavailable choice is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConvzooError("--device cuda was asked for but no CUDA GPU is available. Use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConvzooError("--device mps was asked for but MPS is not available. Use --device cpu or auto.")
    if name not in ("cpu", "cuda", "mps"):
        raise ConvzooError(f"unknown device {name!r}. Use auto, cpu, cuda or mps.")
    return torch.device(name)


def use_fast_float32_math() -> tuple[str, bool]:
    """TF32 tensor cores for float32 matrix products (cuDNN's convolutions use them by
    default) and cuDNN's autotuner for the fixed shapes of a training run. Runs that
    leave bf16 autocast off train in float32 and would otherwise forgo both.

    Both are process-wide: returns the settings they replace, for ``restore_float32_math``.
    """
    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.benchmark = True
    return before


def restore_float32_math(runtime: Runtime) -> None:
    """Put back what ``setup_runtime`` switched for CUDA, so that a notebook or test that
    trains and then compares float32 results does not silently get TF32 products."""
    if runtime.float32_math_before is not None:
        precision, benchmark = runtime.float32_math_before
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.benchmark = benchmark


COLLECTIVE_TIMEOUT_S = 120.0
"""How long a rank waits in one collective for its peers (``$CONVZOO_COLLECTIVE_TIMEOUT_S``
overrides it). Longer than any wait of a healthy job here (rank 0 writing checkpoints or
downloading a dataset while the others wait, ranks compiling at different paces), far
shorter than torch's defaults (gloo 30 min, NCCL 10 min), so that a job whose peer died
or hangs ends within two minutes instead of holding its GPUs."""


def collective_timeout() -> datetime.timedelta:
    """``COLLECTIVE_TIMEOUT_S``, or ``$CONVZOO_COLLECTIVE_TIMEOUT_S`` seconds when set."""
    text = os.environ.get("CONVZOO_COLLECTIVE_TIMEOUT_S", "")
    try:
        seconds = float(text) if text else COLLECTIVE_TIMEOUT_S
    except ValueError:
        raise ConvzooError(f"CONVZOO_COLLECTIVE_TIMEOUT_S must be a number of seconds, got {text!r}.") from None
    if seconds <= 0:
        raise ConvzooError(f"CONVZOO_COLLECTIVE_TIMEOUT_S must be positive, got {text!r}.")
    return datetime.timedelta(seconds=seconds)


def launched_by_torchrun() -> bool:
    """torchrun (torch.distributed.run) sets ``TORCHELASTIC_RUN_ID`` in every process it starts."""
    return "TORCHELASTIC_RUN_ID" in os.environ


NCCL_ERROR_HANDLING = "2"
"""``TORCH_NCCL_ASYNC_ERROR_HANDLING`` for convzoo's NCCL jobs: 2, "clean up only"."""


def use_nccl_error_handling() -> None:
    """Let a survivor of a killed peer fail in Python, where it can say how to resume.

    A peer killed outright leaves the others' NCCL kernels spinning and their host threads
    blocked in a GPU sync. NCCL's watchdog ends a collective that outlives the process
    group's timeout; what it does then is ``TORCH_NCCL_ASYNC_ERROR_HANDLING``: 3 (torch's
    default) and 1 (torchrun's, which it puts in every worker's environment) end the process
    from the watchdog thread, so nothing is said; 2 aborts the communicator, which unblocks
    the stuck sync, and the error reaches the training loop as an exception, which
    ``failure_to_raise`` turns into one line with the resume command. Both 1 and 2 end the
    job, so 1 is raised to 2; a user's 0 or 3 is kept.
    """
    if os.environ.get("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1") == "1":
        os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = NCCL_ERROR_HANDLING


_distributed_runs = itertools.count()
"""Numbers the distributed runtimes of this process (``Runtime.run``)."""


def setup_runtime(device_name: str = "auto") -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world_size <= 1 and not launched_by_torchrun():
        return Runtime(device, float32_math_before=use_fast_float32_math() if device.type == "cuda" else None)
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            use_nccl_error_handling()
        dist.init_process_group(backend=backend, timeout=collective_timeout())
    # Switched once nothing here can fail, so that the caller holds a runtime to restore them from.
    float32_math_before = use_fast_float32_math() if device.type == "cuda" else None
    return Runtime(device, rank=rank, world_size=world_size, local_rank=local_rank, owns_process_group=owns,
                   run=next(_distributed_runs), in_process_group=True, float32_math_before=float32_math_before)


def barrier() -> None:
    """Wait for every rank (on NCCL, on this process's GPU rather than one NCCL guesses)."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over every rank of the job, in place."""
    import torch.distributed as dist

    dist.all_reduce(values)
    return values


def max_over_ranks(value: float, device: torch.device) -> float:
    """The largest ``value`` any rank holds (the slowest rank's epoch time sets the job's pace)."""
    import torch.distributed as dist

    largest = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    return largest.item()


def teardown_runtime(runtime: Runtime) -> None:
    """After a run that succeeded on every rank: wait until all are done (rank 0 may still
    be writing last.pt, best.pt and TensorBoard events), then destroy the process group if
    ``setup_runtime`` created it. Not after a failure (see ``failure_to_raise``)."""
    if runtime.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            barrier()
            if runtime.owns_process_group:
                dist.destroy_process_group()


class StoppedAfterAnotherRank(ConvzooError):
    """This rank stopped because another rank failed first and already said why."""

    already_reported = True
    """The CLI exits non-zero without a line of its own (``--debug`` still shows the traceback)."""


LOST_PEER_SIGNS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "remote process exited",
                   "Connection refused", "NCCL communicator was aborted")
"""Words of gloo's and NCCL's errors when a peer process is gone (killed, crashed, its machine lost)."""

TIMEOUT_SIGNS = ("Timed out waiting", "collective operation timeout", "timed out in blocking wait")
"""Words of gloo's and NCCL's errors when a collective outlived ``collective_timeout()``: a
peer never joined it (killed without a trace, or hanging)."""


def failure_to_raise(runtime: Runtime, error: BaseException, resume_hint: str = "") -> BaseException:
    """What this rank raises now that ``error`` stopped it.

    Alone: ``error`` itself. Under torchrun: the first rank of the job to fail raises a
    one-line ``ConvzooError`` naming itself (``rank 1: ...``); a later failure of the same
    run, usually a peer's collective breaking because that rank left, raises
    ``StoppedAfterAnotherRank``, so the job ends with one line that says why. A rank that
    died without a word (``kill -9``, out of memory) leaves its peers' collectives broken:
    the first of those says so, with ``resume_hint``. The process group is left as it is.
    """
    if not runtime.distributed or not isinstance(error, Exception):
        return error
    if not _first_failure_of_the_run(runtime.run):
        return StoppedAfterAnotherRank(f"rank {runtime.rank} stopped after another rank failed")
    message = str(error)
    lost_peer = next((sign for sign in LOST_PEER_SIGNS if sign in message), None)
    timed_out = next((sign for sign in TIMEOUT_SIGNS if sign in message), None)
    resume = f"; {resume_hint}" if resume_hint else ""
    if isinstance(error, ConvzooError):
        reason = message
    elif lost_peer is not None:
        reason = f"lost another process of the job ({lost_peer}): it died or was killed, and the job stops{resume}."
    elif timed_out is not None:
        reason = (f"another process of the job did not join a collective within {collective_timeout().total_seconds():g} s "
                  f"({timed_out}): it died, was killed or hangs, and the job stops{resume}.")
    else:
        text = message.strip().splitlines()[0] if message.strip() else ""
        reason = f"{type(error).__name__}: {text} (run again with --debug for the traceback)"
    return ConvzooError(f"rank {runtime.rank}: {reason}")


def _first_failure_of_the_run(run: int) -> bool:
    """Count this failure in the job's key-value store (under torchrun the launcher keeps it,
    so it outlives every rank); true for the run's first. A job torchrun restarts counts anew."""
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return _get_default_store().add(f"convzoo/failures/{attempt}/{run}", 1) == 1
    except Exception:  # noqa: BLE001 - no store to ask, or it left with its rank: better two lines than none
        return True
