"""Images parameterised in a decorrelated space: Lucid's recipe for feature visualisation
(Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017, section
"Preconditioning and Parameterization"; Mordvintsev et al., "Differentiable Image
Parameterizations", Distill 2018).

Gradient ascent on raw pixels is dominated by high frequencies: the steepest direction
in pixel space is noise-like, and the optimum found is an adversarial pattern. Lucid
optimises instead the image's 2-D Fourier coefficients, each scaled by ``1 / f^decay``
(natural images have roughly that spectrum), so every frequency moves at about the rate
it has in natural images; and, for RGB, the three channels in a decorrelated colour
space mapped back through the square root of ImageNet's colour correlation matrix. A
sigmoid then brings the image into [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

LUCID_COLOR_CORRELATION_SQRT = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)
"""Lucid's ``color_correlation_svd_sqrt``: the square root (by SVD) of ImageNet's RGB
correlation matrix (``lucid/optvis/param/color.py``). Lucid divides it by its largest
column norm; so do we. One grey channel has nothing to decorrelate (identity)."""

LUCID_SPECTRUM_SD = 0.01
"""Standard deviation of the initial Fourier coefficients: a nearly uniform grey start."""

LUCID_MAGIC = 4.0
"""Lucid divides the image by 4 before the sigmoid ("reduces saturation")."""


def spectrum_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """(H, W//2+1) scale 1 / max(f, 1/max(H, W))^decay of each rfft2 coefficient (Lucid's)."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    frequency = (fx * fx + fy * fy).sqrt()
    return 1.0 / frequency.clamp_min(1.0 / max(height, width)) ** decay_power


def color_matrix(channels: int) -> torch.Tensor:
    """The (C, C) matrix mapping decorrelated colours to RGB (identity for grey)."""
    if channels != 3:
        return torch.eye(channels)
    matrix = torch.tensor(LUCID_COLOR_CORRELATION_SQRT)
    return matrix / matrix.norm(dim=0).max()


class FourierImage(nn.Module):
    """A batch of ``count`` images of ``channels`` x ``side`` x ``side`` whose parameters
    are scaled Fourier coefficients in decorrelated colour; ``forward()`` gives pixels in [0, 1]."""

    def __init__(self, count: int, channels: int, side: int, *, decay_power: float = 1.0,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.side = side
        shape = (count, channels, side, side // 2 + 1, 2)  # real and imaginary parts
        spectrum = torch.randn(shape, generator=generator) * LUCID_SPECTRUM_SD  # drawn on the CPU: same on any device
        self.spectrum = nn.Parameter(spectrum.to(device))
        self.register_buffer("scale", spectrum_scale(side, side, decay_power).to(device)[None, None, :, :, None])
        self.register_buffer("colors", color_matrix(channels).to(device))

    def forward(self) -> torch.Tensor:
        coefficients = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        image = torch.fft.irfft2(coefficients, s=(self.side, self.side), norm="ortho") / LUCID_MAGIC
        image = torch.einsum("nchw,dc->ndhw", image, self.colors)
        return torch.sigmoid(image)
