"""``convzoo visualize KIND``: what a network's units respond to.

A Typer sub-app, one command per kind (filters, features, patches, maximize, dream). The
pictures and numbers come from ``convzoo.visualize``; this module only turns options
into calls, and results into a run folder ``runs/visualize-KIND-MODEL-TIME/`` (PNGs,
CSV/JSON, TensorBoard images) and one ``--json`` object.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from convzoo.inspection.subject import Subject

from convzoo.commands.common import (
    ConvOption, DataDirOption, DebugOption, DeviceOption, JsonOption, print_json, user_errors,
)
from convzoo.commands.inspect_options import (
    CheckpointOption, DatasetOption, ImageOption, IndexOption, ModelOption, NameOption, OutOption,
    RandomInitOption, SamplesOption, SeedOption, SplitOption, WeightsOption,
)

visualize_app = typer.Typer(
    help="What a network's units respond to: filters, feature maps, top-activating patches, "
         "maximum-response images, Deep Dream.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

QUICK_STEPS = 8
"""Ascent steps under ``CONVZOO_QUICK=1`` (the README test): a smoke test of the same command."""

LayerOption = Annotated[str | None, typer.Option("--layer", help="Module name (see `convzoo probe --model M --list-layers`).")]
ChannelsOption = Annotated[str | None, typer.Option("--channels", help="Channels: ranges and lists like 0-15 or 3,7,9-11 (default: the first 16).")]


def _subject(checkpoint, model, random_init, weights, dataset, data_dir, conv, device, seed) -> Subject:
    from convzoo.inspection.subject import load_subject

    return load_subject(checkpoint=checkpoint, model=model, random_init=random_init, weights=weights,
                        dataset=dataset, data_dir=data_dir, conv=conv, device=device, seed=seed)


def _one_layer(subject: Subject, layer: str | None, *, spatial: bool):
    from convzoo.errors import ConvzooError
    from convzoo.visualize import resolve_layers

    if not layer:
        raise ConvzooError("--layer is required: pass a module name (see `convzoo probe --model M --list-layers`).")
    chosen = resolve_layers(subject.model, subject.example(), [layer], spatial=spatial)
    if len(chosen) != 1:
        raise ConvzooError(f"--layer {layer} names {len(chosen)} layers; pass exactly one module name (not 'input').")
    return chosen[0]


def _run(out: str, name: str | None, kind: str, subject: Subject):
    from convzoo.inspection import InspectionRun

    return InspectionRun(out, name, f"visualize-{kind}-{subject.source.model_name}")


def _header(kind: str, subject: Subject, run) -> dict[str, Any]:
    return {"kind": kind, "model": subject.source.model_name, "source": subject.source.source,
            "dataset": subject.spec.name, "device": str(subject.device), "run_dir": str(run.run_dir)}


def _finish(payload: dict[str, Any], run, json_output: bool, summary: str) -> None:
    payload["files"] = list(run.files)
    run.write_json("visualize.json", {**payload, "files": list(run.files) + [str(run.run_dir / "visualize.json")]})
    payload["files"] = list(run.files)
    run.close()
    if json_output:
        print_json(payload)
    else:
        typer.echo(f"{summary} -> {run.run_dir}")


@visualize_app.command("filters")
def filters_command(
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    layer: Annotated[str | None, typer.Option("--layer", help="A Conv2d module (default: the first convolution).")] = None,
    normalize: Annotated[str, typer.Option("--normalize", help="filter: each kernel to its own [0, 1]; global: one scale for the layer.")] = "filter",
    seed: SeedOption = 0,
    device: DeviceOption = None,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """A conv layer's kernels as a grid: one tile per filter (RGB or grey for the first layer).

    Examples:
      [bold]convzoo visualize filters --checkpoint runs/lenet5-mnist/best.pt[/bold]
      [bold]convzoo visualize filters --model resnet20 --random-init --layer layer1.0.conv1 --normalize global[/bold]
    """
    with user_errors(debug):
        from convzoo.inspection import enlarge_for_display
        from convzoo.visualize import conv_layer_weight, filter_images
        from convzoo.visualize.pictures import grid_columns

        subject = _subject(checkpoint, model, random_init, weights, None, data_dir, conv, device, seed)
        layer_name, weight = conv_layer_weight(subject.model, layer)
        tiles = filter_images(weight, normalize)
        with _run(out, name, "filters", subject) as run:
            run.save_grid("filters.png", enlarge_for_display(tiles, 48), nrow=grid_columns(len(tiles)), padding=2,
                          tag=f"filters/{layer_name}")
            payload = {**_header("filters", subject, run), "layer": layer_name, "weight_shape": list(weight.shape),
                       "filters": len(tiles), "normalize": normalize}
            _finish(payload, run, json_output, f"{len(tiles)} filters of {layer_name} {tuple(weight.shape)}")


@visualize_app.command("features")
def features_command(
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    image: ImageOption = None,
    dataset: DatasetOption = None,
    index: IndexOption = None,
    samples: SamplesOption = None,
    split: SplitOption = "test",
    layers: Annotated[list[str] | None, typer.Option("--layers", help="Layers: names or globs, comma-separated or repeated (default: the family's exits).")] = None,
    seed: SeedOption = 0,
    device: DeviceOption = None,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """The input and, per layer, a grid of its feature maps (each map scaled to its own range).

    Examples:
      [bold]convzoo visualize features --checkpoint runs/lenet5-mnist/best.pt --index 0[/bold]
      [bold]convzoo visualize features --model resnet20 --random-init --image shoe.jpg --layers layer1,layer2[/bold]
    """
    with user_errors(debug):
        from convzoo.inspection import enlarge_for_display, select_images
        from convzoo.visualize import feature_maps, resolve_layers
        from convzoo.visualize.pictures import feature_map_tiles, grid_columns

        subject = _subject(checkpoint, model, random_init, weights, dataset, data_dir, conv, device, seed)
        images = select_images(subject.spec, subject.preprocessing, image_paths=image, indices=index, samples=samples,
                               split=split, data_dir=subject.source.config.data_dir,  # --data-dir > $CONVZOO_DATA > the run's
                               seed=seed)
        chosen = resolve_layers(subject.model, subject.example(), layers, subject.exits(), spatial=True,
                                option="--layers")
        if not chosen:
            from convzoo.errors import ConvzooError

            raise ConvzooError("no layer with feature maps chosen; pass --layers NAMES of convolutional layers.")
        maps = feature_maps(subject.model, subject.preprocessing.normalize(images.pixels.to(subject.device)), chosen)
        with _run(out, name, "features", subject) as run:
            records = []
            for number, image_name in enumerate(images.names):
                run.save_grid(f"image{number}-input.png", enlarge_for_display(images.pixels[number:number + 1]),
                              tag=f"image{number}/input")
                for layer in chosen:
                    layer_maps = maps[layer.name][number]
                    run.save_grid(f"image{number}-{layer.name}.png", feature_map_tiles(layer_maps.cpu()),
                                  nrow=grid_columns(layer_maps.shape[0]), tag=f"image{number}/{layer.name}")
                    records.append({"image": image_name, "layer": layer.name, "shape": list(layer.shape),
                                    "mean_activation": float(layer_maps.float().mean()),
                                    "max_activation": float(layer_maps.float().max())})
            payload = {**_header("features", subject, run), "images": images.names,
                       "layers": [layer.name for layer in chosen], "activations": records}
            _finish(payload, run, json_output, f"{len(chosen)} layers x {len(images.names)} images")


@visualize_app.command("patches")
def patches_command(
    layer: LayerOption = None,
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    channels: ChannelsOption = None,
    top: Annotated[int, typer.Option("--top", help="Patches per channel.")] = 9,
    dataset: DatasetOption = None,
    split: SplitOption = "test",
    limit: Annotated[int | None, typer.Option("--limit", help="Search only the split's first N images.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 500,
    seed: SeedOption = 0,
    device: DeviceOption = None,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """For each channel, the --top dataset patches where it fires most, cut to the unit's receptive field.

    Examples:
      [bold]convzoo visualize patches --checkpoint runs/lenet5-mnist/best.pt --layer features.4 --channels 0-15[/bold]
      [bold]convzoo visualize patches --model resnet20 --random-init --layer layer2 --limit 1000 --json[/bold]
    """
    with user_errors(debug):
        from convzoo.visualize import parse_channels, top_activating_patches
        from convzoo.visualize.patches import input_batches

        subject = _subject(checkpoint, model, random_init, weights, dataset, data_dir, conv, device, seed)
        chosen = _one_layer(subject, layer, spatial=True)
        wanted = parse_channels(channels, chosen.shape[0], what=f"{chosen.name} channel")
        from convzoo.config import QUICK_TEST_SIZE, quick_cap

        split_images, pixels_of, to_inputs, dataset_indices = _split_for_patches(
            subject, split, data_dir, quick_cap(limit, QUICK_TEST_SIZE))
        started = time.perf_counter()
        found = top_activating_patches(subject.model, chosen, input_batches(split_images, to_inputs, batch_size),
                                       wanted, top)
        if dataset_indices is not None:  # searched the readable files only: back to indices in the split
            found.image_indices = dataset_indices[found.image_indices]
        search_time = time.perf_counter() - started
        if found.values.shape[0] > PICTURED_PATCHES:
            typer.echo(f"note: the pictures show the top {PICTURED_PATCHES} of {found.values.shape[0]:,} patches per "
                       "channel; patches.csv (and --json) list them all.", err=True)
        with _run(out, name, "patches", subject) as run:
            _save_patches(run, found, pixels_of, subject)
            field = found.field
            payload = {**_header("patches", subject, run), "layer": chosen.name, "split": split,
                       "images_searched": found.images_seen, "search_time_s": round(search_time, 3),
                       "receptive_field": {"size": field.size, "jump": field.jump, "start": field.start},
                       "channels": wanted, "top": int(found.values.shape[0]), "patches": found.records()}
            _finish(payload, run, json_output,
                    f"top {found.values.shape[0]} patches of {len(wanted)} channels of {chosen.name} over "
                    f"{found.images_seen:,} images in {search_time:.1f}s")


def _split_for_patches(subject: Subject, split: str, data_dir: str | None, limit: int | None):
    """The split (as a tensor the batches are cut from), a way to get one image's pixels
    at the model's side, how a batch becomes model inputs, and (image folders) the split
    index of each image searched."""
    import torch

    from convzoo.data.image_decoding import readable_files
    from convzoo.inspection.images import dataset_split, pad_to_side, read_image_file

    images, _labels = dataset_split(subject.spec, split, data_dir or subject.source.config.data_dir)
    preprocessing, device = subject.preprocessing, subject.device
    if limit is not None:
        images = images[:limit]
    if isinstance(images, torch.Tensor):
        on_device = images.to(device)

        def pixels_of(index: int) -> torch.Tensor:
            return pad_to_side(images[index], preprocessing.model_side).float() / 255

        def to_inputs(batch: torch.Tensor) -> torch.Tensor:
            return preprocessing.normalize(pad_to_side(batch, preprocessing.model_side).float() / 255)

        return on_device, pixels_of, to_inputs, None
    paths = list(images)
    # A file that is not an image is left out of the search (named on stderr), not the search's end.
    searched = readable_files(paths)

    def pixels_of(index: int) -> torch.Tensor:
        return preprocessing.fit(read_image_file(paths[index], preprocessing.channels)).float() / 255

    def to_inputs(batch_paths: list) -> torch.Tensor:
        pixels = torch.stack([preprocessing.fit(read_image_file(path, preprocessing.channels)) for path in batch_paths])
        return preprocessing.normalize(pixels.to(device).float() / 255)

    return [paths[index] for index in searched], pixels_of, to_inputs, torch.tensor(searched, dtype=torch.long)


PICTURED_PATCHES = 32
"""Patches per channel drawn in patches.png and patches-grid.png: --top 100000 made a
picture a million pixels wide, which PIL refuses to open, and took minutes to draw. The
CSV and JSON list every one."""


def _save_patches(run, found, pixels_of, subject: Subject) -> None:
    import torch

    from convzoo.inspection import enlarge_for_display
    from convzoo.visualize.pictures import labelled_rows, patch_canvas

    crops = found.crops(pixels_of, most=PICTURED_PATCHES)
    shown = len(crops[0])
    rows, labels = [], []
    for column, channel_crops in enumerate(crops):
        row = []
        for rank, crop in enumerate(channel_crops):
            row_index, column_index = (int(v) for v in found.positions[rank, column])
            row.append(patch_canvas(crop, found.box(rank, column), found.field.box(row_index, column_index),
                                    found.image_side))
        rows.append(row)
        labels.append([f"{float(v):.2f}" for v in found.values[:shown, column]])
    titles = [f"ch {channel}" for channel in found.channels]
    of_all = f" of {found.values.shape[0]:,}" if shown < found.values.shape[0] else ""
    figure = labelled_rows(rows, labels, titles, f"{subject.source.model_name} {found.layer}: top "
                           f"{shown}{of_all} patches (receptive field {found.field.size} px)")
    run.save_figure("patches.png", figure, tag=f"patches/{found.layer}")
    flat = [crop for row in rows for crop in row]
    run.save_grid("patches-grid.png", enlarge_for_display(torch.stack(flat), 64), nrow=shown,
                  tag=f"patches-grid/{found.layer}")
    run.write_csv("patches.csv", [{**record, "box_rows": "-".join(map(str, record["box_rows"])),
                                   "box_columns": "-".join(map(str, record["box_columns"]))}
                                  for record in found.records()])


@visualize_app.command("maximize")
def maximize_command(
    layer: LayerOption = None,
    channels: ChannelsOption = None,
    class_index: Annotated[list[int] | None, typer.Option("--class", help="Maximise this class's logit instead (repeatable).")] = None,
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    plain: Annotated[bool, typer.Option("--plain", help="The lecture's bare gradient ascent from U[0,1] noise (no regularisation).")] = False,
    steps: Annotated[int, typer.Option("--steps", help="Ascent steps (Lucid: 512).")] = 512,
    lr: Annotated[float, typer.Option("--lr", help="Step size (Adam's lr for the default recipe; Lucid: 0.05).")] = 0.05,
    dataset: DatasetOption = None,
    split: SplitOption = "test",
    limit: Annotated[int | None, typer.Option("--limit", help="Search only the split's first N images for each target's best dataset image.")] = None,
    seed: SeedOption = 0,
    device: DeviceOption = None,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Images that maximise channels' mean activation (or class logits), all optimised as one batch.

    Default: Lucid's regularised recipe (Fourier-space, decorrelated colour, random
    jitter/scale/rotation, Adam lr 0.05, 512 steps). --plain: bare gradient ascent.
    Beside each target: the same objective on the split's image that maximises it
    (dataset_best), and one line for each target the ascent left below it.

    Examples:
      [bold]convzoo visualize maximize --checkpoint runs/lenet5-mnist/best.pt --layer features.4 --channels 0-7[/bold]
      [bold]convzoo visualize maximize --checkpoint runs/lenet5-mnist/best.pt --class 3 --class 8 --plain[/bold]
    """
    with user_errors(debug):
        from convzoo.errors import ConvzooError
        from convzoo.visualize import maximize, parse_channels
        from convzoo.visualize.layers import check_range

        from convzoo.inspection.images import check_split

        check_split(split)  # before the ascent: only a dataset missing on this machine is a note, not an error
        _check_step_size(lr)
        subject = _subject(checkpoint, model, random_init, weights, dataset, data_dir, conv, device, seed)
        if class_index and (layer or channels):
            raise ConvzooError("pass --layer/--channels or --class, not both.")
        chosen, wanted, classes = None, None, None
        if class_index:
            names = subject.class_names()
            check_range(class_index, len(names), "class", "--class")
            classes = list(class_index)
        else:
            chosen = _one_layer(subject, layer, spatial=False)
            wanted = parse_channels(channels, chosen.shape[0], what=f"{chosen.name} channel")
        from convzoo.config import QUICK_TEST_SIZE, quick_cap

        steps = quick_cap(steps, QUICK_STEPS)
        preprocessing = subject.preprocessing
        best, notes = _dataset_best(subject, split, data_dir, quick_cap(limit, QUICK_TEST_SIZE), chosen, wanted,
                                    classes)
        started = time.perf_counter()
        result = maximize(subject.model, preprocessing.normalize, (preprocessing.channels, preprocessing.model_side),
                          layer=chosen, channels=wanted, classes=classes, steps=steps, lr=lr, plain=plain, seed=seed,
                          reach=best.values if best is not None else None)
        elapsed = time.perf_counter() - started
        if best is not None:
            notes = _short_of_data(result, best, split, steps)
        with _run(out, name, "maximize", subject) as run:
            _save_maximized(run, result, chosen.name if chosen else "class", plain)
            targets = [{"target": target, "before": float(before), "after": float(after),
                        "dataset_best": float(best.values[i]) if best else None,
                        "dataset_best_index": int(best.image_indices[i]) if best else None,
                        "retried": i in result.retried}
                       for i, (target, before, after) in enumerate(zip(result.targets, result.before, result.after))]
            payload = {**_header("maximize", subject, run), "layer": chosen.name if chosen else None,
                       "target_kind": result.target_kind, "recipe": "plain" if plain else "lucid", "steps": steps,
                       "lr": lr, "seed": seed, "time_s": round(elapsed, 3), "split": split,
                       "images_searched": best.images_seen if best else 0, "targets": targets, "notes": notes}
            _finish(payload, run, json_output, f"{len(result.targets)} {result.target_kind} images, {steps} steps "
                    f"in {elapsed:.1f}s")
        if not json_output:
            for line in notes:
                typer.echo(line)


