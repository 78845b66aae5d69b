"""SIGINT and SIGTERM during training: finish the step, write ``last.pt``, then stop.

A cluster preempts a job with SIGTERM (torchrun forwards it to every worker and waits
30 s before SIGKILL); a person stops one with Ctrl-C. Either way the work since the last
checkpoint should not be lost, so the signal only raises a flag here; the training loop
reads it after a step, writes a mid-epoch ``last.pt`` and raises ``StoppedBySignal``.

Repeated signals change nothing: a job stopped by its scheduler gets SIGTERM both
directly and through torchrun, and a second signal must not abort the checkpoint the
first one asked for. ``kill -9`` remains for stopping at once.

torchrun, Slurm and ``timeout`` signal the whole process group, DataLoader workers
included, so while the training process catches SIGTERM its workers ignore it (else they
die, and the step the trainer wants to finish fails); the trainer ends them itself.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

from convzoo.errors import ConvzooError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppedBySignal(ConvzooError):
    """The run stopped on a signal after writing a resumable ``last.pt``."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number
        """The shell's convention for a process ended by a signal: 130 for SIGINT, 143 for SIGTERM."""


class StopSignals:
    """While entered, SIGINT and SIGTERM set ``received`` instead of ending the process.

    Only the main thread may install signal handlers; elsewhere (``train`` called from a
    thread) signals keep their usual effect, as do signals the process was started
    ignoring. The previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[int, object] = {}
        self._flagged_workers = False

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(number)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                if signal.getsignal(number) is signal.SIG_IGN:
                    continue  # ignored by whoever started the process (nohup, a shell's background job): it stays so
                self._previous[number] = signal.signal(number, self._handle)
            if _catching is not None:
                self._flagged_workers = True
                _catching.value += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._flagged_workers:
            _catching.value -= 1
            self._flagged_workers = False
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


_catching = None
"""How many ``StopSignals`` of this process are entered, in memory its DataLoader workers
share (``trainer_catches_sigterm``); None until a loader asks for it."""


def trainer_catches_sigterm():
    """The shared count that tells this process's DataLoader workers whether it is catching
    SIGTERM now: pass it to ``ignore_stop_signals`` (created before the workers start)."""
    global _catching
    if _catching is None:
        import multiprocessing

        _catching = multiprocessing.RawValue("i", 0)  # no lock: a signal handler reads it
    return _catching


def ignore_stop_signals(worker_id: int = 0, trainer_catching=None) -> None:
    """``worker_init_fn`` of DataLoader workers (``functools.partial`` it with
    ``trainer_catching=trainer_catches_sigterm()``).

    Ctrl-C reaches every process of the terminal's group, and torchrun, Slurm and
    ``timeout`` send SIGTERM to the whole group: a worker that died of either would fail
    the very step the training process wants to finish. So workers ignore SIGINT, and
    SIGTERM while the trainer catches it (it then ends its workers itself). Otherwise a
    SIGTERM ends the worker at once, as PyTorch's own worker handler does: ``multiprocessing``
    ends a process's leftover daemonic workers at exit with SIGTERM and then waits for
    them, so a worker deaf to it then would hang that exit forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_sigterm(number: int, frame: FrameType | None) -> None:
        if trainer_catching is not None and trainer_catching.value > 0:
            return
        os._exit(0)  # PyTorch's worker exits so, not by the signal, lest the trainer report a killed worker

    signal.signal(signal.SIGTERM, on_sigterm)
