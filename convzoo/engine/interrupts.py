"""SIGINT and SIGTERM during training: finish the step, write ``last.pt``, then stop.

A cluster preempts a job with SIGTERM (torchrun forwards it to every worker and waits
30 s before SIGKILL); a person stops one with Ctrl-C. Either way the work since the last
checkpoint should not be lost, so the signal only raises a flag here; the training loop
reads it after a step, writes a mid-epoch ``last.pt`` and raises ``StoppedBySignal``.

Repeated signals change nothing: a job stopped by its scheduler gets SIGTERM both
directly and through torchrun, and a second signal must not abort the checkpoint the
first one asked for. ``kill -9`` remains for stopping at once.
"""

from __future__ import annotations

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

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(number)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                if signal.getsignal(number) is signal.SIG_IGN:
                    continue  # ignored by whoever started the process (nohup, a shell's background job): it stays so
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of DataLoader workers: Ctrl-C reaches every process of the
    terminal's group, and a worker that died of it would fail the very step the training
    process wants to finish, so workers ignore SIGINT. Not SIGTERM: ``multiprocessing``
    ends a process's leftover daemonic workers at exit with SIGTERM and then waits for
    them, so a worker deaf to it would hang that exit forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
