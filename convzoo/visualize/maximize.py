"""Maximum-response images: inputs that maximise one channel's mean activation, or one
class logit, found by gradient ascent on the input (the lecture's "maximum response
samples"; Erhan et al. 2009; Simonyan et al. 2014 for classes).

Two recipes:

- **regularised** (default), Lucid's (Olah, Mordvintsev & Schubert, "Feature
  Visualization", Distill 2017): the image is parameterised by scaled Fourier
  coefficients in decorrelated colour (``fourier.FourierImage``), every step sees it
  randomly jittered, scaled and rotated (``transforms.RandomTransforms``), and Adam
  (lr 0.05) takes 512 steps, with Lucid's redirected ReLU gradient (``redirected_relu``)
  so units at zero on the grey start can still rise; a target it leaves at zero (or below
  a given bar) is ascended again with that gradient aimed at the unit closest to firing.
  Patterns come out at the scale the unit likes, not as noise.
- **plain** (``plain=True``), the lecture's bare ascent ``x <- x + lr * grad`` from
  ``U[0, 1]`` noise, the gradient divided by its root-mean-square per image (Chollet 2016,
  which the lecture credits) so one step size serves every model, and the pixels kept in
  [0, 1] so the result is an image; only the redirected ReLU gradient is shared with
  Lucid's recipe (a unit off everywhere on the noise would never move). It reaches high
  activations with high-frequency patterns: the reason the regularised recipe exists.

Every requested target is one image of one batch: all optimise together (in eval mode
the images do not interact), so 16 channels cost about one batched ascent.

``dataset_best`` scores the same objectives on a dataset's images: what the data alone
reaches is the bar a maximum-response image should clear, and ``convzoo visualize
maximize`` reports it beside each target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

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
    retried: list[int]
    """Positions (in ``targets``) that the first ascent left short and were ascended again."""


def target_scores(model: nn.Module, *, layer: LayerInfo | None = None, channels: list[int] | None = None,
                  classes: list[int] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """inputs -> (N, targets): for every image, each target's objective: channel
    ``channels[j]``'s mean activation over ``layer``'s positions, or class ``classes[j]``'s
    pre-softmax score. The ascent maximises the diagonal (image i, target i); a dataset
    pass keeps each column's maximum.

    A model ending in (Log)Softmax (LeNet-5's log-softmax, as in the lecture's table) is
    read *before* it (``convzoo.inspection.scores``, the rule every inspection command
    follows): a log-probability saturates at 0 and rises mostly by pushing the other
    classes down, while the logit measures the class's own evidence (Simonyan et al. 2014).
    """
    if channels is not None:
        assert layer is not None, "channels need their layer"
        check_range(channels, layer.shape[0], f"{layer.name} channel", "--channels")
        wanted = torch.tensor(channels)

        def scores(inputs: torch.Tensor) -> torch.Tensor:
            return layer_output(model, inputs, layer)[:, wanted.to(inputs.device)].mean(dim=-1)

        return scores
    assert classes is not None, "pass channels (with layer) or classes"
    wanted = torch.tensor(classes)

    def class_logits(inputs: torch.Tensor) -> torch.Tensor:
        logits = class_scores(model, inputs)
        check_range(classes, logits.shape[1], "class", "--class")
        return logits[:, wanted.to(inputs.device)]

    return class_logits


@dataclass
class DatasetBest:
    """Each target's objective on the dataset image that maximises it."""

    values: torch.Tensor
    """(targets,) the largest objective over the images searched."""
    image_indices: torch.Tensor
    """(targets,) the index of that image in the pass (the split's index)."""
    images_seen: int


