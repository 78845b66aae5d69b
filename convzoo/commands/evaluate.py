"""``convzoo eval``: accuracy and loss of a checkpoint on a test split."""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import (
    ChannelsLastOption, CompileModeOption, CompileOption, ConvOption, DataDirOption, DebugOption, DeviceOption,
    JsonOption, print_json, user_errors,
)


def eval_command(
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="A run's best.pt or last.pt (or the run folder).")],
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Evaluate on this dataset's test split (default: the one trained on).")] = None,
    data_dir: DataDirOption = None,
    per_class: Annotated[bool, typer.Option("--per-class", help="Also report accuracy (IoU for segmentation) per class.")] = False,
    device: DeviceOption = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Evaluation batch size.")] = None,
    conv: ConvOption = None,
    channels_last: ChannelsLastOption = None,
    compile_model: CompileOption = None,
    compile_mode: CompileModeOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Evaluate a checkpoint on the test split: top-1, top-5 and loss (segmentation: pixel accuracy, mIoU).

    Example: [bold]convzoo eval --checkpoint runs/lenet5-mnist/best.pt --per-class[/bold]
    """
    with user_errors(debug):
        from convzoo.engine.evaluate import evaluate_checkpoint

        result = evaluate_checkpoint(
            checkpoint, dataset=dataset, data_dir=data_dir, per_class=per_class,
            device=device or "auto", conv=conv, batch_size=batch_size, channels_last=channels_last,
            compile=bool(compile_model), compile_mode=compile_mode,
        )
        if "note" in result:
            typer.echo(f"note: {result['note']}", err=True)
        if json_output:
            print_json(result)
            return
        from convzoo.tasks import get_task

        for line in get_task(result["task"]).eval_lines(result):
            typer.echo(line)
