"""Telling a user, once and early, that a run is diverging rather than training.

A network that starts at chance has a cross-entropy of ln(classes) (2.30 for ten). A run
whose training loss still sits well above that after its warm-up, or whose test loss has
exploded, is not learning: too high a rate for the model (VGG without BatchNorm at a
ResNet's rate), or no warm-up for a deep network. NaN and infinite losses stop a run
outright (``train._check_finite``); a finite divergence trains garbage to the end unless
someone says so. The guard says so in one line, once per run, naming the likely fix.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

TRAIN_LOSS_FACTOR = 3.0
"""Warn when the training loss of a whole window after the warm-up exceeds this x ln(classes)."""
TEST_LOSS_FACTOR = 5.0
"""Warn when an epoch's test loss exceeds this x ln(classes) (a model at chance has 1x)."""
WINDOW_STEPS = 20
"""Steps per training-loss check: one host sync per window, and a single bad step never warns."""


class DivergenceGuard:
    """Watches the training loss (per window of steps) and the test loss (per epoch)."""

    def __init__(self, num_classes: int, warmup_steps: int, lr: float, message: Callable[[str], None],
                 window: int = WINDOW_STEPS) -> None:
        self.num_classes = num_classes
        self.chance_loss = math.log(max(num_classes, 2))
        self.warmup_steps = warmup_steps
        self.lr = lr
        self.message = message
        self.window = window
        self.warning: str | None = None
        self._window: tuple[int, torch.Tensor, int] | None = None  # (first step, loss sum, images)

    def after_step(self, global_step: int, loss: torch.Tensor, images: int) -> None:
        """Called after every training step (1-based ``global_step``) with its mean loss;
        sums on the device and reads them once per window, so most steps never sync."""
        if self.warning is not None or global_step <= self.warmup_steps:
            return
        if self._window is None:
            self._window = (global_step, torch.zeros((), dtype=torch.float64, device=loss.device), 0)
        first_step, loss_sum, seen = self._window
        loss_sum += loss.detach().double() * images
        seen += images
        self._window = (first_step, loss_sum, seen)
        if global_step - first_step + 1 < self.window:
            return
        mean = float(loss_sum) / seen
        self._window = None
        limit = TRAIN_LOSS_FACTOR * self.chance_loss
        if mean > limit:
            after = "after the warm-up, " if self.warmup_steps else ""
            self._warn(f"the training loss averaged {mean:.3g} over steps {first_step}-{global_step}, "
                       f"{after}above {TRAIN_LOSS_FACTOR:g} x ln {self.num_classes} = {limit:.2f} "
                       f"(chance is {self.chance_loss:.2f})")

    def after_evaluation(self, test_loss: float | None, epoch: int) -> None:
        """Called after each epoch's evaluation (``test_loss`` None: the task has none, as a
        detector in eval mode returns boxes, not losses)."""
        limit = TEST_LOSS_FACTOR * self.chance_loss
        if self.warning is None and test_loss is not None and math.isfinite(test_loss) and test_loss > limit:
            self._warn(f"the test loss after epoch {epoch} is {test_loss:.4g}, above {TEST_LOSS_FACTOR:g} x "
                       f"ln {self.num_classes} = {limit:.2f} (chance is {self.chance_loss:.2f})")

    def _warn(self, what: str) -> None:
        self.warning = (f"warning: {what}: the run is diverging, not learning. Lower --lr (now {self.lr:g}) "
                        "or lengthen the warm-up (--set warmup_epochs=N).")
        self.message(self.warning)
