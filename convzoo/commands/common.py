"""What every command shares: ``--json`` / ``--debug`` options, one-line errors, output."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Annotated, Any, Iterator

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout, nothing else.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
DataDirOption = Annotated[
    str | None,
    typer.Option("--data-dir", help="Folder holding the datasets (default: $CONVZOO_DATA, else ~/.cache/convzoo/data)."),
]
ConvOption = Annotated[
    str | None,
    typer.Option("--conv", help="Convolution implementation: torch (cuDNN/oneDNN) or scratch (convzoo.ops)."),
]
DeviceOption = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps (auto: cuda > mps > cpu).")]


def fail(message: str, exit_code: int = 2) -> None:
    """Print one line on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(exit_code)


@contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Turn library errors into one-line messages (tracebacks only with ``--debug``).

    A ``ConvzooError`` is the user's to fix and carries its own advice; anything else is
    a bug or an environment problem, reported with its type and a pointer to ``--debug``.
    """
    from convzoo.errors import ConvzooError

    try:
        yield
    except typer.Exit:
        raise
    except ConvzooError as error:
        if debug:
            raise
        fail(str(error).replace("\n", " "))
    except KeyboardInterrupt:
        if debug:
            raise
        fail("interrupted; files already written (checkpoints of completed epochs) are kept.", exit_code=130)
    except Exception as error:  # noqa: BLE001 - last line of defence for a CLI
        if debug:
            raise
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        fail(f"{type(error).__name__}: {text} (run again with --debug for the traceback).", exit_code=1)


def is_main_process() -> bool:
    """Under ``torchrun`` only rank 0 prints results, so stdout holds one answer."""
    import os

    return os.environ.get("RANK", "0") == "0"


def print_json(payload: dict[str, Any]) -> None:
    """The one JSON object a ``--json`` command prints."""
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()
