"""What a run reports: progress on the terminal, ``metrics.jsonl`` and TensorBoard.

On a terminal, a rich progress bar shows loss, accuracy, learning rate and images/s.
Elsewhere (CI, a log file, ``--json``) there are no bars: a plain line on stderr every
``log_interval`` steps or 30 s, and one per epoch (``--quiet``: the epoch lines only), so
logs stay readable and stdout stays free for the JSON result.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def format_epoch_line(record: dict[str, Any], task: Any = None) -> str:
    """One epoch's line; the test numbers as ``task`` (default: classification) describes them."""
    if task is None:
        from convzoo.tasks.classification import Classification

        task = Classification()
    parts = [f"epoch {record['epoch']}/{record['epochs']}",
             f"train loss {record['train_loss']:.4f}"
             + (f" acc {100 * record['train_acc']:.2f}%" if "train_acc" in record else "")
             + (f" ({record['train_acc_of']})" if "train_acc_of" in record else ""),
             f"test {task.describe(record, 'test')}"]
    if "better" in record:  # --ema
        parts.append(f"ema {task.describe(record, 'ema_test')}")
    parts.append(f"lr {record['lr']:.3g}  {record['images_per_s']:,.0f} img/s  {record['epoch_time_s']:.1f}s")
    return "  ".join(parts)


class EpochProgress:
    """Progress through one epoch's batches: a rich bar on a terminal, plain lines elsewhere.

    Off a terminal (a log file, CI, a cluster's job output) a run must not look dead for a
    whole epoch, so a plain line is printed every ``log_interval`` steps or every
    ``line_seconds``, whichever comes first, with the step, running loss and accuracy,
    learning rate, images/s and the epoch's ETA. ``mode`` is ``bar``, ``lines`` or ``off``.
    The loop asks ``due(step)`` before computing the numbers, since reading them off the
    device is a host synchronisation it should not pay on every step.
    """

    def __init__(self, mode: str, total: int, description: str, log_interval: int = 50,
                 line_seconds: float = 30.0, start: int = 0) -> None:
        import time

        self.mode, self.total, self.description, self.start = mode, total, description, start
        self.log_interval, self.line_seconds = max(1, log_interval), line_seconds
        self.started = self.last_line = time.perf_counter()
        self.progress = None
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[stats]}"), transient=True, console=_stderr_console(),
            )
            self.progress.start()
            self.task = self.progress.add_task(description, total=total, completed=start, stats="")

    def due(self, step: int) -> bool:
        """Whether the 0-based ``step`` just finished should be reported."""
        if self.mode == "bar":
            return step % 10 == 0 or step + 1 == self.total
        if self.mode != "lines" or step + 1 >= self.total:  # the epoch's own line follows the last step
            return False
        import time

        return (step + 1) % self.log_interval == 0 or time.perf_counter() - self.last_line >= self.line_seconds

    def update(self, completed: int, stats: str | None = None) -> None:
        if self.progress is not None:
            fields = {"stats": stats} if stats is not None else {}
            self.progress.update(self.task, completed=completed, **fields)
        elif self.mode == "lines":
            import time

            now = time.perf_counter()
            self.last_line = now
            remaining = (now - self.started) / max(completed - self.start, 1) * (self.total - completed)
            print(f"{self.description}  step {completed}/{self.total}  {stats or ''}  ETA {_duration(remaining)}",
                  file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A line about the epoch in progress (a checkpoint written), where steps are shown."""
        if self.mode == "lines":
            print(f"{self.description}  {text}", file=sys.stderr, flush=True)
        elif self.progress is not None:
            self.progress.console.print(f"{self.description}  {text}", highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def append_line(path: Path, line: str) -> None:
    """Append ``line`` and its newline whole or not at all: a write a full disk cuts short
    is undone (the file is cut back to its size before), so ``metrics.jsonl`` never ends in
    half a line from this process (a power cut still can: resuming drops such a line)."""
    data = (line + "\n").encode()
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size_before = os.fstat(handle).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(handle, data[written:])
        except BaseException:
            os.ftruncate(handle, size_before)
            raise
    finally:
        os.close(handle)


class RunLogger:
    """Writes ``metrics.jsonl`` and TensorBoard events in the run folder (main process only)."""

    def __init__(self, run_dir: Path, enabled: bool, quiet: bool, progress_bars: bool = True,
                 step_lines: bool = True, log_interval: int = 50, task: Any = None) -> None:
        self.run_dir = run_dir
        if task is None:
            from convzoo.tasks.classification import Classification

            task = Classification()
        self.task = task
        self.enabled = enabled
        self.quiet = quiet
        self.interactive = enabled and not quiet and progress_bars and sys.stderr.isatty()
        self.step_lines = enabled and not quiet and step_lines and not self.interactive
        self.log_interval = log_interval
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir))

    def progress(self, total: int, description: str, start: int = 0) -> EpochProgress:
        """An epoch's progress; ``start``: the steps done before (an epoch resumed within)."""
        mode = "bar" if self.interactive else "lines" if self.step_lines else "off"
        return EpochProgress(mode, total, description, self.log_interval, start=start)

    def message(self, text: str) -> None:
        """A plain line on stderr (never stdout, which ``--json`` reserves)."""
        if self.enabled and not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def log_epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_line(self.run_dir / "metrics.jsonl", json.dumps(record))
        step = record["epoch"]
        for key in ("train_loss", "test_loss"):
            if record.get(key) is not None:  # a detector's evaluation has no loss
                self.writer.add_scalar(f"loss/{key.split('_')[0]}", record[key], step)
        for tag, value in self.task.scalars(record).items():
            self.writer.add_scalar(tag, value, step)
        self.writer.add_scalar("lr", record["lr"], step)
        for block, rate in record.get("lr_blocks", {}).items():  # fine-tuning's per-block rates
            self.writer.add_scalar(f"lr/{block}", rate, step)
        self.writer.add_scalar("throughput/images_per_s", record["images_per_s"], step)
        self.writer.flush()
        if self.interactive:
            _stderr_console().print(format_epoch_line(record, self.task), highlight=False)
        else:
            self.message(format_epoch_line(record, self.task))

    def close(self, hparams: dict[str, Any] | None = None, metrics: dict[str, float] | None = None) -> None:
        if self.writer is None:
            return
        if hparams and metrics:
            flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
            self.writer.add_hparams(flat, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        self.writer.close()
