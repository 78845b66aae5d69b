"""Random jitter, scale and rotation of a batch of images, differentiable: the
transformation robustness of Lucid (Olah et al., "Feature Visualization", Distill 2017,
section "Transformation robustness"; ``lucid.optvis.transform.standard_transforms``).

An image that still excites a unit after being shifted by a few pixels, scaled by a few
per cent and turned by a few degrees cannot rely on a precise high-frequency pattern.
Lucid on 224 px images pads by 12 px (grey), jitters by 8 px, scales by 0.9-1.1,
rotates by -10..10 degrees and jitters by 4 px again. Here the whole chain is one affine
resampling (``F.affine_grid`` + bilinear ``grid_sample``) to the model's own input size,
so fixed-size models (LeNet-5: 32 x 32) always get what they take; uncovered area is
grey (0.5), as Lucid's padding is.

Small images: the jitter is scaled with the side, keeping Lucid's fraction of the image
(about 12 px of 224, ~5 %, in total), at least one pixel: about +/-1 px on 28-32 px
digits. Bilinear sampling makes sub-pixel shifts meaningful. Scale and angle are
relative, so they keep Lucid's values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LUCID_SIDE = 224
LUCID_JITTER = 8 + 4
"""Lucid's two jitters, in pixels of a 224 px image (total shift range)."""
LUCID_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))
"""0.9 .. 1.1 in steps of 0.02."""
LUCID_ANGLES = tuple(range(-10, 11)) + 5 * (0,)
"""Degrees; zero five more times, as Lucid weights it."""


def jitter_for(side: int) -> float:
    """Largest shift, in pixels, either way: Lucid's fraction of the side, at least 1."""
    return max(1.0, LUCID_JITTER / 2 * side / LUCID_SIDE)


class RandomTransforms:
    """Draws one random jitter/scale/rotation per image per call, from ``generator``
    (on the CPU, so a seed gives the same draws on any device)."""

    def __init__(self, side: int, generator: torch.Generator, jitter: float | None = None) -> None:
        self.side = side
        self.jitter = jitter_for(side) if jitter is None else jitter
        self.generator = generator

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        count = images.shape[0]
        shifts = (torch.rand(count, 2, generator=self.generator) * 2 - 1) * self.jitter
        scales = torch.tensor(LUCID_SCALES)[torch.randint(len(LUCID_SCALES), (count,), generator=self.generator)]
        angles = torch.tensor(LUCID_ANGLES, dtype=torch.float)[
            torch.randint(len(LUCID_ANGLES), (count,), generator=self.generator)] * math.pi / 180
        cos, sin = angles.cos() / scales, angles.sin() / scales
        # affine_grid maps output coordinates to input ones in [-1, 1]: a pixel is 2/side wide.
        theta = torch.stack([torch.stack([cos, -sin, shifts[:, 0] * 2 / images.shape[-1]], 1),
                             torch.stack([sin, cos, shifts[:, 1] * 2 / images.shape[-2]], 1)], 1)
        theta = theta.to(device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta, [count, images.shape[1], self.side, self.side], align_corners=False)
        return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5
