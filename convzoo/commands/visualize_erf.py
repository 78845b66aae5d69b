"""``convzoo visualize erf``: the effective receptive field of a layer's centre unit (Luo et al. 2016)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from convzoo.commands.common import (
    ConvOption, DataDirOption, DebugOption, DeviceOption, JsonOption, print_json, user_errors,
)
from convzoo.commands.inspect_options import (
    CheckpointOption, DatasetOption, ModelOption, NameOption, OutOption, RandomInitOption, SeedOption, SplitOption,
    WeightsOption,
)


def erf_command(
    layer: Annotated[str | None, typer.Option("--layer", help="Module whose centre unit is measured (default: the family's last spatial exit).")] = None,
    samples: Annotated[int, typer.Option("--samples", help="Images the gradient's absolute value is averaged over.")] = 64,
    noise: Annotated[bool, typer.Option("--noise", help="Average over uniform-noise images instead of test images.")] = False,
    input_side: Annotated[int | None, typer.Option("--input-side", min=1, help="With --noise: side of the noise images (fully convolutional models only), to see fields larger than the dataset's images.")] = None,
    compare_random: Annotated[bool, typer.Option("--compare-random", help="Also measure the same architecture with random weights (seeded by --seed).")] = False,
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    dataset: DatasetOption = None,
    split: SplitOption = "test",
    device: DeviceOption = None,
    seed: SeedOption = 0,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Mean |d centre unit / d input| of a layer, with its theoretical receptive field's box.

    Reports the sides of the smallest centred squares holding 50, 90 and 99 % of the
    gradient's mass, as fractions of the theoretical field. Writes erf.png, erf.csv,
    erf.json and TensorBoard images to runs/NAME/.

    Examples:
      [bold]convzoo visualize erf --checkpoint runs/lenet5-mnist/best.pt --layer features.3 --compare-random[/bold]
      [bold]convzoo visualize erf --model resnet56 --random-init --noise --input-side 96 --layer layer3[/bold]
    """
    with user_errors(debug):
        result = run_erf(layer=layer, samples=samples, noise=noise, input_side=input_side,
                         compare_random=compare_random, checkpoint=checkpoint, model=model, random_init=random_init,
                         weights=weights, dataset=dataset, split=split, device=device, seed=seed, out=out, name=name,
                         data_dir=data_dir, conv=conv)
        if json_output:
            print_json(result)
            return
        _print_report(result)


def run_erf(*, layer: str | None, samples: int, noise: bool, input_side: int | None, compare_random: bool,
            checkpoint: str | None, model: str | None, random_init: bool, weights: str | None, dataset: str | None,
            split: str, device: str | None, seed: int, out: str, name: str | None, data_dir: str | None,
            conv: str | None) -> dict[str, Any]:
    """The command's work, returning what ``--json`` prints."""
    import torch

    from convzoo.attribution.layers import choose_spatial_layer
    from convzoo.effective_field import effective_field
    from convzoo.errors import ConvzooError
    from convzoo.inspection import InspectionRun, select_images
    from convzoo.inspection.subject import load_subject

    if samples < 1:
        raise ConvzooError(f"--samples must be at least 1, got {samples}.")
    if input_side is not None and not noise:
        raise ConvzooError("--input-side sets the side of noise images: add --noise (test images keep their size).")
    subject = load_subject(checkpoint=checkpoint, model=model, random_init=random_init, weights=weights,
                           dataset=dataset, data_dir=data_dir, conv=conv, device=device, seed=seed)
    source, spec, preprocessing, torch_device = subject.source, subject.spec, subject.preprocessing, subject.device
    if noise:
        side = input_side or preprocessing.model_side
        generator = torch.Generator().manual_seed(seed)
        pixels = torch.rand(samples, preprocessing.channels, side, side, generator=generator)
        image_source = f"{samples} uniform-noise images {side}x{side}"
    else:
        pixels = select_images(spec, preprocessing, samples=samples, split=split,
                               data_dir=subject.data_dir(data_dir), seed=seed).pixels
        image_source = f"{len(pixels)} {spec.name} {split} images"
    variants = [("trained" if source.is_trained else "random-init", subject.model)]
    if compare_random and source.is_trained:
        variants.append(("random-init", subject.random_init_model()))
    fields = {}
    for label, network in variants:
        side = preprocessing.model_side  # layers are looked up at the model's own input size
        example = torch.zeros(1, preprocessing.channels, side, side, device=torch_device)
        chosen = choose_spatial_layer(network, example, layer, source.model_name)
        fields[label] = effective_field(network, pixels, chosen, preprocessing)
    rows = [{"model": source.model_name, "weights": label, **field.summary()} for label, field in fields.items()]
    with InspectionRun(out, name, f"erf-{source.model_name}") as run:
        run.write_csv("erf.csv", [{key: value for key, value in row.items() if key != "theoretical_box"} for row in rows])
        run.save_figure("erf.png", erf_figure(fields, f"{source.model_name}: {image_source}"), tag="erf")
        result: dict[str, Any] = {"model": source.model_name, "source": source.source, "inputs": image_source,
                                  "results": rows, "run_dir": str(run.run_dir), "files": run.files}
        run.write_json("erf.json", result)
    return result


