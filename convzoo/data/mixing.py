"""MixUp and CutMix of a training batch, with soft targets: timm's ``Mixup`` in its
``batch`` mode, the papers' definition (one λ per batch).

- MixUp (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): each image is
  ``λ x + (1 - λ) x'``, its target ``λ y + (1 - λ) y'``, with λ ~ Beta(α, α).
- CutMix (Yun et al. 2019, "CutMix", section 3.1): a box of area ``(1 - λ)`` of the image,
  centred uniformly at random and clipped at the borders, is pasted from ``x'``; λ is then
  recomputed from the box actually pasted (timm's ``correct_lam``).

The partner ``x'`` of image i is image ``n - 1 - i`` (the batch flipped, as timm pairs them).
With both on, a batch gets CutMix with probability ``switch_prob``, else MixUp; any mixing
happens with probability ``prob``. Label smoothing composes as in timm: the one-hot targets
are smoothed, then mixed.

The draws come from a generator seeded by the caller for each step (``seeding.derived_seed``
of the seed, epoch, step and rank), never from the global ones: a resumed run mixes what an
uninterrupted one would, with no generator state in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from convzoo.errors import ConvzooError


@dataclass(frozen=True)
class BatchMixer:
    """Mixes ``(images, labels)`` into ``(images, soft_targets, dominant_labels)``."""

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.0

    def describe(self) -> str:
        """``MixUp α=0.2 / CutMix α=1 (switch 0.5), 80% of batches``: the mixing as a run shows it."""
        kinds = [f"{name} α={alpha:g}" for name, alpha in (("MixUp", self.mixup_alpha), ("CutMix", self.cutmix_alpha))
                 if alpha > 0]
        switch = f" (CutMix on {100 * self.switch_prob:g}% of them)" if len(kinds) == 2 else ""
        return f"{' / '.join(kinds)} on {100 * self.prob:g}% of batches{switch}"

    def draw(self, rng: np.random.Generator, height: int, width: int) -> tuple[float, tuple[int, int, int, int] | None]:
        """``(λ, box)`` for one batch: box ``(top, bottom, left, right)`` for CutMix, None for MixUp
        (λ = 1 and no box: this batch is not mixed). timm's ``_params_per_batch`` order of draws."""
        if rng.random() >= self.prob:
            return 1.0, None
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
        lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha) if use_cutmix
                    else rng.beta(self.mixup_alpha, self.mixup_alpha))
        if not use_cutmix:
            return lam, None
        box = cutmix_box(rng, lam, height, width)
        top, bottom, left, right = box
        return 1.0 - (bottom - top) * (right - left) / (height * width), box

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch mixed with the draws of ``np.random.default_rng(seed)``."""
        lam, box = self.draw(np.random.default_rng(seed), images.shape[-2], images.shape[-1])
        return self.mix(images, labels, lam, box)

    def mix(self, images: torch.Tensor, labels: torch.Tensor, lam: float, box: tuple[int, int, int, int] | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        partners = images.flip(0)
        if box is not None:
            top, bottom, left, right = box
            images = images.clone()
            images[..., top:bottom, left:right] = partners[..., top:bottom, left:right]
        elif lam != 1.0:
            images = images * lam + partners * (1.0 - lam)
        targets = mixed_targets(labels, self.num_classes, lam, self.label_smoothing)
        # Training accuracy scores each image against the label that holds most of it.
        dominant = labels if lam >= 0.5 else labels.flip(0)
        return images, targets, dominant


def cutmix_box(rng: np.random.Generator, lam: float, height: int, width: int) -> tuple[int, int, int, int]:
    """A box of about ``(1 - λ)`` of the image's area, its centre uniform over the image, clipped
    at the borders (Yun et al. 2019, section 3.1; timm's ``rand_bbox``)."""
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    centre_y, centre_x = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = np.clip([centre_y - cut_h // 2, centre_y + cut_h // 2], 0, height)
    left, right = np.clip([centre_x - cut_w // 2, centre_x + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def mixed_targets(labels: torch.Tensor, num_classes: int, lam: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``λ y + (1 - λ) y'`` of the smoothed one-hot targets (timm's ``mixup_target``)."""
    off = label_smoothing / num_classes
    one_hot = F.one_hot(labels, num_classes).float() * (1.0 - label_smoothing) + off
    return one_hot * lam + one_hot.flip(0) * (1.0 - lam)


def build_mixer(config: Any, num_classes: int, image_size: int) -> BatchMixer | None:
    """The run's mixer (None without ``--mixup``/``--cutmix``); what cannot apply is refused."""
    if config.mixup <= 0 and config.cutmix <= 0:
        return None
    if config.cutmix > 0 and image_size < 2:
        raise ConvzooError(f"--cutmix pastes a box of the image; {image_size}x{image_size} images have no room "
                           "for one. Use --mixup instead.")
    if config.batch_size < 2:
        raise ConvzooError("--mixup and --cutmix mix each image with another of its batch; --batch-size 1 has none.")
    return BatchMixer(num_classes, config.mixup, config.cutmix, config.mix_prob, config.mix_switch_prob,
                      config.label_smoothing)
