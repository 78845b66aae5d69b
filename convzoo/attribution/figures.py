"""Pictures of attribution maps: input, map and overlay per image; the sanity check's curves."""

from __future__ import annotations

from typing import Sequence

import torch


def _show_image(axis, pixels: torch.Tensor) -> None:
    image = pixels.detach().float().cpu().clamp(0, 1)
    if image.shape[0] == 1:
        axis.imshow(image[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        axis.imshow(image.permute(1, 2, 0), interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def attribution_figure(pixels: torch.Tensor, maps: torch.Tensor, captions: Sequence[str], method: str):
    """One column per image: the input, its map (``maps`` in [0, 1]) and the map over the input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = pixels.shape[0]
    figure, axes = plt.subplots(3, count, figsize=(1.9 * count + 0.6, 6.2), squeeze=False)
    for column in range(count):
        _show_image(axes[0][column], pixels[column])
        axes[0][column].set_title(captions[column], fontsize=8)
        axes[1][column].imshow(maps[column], cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        _show_image(axes[2][column], pixels[column])
        axes[2][column].imshow(maps[column], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        for row in (1, 2):
            axes[row][column].set_xticks([])
            axes[row][column].set_yticks([])
    for row, label in enumerate(("input", method, "overlay")):
        axes[row][0].set_ylabel(label)
    figure.tight_layout()
    return figure


def sanity_figure(results: Sequence, title: str):
    """Spearman rank correlation against how many layers are re-initialised, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = max(results, key=lambda result: len(result.steps))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.45 * len(longest.steps) + 2), 4.2))
    for result in results:
        axis.plot(range(len(result.steps)), result.correlations, marker="o", label=result.method)
    axis.set_xticks(range(len(longest.steps)))
    axis.set_xticklabels(longest.steps, rotation=60, ha="right", fontsize=8)
    axis.set_xlabel("re-initialised from the logits down to")
    axis.set_ylabel("Spearman rank correlation with the trained model's map")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_ylim(-0.3, 1.05)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    return figure


def cascade_strip(result, pixels: torch.Tensor):
    """The first image's map at every step of the cascade (Adebayo et al. 2018, figure 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convzoo.attribution.methods import display_maps

    count = len(result.steps) + 1
    figure, axes = plt.subplots(1, count, figsize=(1.5 * count, 1.9), squeeze=False)
    _show_image(axes[0][0], pixels[0])
    axes[0][0].set_title("input", fontsize=7)
    for column, (step, maps, rho) in enumerate(zip(result.steps, result.maps, result.correlations), start=1):
        axes[0][column].imshow(display_maps(maps[:1, None])[0], cmap="inferno", vmin=0, vmax=1,
                               interpolation="nearest")
        axes[0][column].set_title(f"{step}\nrho={rho:.2f}", fontsize=7)
        axes[0][column].set_xticks([])
        axes[0][column].set_yticks([])
    figure.suptitle(result.method, fontsize=9)
    figure.tight_layout()
    return figure
