"""Semantic segmentation: a class per pixel (Long, Shelhamer, Darrell 2015).

The model returns a score map ``(N, classes, H, W)`` the input's size; the loss is the
per-pixel cross-entropy, averaged over the pixels that are labelled (the void label 255 of
Pascal VOC, object borders and padding, is ignored); evaluation accumulates one confusion
matrix on the device, summed over torchrun ranks, from which pixel accuracy, per-class IoU
and mean IoU follow (the FCN paper's section 5 metrics). Mean IoU chooses ``best.pt``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from convzoo.engine.evaluate import autocast_context, main_logits

IGNORE_INDEX = 255
"""The void label: pixels with it count in no loss and no metric (Pascal VOC's convention)."""


def segmentation_loss(outputs: Any, masks: torch.Tensor, label_smoothing: float = 0.0,
                      aux_weight: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the labelled pixels of the main score map, plus ``aux_weight``
    x each auxiliary map's (torchvision's FCN/DeepLab auxiliary classifier)."""
    masks = masks.long()
    if isinstance(outputs, (tuple, list)):
        main, *auxiliary = outputs
        loss = F.cross_entropy(main.float(), masks, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
        for aux_scores in auxiliary:
            loss = loss + aux_weight * F.cross_entropy(aux_scores.float(), masks, ignore_index=IGNORE_INDEX,
                                                       label_smoothing=label_smoothing)
        return loss
    return F.cross_entropy(outputs.float(), masks, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def confusion_matrix(predicted: torch.Tensor, masks: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``(classes, classes)`` counts: row = true class, column = predicted class; void pixels
    (and any label outside ``[0, classes)``) are left out. One ``bincount``, on the device."""
    masks = masks.long().flatten()
    predicted = predicted.long().flatten()
    labelled = (masks >= 0) & (masks < num_classes)
    pairs = masks[labelled] * num_classes + predicted[labelled]
    return torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes)