def _dataset_best(subject: Subject, split: str, data_dir: str | None, limit: int | None, layer, channels, classes):
    """Each target's objective on the split's best image, or None and one line saying why
    it could not be computed (a dataset not on this machine does not stop the pictures)."""
    from convzoo.errors import ConvzooError
    from convzoo.visualize.maximize import dataset_best
    from convzoo.visualize.patches import input_batches

    try:
        images, _pixels_of, to_inputs, dataset_indices = _split_for_patches(subject, split, data_dir, limit)
        best = dataset_best(subject.model, input_batches(images, to_inputs, 500), layer=layer, channels=channels,
                            classes=classes)
        if dataset_indices is not None:  # an image folder's unreadable files were left out: split indices
            best.image_indices = dataset_indices[best.image_indices]
        return best, []
    except ConvzooError as error:
        return None, [f"dataset_best not computed: {error}"]


def _short_of_data(result, best, split: str, steps: int) -> list[str]:
    """One line per target whose maximum-response image scores below the best dataset
    image, saying why. Channels count only where the data makes them fire (best > 0)."""
    from convzoo.visualize.maximize import LUCID_STEPS

    lines = []
    for target, after, value, index in zip(result.targets, result.after.tolist(), best.values.tolist(),
                                           best.image_indices.tolist()):
        if after >= value or (result.target_kind == "channel" and value <= 0):
            continue
        if steps < LUCID_STEPS:
            why = f"{steps} steps are fewer than the recipe's {LUCID_STEPS}"
        elif after <= 0 and result.target_kind == "channel":
            why = "the unit is still off at every position of the image; another --seed may start it"
        else:
            why = ("the ascent settled in a lower optimum (positions that are off get no gradient while others "
                   "fire); another --seed or more --steps may pass it")
        lines.append(f"{result.target_kind} {target}: {after:.4g} after {steps} steps, below {value:.4g} on {split} "
                     f"image {index}: {why}.")
    return lines


