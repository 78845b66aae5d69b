"""Make the README's `convzoo visualize` pictures (issue 11, acceptance 1) from a checkpoint.

For a trained run: its first-layer filters; the top-9 dataset patches of 16 channels of
every probe exit with feature maps (over the whole test split); and maximum-response
images (Lucid's recipe, 512 steps) of 16 channels of every probe exit. Each kind is one
compact PNG with a panel per exit, so the README shows depth side by side.

    python docs/visualize_pictures.py --checkpoint runs/lenet5-mnist/best.pt --tag lenet5-mnist
    python docs/visualize_pictures.py --checkpoint runs/resnet20-fashion-mnist/best.pt --tag resnet20-fashion-mnist
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

DOCS = Path(__file__).resolve().parent
PATCH_SIDE = 24
"""Every patch is shown at this side (nearest), whatever its field, so exits line up."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--tag", required=True, help="File stem: docs/visualize-TAG-KIND.png")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--kinds", nargs="*", default=["filters", "patches", "maximize"])
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torchvision.utils import make_grid, save_image

    from convzoo.inspection import build_source_model, enlarge_for_display, input_pipeline, resolve_model_source
    from convzoo.inspection.images import dataset_split, pad_to_side
    from convzoo.registry import get_model_info
    from convzoo.visualize import (
        conv_layer_weight, filter_images, maximize, resolve_layers, top_activating_patches,
    )
    from convzoo.visualize.maximize import dataset_best
    from convzoo.visualize.patches import input_batches
    from convzoo.visualize.pictures import patch_canvas

    source = resolve_model_source(checkpoint=args.checkpoint, data_dir=args.data_dir)
    spec, preprocessing = input_pipeline(source)
    model = build_source_model(source, "cpu")
    side = preprocessing.model_side
    example = torch.zeros(1, preprocessing.channels, side, side)
    exits = resolve_layers(model, example, None, get_model_info(source.model_name).probe_layers)
    numbers: dict = {"checkpoint": args.checkpoint, "model": source.model_name, "dataset": spec.name}

    kinds = set(args.kinds)
    layer_name, weight = conv_layer_weight(model)
    tiles = enlarge_for_display(filter_images(weight), 40)
    save_image(make_grid(tiles, nrow=8, padding=2, pad_value=1.0), DOCS / f"visualize-{args.tag}-filters.png")

    images, _ = dataset_split(spec, "test", args.data_dir or source.config.data_dir)

    def to_inputs(batch: torch.Tensor) -> torch.Tensor:
        return preprocessing.normalize(pad_to_side(batch, side).float() / 255)

    spatial = [layer for layer in exits if len(layer.shape) == 3]
    if "patches" in kinds:
        figure, axes = plt.subplots(1, len(spatial), figsize=(2.3 * len(spatial), 4.3), squeeze=False)
        for ax, layer in zip(axes[0], spatial):
            started = time.perf_counter()
            channels = list(range(min(16, layer.shape[0])))
            found = top_activating_patches(model, layer, input_batches(images, to_inputs, 500), channels, 9)
            numbers[f"patches_{layer.name}_s"] = round(time.perf_counter() - started, 2)
            crops = found.crops(lambda index: pad_to_side(images[index], side).float() / 255)
            shown = []
            for column, row in enumerate(crops):
                for rank, crop in enumerate(row):
                    r, c = (int(v) for v in found.positions[rank, column])
                    canvas = patch_canvas(crop, found.box(rank, column), found.field.box(r, c), found.image_side)
                    shown.append(F.interpolate(canvas[None], size=(PATCH_SIDE, PATCH_SIDE), mode="nearest")[0])
            grid = make_grid(torch.stack(shown), nrow=9, padding=1, pad_value=1.0)
            ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(f"{layer.name}\nfield {found.field.size} px", fontsize=8)
            ax.axis("off")
        figure.suptitle(f"{source.model_name} on {spec.name}: top-9 test patches of 16 channels per exit", fontsize=9)
        figure.tight_layout(rect=(0, 0, 1, 0.92))  # room for the title
        figure.savefig(DOCS / f"visualize-{args.tag}-patches.png", dpi=110)
        plt.close(figure)

    if "maximize" in kinds:
        figure, axes = plt.subplots(1, len(exits), figsize=(2.1 * len(exits), 2.6), squeeze=False)
        for ax, layer in zip(axes[0], exits):
            started = time.perf_counter()
            channels = list(range(min(16, layer.shape[0])))
            # The same bar as `convzoo visualize maximize`: what the best test image reaches.
            best = dataset_best(model, input_batches(images, to_inputs, 500), layer=layer, channels=channels)
            result = maximize(model, preprocessing.normalize, (preprocessing.channels, side), layer=layer,
                              channels=channels, steps=args.steps, seed=0, reach=best.values)
            numbers[f"maximize_{layer.name}_retried"] = len(result.retried)
            numbers[f"maximize_{layer.name}_below_dataset_best"] = int((result.after < best.values).sum())
            numbers[f"maximize_{layer.name}_s"] = round(time.perf_counter() - started, 1)
            numbers[f"maximize_{layer.name}_before_mean"] = round(float(result.before.mean()), 3)
            numbers[f"maximize_{layer.name}_after_mean"] = round(float(result.after.mean()), 3)
            grid = make_grid(enlarge_for_display(result.images, 56), nrow=4, padding=2, pad_value=1.0)
            ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_title(layer.name, fontsize=8)
            ax.axis("off")
        figure.suptitle(f"{source.model_name}: maximum-response images (Lucid's recipe, {args.steps} steps)", fontsize=9)
        figure.tight_layout(rect=(0, 0, 1, 0.92))  # room for the title
        figure.savefig(DOCS / f"visualize-{args.tag}-maximize.png", dpi=110)
        plt.close(figure)

    from PIL import Image

    for kind in {"filters"} | kinds:  # grey pictures: a palette keeps the files small
        path = DOCS / f"visualize-{args.tag}-{kind}.png"
        Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)
    print(json.dumps(numbers))


if __name__ == "__main__":
    main()
