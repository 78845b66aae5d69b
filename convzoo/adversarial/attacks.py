"""FGSM and PGD by captum.robust, on pixels, with epsilon in pixel units.

- FGSM (Goodfellow, Shlens & Szegedy 2015, eq. 3): x' = clip(x + eps * sign(grad_x L(x, y))).
- PGD (Madry et al. 2018, eq. 2 and section 5): from a uniformly random point of the
  L-infinity ball of radius eps around x (clamped to [0, 1]; ``random_start=False`` starts
  at x itself, which is BIM, Kurakin et al. 2017), ``steps`` FGSM steps of ``step_size``,
  each projected back onto the ball and onto [0, 1]; the default step is 2.5 eps / steps,
  Madry et al.'s choice, so the walk can cross the ball and back. The random starts are
  drawn from the attack's own seed: the same seed gives the same adversarial images.

Both run on ``GradientReadyModel``: the dataset's normalisation folded in front, so the
attack perturbs pixels and clamps them to [0, 1], the model in eval mode (BatchNorm's
running statistics, no dropout), its main logits, and its weights untouched.

One setting of captum's is changed, for a measured reason: its FGSM leaves alone every
pixel whose gradient is below ``zero_thresh`` (1e-6), but the cross-entropy gradient of a
confidently classified image is about 1 - p of the true class, often far smaller. On
the first 1,000 MNIST test images with the trained LeNet-5 (99.3 %), captum's default
moves 29 % of the pixels and leaves 54.8 % accuracy at eps = 0.2; a threshold of 0 moves
55.5 % (the rest are black pixels pushed below 0 and clamped back) and leaves 46.3 %.
Only pixels with an exactly zero gradient are left here, which is what sign() does anyway.

FGSM's gradient is taken at the clean image, so it is the same for every epsilon:
``sweep`` asks captum for it once per batch (as the step of an unbounded FGSM of size 1)
and forms x + eps * sign(gradient), clamped to [0, 1], for each epsilon: the same numbers
as one captum call per epsilon, for a seventh of the backward passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.attribution.wrapping import GradientReadyModel
from convzoo.errors import ConvzooError
from convzoo.inspection import Preprocessing
from convzoo.seeding import seeded

ATTACKS = ("fgsm", "pgd")
DEFAULT_EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def check_attack(method: str) -> str:
    if method not in ATTACKS:
        raise ConvzooError(f"unknown attack {method!r}; choose from {', '.join(ATTACKS)}.")
    return method


def check_epsilons(epsilons: Sequence[float]) -> list[float]:
    bad = [eps for eps in epsilons if not 0.0 <= eps <= 1.0]
    if bad:
        raise ConvzooError(f"--eps {bad[0]} is outside [0, 1]: epsilon is in pixel units of images in [0, 1].")
    if not epsilons:
        raise ConvzooError("--eps is empty; pass values in [0, 1], e.g. --eps 0,0.1,0.2.")
    return sorted(set(float(eps) for eps in epsilons))


def _per_image_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # One loss per image: captum takes the gradient of each, so no image's step is
    # scaled by the batch size, and batching cannot change the result.
    return F.cross_entropy(logits.float(), labels, reduction="none")


class Attack:
    """An L-infinity attack bound to a model, captum-style: ``perturb(pixels, labels, eps)``."""

    def __init__(self, model: nn.Module, method: str = "fgsm", preprocessing: Preprocessing | None = None, *,
                 steps: int = 10, step_size: float | None = None, random_start: bool = True, seed: int = 0) -> None:
        from captum.robust import FGSM, PGD

        self.method = check_attack(method)
        if steps < 1:
            raise ConvzooError(f"--steps must be at least 1, got {steps}.")
        if step_size is not None and not 0 < step_size <= 1:
            raise ConvzooError(f"--step-size {step_size} is outside (0, 1]: it is in pixel units.")
        self.model = model if isinstance(model, GradientReadyModel) else GradientReadyModel(model, preprocessing)
        self.steps, self.step_size, self.random_start = steps, step_size, random_start
        self._starts = torch.Generator().manual_seed(seed)
        """One seed per PGD call is drawn from here: every batch and epsilon gets its own
        random start, and the whole sweep repeats under the same seed."""
        self._fgsm = FGSM(self.model, _per_image_loss, lower_bound=0.0, upper_bound=1.0)
        self._fgsm.zero_thresh = 0.0
        self._pgd = PGD(self.model, _per_image_loss, lower_bound=0.0, upper_bound=1.0)
        self._pgd.fgsm.zero_thresh = 0.0

    def step_for(self, eps: float) -> float:
        return self.step_size if self.step_size is not None else 2.5 * eps / self.steps

    def perturb(self, pixels: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
        """Adversarial pixels within ``eps`` of ``pixels`` (L-infinity) and within [0, 1]."""
        if eps == 0:
            return pixels.detach().clone()
        pixels = pixels.detach().requires_grad_(True)
        if self.method == "fgsm":
            adversarial = self._fgsm.perturb(pixels, eps, labels)
        else:
            import warnings

            # captum draws the random start from torch's global generator: seed it for this call.
            start_seed = int(torch.randint(2**62, (1,), generator=self._starts))
            with warnings.catch_warnings(), seeded(start_seed, pixels.device):
                # captum's PGD hands each step's detached image to its FGSM, which says so every time.
                warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
                adversarial = self._pgd.perturb(pixels, eps, self.step_for(eps), self.steps, labels,
                                                random_start=self.random_start)
        return adversarial.detach()

    def sweep(self, pixels: torch.Tensor, labels: torch.Tensor,
              epsilons: Sequence[float]) -> Iterator[tuple[float, torch.Tensor]]:
        """(eps, adversarial pixels) for each epsilon; FGSM's gradient computed once."""
        if self.method != "fgsm" or len([eps for eps in epsilons if eps > 0]) < 2:
            for eps in epsilons:
                yield eps, self.perturb(pixels, labels, eps)
            return
        from captum.robust import FGSM

        unbounded = FGSM(self.model, _per_image_loss)
        unbounded.zero_thresh = 0.0
        stepped = unbounded.perturb(pixels.detach().requires_grad_(True), 1.0, labels).detach()
        # |step| = 1 dwarfs float rounding, so the sign recovers sign(gradient) exactly.
        direction = torch.sign(stepped - pixels)
        for eps in epsilons:
            yield eps, (pixels + eps * direction).clamp(0.0, 1.0) if eps > 0 else pixels.detach().clone()