def _save_maximized(run, result, what: str, plain: bool) -> None:
    from convzoo.inspection import enlarge_for_display
    from convzoo.visualize.pictures import grid_columns, labelled_rows

    run.save_grid("maximize-grid.png", enlarge_for_display(result.images, 64), nrow=grid_columns(len(result.images)),
                  tag=f"maximize-grid/{what}")
    columns = grid_columns(len(result.images))
    rows, labels = [], []
    for first in range(0, len(result.images), columns):
        rows.append(list(result.images[first:first + columns]))
        labels.append([f"{result.target_kind[:2]} {t}: {b:.2f}→{a:.2f}" for t, b, a in
                       zip(result.targets[first:], result.before[first:first + columns].tolist(),
                           result.after[first:first + columns].tolist())])
    recipe = "bare gradient ascent" if plain else "Lucid's regularised recipe"
    figure = labelled_rows(rows, labels, [""] * len(rows), f"{what}: maximum-response images ({recipe})", 1.3)
    run.save_figure("maximize.png", figure, tag=f"maximize/{what}")


def _check_step_size(lr: float) -> None:
    """A zero or negative --lr would descend (or stand still) where the picture should ascend."""
    from convzoo.errors import ConvzooError

    if not lr > 0:
        raise ConvzooError(f"--lr must be positive (the step of the ascent), got {lr:g}.")