def scores_from_confusion(confusion: torch.Tensor) -> dict[str, Any]:
    """Pixel accuracy, IoU per class and their mean, from a confusion matrix.

    IoU of class c = TP / (TP + FP + FN) = n_cc / (t_c + sum_i n_ic - n_cc) (Long et al.
    2015, section 5). A class that is in neither the labels nor the predictions has no IoU
    (None) and is left out of the mean, as torchmetrics' ``JaccardIndex`` and the VOC
    devkit leave out classes absent from a split.
    """
    confusion = confusion.double()
    true_positives = confusion.diag()
    labelled = confusion.sum(1)
    predicted = confusion.sum(0)
    union = labelled + predicted - true_positives
    iou = true_positives / union.clamp(min=1)
    present = union > 0
    total = float(confusion.sum())
    return {
        "pixel_acc": float(true_positives.sum()) / max(total, 1.0),
        "miou": float(iou[present].mean()) if bool(present.any()) else 0.0,
        "per_class": [float(value) if is_present else None for value, is_present in zip(iou.tolist(), present.tolist())],
    }


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: Any, device: torch.device, *, num_classes: int, amp: bool = True,
             per_class: bool = False) -> dict[str, Any]:
    """Pixel accuracy, mean IoU (per-class IoU with ``per_class``) and the mean per-pixel
    cross-entropy over the whole loader; a torchrun shard's sums are added over the ranks
    (one all-reduce), so every rank returns the whole split's numbers."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, device=device, dtype=torch.long)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    images_seen = 0
    for images, masks in loader:
        with autocast_context(device, amp):
            scores = main_logits(model(images)).float()
        masks = masks.long()
        loss_sum += F.cross_entropy(scores, masks, ignore_index=IGNORE_INDEX, reduction="sum")
        confusion += confusion_matrix(scores.argmax(1), masks, num_classes)
        images_seen += len(masks)
    model.train(was_training)
    sums = torch.cat([confusion.flatten().double(), torch.stack([loss_sum, torch.tensor(float(images_seen),
                                                                                          device=device)])])
    if getattr(loader, "world_size", 1) > 1:
        from convzoo.engine.runtime import sum_over_ranks

        sum_over_ranks(sums)
    confusion = sums[:-2].view(num_classes, num_classes)
    scores = scores_from_confusion(confusion)
    result: dict[str, Any] = {
        "miou": scores["miou"], "pixel_acc": scores["pixel_acc"],
        "loss": float(sums[-2]) / max(float(confusion.sum()), 1.0), "n": int(sums[-1]),
    }
    if per_class:
        result["per_class"] = scores["per_class"]
    return result


class Segmentation:
    """A class for every pixel: FCN, U-Net (``convzoo list``, task segmentation)."""

    name = "segmentation"
    targets = "masks"
    metric = "miou"
    metric_name = "mean IoU"
    hits_dtype = torch.float64
    """Training hits: each image's fraction of labelled pixels right, summed over images."""
    accepts_mixing = False
    train_accuracy = True

    def loss(self, model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor, *, label_smoothing: float,
             aux_weight: float) -> tuple[torch.Tensor, Any]:
        outputs = model(images)
        return segmentation_loss(outputs, masks, label_smoothing, aux_weight), outputs

    def hits(self, outputs: Any, masks: torch.Tensor) -> torch.Tensor:
        """The batch's per-image pixel accuracies, summed (training accuracy is their mean)."""
        masks = masks.long()
        labelled = masks != IGNORE_INDEX
        right = (main_logits(outputs).detach().argmax(1) == masks) & labelled
        return (right.flatten(1).sum(1).double() / labelled.flatten(1).sum(1).clamp(min=1)).sum()

    def evaluate(self, model: torch.nn.Module, loader: Any, device: torch.device, *, num_classes: int,
                 amp: bool = True, per_class: bool = False) -> dict[str, Any]:
        return evaluate(model, loader, device, num_classes=num_classes, amp=amp, per_class=per_class)

    def record(self, scores: dict[str, Any], prefix: str = "test") -> dict[str, Any]:
        return {f"{prefix}_loss": scores["loss"], f"{prefix}_miou": scores["miou"],
                f"{prefix}_pixel_acc": scores["pixel_acc"]}

    def scalars(self, record: dict[str, Any]) -> dict[str, float]:
        scalars = {"accuracy/train_pixels": record["train_acc"], "accuracy/test_pixels": record["test_pixel_acc"],
                   "iou/test_mean": record["test_miou"]}
        if "ema_test_miou" in record:
            scalars["iou/test_ema_mean"] = record["ema_test_miou"]
        return scalars

    def describe(self, record: dict[str, Any], prefix: str) -> str:
        return (f"loss {record[f'{prefix}_loss']:.4f} mIoU {record[f'{prefix}_miou']:.4f} "
                f"pixel acc {100 * record[f'{prefix}_pixel_acc']:.2f}%")

    def summary_line(self, result: dict[str, Any]) -> str:
        return (f"best test mIoU {result['best_acc']:.4f} (epoch {result['best_epoch']}), "
                f"final {result['final_acc']:.4f}"
                + (f" (EMA {result['final_ema_acc']:.4f})" if "final_ema_acc" in result else ""))

    def eval_lines(self, result: dict[str, Any]) -> list[str]:
        lines = [f"{result['model']} on {result['dataset']} test ({result['n']:,} images): mIoU {result['miou']:.4f}  "
                 f"pixel accuracy {100 * result['pixel_acc']:.2f}%  loss {result['loss']:.4f}"]
        if "per_class" in result:
            width = max(map(len, result["class_names"]))
            for name, iou in zip(result["class_names"], result["per_class"]):
                lines.append(f"  {name:<{width}}  IoU {'n/a (absent)' if iou is None else f'{iou:.4f}'}")
        return lines
