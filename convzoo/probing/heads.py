"""Linear classifiers on frozen features: one per exit, all trained from the same batches.

Every batch goes through the backbone once (``FeatureTaps.extract``, under no-grad: the
backbone is frozen); the heads then each take their exit's features and their
cross-entropy losses are summed. The heads share no parameter, so the summed loss gives
each head exactly the gradient it would get if trained alone: probing five exits costs
one backbone pass plus five small matrix products, not five backbone passes.

``--cache-features`` goes one step further for runs of several epochs: the first epoch
stores every batch's features, later epochs read them back instead of running the
backbone again (the backbone is frozen, and probe training sees no augmentation, so the
features would be the same).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.engine.evaluate import autocast_context
from convzoo.probing.features import FeatureTaps

Batches = Iterable[tuple[list[torch.Tensor], torch.Tensor]]


class LinearProbes(nn.Module):
    """One linear classifier per exit, optionally after a parameter-free BatchNorm.

    The BatchNorm (``affine=False``, as in VISSL's linear evaluation) only standardises
    each feature, so the probe stays linear while one learning rate suits raw pixels and
    deep features alike, whose scales differ by orders of magnitude.
    """

    def __init__(self, dims: list[int], num_classes: int, batch_norm: bool = True) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm1d(dim, affine=False) if batch_norm else nn.Identity(),
                nn.Linear(dim, num_classes),
            )
            for dim in dims
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [head(feature.float()) for head, feature in zip(self.heads, features)]


@dataclass
class EpochStats:
    epoch: int
    losses: list[float]
    accuracies: list[float]
    seconds: float
    images: int


@dataclass
class ProbeOutcome:
    train_acc: list[float]
    """Per exit: accuracy on the training batches of the last epoch (as ``convzoo train`` reports it)."""
    test_acc: list[float]
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0


def backbone_batches(taps: FeatureTaps, loader: Any, device: torch.device, amp: bool, epoch: int) -> Batches:
    """One epoch of ``(features per exit, labels)``: one backbone forward per batch."""
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)
    for images, labels in loader:
        with torch.no_grad(), autocast_context(device, amp):
            # no_grad rather than inference_mode: the features are saved for the heads' backward.
            features = taps.extract(images)
        yield features, labels


class FeatureCache:
    """Features of every training batch, stored during the first epoch and replayed in a
    new random order (seeded by ``seed`` and the epoch) in later ones.

    Holds ``capacity x sum(exit dims)`` numbers: for 60,000 images and exits of about
    9,216 dimensions, 2.2 GB per exit in float32, which is why it is opt-in.
    """

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity, self.seed = capacity, seed
        self.exits: list[torch.Tensor] = []
        self.labels = torch.empty(0, dtype=torch.long)
        self.count = 0
        self.batch_size = 1

    def recording(self, batches: Batches) -> Batches:
        """Pass ``batches`` through, keeping a copy of each."""
        for features, labels in batches:
            if not self.exits:
                self.exits = [torch.empty(self.capacity, f.shape[1], dtype=f.dtype, device=f.device) for f in features]
                self.labels = torch.empty(self.capacity, dtype=labels.dtype, device=labels.device)
                self.batch_size = len(labels)
            end = self.count + len(labels)
            for store, feature in zip(self.exits, features):
                store[self.count : end] = feature
            self.labels[self.count : end] = labels
            self.count = end
            yield features, labels

    def replay(self, epoch: int) -> Batches:
        """One epoch of the stored batches, reshuffled; full batches only, like the loader."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.count, generator=generator).to(self.labels.device)
        for start in range(0, self.count - self.batch_size + 1, self.batch_size):
            index = order[start : start + self.batch_size]
            yield [store[index] for store in self.exits], self.labels[index]


def train_probes(
    probes: LinearProbes,
    epoch_batches: Callable[[int], Batches],
    *,
    epochs: int,
    steps_per_epoch: int,
    lr: float,
    weight_decay: float,
    amp: bool,
    device: torch.device,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> list[EpochStats]:
    """Train all heads together for ``epochs`` epochs (SGD, Nesterov momentum 0.9, cosine
    schedule to zero); returns per-epoch stats."""
    optimizer = torch.optim.SGD(probes.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    total_steps = max(1, epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    history = []
    for epoch in range(epochs):
        probes.train()
        loss_sums = torch.zeros(len(probes.heads), device=device)
        correct = torch.zeros(len(probes.heads), device=device, dtype=torch.long)
        seen = 0
        started = time.perf_counter()
        for features, labels in epoch_batches(epoch):
            with autocast_context(device, amp):
                logits = probes(features)
            losses = torch.stack([F.cross_entropy(head_logits.float(), labels) for head_logits in logits])
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            scheduler.step()
            # Accumulated on the device: no host sync per step.
            loss_sums += losses.detach() * labels.numel()
            correct += torch.stack([(head_logits.detach().argmax(1) == labels).sum() for head_logits in logits])
            seen += labels.numel()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stats = EpochStats(
            epoch + 1, (loss_sums / max(seen, 1)).tolist(), (correct.double() / max(seen, 1)).tolist(),
            time.perf_counter() - started, seen,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history


@torch.inference_mode()
def evaluate_probes(probes: LinearProbes, taps: FeatureTaps, loader: Any, device: torch.device, amp: bool) -> list[float]:
    """Test accuracy of every head, from one backbone forward per test batch."""
    probes.eval()
    correct = torch.zeros(len(probes.heads), device=device, dtype=torch.long)
    seen = 0
    for images, labels in loader:
        with autocast_context(device, amp):
            logits = probes(taps.extract(images))
        correct += torch.stack([(head_logits.argmax(1) == labels).sum() for head_logits in logits])
        seen += labels.numel()
    return (correct.double() / max(seen, 1)).tolist()
