"""``convzoo train --nproc-per-node N``: the command starts torchrun on itself.

It runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m convzoo
train ARGS`` (ARGS: the options given minus ``--nproc-per-node``), after checking them as
a one-process run would, so a mistake is one line before any process starts. What the
workers print reaches the screen; torchrun's own lines (its logging, and the traceback
of its ``ChildFailedError`` that follows any failure of a worker) go to ``torchrun.log``
in the run folder. The workers mark each line they print (``CONVZOO_STDERR_TAG``), so the
two can be told apart. The command exits with the status rank 0 exited with, as the
one-process run would (2 for an error, 130 for Ctrl-C), not torchrun's 1. torchrun runs in
a session of its own, and a Ctrl-C or SIGTERM reaches it once, through this process:
torchrun passes it to the workers, which stop after their step with a last.pt.
Several machines need torchrun's own rendezvous flags (``--nnodes``,
``--rdzv-endpoint``): see the README.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from convzoo.errors import ConvzooError


def command_line_of(ctx: Any, leave_out: set[str]) -> list[str]:
    """The options of the running click/Typer command as given on the command line (not
    defaults), rebuilt from the parsed values: callers inside Python (tests, notebooks)
    have no ``sys.argv`` of their own to copy."""
    args: list[str] = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.name in leave_out or source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            if value:
                args.append(param.opts[0])
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
        elif getattr(param, "multiple", False):
            for item in value:
                args.extend([param.opts[0], str(item)])
        else:
            args.extend([param.opts[0], str(value)])
    return args


STDERR_TAG = "CONVZOO_STDERR_TAG"


def run_under_torchrun(command: str, args: list[str], nproc_per_node: int) -> NoReturn:
    """Run ``nproc_per_node`` copies of ``convzoo COMMAND ARGS`` on this machine under
    torchrun and exit as rank 0 did."""
    import secrets
    import signal
    import subprocess
    import tempfile
    from pathlib import Path

    from convzoo.engine.run_dir import RUN_DIR_FILE

    if "WORLD_SIZE" in os.environ:
        raise ConvzooError(
            "--nproc-per-node starts torchrun itself, but this process already runs under torchrun (WORLD_SIZE is "
            "set). Drop --nproc-per-node, or start convzoo without torchrun."
        )
    if nproc_per_node < 1:
        raise ConvzooError(f"--nproc-per-node must be at least 1, got {nproc_per_node}.")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc_per_node),
            "-m", "convzoo", command, *args]
    tag = f"\x1e{secrets.token_hex(4)}\x1e"
    handle, log_name = tempfile.mkstemp(prefix="convzoo-torchrun-", suffix=".log")
    os.close(handle)
    log_path = Path(log_name)
    run_dir_file = log_path.with_suffix(".run_dir")
    environment = dict(os.environ, **{STDERR_TAG: tag, RUN_DIR_FILE: str(run_dir_file)})
    sys.stdout.flush()
    sys.stderr.flush()
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, env=environment, start_new_session=True)
    received: list[int] = []

    def forward(signal_number: int, frame: object) -> None:
        received.append(signal_number)
        process.send_signal(signal_number)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    workers_said_error = False
    try:
        with open(log_path, "ab") as log:
            for raw in process.stderr:
                if raw.startswith(tag.encode()):
                    line = raw[len(tag.encode()):]
                    workers_said_error |= line.startswith(b"error:")
                    sys.stderr.buffer.write(line)
                    sys.stderr.buffer.flush()
                else:
                    log.write(raw)
                    log.flush()
        code = process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    log_text = log_path.read_text(errors="replace")
    kept = _keep_log(log_path, run_dir_file)
    if code == 0:
        raise SystemExit(0)
    if received:
        raise SystemExit(128 + received[0])
    exit_code = _job_exit_code(log_text, code)
    if not workers_said_error:
        print(f"error: the torchrun job failed (exit code {exit_code}) without a message; torchrun's log: {kept}",
              file=sys.stderr)
    raise SystemExit(exit_code)


def _job_exit_code(log_text: str, torchrun_code: int) -> int:
    """The status a one-process run would have ended with, from torchrun's failure summary
    (``rank : R`` then ``exitcode : N`` per failed rank). torchrun itself always exits 1.
    The rank that met the error exits with its status (2 for a usage error); the others
    exit 1 or are ended by torchrun's SIGTERM, so a status other than those wins, rank 0's
    first; else the first failure's."""
    import re

    found = [(int(rank), int(code)) for rank, code in
             re.findall(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", log_text)]
    meaningful = sorted((rank, code) for rank, code in found if code > 1)
    if meaningful:
        return meaningful[0][1]
    if found and found[-1][1] != 0:
        code = found[-1][1]  # the root cause, listed last
        return 128 - code if code < 0 else code  # a negative code: killed by that signal
    return torchrun_code or 1


def _keep_log(log_path, run_dir_file):
    """torchrun's log into the run folder (``torchrun.log``) when rank 0 named one, else
    left in the temporary folder; returns where it is."""
    import shutil
    from pathlib import Path

    try:
        run_dir = Path(run_dir_file.read_text().strip())
        run_dir_file.unlink()
        if run_dir.is_dir():
            return Path(shutil.move(str(log_path), run_dir / "torchrun.log"))
    except OSError:
        pass
    return log_path


def tag_stderr_for_launcher() -> None:
    """In a worker started by ``run_under_torchrun``: mark every line printed on stderr so
    the launcher shows it (C-level output, which bypasses ``sys.stderr``, goes to the log)."""
    tag = os.environ.get(STDERR_TAG)
    if tag and not isinstance(sys.stderr, _TaggedLines):
        sys.stderr = _TaggedLines(sys.stderr, tag)


class _TaggedLines:
    """A text stream that writes ``tag`` before every line it passes on."""

    def __init__(self, stream, tag: str) -> None:
        self._stream, self._tag, self._at_line_start = stream, tag, True

    def write(self, text: str | bytes) -> int:
        if isinstance(text, (bytes, bytearray)):  # click writes bytes to a stream it does not know as text
            text = bytes(text).decode(getattr(self._stream, "encoding", None) or "utf-8", errors="replace")
        pieces = []
        for piece in text.splitlines(keepends=True):
            pieces.append(self._tag + piece if self._at_line_start else piece)
            self._at_line_start = piece.endswith("\n")
        self._stream.write("".join(pieces))
        return len(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
