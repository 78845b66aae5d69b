"""Checkpoints within an epoch: when to write one, what it holds beyond an epoch end's,
and where a resumed run starts.

An epoch-end ``last.pt`` needs nothing but model, optimiser and epoch, since every draw
of the next epoch follows from (seed, epoch, step, rank). A mid-epoch one adds the
position (``step``: steps done in the epoch, the same on every rank) and each rank's
running loss/accuracy sums, so that the epoch's logged numbers are those of an
uninterrupted run. The data order and augmentation restart at ``step`` by themselves
(``set_epoch(epoch, start_step)``); dropout is reseeded every step, so no generator
state is stored and the checkpoint resumes on a machine with any GPUs.

The position is per-rank (each rank's shard of the epoch's order): a mid-epoch
checkpoint resumed with another number of processes restarts its epoch from the start,
with the mid-epoch weights. A run stopped at an epoch's end writes its ``last.pt`` at the
epoch's last step, before evaluating; resumed, with any number of processes, it trains
no step of that epoch again and evaluates it first.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from convzoo.config import parse_checkpoint_every
from convzoo.engine.interrupts import StopSignals
from convzoo.engine.runtime import Runtime

AGREE_EVERY_ON_CUDA = 10
"""Under torchrun on GPUs, ranks agree on stopping (and on time-based checkpoints) every
this many steps: reading the agreed flag waits for the GPU, which would otherwise run
ahead of the host. On CPU (gloo) they agree after every step, which costs little."""


class CheckpointSchedule:
    """Decides after each step whether to write ``last.pt`` and whether to stop, alike on
    every rank: steps are counted alike everywhere; the clock and signals are rank 0's
    and each rank's own, so under torchrun the ranks agree on them with one all-reduce."""

    def __init__(self, checkpoint_every: int | str | None, runtime: Runtime, signals: StopSignals) -> None:
        self.every_steps, every_minutes = parse_checkpoint_every(checkpoint_every) if checkpoint_every else (None, None)
        self.every_seconds = None if every_minutes is None else 60.0 * every_minutes
        self.runtime, self.signals = runtime, signals
        self.agree_every = AGREE_EVERY_ON_CUDA if runtime.device.type == "cuda" else 1
        self.last_written = time.monotonic()

    def written(self) -> None:
        """A checkpoint was just written (mid-epoch or at an epoch end): the clock restarts."""
        self.last_written = time.monotonic()

    def after_step(self, global_step: int) -> tuple[bool, bool]:
        """``(write, stop)`` after the run's ``global_step``-th step (1-based)."""
        write = self.every_steps is not None and global_step % self.every_steps == 0
        time_due = self.every_seconds is not None and time.monotonic() - self.last_written >= self.every_seconds
        stop = self.signals.received is not None
        if self.runtime.distributed:
            if global_step % self.agree_every != 0:
                return write, False
            time_due, stop = self.agree(time_due, stop)
        return write or time_due or stop, stop

    def agree(self, time_due: bool, stop: bool) -> tuple[bool, bool]:
        """Rank 0's clock decides a time-based checkpoint; any rank's signal stops all."""
        import torch.distributed as dist

        flags = torch.tensor([float(time_due and self.runtime.is_main), float(stop)], device=self.runtime.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        time_due, stop = (bool(value) for value in flags.tolist())
        return time_due, stop


def gather_running_sums(loss_sum: torch.Tensor, correct: torch.Tensor, runtime: Runtime) -> dict[str, torch.Tensor]:
    """Every rank's running loss and correct-count sums, in rank order, on the CPU (a
    collective: every rank calls it at the same step)."""
    if not runtime.distributed:
        return {"loss_sum": loss_sum.detach().cpu().reshape(1), "correct": correct.detach().cpu().reshape(1)}
    import torch.distributed as dist

    losses = [torch.zeros_like(loss_sum) for _ in range(runtime.world_size)]
    corrects = [torch.zeros_like(correct) for _ in range(runtime.world_size)]
    dist.all_gather(losses, loss_sum.detach())
    dist.all_gather(corrects, correct.detach())
    return {"loss_sum": torch.stack(losses).cpu(), "correct": torch.stack(corrects).cpu()}


def resume_position(checkpoint: dict[str, Any] | None, runtime: Runtime, steps_per_epoch: int
                    ) -> tuple[int, str | None]:
    """The step of its epoch a run continues from, and a line to show when that is not the
    checkpoint's (another number of processes: each rank's position in its shard no longer
    exists) or when the epoch was trained in full and only its evaluation is left (a run
    stopped at an epoch's end writes last.pt before evaluating)."""
    if checkpoint is None or not checkpoint.get("step"):
        return 0, None
    if checkpoint["step"] == checkpoint.get("steps_per_epoch"):
        return steps_per_epoch, (f"epoch {checkpoint['epoch'] + 1} was trained in full before the run stopped; "
                                 "evaluating it, then going on")
    saved_world = int(checkpoint.get("world_size", 1))
    if saved_world != runtime.world_size:
        return 0, (
            f"last.pt was written at step {checkpoint['step']} of epoch {checkpoint['epoch'] + 1} by {saved_world} "
            f"process(es); with {runtime.world_size}, epoch {checkpoint['epoch'] + 1} restarts from its first step "
            "(from the saved weights)."
        )
    return int(checkpoint["step"]), None


def restored_running_sums(checkpoint: dict[str, Any] | None, start_step: int, runtime: Runtime,
                          hits_dtype: torch.dtype = torch.long) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """This rank's ``(loss_sum, correct, seen, epoch_seconds)`` at ``start_step``: zeros at
    an epoch's start, the saved sums when continuing within one. ``correct`` counts the
    task's training hits in ``hits_dtype`` (labels: a count; pixels: fractions of images)."""
    device = runtime.device
    zeros = (torch.zeros((), device=device), torch.zeros((), device=device, dtype=hits_dtype), 0)
    if start_step == 0:
        return (*zeros, 0.0)
    running = checkpoint["running"]
    saved_world = len(running["loss_sum"])
    if saved_world != runtime.world_size:
        # An epoch trained in full by another number of processes (resume_position restarts
        # any other): rank 0 takes the job's sums, so that the sums over the ranks are the epoch's.
        if runtime.rank != 0:
            return (*zeros, float(running["epoch_time_s"]))
        return (running["loss_sum"].sum().to(device), running["correct"].sum().to(device),
                int(running["seen"]) * saved_world, float(running["epoch_time_s"]))
    return (running["loss_sum"][runtime.rank].to(device), running["correct"][runtime.rank].to(device),
            int(running["seen"]), float(running["epoch_time_s"]))