def erf_figure(fields: dict, title: str):
    """Heatmap of each variant's mean |gradient| with the theoretical field's box and the 90 % square."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    figure, axes = plt.subplots(1, len(fields), figsize=(4.4 * len(fields), 4.4), squeeze=False)
    for axis, (label, field) in zip(axes[0], fields.items()):
        gradient = field.gradient / field.gradient.max().clamp_min(1e-30)
        axis.imshow(gradient, cmap="inferno", interpolation="nearest")
        (top, bottom), (left, right) = field.box
        axis.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                                 edgecolor="cyan", linewidth=1.5, label=f"theoretical {field.theoretical_side}px"))
        side = field.mass_square(0.9)
        centre_row, centre_column = field.centre
        shown = "clipped by the image" if field.is_clipped(side) else f"{side}px"
        axis.add_patch(Rectangle((centre_column - side / 2, centre_row - side / 2), side, side, fill=False,
                                 edgecolor="lime", linestyle="--", linewidth=1.2, label=f"90 % of mass {shown}"))
        height, width = field.gradient.shape
        # Show the whole theoretical field, however far it reaches past the image: how little
        # of it the gradient fills is the point (Luo et al. 2016, figure 1).
        low = min(0, top, left) - 1.5
        high = max(height - 1, width - 1, bottom, right) + 1.5
        axis.add_patch(Rectangle((-0.5, -0.5), width, height, fill=False, edgecolor="white", linewidth=0.8,
                                 linestyle=":", label=f"image {height}x{width}"))
        axis.set_facecolor("black")
        axis.set_xlim(low, high)
        axis.set_ylim(high, low)
        axis.set_title(f"{label}: {field.layer}, unit {field.position}", fontsize=9)
        axis.legend(loc="lower right", fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def _print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"effective receptive field of {result['model']} ({result['inputs']})")
    for column in ("weights", "layer", "theoretical", "50 %", "90 %", "99 %", "std (px)"):
        table.add_column(column, justify="right")
    for row in result["results"]:
        table.add_row(row["weights"], row["layer"], f"{row['theoretical_side']}px",
                      *(f"{row[f'square_{p}']}px = {row[f'fraction_{p}']:.2f}" if row[f"square_{p}"] is not None
                        else "clipped" for p in (50, 90, 99)),
                      f"{row['std_pixels']:.2f}")
    console.print(table)
    for row in result["results"]:
        if row["exceeds_input"]:
            height, width = row["input_side"]
            console.print(f"note: {row['weights']} {row['layer']}: the theoretical field ({row['theoretical_side']}px) "
                          f"exceeds the {height}x{width} input; squares that reach the image's edge are shown as "
                          "'clipped' (they measure the image, not the field). A larger --input-side (with --noise) "
                          "shows the whole field.", highlight=False)
    console.print(f"-> {result['run_dir']}")
