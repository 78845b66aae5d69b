"""The ``convzoo`` command line: a thin Typer shell over the library.

Each command lives in ``convzoo/commands/<name>.py``; this module only assembles them.
Nothing imported here touches torch, so ``convzoo --help`` answers at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import OneLineUsageErrors
from convzoo.commands import evaluate as evaluate_command
from convzoo.commands import list_models as list_command
from convzoo.commands import probe as probe_command
from convzoo.commands import summary as summary_command
from convzoo.commands import train as train_command
from convzoo.commands import visualize as visualize_command

app = typer.Typer(
    name="convzoo",
    cls=OneLineUsageErrors,
    help="Train, inspect and probe the classic convolutional networks: LeNet-5 to BagNet.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)

def _print_version(value: bool) -> None:
    if value:
        from convzoo import __version__

        typer.echo(f"convzoo {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", help="Print convzoo's version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    pass  # the group's options; its help is the Typer's above


app.command("list")(list_command.list_models_command)
app.command("train")(train_command.train_command)
app.command("eval")(evaluate_command.eval_command)
app.command("probe")(probe_command.probe_command)
app.command("summary")(summary_command.summary_command)
# Commands added by later modules register here, one line each.
app.add_typer(visualize_command.visualize_app, name="visualize")
from convzoo.commands import export as export_command, predict as predict_command  # noqa: E402
app.command("predict")(predict_command.predict_command)
app.command("export")(export_command.export_command)
from convzoo.commands import bench as bench_command  # noqa: E402
app.command("bench")(bench_command.bench_command)
from convzoo.commands import attack as attack_command, explain as explain_command  # noqa: E402
app.command("explain")(explain_command.explain_command)
app.command("attack")(attack_command.attack_command)


def main() -> None:
    from convzoo.commands.launch import tag_stderr_for_launcher

    tag_stderr_for_launcher()  # a worker of `train --nproc-per-node`: its lines reach the screen
    app()


if __name__ == "__main__":
    main()
