"""Boxes of images for a trained detector: drawn on the image the model saw
(``torchvision.utils.draw_bounding_boxes``, class name and score on each) and written as
JSON in the COCO results format (``image_id``, ``category_id``, ``bbox`` as x, y, width,
height, ``score``; plus each image's ``file_name``).

``--score-threshold`` and ``--nms-iou`` are set on the detector's own post-processing
(torchvision's ``RoIHeads.score_thresh`` and ``nms_thresh``: per-class NMS), so the boxes
are those the model itself keeps with those values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from convzoo.deploy.predict import Predictor
from convzoo.deploy.segment import FolderWriter, palette
from convzoo.errors import ConvzooError

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_NMS_IOU = 0.5


@dataclass
class BoxPrediction:
    """One image's boxes: ``[{"box": [x1, y1, x2, y2], "class", "name", "score"}]``, best first."""

    image: str
    boxes: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "boxes": self.boxes, **self.files}


def set_postprocessing(model: torch.nn.Module, score_threshold: float, nms_iou: float) -> None:
    """The detector's own score threshold and per-class NMS IoU, where it has them (torchvision's RoI heads)."""
    if not 0 <= score_threshold <= 1:
        raise ConvzooError(f"--score-threshold is a score in [0, 1], got {score_threshold}.")
    if not 0 < nms_iou <= 1:
        raise ConvzooError(f"--nms-iou is an IoU in (0, 1], got {nms_iou}.")
    heads = getattr(model, "roi_heads", None)
    if heads is None:
        raise ConvzooError("this model has no RoI heads to set --score-threshold/--nms-iou on: it is not a detector.")
    heads.score_thresh, heads.nms_thresh = score_threshold, nms_iou


class BoxWriter(FolderWriter):
    """Writes each image's ``NAME.boxes.png``, and ``detections.json`` for all of them at ``close``."""

    def __init__(self, predictor: Predictor, out_dir: str | Path, *, score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                 nms_iou: float = DEFAULT_NMS_IOU) -> None:
        super().__init__(predictor, out_dir)
        set_postprocessing(predictor.model, score_threshold, nms_iou)
        self.results: list[dict[str, Any]] = []
        self.count = 0

    def predictions(self, images: torch.Tensor, names: Sequence[str]) -> Iterator[BoxPrediction]:
        from torchvision.io import write_png
        from torchvision.utils import draw_bounding_boxes

        colours = palette(self.predictor.num_classes)
        for name, image, found in zip(names, images, self.predictor.outputs(images)):
            self.count += 1
            boxes = found["boxes"].float().cpu()
            labels, scores = found["labels"].cpu().tolist(), found["scores"].float().cpu().tolist()
            entries = [{"box": [round(v, 2) for v in box], "class": label,
                        "name": self.predictor.class_names[label], "score": round(score, 4)}
                       for box, label, score in zip(boxes.tolist(), labels, scores)]
            for entry in entries:
                x1, y1, x2, y2 = entry["box"]
                self.results.append({"image_id": self.count, "file_name": name, "category_id": entry["class"],
                                     "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "score": entry["score"]})
            picture = image.cpu()
            picture = picture.expand(3, -1, -1) if picture.shape[0] == 1 else picture[:3]
            if entries:
                picture = draw_bounding_boxes(picture, boxes, [f"{e['name']} {e['score']:.2f}" for e in entries],
                                              colors=[colours[label] if label else (255, 255, 255) for label in labels])
            path = self.out_dir / f"{self.stem(name)}.boxes.png"
            write_png(picture, str(path))
            yield BoxPrediction(name, entries, {"picture": str(path)})

    def close(self) -> str:
        """Write ``detections.json`` (COCO results format); its path."""
        path = self.out_dir / "detections.json"
        path.write_text(json.dumps(self.results, indent=1))
        return str(path)