@dataclass
class RobustnessCurve:
    """Accuracy against epsilon for one attack, and a few examples to show."""

    method: str
    epsilons: list[float]
    accuracies: list[float] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """Process CPU time of the attack (all threads): on a machine shared with other jobs,
    an upper bound of the wall time the same work takes when it has the cores alone."""
    examples: dict[float, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Per epsilon: the first ``keep`` images' clean and adversarial pixels and predictions."""

    def rows(self) -> list[dict[str, object]]:
        return [{"attack": self.method, "eps": eps, "accuracy": round(accuracy, 4), "correct": correct,
                 "images": self.total}
                for eps, accuracy, correct in zip(self.epsilons, self.accuracies, self.correct)]


def robust_accuracy(attack: Attack, pixels: torch.Tensor, labels: torch.Tensor, epsilons: Sequence[float], *,
                    batch_size: int = 1000, keep: int = 8, device: torch.device | str | None = None) -> RobustnessCurve:
    """Accuracy of ``attack.model`` on ``pixels`` attacked at each epsilon, batched over all of them.

    Every epsilon sees the same batches, so epsilon = 0 reproduces the clean accuracy exactly.
    """
    import time

    parameter = next(attack.model.parameters(), None)
    device = torch.device(device) if device is not None else (parameter.device if parameter is not None else "cpu")
    epsilons = check_epsilons(epsilons)
    curve = RobustnessCurve(attack.method, list(epsilons), total=len(labels))
    correct = torch.zeros(len(epsilons), dtype=torch.long)
    started, started_cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(labels), batch_size):
        batch = pixels[start:start + batch_size].to(device, non_blocking=True).float()
        truth = labels[start:start + batch_size].to(device, non_blocking=True)
        for position, (eps, adversarial) in enumerate(attack.sweep(batch, truth, epsilons)):
            with torch.no_grad():
                logits = attack.model(adversarial).float()
            predicted = logits.argmax(1)
            correct[position] += int((predicted == truth).sum())
            if start == 0:
                probabilities = torch.softmax(logits[:keep], 1)
                curve.examples[eps] = {
                    "clean": batch[:keep].cpu(), "adversarial": adversarial[:keep].cpu(), "labels": truth[:keep].cpu(),
                    "predicted": predicted[:keep].cpu(), "probability": probabilities.amax(1).cpu(),
                }
    curve.seconds = time.perf_counter() - started
    curve.cpu_seconds = time.process_time() - started_cpu
    curve.correct = correct.tolist()
    curve.accuracies = [count / max(len(labels), 1) for count in curve.correct]
    return curve
