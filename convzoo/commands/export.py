"""``convzoo export``: a trained model as ONNX, TorchScript, ExportedProgram or safetensors."""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import ConvOption, DataDirOption, DebugOption, JsonOption, print_json, user_errors
from convzoo.commands.inspect_options import CheckpointOption, ModelOption, WeightsOption


def export_command(
    export_format: Annotated[str, typer.Option("--format", "-f", help="onnx, torchscript, exported-program or safetensors.")],
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="Export --model with random weights.")] = False,
    weights: WeightsOption = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="File to write (default: beside the checkpoint, e.g. runs/x/best.onnx).")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset version.")] = 17,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--static-batch", help="Any batch size (checked at 1 and 7), or batch 1 only.")] = True,
    exporter: Annotated[str, typer.Option("--exporter", help="ONNX exporter: auto (TorchScript-based, dynamo where it cannot), torchscript or dynamo.")] = "auto",
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Export a model and check the file against the eager model (max abs difference).

    The exported model takes normalised images, as the eager one; mean, std, class names
    and input size are in the file's metadata. ONNX needs the extra: pip install -e ".[export]".

    Examples:
      [bold]convzoo export --checkpoint runs/lenet5-mnist/best.pt --format onnx[/bold]
      [bold]convzoo export --checkpoint runs/lenet5-mnist/best.pt --format safetensors --out lenet5.safetensors[/bold]
      [bold]convzoo predict --weights lenet5.safetensors digit.png[/bold]
    """
    with user_errors(debug):
        from convzoo.deploy.export import export_model
        from convzoo.inspection import resolve_model_source

        source = resolve_model_source(checkpoint=checkpoint, model=model, random_init=random_init, weights=weights,
                                      data_dir=data_dir, conv=conv)
        result = export_model(source, export_format, out, opset=opset, dynamic_batch=dynamic_batch, exporter=exporter)
        if json_output:
            print_json(result.to_dict())
            return
        for note in result.notes:
            typer.echo(f"note: {note}")
        batches = " and ".join(str(n) for n in result.checked_batches)
        batch = "" if result.format == "safetensors" else f", {'dynamic' if result.dynamic_batch else 'static'} batch"
        typer.echo(f"{result.model} -> {result.path} ({result.format}, {result.size_bytes / 1e6:.2f} MB{batch}) "
                   f"in {result.export_time_s:.1f}s; "
                   f"max abs difference against eager at batch {batches}: {result.max_abs_diff:.2e} "
                   f"(tolerance {result.tolerance:.1e})")
