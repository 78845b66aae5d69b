"""Object detection: boxes, labels and scores per image (Faster R-CNN, Ren et al. 2015).

A detector takes a list of normalised (C, H, W) images and, in training, a list of
``{"boxes": (K, 4) x1 y1 x2 y2, "labels": (K,)}`` targets, and returns its losses (the RPN's
objectness and box regression, the RoI head's classification and box regression:
torchvision's ``GeneralizedRCNN`` contract); in evaluation it returns boxes, labels and
scores in the input's pixel coordinates. The in-memory datasets carry each image's boxes as
rows of a padded ``(N, K, 5)`` tensor (x1, y1, x2, y2, label; label -1 pads), turned into
that list here. COCO's mAP@[.5:.95] chooses ``best.pt``, computed by the standard
evaluator, pycocotools' ``COCOeval``, once on rank 0 over every rank's detections.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch

from convzoo.engine.evaluate import autocast_context


def target_dicts(padded: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Padded ``(N, K, 5)`` rows (x1, y1, x2, y2, label; label < 0 pads) to torchvision's
    per-image ``{"boxes", "labels"}`` (an image without objects gets (0, 4) boxes)."""
    if isinstance(padded, (list, tuple)):
        return list(padded)
    targets = []
    for rows in padded:
        kept = rows[rows[:, 4] >= 0]
        targets.append({"boxes": kept[:, :4].float(), "labels": kept[:, 4].long()})
    return targets


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    """x1 y1 x2 y2 boxes as COCO's [x, y, width, height]."""
    boxes = boxes.double()
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()


