"""Pictures of the results, made with the libraries users know: torchvision's
``make_grid`` for plain grids, matplotlib where numbers must be written under images.

Small images are enlarged nearest-neighbour (``enlarge_for_display``) so a 5 x 5 kernel
or a 28 x 28 digit keeps its pixels visible as blocks.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from convzoo.inspection import enlarge_for_display


def scale_each(maps: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) images each stretched to [0, 1] (a constant one becomes 0)."""
    flat = maps.detach().float().flatten(1)
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - low) / (high - low).clamp_min(1e-12)).view_as(maps)


def grid_columns(count: int) -> int:
    """Columns of a near-square grid of ``count`` tiles."""
    return max(1, math.ceil(math.sqrt(count)))


def feature_map_tiles(maps: torch.Tensor, side: int = 64) -> torch.Tensor:
    """One image's (C, H, W) maps as (C, 1, h, w) grey tiles, each scaled to [0, 1], enlarged."""
    return enlarge_for_display(scale_each(maps[:, None]), side)


def labelled_rows(rows: Sequence[Sequence[torch.Tensor]], labels: Sequence[Sequence[str]],
                  row_titles: Sequence[str], title: str, cell_inches: float = 0.9) -> Any:
    """A matplotlib figure: one row of (C, H, W) images per entry, a label under each image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count_rows, count_columns = len(rows), max(len(row) for row in rows)
    # Constrained layout sizes each row around its images *and* their captions; tight_layout
    # did not, and where the figure's cells were wider than tall (few columns) the images
    # grew taller than their cells and each row covered the captions of the row above.
    figure, axes = plt.subplots(count_rows, count_columns, squeeze=False, constrained_layout=True,
                                figsize=(cell_inches * count_columns + 0.8, (cell_inches + 0.25) * count_rows + 0.5))
    for row_index, row in enumerate(rows):
        for column in range(count_columns):
            ax = axes[row_index][column]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if column >= len(row):
                ax.axis("off")
                continue
            image = row[column].detach().float().clamp(0, 1).cpu()
            if image.shape[0] == 1:
                ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xlabel(labels[row_index][column], fontsize=7, labelpad=2)
        axes[row_index][0].set_ylabel(row_titles[row_index], fontsize=8, rotation=0, ha="right", va="center")
    figure.suptitle(title, fontsize=10)
    return figure


def patch_canvas(crop: torch.Tensor, box: tuple[tuple[int, int], tuple[int, int]],
                 full_box: tuple[tuple[int, int], tuple[int, int]], image_side: tuple[int, int],
                 fill: float = 0.5) -> torch.Tensor:
    """``crop`` (clipped at the image border) placed where it lies in its receptive field,
    the part outside the image shown as ``fill``, so every patch of a layer has one size:
    the field's, or the image's where the field is larger (ResNet-20's layer3 sees 81 px
    of a 28 px image), the crop then pushed against the side it was clipped on."""
    (top, bottom), (left, right) = full_box
    height, width = min(bottom - top + 1, image_side[0]), min(right - left + 1, image_side[1])
    canvas = torch.full((crop.shape[0], height, width), fill, dtype=crop.dtype)
    (clip_top, _), (clip_left, _) = box
    row = min(clip_top - top, height - crop.shape[1])
    column = min(clip_left - left, width - crop.shape[2])
    canvas[:, row:row + crop.shape[1], column:column + crop.shape[2]] = crop
    return canvas
