"""What a run reports: progress on the terminal, ``metrics.jsonl`` and TensorBoard.

On a terminal, a rich progress bar shows loss, accuracy, learning rate and images/s.
Elsewhere (CI, a log file, ``--json``) there are no bars, only one plain line per epoch
on stderr, so logs stay readable and stdout stays free for the JSON result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def format_epoch_line(record: dict[str, Any]) -> str:
    return (
        f"epoch {record['epoch']}/{record['epochs']}  "
        f"train loss {record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%  "
        f"test loss {record['test_loss']:.4f} acc {100 * record['test_acc']:.2f}%  "
        f"lr {record['lr']:.3g}  {record['images_per_s']:,.0f} img/s  {record['epoch_time_s']:.1f}s"
    )


class EpochProgress:
    """A rich progress bar for one epoch's batches, or nothing when not on a terminal."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[stats]}"), transient=True, console=_stderr_console(),
            )
            self.progress.start()
            self.task = self.progress.add_task(description, total=total, stats="")

    def update(self, completed: int, stats: str | None = None) -> None:
        if self.progress is not None:
            fields = {"stats": stats} if stats is not None else {}
            self.progress.update(self.task, completed=completed, **fields)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class RunLogger:
    """Writes ``metrics.jsonl`` and TensorBoard events in the run folder (main process only)."""

    def __init__(self, run_dir: Path, enabled: bool, quiet: bool, progress_bars: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.quiet = quiet
        self.interactive = enabled and not quiet and progress_bars and sys.stderr.isatty()
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir))

    def progress(self, total: int, description: str) -> EpochProgress:
        return EpochProgress(self.interactive, total, description)

    def message(self, text: str) -> None:
        """A plain line on stderr (never stdout, which ``--json`` reserves)."""
        if self.enabled and not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def log_epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps(record) + "\n")
        step = record["epoch"]
        for key in ("train_loss", "test_loss"):
            self.writer.add_scalar(f"loss/{key.split('_')[0]}", record[key], step)
        self.writer.add_scalar("accuracy/train", record["train_acc"], step)
        self.writer.add_scalar("accuracy/test", record["test_acc"], step)
        self.writer.add_scalar("accuracy/test_top5", record["test_acc5"], step)
        self.writer.add_scalar("lr", record["lr"], step)
        self.writer.add_scalar("throughput/images_per_s", record["images_per_s"], step)
        self.writer.flush()
        if self.interactive:
            _stderr_console().print(format_epoch_line(record), highlight=False)
        else:
            self.message(format_epoch_line(record))

    def close(self, hparams: dict[str, Any] | None = None, metrics: dict[str, float] | None = None) -> None:
        if self.writer is None:
            return
        if hparams and metrics:
            flat = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
            self.writer.add_hparams(flat, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        self.writer.close()
