"""``convzoo summary``: a model layer by layer, with receptive fields, or several models compared."""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import ConvOption, DebugOption, JsonOption, print_json, user_errors


def summary_command(
    model: Annotated[list[str], typer.Option("--model", "-m", help="Registered model name; repeat to compare models.")],
    input_size: Annotated[
        tuple[int, int, int] | None,
        typer.Option("--input-size", help="Input C H W (default: the model's, e.g. 3 224 224, or --dataset's)."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Build the model for this dataset's images and classes.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Batch size of the input (default 1; -1 in the classic table).")
    ] = None,
    depth: Annotated[int, typer.Option("--depth", min=0, help="Depth of nested modules to show.")] = 3,
    columns: Annotated[
        list[str] | None,
        typer.Option("--columns", help="Columns to show, comma-separated or repeated: input_shape, output_shape, params, "
                     "params_percent, kernel_size, mult_adds, trainable, receptive_field, jump, start."),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table, torchsummary (the classic table of the lectures), markdown or csv.")
    ] = "table",
    train_mode: Annotated[
        bool, typer.Option("--train-mode", help="Summarise the training graph (e.g. GoogLeNet's auxiliary heads).")
    ] = False,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show a model layer by layer: output shapes, parameters, multiply-adds and receptive fields.

    Below the table: parameters, multiply-adds, weight layers on the longest path, the receptive field before global pooling, and memory in MB (2^20 bytes) computed as the classic torchsummary did. Several --model flags print one comparison row per model. Weights are never initialised and no GPU is touched.

    Examples: [bold]convzoo summary --model resnet50[/bold] · [bold]convzoo summary --model lenet5 --format torchsummary[/bold] · [bold]convzoo summary -m vgg16 -m resnet50 -m densenet121[/bold]
    """
    with user_errors(debug):
        from convzoo.errors import ConvzooError
        from convzoo.summary import FORMATS, check_columns, format_comparison, format_summary, summarize

        if output_format not in FORMATS:
            raise ConvzooError(f"unknown format {output_format!r}: use one of {', '.join(FORMATS)}.")
        check_columns(columns)
        if output_format == "torchsummary" and len(model) > 1:
            raise ConvzooError("--format torchsummary prints one model's classic table; compare several --model flags "
                               "with --format table, markdown or csv, or pass one --model.")
        if columns and len(model) > 1:
            raise ConvzooError(
                "--columns chooses the columns of one model's layer table; a comparison of several --model flags "
                "has fixed columns (parameters, multiply-adds, weight layers, receptive field, size). "
                "Drop --columns, or pass one --model."
            )
        summaries = [
            summarize(name, input_size, dataset=dataset, batch_size=batch_size, depth=depth,
                      train_mode=train_mode, conv=conv or "torch")
            for name in model
        ]
        if json_output:
            print_json(summaries[0].to_dict() if len(summaries) == 1
                       else {"models": [summary.comparison_row() for summary in summaries]})
        elif len(summaries) == 1:
            typer.echo(format_summary(summaries[0], output_format, columns))
        else:
            typer.echo(format_comparison(summaries, output_format))
