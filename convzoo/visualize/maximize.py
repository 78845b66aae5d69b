"""Maximum-response images: inputs that maximise one channel's mean activation, or one
class logit, found by gradient ascent on the input (the lecture's "maximum response
samples"; Erhan et al. 2009; Simonyan et al. 2014 for classes).

Two recipes:

- **regularised** (default), Lucid's (Olah, Mordvintsev & Schubert, "Feature
  Visualization", Distill 2017): the image is parameterised by scaled Fourier
  coefficients in decorrelated colour (``fourier.FourierImage``), every step sees it
  randomly jittered, scaled and rotated (``transforms.RandomTransforms``), and Adam
  (lr 0.05) takes 512 steps, with Lucid's redirected ReLU gradient
  (``redirected_relu``) so units at zero on the grey start can still rise. Patterns come out at the scale the unit likes, not as noise.
- **plain** (``plain=True``), the lecture's bare ascent ``x <- x + lr * grad`` from
  ``U[0, 1]`` noise, the gradient divided by its root-mean-square per image (Chollet 2016,
  which the lecture credits) so one step size serves every model, and the pixels kept in
  [0, 1] so the result is an image. It reaches high activations with high-frequency
  patterns: the reason the regularised recipe exists.

Every requested target is one image of one batch: all optimise together (in eval mode
the images do not interact), so 16 channels cost about one batched ascent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from convzoo.inspection.scores import class_scores
from convzoo.probing.layers import LayerInfo
from convzoo.visualize.fourier import FourierImage
from convzoo.visualize.layers import check_range, frozen, layer_output
from convzoo.visualize.redirected_relu import RedirectedReLUs
from convzoo.visualize.transforms import RandomTransforms

LUCID_STEPS = 512
LUCID_LR = 0.05


@dataclass
class MaximizeResult:
    """One image per target, with the objective on the starting and on the final image."""

    images: torch.Tensor
    """(N, C, S, S) pixels in [0, 1], on the CPU."""
    targets: list[int]
    """Channel or class index of each image."""
    target_kind: str
    """``channel`` or ``class``."""
    before: torch.Tensor
    """(N,) objective on the starting image (the grey Fourier start, or the U[0, 1] noise)."""
    after: torch.Tensor
    """(N,) objective on the final image, untransformed."""


def channel_objective(model: nn.Module, layer: LayerInfo, channels: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """inputs -> (N,) mean activation of channel ``channels[i]`` of ``layer`` for image i."""
    check_range(channels, layer.shape[0], f"{layer.name} channel", "--channels")
    rows = torch.arange(len(channels))
    wanted = torch.tensor(channels)

    def objective(inputs: torch.Tensor) -> torch.Tensor:
        activations = layer_output(model, inputs, layer)
        return activations[rows.to(inputs.device), wanted.to(inputs.device)].mean(dim=-1)

    return objective


def class_objective(model: nn.Module, classes: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """inputs -> (N,) pre-softmax score of class ``classes[i]`` for image i.

    A model ending in (Log)Softmax (LeNet-5's log-softmax, as in the lecture's table) is
    read *before* it (``convzoo.inspection.scores``, the rule every inspection command
    follows): a log-probability saturates at 0 and rises mostly by pushing the other
    classes down, while the logit measures the class's own evidence (Simonyan et al. 2014).
    """
    rows = torch.arange(len(classes))
    wanted = torch.tensor(classes)

    def objective(inputs: torch.Tensor) -> torch.Tensor:
        logits = class_scores(model, inputs)
        check_range(classes, logits.shape[1], "class", "--class")
        return logits[rows.to(inputs.device), wanted.to(inputs.device)]

    return objective


def maximize(
    model: nn.Module,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    image_shape: tuple[int, int],
    *,
    layer: LayerInfo | None = None,
    channels: list[int] | None = None,
    classes: list[int] | None = None,
    steps: int = LUCID_STEPS,
    lr: float = LUCID_LR,
    plain: bool = False,
    seed: int = 0,
    jitter: float | None = None,
) -> MaximizeResult:
    """Images maximising ``layer``'s ``channels`` (mean over positions) or ``classes``' logits.

    ``normalize`` makes model inputs from pixels in [0, 1] (``Preprocessing.normalize``);
    ``image_shape`` is (channels, side) of the model's input. Same ``seed``, same images
    (on the CPU; cuDNN's backward may differ in the last bits on a GPU). The model is
    frozen in eval mode and restored.
    """
    if (channels is None) == (classes is None):
        raise ValueError("pass channels (with layer) or classes")
    if steps < 0:
        from convzoo.errors import ConvzooError

        raise ConvzooError(f"--steps must be at least 0, got {steps}.")
    device = next(model.parameters()).device
    in_channels, side = image_shape
    targets = list(channels if channels is not None else classes)
    generator = torch.Generator().manual_seed(seed)
    with frozen(model):
        if channels is not None:
            assert layer is not None, "channels need their layer"
            scored = channel_objective(model, layer, targets)
        else:
            scored = class_objective(model, targets)

        def objective(pixels: torch.Tensor) -> torch.Tensor:
            return scored(normalize(pixels))

        if plain:
            start = torch.rand(len(targets), in_channels, side, side, generator=generator).to(device)
            with torch.no_grad():
                before = objective(start)
            final = _plain_ascent(objective, start, steps, lr)
        else:
            image = FourierImage(len(targets), in_channels, side, generator=generator, device=device)
            with torch.no_grad():
                before = objective(image())
            final = _regularised_ascent(objective, image, RandomTransforms(side, generator, jitter), steps, lr)
        with torch.no_grad():
            after = objective(final)
    return MaximizeResult(final.detach().cpu(), targets, "channel" if channels is not None else "class",
                          before.detach().float().cpu(), after.detach().float().cpu())


def _regularised_ascent(objective: Callable[[torch.Tensor], torch.Tensor], image: FourierImage,
                        transforms: RandomTransforms, steps: int, lr: float) -> torch.Tensor:
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with RedirectedReLUs():
            loss = -objective(transforms(image())).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return image()


def _plain_ascent(objective: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, steps: int,
                  lr: float) -> torch.Tensor:
    for _ in range(steps):
        pixels = pixels.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(objective(pixels).sum(), pixels)
        rms = gradient.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        pixels = (pixels + lr * gradient / (rms + 1e-12)).clamp(0, 1)
    return pixels.detach()
