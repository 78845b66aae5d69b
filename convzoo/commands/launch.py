"""``convzoo train --nproc-per-node N``: the command starts torchrun on itself.

The process is replaced (``exec``) by ``python -m torch.distributed.run --standalone
--nproc-per-node N -m convzoo train ARGS``, ARGS being the options given minus
``--nproc-per-node``: signals (Ctrl-C, a scheduler's SIGTERM) then reach torchrun as if
the user had started it, and its exit status is the command's. Several machines need
torchrun's own rendezvous flags (``--nnodes``, ``--rdzv-endpoint``): see the README.
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


def relaunch_under_torchrun(command: str, args: list[str], nproc_per_node: int) -> NoReturn:
    """Replace this process with torchrun starting ``nproc_per_node`` copies of
    ``convzoo COMMAND ARGS`` on this machine."""
    if "WORLD_SIZE" in os.environ:
        raise ConvzooError(
            "--nproc-per-node starts torchrun itself, but this process already runs under torchrun (WORLD_SIZE is "
            "set). Drop --nproc-per-node, or start convzoo without torchrun."
        )
    if nproc_per_node < 1:
        raise ConvzooError(f"--nproc-per-node must be at least 1, got {nproc_per_node}.")
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc_per_node),
            "-m", "convzoo", command, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
