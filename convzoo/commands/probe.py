"""``convzoo probe``: linear probes at every exit of a frozen network."""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import (
    ChannelsLastOption, CompileModeOption, CompileOption, ConvOption, DataDirOption, DebugOption, DeviceOption,
    JsonOption, print_json, user_errors,
)


def probe_command(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Registered model name; must match the checkpoint's.")] = None,
    checkpoint: Annotated[str | None, typer.Option("--checkpoint", help="A run's best.pt or last.pt (or the run folder).")] = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="Probe --model with random weights instead of a checkpoint.")] = False,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Probe on this dataset (default: the checkpoint's; synthetic with --random-init).")] = None,
    data_dir: DataDirOption = None,
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Exits to probe: module names or globs, comma-separated or repeated (default: the family's).")] = None,
    list_layers: Annotated[bool, typer.Option("--list-layers", help="Print every tappable module with its output shape, and stop.")] = False,
    features: Annotated[int, typer.Option("--features", help="Pool each exit to about this many numbers (Zhang et al. 2017: ~9,000).")] = 9216,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs of probe training.")] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Probe training batch size.")] = 256,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate of the heads (SGD, cosine schedule).")] = 0.05,
    batch_norm: Annotated[bool, typer.Option("--batch-norm/--no-batch-norm", help="Parameter-free BatchNorm before each head (VISSL's linear evaluation).")] = True,
    compare_random: Annotated[bool, typer.Option("--compare-random", help="Also probe the same architecture with random weights (same seed).")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the random network and the heads (default: the checkpoint's).")] = None,
    train_size: Annotated[int | None, typer.Option("--train-size", help="Train the heads on the first N training images only.")] = None,
    test_size: Annotated[int | None, typer.Option("--test-size", help="Measure the heads on the first N test images only.")] = None,
    cache_features: Annotated[bool, typer.Option("--cache-features", help="Keep epoch 1's features in memory and reuse them in later epochs.")] = False,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA.")] = True,
    num_workers: Annotated[int | None, typer.Option("--num-workers", help="DataLoader workers for imagefolder: datasets (default: train's).")] = None,
    device: DeviceOption = None,
    out: Annotated[str, typer.Option("--out", help="Folder for run folders.")] = "runs",
    name: Annotated[str | None, typer.Option("--name", help="Run folder name (default: 'probe-', the model, the dataset and the start time).")] = None,
    conv: ConvOption = None,
    channels_last: ChannelsLastOption = None,
    compile_model: CompileOption = None,
    compile_mode: CompileModeOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Train a linear classifier on each exit of a frozen network; accuracy against depth.

    Writes probe.json, probe.csv, probe.png and TensorBoard scalars to runs/NAME/.

    Examples:
      [bold]convzoo probe --checkpoint runs/lenet5-mnist/best.pt --compare-random[/bold]
      [bold]convzoo probe --model resnet20 --random-init --layers 'layer?' --epochs 2[/bold]
      [bold]convzoo probe --model lenet5 --list-layers[/bold]
    """
    with user_errors(debug):
        from convzoo.probing import ProbeSettings, list_layers as layer_listing, probe, resolve_backbone
        from convzoo.probing.report import layers_table, results_table

        backbone = resolve_backbone(
            checkpoint=checkpoint, model=model, random_init=random_init, data_dir=data_dir, conv=conv,
            dataset=dataset, for_listing=list_layers,
        )
        if list_layers:
            listing = layer_listing(backbone, dataset)
            if json_output:
                print_json(listing)
            else:
                _print_table(layers_table(listing))
            return
        settings = ProbeSettings(
            layers=layers, features=features, epochs=epochs, batch_size=batch_size, lr=lr, batch_norm=batch_norm,
            seed=seed, amp=amp, train_size=train_size, test_size=test_size, cache_features=cache_features, compare_random=compare_random,
            num_workers=num_workers, channels_last=channels_last, compile=bool(compile_model), compile_mode=compile_mode,
        )
        result = probe(backbone, settings, dataset=dataset, device=device or "auto", out=out, name=name,
                       quiet=json_output)
        if json_output:
            print_json(result)
        else:
            _print_table(results_table(result))
            random_time = f", {result['random_probe_time_s']:.1f}s its random twin" if "random_probe_time_s" in result else ""
            typer.echo(f"{result['probe_time_s']:.1f}s probing{random_time} -> {result['run_dir']}")


def _print_table(table: object) -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # a log file or pipe: no wrapping of long layer names
    console.print(table)
