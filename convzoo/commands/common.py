"""What every command shares: ``--json`` / ``--debug`` options, one-line errors, output."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Annotated, Any, Iterator

import typer
from typer.core import TyperGroup

try:  # Typer >= 0.22 parses with its own copy of click: catch the errors of the one that parses
    from typer._click import exceptions as click_errors
except ImportError:
    from click import exceptions as click_errors

JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON object on stdout, nothing else.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
DataDirOption = Annotated[
    str | None,
    # No word longer than ~20 characters: rich cuts those with "…" in narrow help columns.
    typer.Option("--data-dir", help="Folder holding the datasets (default: $CONVZOO_DATA, else .cache/convzoo/data "
                                    "in your home folder)."),
]
ConvOption = Annotated[
    str | None,
    typer.Option("--conv", help="Convolution implementation: torch (cuDNN/oneDNN) or scratch (convzoo.ops)."),
]
DeviceOption = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or mps (auto: cuda > mps > cpu).")]
ChannelsLastOption = Annotated[bool | None, typer.Option(
    "--channels-last/--no-channels-last",
    help="Channels-last memory (default: where it measured faster: CUDA, and most models on CPU).")]
CompileOption = Annotated[bool | None, typer.Option(
    "--compile", help="torch.compile the model (inductor; the first step compiles).")]
CompileModeOption = Annotated[str | None, typer.Option(
    # No word longer than ~20 characters (see DataDirOption): the modes are listed in the error.
    "--compile-mode", help="torch.compile mode, e.g. reduce-overhead or max-autotune (implies --compile).")]


class OneLineUsageErrors(TyperGroup):
    """The ``convzoo`` group, printing usage errors as one line on stderr (exit 2).

    Typer draws usage errors (an unknown option, a value of the wrong type, a missing
    command) as multi-line boxes, and click suggests any option that is vaguely alike
    ("--bogus": "Possible options: --out"). A convzoo error is one line, so it fits a log
    and a script's ``2>`` alike, and it suggests a name only when one is close.
    """

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: ANN001, ANN201 - click's signature
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        with _one_line_usage_errors():
            return super().invoke(ctx)


CLOSE_MATCH = 0.75
"""How alike a mistyped name must be to a real one to be suggested (difflib's ratio)."""


def close_match(name: str, candidates: list[str]) -> str | None:
    """The one candidate close enough to ``name`` to be what the user meant, if any."""
    import difflib

    bare = {candidate.lstrip("-"): candidate for candidate in candidates}
    found = difflib.get_close_matches(name.lstrip("-"), list(bare), n=1, cutoff=CLOSE_MATCH)
    return bare[found[0]] if found else None


def usage_error_line(error: click_errors.UsageError) -> str:
    """A click usage error as one sentence naming what was wrong, the close name, and ``--help``."""
    ctx = error.ctx
    command = ctx.command_path if ctx is not None else "convzoo"
    if isinstance(error, click_errors.NoSuchOption):
        options = [name for param in (ctx.command.params if ctx else []) for name in param.opts if name.startswith("--")]
        suggestion = close_match(error.option_name, options)
        text = f"no such option {error.option_name}" + (f"; did you mean {suggestion}?" if suggestion else ".")
    elif ctx is not None and hasattr(ctx.command, "commands") and error.message.startswith("No such command"):
        typed = error.message.split("'")[1] if "'" in error.message else ""
        suggestion = close_match(typed, list(ctx.command.commands))
        text = f"no such command {typed!r}" + (f"; did you mean {suggestion!r}?" if suggestion else ".")
    else:
        text = error.format_message().replace("\n", " ").strip()
        if not text.endswith((".", "?")):
            text += "."
    return f"{text} See '{command} --help'."


@contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except click_errors.NoArgsIsHelpError:
        raise  # `convzoo` alone prints the help, as it should
    except click_errors.UsageError as error:
        fail(usage_error_line(error), exit_code=error.exit_code)


def fail(message: str, exit_code: int = 2) -> None:
    """Print one line on stderr and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(exit_code)


@contextmanager
def user_errors(debug: bool, interrupted: str = "files already written are kept") -> Iterator[None]:
    """Turn library errors into one-line messages (tracebacks only with ``--debug``).

    A ``ConvzooError`` is the user's to fix and carries its own advice; anything else is
    a bug or an environment problem, reported with its type and a pointer to ``--debug``.
    ``interrupted`` says what a Ctrl-C leaves behind, in the command's own terms.
    """
    from convzoo.errors import ConvzooError

    try:
        yield
    except typer.Exit:
        raise
    except ConvzooError as error:
        if debug:
            raise
        if getattr(error, "already_reported", False):
            raise typer.Exit(getattr(error, "exit_code", 1)) from None  # another torchrun rank printed the job's one line
        fail(str(error).replace("\n", " "), exit_code=getattr(error, "exit_code", 2))
    except KeyboardInterrupt:
        if debug:
            raise
        fail(f"interrupted; {interrupted}.", exit_code=130)
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
