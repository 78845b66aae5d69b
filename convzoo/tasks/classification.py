"""Classification: one label per image, cross-entropy, top-1 accuracy chooses ``best.pt``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from convzoo.engine.evaluate import autocast_context, main_logits


def training_loss(outputs: Any, labels: torch.Tensor, label_smoothing: float, aux_weight: float) -> torch.Tensor:
    """Cross-entropy of the main head, plus ``aux_weight`` x each auxiliary head's
    (GoogLeNet's training loss, Szegedy et al. 2014, section 5). ``labels`` are class
    indices, or the soft targets of MixUp/CutMix, which carry their label smoothing already
    (cross-entropy against probabilities is timm's ``SoftTargetCrossEntropy``)."""
    if labels.is_floating_point():
        label_smoothing = 0.0
    if isinstance(outputs, (tuple, list)):
        main, *auxiliary = outputs
        loss = F.cross_entropy(main.float(), labels, label_smoothing=label_smoothing)
        for aux_logits in auxiliary:
            loss = loss + aux_weight * F.cross_entropy(aux_logits.float(), labels, label_smoothing=label_smoothing)
        return loss
    return F.cross_entropy(outputs.float(), labels, label_smoothing=label_smoothing)


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    loader: Any,
    device: torch.device,
    *,
    num_classes: int,
    amp: bool = True,
    per_class: bool = False,
) -> dict[str, Any]:
    """Accuracy (fractions in [0, 1]) and mean cross-entropy over the whole loader.

    The model is put in eval mode and restored to its previous mode afterwards. A loader
    that is one rank's shard of a split (``world_size`` > 1, as ``build_loaders`` makes
    under torchrun) is evaluated on this rank only and the counts are summed over the
    ranks: every rank returns the result for the whole split, each image counted once.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.long)
    correct5 = torch.zeros((), device=device, dtype=torch.long)
    class_correct = torch.zeros(num_classes, device=device, dtype=torch.long)
    class_total = torch.zeros(num_classes, device=device, dtype=torch.long)
    count = 0
    top_k = min(5, num_classes)
    for images, labels in loader:
        with autocast_context(device, amp):
            logits = main_logits(model(images)).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        top = logits.topk(top_k, dim=1).indices
        hits = top == labels[:, None]
        correct1 += hits[:, 0].sum()
        correct5 += hits.any(dim=1).sum()
        if per_class:
            class_total += torch.bincount(labels, minlength=num_classes)
            class_correct += torch.bincount(labels[hits[:, 0]], minlength=num_classes)
        count += labels.numel()
    model.train(was_training)
    # One vector of sums (float64 counts are exact far beyond any test split), so that a
    # sharded evaluation needs a single all-reduce.
    sums = torch.cat([
        torch.stack([loss_sum, correct1.double(), correct5.double(), torch.tensor(float(count), device=device)]),
        class_correct.double(), class_total.double(),
    ])
    if getattr(loader, "world_size", 1) > 1:
        from convzoo.engine.runtime import sum_over_ranks

        sum_over_ranks(sums)
    loss_total, hits1, hits5, count = sums[:4].tolist()
    count = int(count)
    result: dict[str, Any] = {
        "acc1": hits1 / max(count, 1),
        "acc5": hits5 / max(count, 1),
        "loss": loss_total / max(count, 1),
        "n": count,
    }
    if per_class:
        class_hits, totals = sums[4:].view(2, num_classes).tolist()
        result["per_class"] = [c / t if t else None for c, t in zip(class_hits, totals)]
    return result


class Classification:
    """The task every zoo classifier trains for: a label per image."""

    name = "classification"
    targets = "labels"
    """What the data layer loads beside the images (``data.load_tensors``)."""
    metric = "acc1"
    """The key of ``evaluate``'s result that chooses ``best.pt`` (higher is better)."""
    metric_name = "accuracy"
    hits_dtype = torch.long
    """The dtype of the running count of training hits (correct labels here)."""
    accepts_mixing = True
    train_accuracy = True

    def loss(self, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float,
             aux_weight: float) -> tuple[torch.Tensor, Any]:
        """The step's loss and the model's outputs (``targets``: labels, or MixUp's soft targets)."""
        outputs = model(images)
        return training_loss(outputs, targets, label_smoothing, aux_weight), outputs

    def hits(self, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        """Correct top-1 answers in the batch (counted on the device: no host sync)."""
        return (main_logits(outputs).detach().argmax(1) == labels).sum()

    def evaluate(self, model: torch.nn.Module, loader: Any, device: torch.device, *, num_classes: int,
                 amp: bool = True, per_class: bool = False) -> dict[str, Any]:
        return evaluate(model, loader, device, num_classes=num_classes, amp=amp, per_class=per_class)

    def record(self, scores: dict[str, Any], prefix: str = "test") -> dict[str, Any]:
        """An evaluation's numbers as fields of an epoch's ``metrics.jsonl`` line."""
        return {f"{prefix}_loss": scores["loss"], f"{prefix}_acc": scores["acc1"], f"{prefix}_acc5": scores["acc5"]}

    def scalars(self, record: dict[str, Any]) -> dict[str, float]:
        """TensorBoard tags and values of an epoch's line."""
        scalars = {"accuracy/train": record["train_acc"], "accuracy/test": record["test_acc"],
                   "accuracy/test_top5": record["test_acc5"]}
        if "ema_test_acc" in record:
            scalars["accuracy/test_ema"] = record["ema_test_acc"]
        return scalars

    def describe(self, record: dict[str, Any], prefix: str) -> str:
        """``prefix``'s numbers in an epoch's line, e.g. ``loss 0.3123 acc 91.20%``."""
        return f"loss {record[f'{prefix}_loss']:.4f} acc {100 * record[f'{prefix}_acc']:.2f}%"

    def summary_line(self, result: dict[str, Any]) -> str:
        """The start of ``convzoo train``'s last line."""
        return (f"best test accuracy {100 * result['best_acc']:.2f}% (epoch {result['best_epoch']}), "
                f"final {100 * result['final_acc']:.2f}%"
                + (f" (EMA {100 * result['final_ema_acc']:.2f}%)" if "final_ema_acc" in result else ""))

    def eval_lines(self, result: dict[str, Any]) -> list[str]:
        """What ``convzoo eval`` prints."""
        lines = [f"{result['model']} on {result['dataset']} test ({result['n']:,} images): "
                 f"top-1 {100 * result['acc1']:.2f}%  top-5 {100 * result['acc5']:.2f}%  loss {result['loss']:.4f}"]
        if "per_class" in result:
            width = max(map(len, result["class_names"]))
            for name, accuracy in zip(result["class_names"], result["per_class"]):
                lines.append(f"  {name:<{width}}  {'n/a' if accuracy is None else f'{100 * accuracy:.2f}%'}")
        return lines
