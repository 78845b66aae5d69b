"""The built-in ``synthetic`` dataset: ten classes of shapes and textures, drawn on the fly.

It exists so that ``convzoo train --model NAME`` works on a fresh machine with no
download. Each class is a shape or texture (disk, ring, square, frame, three stripe
orientations, cross, triangle, checkerboard); each image varies position, scale, a small
rotation, foreground and background colour and pixel noise, so a model has to learn
the shape rather than a pixel. Generation is vectorised and fully determined by the
seed and the split, so the same call always yields the same bytes.
"""

from __future__ import annotations

import functools
import math

import torch

CLASS_NAMES = (
    "disk", "ring", "square", "frame", "horizontal-stripes",
    "vertical-stripes", "diagonal-stripes", "cross", "triangle", "checkerboard",
)
NUM_CLASSES = len(CLASS_NAMES)
DEFAULT_TRAIN_SIZE = 10_000
DEFAULT_TEST_SIZE = 2_000


def _class_masks(label: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean foreground of class ``label`` in object coordinates (the object spans [-1, 1])."""
    radius = torch.sqrt(u * u + v * v)
    box = torch.maximum(u.abs(), v.abs())
    inside = box <= 1.0
    if label == 0:
        return radius <= 0.9
    if label == 1:
        return (radius <= 0.95) & (radius >= 0.55)
    if label == 2:
        return box <= 0.8
    if label == 3:
        return (box <= 0.9) & (box >= 0.6)
    if label == 4:
        return inside & (torch.sin(v * 2.5 * math.pi) > 0)
    if label == 5:
        return inside & (torch.sin(u * 2.5 * math.pi) > 0)
    if label == 6:
        return inside & (torch.sin((u + v) * 1.8 * math.pi) > 0)
    if label == 7:
        return inside & ((u.abs() <= 0.3) | (v.abs() <= 0.3))
    if label == 8:
        return (v <= 0.8) & (v >= -0.9) & (u.abs() <= (0.8 - v) * 0.55)
    if label == 9:
        return inside & ((torch.floor(u * 2) + torch.floor(v * 2)).remainder(2) == 0)
    raise ValueError(label)


def generate_synthetic(
    size: int, *, image_size: int = 32, channels: int = 3, seed: int = 0, train: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` uint8 images (N, C, H, W) and their labels, the same for the same arguments."""
    generator = torch.Generator().manual_seed(seed * 2 + (0 if train else 1) + 1_000_003)

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * (high - low) + low

    labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
    scale = uniform(0.28, 0.45, size)  # object half-width as a fraction of the image
    centre_x = uniform(-0.45, 0.45, size) * (1 - scale)
    centre_y = uniform(-0.45, 0.45, size) * (1 - scale)
    angle = uniform(-0.35, 0.35, size)  # about ±20°: stripes keep their orientation class
    foreground = uniform(0.0, 1.0, size, channels)
    background = uniform(0.0, 1.0, size, channels)
    # Guarantee some contrast: push the background away from the foreground's brightness.
    too_close = (foreground.mean(1) - background.mean(1)).abs() < 0.25
    background[too_close] = 1.0 - foreground[too_close]
    noise_level = uniform(0.02, 0.12, size)

    axis = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size * 2 - 1
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    dx = grid_x[None] - centre_x[:, None, None]
    dy = grid_y[None] - centre_y[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) / scale[:, None, None]
    v = (-sin * dx + cos * dy) / scale[:, None, None]

    mask = torch.zeros(size, image_size, image_size, dtype=torch.bool)
    for label in range(NUM_CLASSES):
        chosen = labels == label
        if chosen.any():
            mask[chosen] = _class_masks(label, u[chosen], v[chosen])

    weight = mask.unsqueeze(1).float()
    images = weight * foreground[:, :, None, None] + (1 - weight) * background[:, :, None, None]
    images = images + noise_level[:, None, None, None] * torch.randn(images.shape, generator=generator)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels


@functools.lru_cache(maxsize=4)
def cached_synthetic(size: int, *, image_size: int, channels: int, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``generate_synthetic`` once per process for repeated runs (tests, probes); callers
    never write into the returned tensors."""
    return generate_synthetic(size, image_size=image_size, channels=channels, train=train)
