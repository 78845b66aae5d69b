"""Deep Dream (Mordvintsev, Olah & Tyka, "Inceptionism", Google Research blog 2015), as
the lecture describes it: start from an image, offset it by a random jitter, enhance a
layer's activation by gradient ascent on ``||h_l(x)||``, at several scales.

The scales are octaves: the image is shrunk by ``octave_scale`` per octave; ascent runs
first on the smallest, where a step changes large structures, and the *detail* it added
is enlarged onto the next octave's image, up to the full size. Each step rolls the image
by a random offset (the jitter), so the pattern cannot lock onto the pixel grid, and
divides the gradient by its mean absolute value (the original notebook's step).

Fixed-size models (LeNet-5 takes 32 x 32 only) see each octave resized back to their
side: the octave still sets how coarse a change one step makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.probing.layers import LayerInfo
from convzoo.visualize.layers import frozen, layer_output

MIN_OCTAVE_SIDE = 8
"""Octaves stop shrinking here: a stride-8 network still has a 1 x 1 map."""


@dataclass
class DreamResult:
    image: torch.Tensor
    """(C, H, W) dreamed pixels in [0, 1], the input's size, on the CPU."""
    before: float
    """||h_l(x)|| of the input image."""
    after: float
    """||h_l(x)|| of the dreamed image."""
    octave_sides: list[int]


def octave_sides(side: int, octaves: int, octave_scale: float) -> list[int]:
    """Image sides from the smallest octave to the full size."""
    if octaves < 1:
        raise ConvzooError(f"--octaves must be at least 1, got {octaves}.")
    if octave_scale < 1:
        raise ConvzooError(f"--octave-scale must be at least 1, got {octave_scale}.")
    return [max(MIN_OCTAVE_SIDE, min(side, round(side / octave_scale ** k))) for k in reversed(range(octaves))]


def _resize(images: torch.Tensor, side: int) -> torch.Tensor:
    if images.shape[-1] == side and images.shape[-2] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)


def deep_dream(
    model: nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    layer: LayerInfo,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    lr: float = 0.01,
    jitter: int | None = None,
    fixed_side: int | None = None,
    seed: int = 0,
) -> DreamResult:
    """Dream ``image`` ((C, S, S) pixels in [0, 1]) on ``layer``; ``fixed_side``: the side a
    fixed-size model must be fed. The model is frozen in eval mode and restored."""
    if steps < 0:
        raise ConvzooError(f"--steps must be at least 0, got {steps}.")
    device = next(model.parameters()).device
    original = image.detach().float().to(device)[None]
    side = original.shape[-1]
    sides = octave_sides(side, octaves, octave_scale)
    shift = max(1, side // 16) if jitter is None else jitter
    generator = torch.Generator().manual_seed(seed)

    def norm_of(pixels: torch.Tensor) -> torch.Tensor:
        inputs = normalize(pixels if fixed_side is None else _resize(pixels, fixed_side))
        return layer_output(model, inputs, layer).norm()

    with frozen(model):
        with torch.no_grad():
            before = float(norm_of(original))
        detail = torch.zeros_like(_resize(original, sides[0]))
        for octave_side in sides:
            base = _resize(original, octave_side)
            detail = _resize(detail, octave_side)
            dreamed = (base + detail).clamp(0, 1)
            for _ in range(steps):
                dy, dx = torch.randint(-shift, shift + 1, (2,), generator=generator).tolist()
                dreamed = dreamed.detach().requires_grad_(True)
                (gradient,) = torch.autograd.grad(norm_of(torch.roll(dreamed, (dy, dx), dims=(-2, -1))), dreamed)
                dreamed = (dreamed + lr * gradient / (gradient.abs().mean() + 1e-12)).clamp(0, 1)
            detail = dreamed.detach() - base
        with torch.no_grad():
            after = float(norm_of(dreamed))
    return DreamResult(dreamed.detach()[0].cpu(), before, after, sides)