@visualize_app.command("dream")
def dream_command(
    layer: LayerOption = None,
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    image: ImageOption = None,
    dataset: DatasetOption = None,
    index: IndexOption = None,
    split: SplitOption = "test",
    octaves: Annotated[int, typer.Option("--octaves", help="Scales, each --octave-scale smaller than the next.")] = 4,
    octave_scale: Annotated[float, typer.Option("--octave-scale", help="Size ratio between octaves.")] = 1.4,
    steps: Annotated[int, typer.Option("--steps", help="Ascent steps per octave.")] = 10,
    lr: Annotated[float, typer.Option("--lr", help="Step size, relative to the gradient's mean magnitude.")] = 0.01,
    seed: SeedOption = 0,
    device: DeviceOption = None,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Deep Dream: enhance a layer's activation norm in an image by jittered gradient ascent at several scales.

    Examples:
      [bold]convzoo visualize dream --checkpoint runs/lenet5-mnist/best.pt --index 0 --layer features.4[/bold]
      [bold]convzoo visualize dream --model resnet20 --random-init --image photo.jpg --layer layer2 --steps 20[/bold]
    """
    with user_errors(debug):
        from convzoo.errors import ConvzooError
        from convzoo.inspection import enlarge_for_display, select_images
        from convzoo.registry import get_model_info
        from convzoo.visualize import deep_dream
        from convzoo.visualize.pictures import labelled_rows

        _check_step_size(lr)
        if not image and not index:  # select_images' own message would offer --samples, which dream has not
            raise ConvzooError("dream takes one image: pass --image FILE or --index I (of --dataset's test split).")
        subject = _subject(checkpoint, model, random_init, weights, dataset, data_dir, conv, device, seed)
        chosen = _one_layer(subject, layer, spatial=False)
        images = select_images(subject.spec, subject.preprocessing, image_paths=image, indices=index, split=split,
                               data_dir=subject.source.config.data_dir)  # --data-dir > $CONVZOO_DATA > the run's
        if len(images.names) != 1:
            raise ConvzooError(f"dream takes one image; got {len(images.names)}. Pass one --image or one --index.")
        from convzoo.config import quick_cap

        steps = quick_cap(steps, QUICK_STEPS)
        fixed = subject.preprocessing.model_side if get_model_info(subject.source.model_name).fixed_input_size else None
        result = deep_dream(subject.model, subject.preprocessing.normalize, images.pixels[0], chosen, octaves=octaves,
                            octave_scale=octave_scale, steps=steps, lr=lr, fixed_side=fixed, seed=seed)
        with _run(out, name, "dream", subject) as run:
            run.save_grid("dream.png", enlarge_for_display(result.image[None]), tag=f"dream/{chosen.name}")
            figure = labelled_rows([[images.pixels[0], result.image]],
                                   [[f"‖h‖ = {result.before:.2f}", f"‖h‖ = {result.after:.2f}"]], [""],
                                   f"Deep Dream on {chosen.name}", 2.0)
            run.save_figure("dream-comparison.png", figure, tag=f"dream-comparison/{chosen.name}")
            payload = {**_header("dream", subject, run), "layer": chosen.name, "image": images.names[0],
                       "image_shape": list(result.image.shape), "octave_sides": result.octave_sides, "steps": steps,
                       "lr": lr, "seed": seed, "norm_before": result.before, "norm_after": result.after}
            _finish(payload, run, json_output, f"‖h‖ of {chosen.name}: {result.before:.2f} -> {result.after:.2f}")


from convzoo.commands import visualize_erf  # noqa: E402 - a kind kept in its own module
visualize_app.command("erf")(visualize_erf.erf_command)