@torch.no_grad()
def dataset_best(model: nn.Module, batches: Iterable[torch.Tensor], *, layer: LayerInfo | None = None,
                 channels: list[int] | None = None, classes: list[int] | None = None) -> DatasetBest:
    """The same objectives ``maximize`` ascends, at their best over ``batches`` of model
    inputs (normalised, on the model's device): what the data alone reaches, the bar a
    maximum-response image should clear. The model is frozen in eval mode and restored."""
    from convzoo.errors import ConvzooError

    best = indices = None
    seen = 0
    with frozen(model):
        scores = target_scores(model, layer=layer, channels=channels, classes=classes)
        for inputs in batches:
            values, where = scores(inputs).float().max(dim=0)
            if best is None:
                best, indices = values, where + seen
            else:
                better = values > best
                best, indices = torch.where(better, values, best), torch.where(better, where + seen, indices)
            seen += len(inputs)
    if best is None:
        raise ConvzooError("no images to search for the dataset's best.")
    return DatasetBest(best.cpu(), indices.cpu(), seen)


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
    reach: torch.Tensor | None = None,
) -> MaximizeResult:
    """Images maximising ``layer``'s ``channels`` (mean over positions) or ``classes``' logits.

    ``normalize`` makes model inputs from pixels in [0, 1] (``Preprocessing.normalize``);
    ``image_shape`` is (channels, side) of the model's input. Same ``seed``, same images
    (on the CPU; cuDNN's backward may differ in the last bits on a GPU). The model is
    frozen in eval mode and restored.

    A target left below ``reach`` (each target's bar, e.g. ``dataset_best``'s values; by
    default a channel still at zero, off at every position) gets a second ascent with the
    redirected ReLU gradient aimed at the unit closest to firing (``redirected_relu``),
    and keeps the better of its two images.
    """
    if (channels is None) == (classes is None):
        raise ValueError("pass channels (with layer) or classes")
    if steps < 0:
        from convzoo.errors import ConvzooError

        raise ConvzooError(f"--steps must be at least 0, got {steps}.")
    targets = list(channels if channels is not None else classes)
    kind = "channel" if channels is not None else "class"
    generator = torch.Generator().manual_seed(seed)
    with frozen(model):
        def ascend(chosen: list[int], closest: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            scores = (target_scores(model, layer=layer, channels=chosen) if kind == "channel"
                      else target_scores(model, classes=chosen))
            return _ascend(lambda pixels: scores(normalize(pixels)).diagonal(), len(chosen), image_shape,
                           next(model.parameters()).device, generator, steps, lr, plain, jitter, closest)

        before, final, after = ascend(targets, closest=False)
        short = after.float().cpu() < reach.float().cpu() if reach is not None else (
            after.cpu() <= 0 if kind == "channel" else torch.zeros(len(targets), dtype=torch.bool))
        retried = short.nonzero().flatten().tolist() if steps > 0 else []
        if retried:
            _, again, again_after = ascend([targets[i] for i in retried], closest=True)
            for position, index in enumerate(retried):
                if again_after[position] > after[index]:
                    final[index], after[index] = again[position], again_after[position]
    return MaximizeResult(final.detach().cpu(), targets, kind, before.detach().float().cpu(),
                          after.detach().float().cpu(), retried)


def _ascend(objective: Callable[[torch.Tensor], torch.Tensor], count: int, image_shape: tuple[int, int],
            device: torch.device, generator: torch.Generator, steps: int, lr: float, plain: bool,
            jitter: float | None, closest: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective at the start, final images, objective on them) of one batched ascent."""
    in_channels, side = image_shape
    if plain:
        start = torch.rand(count, in_channels, side, side, generator=generator).to(device)
        with torch.no_grad():
            before = objective(start)
        final = _plain_ascent(objective, start, steps, lr, closest)
    else:
        image = FourierImage(count, in_channels, side, generator=generator, device=device)
        with torch.no_grad():
            before = objective(image())
        final = _regularised_ascent(objective, image, RandomTransforms(side, generator, jitter), steps, lr, closest)
    with torch.no_grad():
        return before, final, objective(final)


def _regularised_ascent(objective: Callable[[torch.Tensor], torch.Tensor], image: FourierImage,
                        transforms: RandomTransforms, steps: int, lr: float, closest: bool) -> torch.Tensor:
    optimizer = torch.optim.Adam(image.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with RedirectedReLUs(closest):
            loss = -objective(transforms(image())).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return image()


def _plain_ascent(objective: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, steps: int,
                  lr: float, closest: bool) -> torch.Tensor:
    for _ in range(steps):
        pixels = pixels.detach().requires_grad_(True)
        # From noise too a unit can be off everywhere; the redirect reads the gradient of a
        # loss to minimise, so the step descends -objective.
        with RedirectedReLUs(closest):
            (gradient,) = torch.autograd.grad(-objective(pixels).sum(), pixels)
        rms = gradient.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        pixels = (pixels - lr * gradient / (rms + 1e-12)).clamp(0, 1)
    return pixels.detach()
