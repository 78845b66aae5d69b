"""Masks of images for a trained segmentation model: the class of every pixel, written as
a palette PNG (the Pascal VOC format: pixel value = class index) and as a colour overlay on
the image the model saw (``torchvision.utils.draw_segmentation_masks``).

The masks are at the model's input resolution: images are brought to it by the run's own
preprocessing (``deploy.predict.Predictor``), as ``convzoo eval`` saw its test images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from convzoo.deploy.predict import Predictor, UnreadableImage
from convzoo.errors import ConvzooError

OVERLAY_ALPHA = 0.5


def palette(num_classes: int = 256) -> list[tuple[int, int, int]]:
    """Pascal VOC's colour map: class 0 (background) black, then the bits of the class index
    spread over the high bits of red, green and blue (the devkit's ``labelcolormap``)."""
    colours = []
    for index in range(num_classes):
        red = green = blue = 0
        code = index
        for shift in range(7, -1, -1):
            red |= ((code >> 0) & 1) << shift
            green |= ((code >> 1) & 1) << shift
            blue |= ((code >> 2) & 1) << shift
            code >>= 3
        colours.append((red, green, blue))
    return colours


@dataclass
class MaskPrediction:
    """One image's predicted mask and the share of its pixels each class covers."""

    image: str
    mask: torch.Tensor = field(repr=False)
    """(H, W) uint8 class indices."""
    shares: dict[str, float]
    """Class name -> fraction of the pixels, largest first, classes present only."""
    files: dict[str, str] = field(default_factory=dict)
    """``mask`` and ``overlay``: the PNGs written."""

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "classes": self.shares, **self.files}


def masks_of(predictor: Predictor, images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 class indices for (N, C, H, W) images (uint8 as stored, or floats in [0, 1])."""
    scores = predictor.scores(images)
    if scores.dim() != 4:
        raise ConvzooError(f"{predictor.source.model_name} returns class scores, not score maps: it is not a "
                           "segmentation model.")
    return scores.argmax(1).to(torch.uint8).cpu()


def write_mask_png(mask: torch.Tensor, path: Path) -> None:
    """``mask`` as a palette PNG: the pixel values are the class indices, shown in VOC's colours."""
    from PIL import Image

    image = Image.fromarray(mask.numpy(), mode="P")
    image.putpalette([channel for colour in palette() for channel in colour])
    image.save(path)


def overlay(image: torch.Tensor, mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(3, H, W) uint8: the classes other than background painted over ``image`` (uint8, 1 or 3 channels)."""
    from torchvision.utils import draw_segmentation_masks

    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    classes = [index for index in range(1, num_classes) if bool((mask == index).any())]
    if not classes:
        return rgb.clone()
    masks = torch.stack([mask == index for index in classes])
    colours = palette(num_classes)
    return draw_segmentation_masks(rgb, masks, alpha=OVERLAY_ALPHA, colors=[colours[index] for index in classes])


class FolderWriter:
    """Writes each image's pictures into ``out_dir`` under its file's stem, made unique among
    this command's outputs (two folders' ``1.png``)."""

    def __init__(self, predictor: Predictor, out_dir: str | Path) -> None:
        self.predictor, self.out_dir = predictor, Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConvzooError(f"cannot create --out {out_dir}: {error.strerror}.") from None
        self.used: set[str] = set()

    def stem(self, name: str) -> str:
        stem = Path(name).stem
        candidate, number = stem, 2
        while candidate in self.used:
            candidate, number = f"{stem}-{number}", number + 1
        self.used.add(candidate)
        return candidate


class MaskWriter(FolderWriter):
    """Writes each image's ``NAME.mask.png`` and ``NAME.overlay.png``."""

    def predictions(self, images: torch.Tensor, names: Sequence[str]) -> Iterator[MaskPrediction]:
        """Predict and write the masks of uint8 ``images`` (as the model sees them)."""
        from torchvision.io import write_png

        for name, image, mask in zip(names, images, masks_of(self.predictor, images)):
            stem = self.stem(name)
            files = {"mask": str(self.out_dir / f"{stem}.mask.png"), "overlay": str(self.out_dir / f"{stem}.overlay.png")}
            write_mask_png(mask, Path(files["mask"]))
            write_png(overlay(image.cpu(), mask, self.predictor.num_classes), files["overlay"])
            yield MaskPrediction(name, mask, self._shares(mask), files)

    def _shares(self, mask: torch.Tensor) -> dict[str, float]:
        counts = torch.bincount(mask.flatten().long(), minlength=self.predictor.num_classes)
        total = float(counts.sum())
        order = counts.argsort(descending=True).tolist()
        return {self.predictor.class_names[index]: round(float(counts[index]) / total, 4)
                for index in order if counts[index] > 0}


def files_through(writer: Any, paths: Sequence[str | Path], *, batch_size: int = 64,
                  num_workers: int | None = None) -> Iterator[Any]:
    """``writer.predictions`` (masks, boxes) of image files and folders, in file order; files
    that cannot be decoded are yielded as ``UnreadableImage``."""
    for images, decoded, failures in writer.predictor.file_batches(paths, batch_size=batch_size,
                                                                   num_workers=num_workers):
        by_index: dict[int, Any] = {index: UnreadableImage(name, error) for index, name, error in failures}
        if decoded:
            for (index, _), prediction in zip(decoded, writer.predictions(images, [name for _, name in decoded])):
                by_index[index] = prediction
        for index in sorted(by_index):
            yield by_index[index]
