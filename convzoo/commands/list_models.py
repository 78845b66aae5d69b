"""``convzoo list``: the registered models with family, paper, parameters and input size."""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import DebugOption, JsonOption, print_json, user_errors


def list_models_command(
    pattern: Annotated[str, typer.Argument(help="Shell wildcard on model names, e.g. 'resnet*'.")] = "*",
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List registered models: family, task, paper, parameter count and default input size; for
    one model, also its default training recipe (`--json`: every model's, under "recipe").

    Example: [bold]convzoo list 'vgg*'[/bold]
    """
    with user_errors(debug):
        from convzoo.model_catalog import catalog_rows

        rows = catalog_rows(pattern)
        if json_output:
            print_json({"models": rows})
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"convzoo models matching {pattern!r}" if pattern != "*" else "convzoo models")
        for column, justify in (("name", "left"), ("family", "left"), ("task", "left"), ("paper", "left"), ("parameters", "right"), ("input", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in rows:
            channels, height, width = row["input_size"]
            table.add_row(row["name"], row["family"], row["task"], row["paper"], f"{row['params']:,}", f"{channels}x{height}x{width}")
        Console().print(table)
        if len(rows) == 1:
            # One model: its default training recipe, what `convzoo train --model NAME` uses.
            values = dict(rows[0]["recipe"])
            source = values.pop("source")
            typer.echo(f"default recipe ({source}):\n  " + ", ".join(f"{key} {value}" for key, value in values.items()))