def coco_scores(detections: list[dict[str, torch.Tensor]], ground_truth: list[dict[str, torch.Tensor]],
                num_classes: int, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """COCO box AP of ``detections`` against ``ground_truth`` (both per image, in order), by
    pycocotools' ``COCOeval``: mAP@[.5:.95] (``map``), mAP@0.5, mAP@0.75 and AP per class
    (the mean over the ten IoU thresholds and the recall points, None for a class without
    ground truth). Classes are 1..num_classes-1 (0 is the background, torchvision's convention);
    a ground-truth box with ``iscrowd`` set is matched but never missed, as COCO defines."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    height, width = image_size or (0, 0)
    images, annotations, results = [], [], []
    for image_id, (truth, found) in enumerate(zip(ground_truth, detections), start=1):
        images.append({"id": image_id, "height": height, "width": width})
        crowd = truth.get("iscrowd", torch.zeros(len(truth["boxes"]), dtype=torch.long))
        for box, label, is_crowd in zip(_xywh(truth["boxes"]), truth["labels"].tolist(), crowd.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": box, "area": box[2] * box[3], "iscrowd": int(is_crowd)})
        for box, label, score in zip(_xywh(found["boxes"]), found["labels"].tolist(), found["scores"].tolist()):
            results.append({"image_id": image_id, "category_id": int(label), "bbox": box, "score": float(score)})
    categories = [{"id": index} for index in range(1, num_classes)]
    empty = {"map": 0.0, "map50": 0.0, "map75": 0.0, "per_class": [None] * (num_classes - 1)}
    if not annotations:
        return empty
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        truth_set = COCO()
        truth_set.dataset = {"images": images, "annotations": annotations, "categories": categories}
        truth_set.createIndex()
        if not results:
            return {**empty, "per_class": [0.0 if _has(truth_set, c) else None for c in range(1, num_classes)]}
        evaluation = COCOeval(truth_set, truth_set.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # precision: [IoU thresholds, recall points, classes, area ranges, max detections]; -1: no ground truth
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_class = []
    for column in range(precision.shape[2]):
        values = precision[:, :, column]
        values = values[values > -1]
        per_class.append(float(values.mean()) if values.size else None)
    stats = evaluation.stats
    return {"map": max(float(stats[0]), 0.0), "map50": max(float(stats[1]), 0.0), "map75": max(float(stats[2]), 0.0),
            "per_class": per_class}


def _has(truth_set: Any, category: int) -> bool:
    return bool(truth_set.getAnnIds(catIds=[category]))


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: Any, device: torch.device, *, num_classes: int, amp: bool = True,
             per_class: bool = False) -> dict[str, Any]:
    """COCO mAP of ``model`` over the whole loader. Under torchrun every rank's detections
    are gathered to rank 0, evaluated there once, and the numbers sent back to every rank."""
    was_training = model.training
    model.eval()
    detections, ground_truth, size = [], [], None
    for images, targets in loader:
        with autocast_context(device, amp):
            outputs = model(list(images))
        size = tuple(images[0].shape[-2:])
        for found, truth in zip(outputs, target_dicts(targets)):
            detections.append({key: found[key].float().cpu() if key != "labels" else found[key].cpu()
                               for key in ("boxes", "labels", "scores")})
            ground_truth.append({key: value.cpu() for key, value in truth.items()})
    model.train(was_training)
    world_size = getattr(loader, "world_size", 1)
    if world_size > 1:
        import torch.distributed as dist

        gathered: list[Any] = [None] * world_size
        dist.all_gather_object(gathered, (detections, ground_truth, size))
        result = [None]
        if dist.get_rank() == 0:
            everything = [item for part in gathered for item in zip(part[0], part[1])]
            size = next((part[2] for part in gathered if part[2] is not None), None)
            result[0] = {**coco_scores([d for d, _ in everything], [t for _, t in everything], num_classes, size),
                         "n": len(everything)}
        dist.broadcast_object_list(result, src=0)
        scores = result[0]
    else:
        scores = {**coco_scores(detections, ground_truth, num_classes, size), "n": len(detections)}
    if not per_class:
        scores = {key: value for key, value in scores.items() if key != "per_class"}
    return {**scores, "loss": None}


class Detection:
    """Boxes with a class and a score: Faster R-CNN on zoo backbones (``convzoo list``, task detection)."""

    name = "detection"
    targets = "boxes"
    metric = "map"
    metric_name = "mAP@[.5:.95]"
    hits_dtype = torch.long
    accepts_mixing = False
    train_accuracy = False
    """A detector's training has losses, no accuracy."""

    def loss(self, model: torch.nn.Module, images: torch.Tensor, targets: Any, *, label_smoothing: float,
             aux_weight: float) -> tuple[torch.Tensor, Any]:
        losses = model(list(images), target_dicts(targets))
        return sum(losses.values()), losses

    def hits(self, outputs: Any, targets: Any) -> torch.Tensor:
        return torch.zeros((), dtype=torch.long, device=next(iter(outputs.values())).device)

    def evaluate(self, model: torch.nn.Module, loader: Any, device: torch.device, *, num_classes: int,
                 amp: bool = True, per_class: bool = False) -> dict[str, Any]:
        return evaluate(model, loader, device, num_classes=num_classes, amp=amp, per_class=per_class)

    def record(self, scores: dict[str, Any], prefix: str = "test") -> dict[str, Any]:
        return {f"{prefix}_map": scores["map"], f"{prefix}_map50": scores["map50"], f"{prefix}_map75": scores["map75"]}

    def scalars(self, record: dict[str, Any]) -> dict[str, float]:
        scalars = {"map/test": record["test_map"], "map/test_50": record["test_map50"],
                   "map/test_75": record["test_map75"]}
        if "ema_test_map" in record:
            scalars["map/test_ema"] = record["ema_test_map"]
        return scalars

    def describe(self, record: dict[str, Any], prefix: str) -> str:
        return (f"mAP {record[f'{prefix}_map']:.4f} mAP@0.5 {record[f'{prefix}_map50']:.4f} "
                f"mAP@0.75 {record[f'{prefix}_map75']:.4f}")

    def summary_line(self, result: dict[str, Any]) -> str:
        return (f"best test mAP@[.5:.95] {result['best_acc']:.4f} (epoch {result['best_epoch']}), "
                f"final {result['final_acc']:.4f}"
                + (f" (EMA {result['final_ema_acc']:.4f})" if "final_ema_acc" in result else ""))

    def eval_lines(self, result: dict[str, Any]) -> list[str]:
        lines = [f"{result['model']} on {result['dataset']} test ({result['n']:,} images): "
                 f"mAP@[.5:.95] {result['map']:.4f}  mAP@0.5 {result['map50']:.4f}  mAP@0.75 {result['map75']:.4f}"]
        if "per_class" in result:
            names = result["class_names"][1:]  # class 0 is the background
            width = max(map(len, names))
            for name, ap in zip(names, result["per_class"]):
                lines.append(f"  {name:<{width}}  AP {'n/a (absent)' if ap is None else f'{ap:.4f}'}")
        return lines
