"""Top-activating dataset patches: for each channel, the images where it fires most,
cropped to the part of the image its most active unit sees (Zeiler & Fergus 2014, Fig. 2;
Girshick et al. 2014, Fig. 4; the lecture's "maximum response samples" from data).

One batched pass over the split keeps a running top-k per channel *on the device*: each
batch contributes every image's maximum over positions, and ``topk`` over the k kept
plus the batch's keeps the best k. Nothing per image leaves the device until the end,
so the pass costs about one forward up to the layer (the forward stops there).

Each crop is the unit's exact receptive field from ``convzoo.receptive_field``: unit
(row, column) of the layer sees input rows ``start + row * jump`` .. ``+ size - 1``
(Araujo et al., Distill 2019), clipped at the image border, where the field runs into
the zero padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.probing.layers import LayerInfo
from convzoo.receptive_field import ReceptiveField, receptive_fields
from convzoo.visualize.layers import frozen, layer_output, require_spatial

Box = tuple[tuple[int, int], tuple[int, int]]
"""(first row, last row), (first column, last column) of an input region, inclusive."""


def unit_field(model: nn.Module, layer: LayerInfo, input_shape: tuple[int, int, int]) -> ReceptiveField:
    """The receptive field of ``layer``'s units for inputs of ``input_shape`` (C, H, W)."""
    require_spatial(layer)
    field = receptive_fields(model, input_shape).field(layer.name)
    if field is None or not field.is_known or field.is_global:
        raise ConvzooError(f"--layer {layer.name}: its units have no known local receptive field (they see the whole "
                           "image or follow an operation the field tracer cannot follow); pick an earlier layer.")
    return field


def clipped_box(field: ReceptiveField, row: int, column: int, height: int, width: int) -> Box:
    """Unit (row, column)'s field box, clipped to an image of height x width."""
    (top, bottom), (left, right) = field.box(row, column)
    return (max(top, 0), min(bottom, height - 1)), (max(left, 0), min(right, width - 1))


@dataclass
class TopPatches:
    """Each channel's ``top`` images and positions, best first (column j is ``channels[j]``)."""

    layer: str
    channels: list[int]
    values: torch.Tensor
    """(top, channels) activations, descending down each column."""
    image_indices: torch.Tensor
    """(top, channels) index of each image in the pass (the split's index)."""
    positions: torch.Tensor
    """(top, channels, 2) row and column of the most active unit in the layer's map."""
    field: ReceptiveField
    image_side: tuple[int, int]
    images_seen: int

    def box(self, rank: int, column: int) -> Box:
        """The clipped input box of the ``rank``-th patch of channel ``channels[column]``."""
        row, col = (int(v) for v in self.positions[rank, column])
        return clipped_box(self.field, row, col, *self.image_side)

    def crops(self, image_of: Callable[[int], torch.Tensor], most: int | None = None) -> list[list[torch.Tensor]]:
        """Per channel, its (``most``) best patches cut from ``image_of(index)`` ((C, H, W)
        pixels at the model's side)."""
        result = []
        for column in range(len(self.channels)):
            row_crops = []
            for rank in range(min(self.values.shape[0], most or self.values.shape[0])):
                (top, bottom), (left, right) = self.box(rank, column)
                row_crops.append(image_of(int(self.image_indices[rank, column]))[:, top:bottom + 1, left:right + 1])
            result.append(row_crops)
        return result

    def records(self) -> list[dict]:
        """One row per patch: channel, rank, image index, position, activation, box."""
        rows = []
        for column, channel in enumerate(self.channels):
            for rank in range(self.values.shape[0]):
                (top, bottom), (left, right) = self.box(rank, column)
                rows.append({
                    "channel": channel, "rank": rank, "image_index": int(self.image_indices[rank, column]),
                    "row": int(self.positions[rank, column, 0]), "column": int(self.positions[rank, column, 1]),
                    "activation": float(self.values[rank, column]),
                    "box_rows": [top, bottom], "box_columns": [left, right],
                })
        return rows


@torch.no_grad()
def top_activating_patches(
    model: nn.Module,
    layer: LayerInfo,
    batches: Iterable[torch.Tensor],
    channels: list[int],
    top: int = 9,
) -> TopPatches:
    """Each of ``channels``' ``top`` (image, position) pairs of highest activation over
    ``batches`` of model inputs (normalised, on the model's device), in the order given.
    The model runs in eval mode and is left as it was."""
    with frozen(model):
        return _search(model, layer, batches, channels, top)


def _search(model: nn.Module, layer: LayerInfo, batches: Iterable[torch.Tensor], channels: list[int],
            top: int) -> TopPatches:
    require_spatial(layer)
    if top < 1:
        raise ConvzooError(f"--top must be at least 1, got {top}.")
    height, width = layer.shape[1:]
    wanted: torch.Tensor | None = None
    values = image_indices = flat_positions = None
    seen = 0
    field = None
    for inputs in batches:
        if field is None:
            field = unit_field(model, layer, tuple(inputs.shape[1:]))
            wanted = torch.tensor(channels, device=inputs.device)
            values = torch.full((0, len(channels)), float("-inf"), device=inputs.device)
            image_indices = torch.zeros((0, len(channels)), dtype=torch.long, device=inputs.device)
            flat_positions = torch.zeros((0, len(channels)), dtype=torch.long, device=inputs.device)
        activations = layer_output(model, inputs, layer).index_select(1, wanted).float()
        best, where = activations.max(dim=2)  # (N, channels): each image's strongest unit
        batch_indices = torch.arange(seen, seen + len(inputs), device=inputs.device)[:, None].expand_as(best)
        candidates = torch.cat([values, best])
        kept = min(top, len(candidates))
        values, order = candidates.topk(kept, dim=0)
        image_indices = torch.cat([image_indices, batch_indices]).gather(0, order)
        flat_positions = torch.cat([flat_positions, where]).gather(0, order)
        seen += len(inputs)
    if field is None:
        raise ConvzooError("no images to search for patches.")
    positions = torch.stack([flat_positions // width, flat_positions % width], dim=-1)
    side = (int(inputs.shape[-2]), int(inputs.shape[-1]))
    return TopPatches(layer.name, list(channels), values.cpu(), image_indices.cpu(), positions.cpu(), field, side, seen)


def input_batches(images: torch.Tensor, to_inputs: Callable[[torch.Tensor], torch.Tensor],
                  batch_size: int) -> Iterator[torch.Tensor]:
    """Model inputs from a split held as one tensor (uint8 or float), ``batch_size`` at a time."""
    for first in range(0, len(images), batch_size):
        yield to_inputs(images[first:first + batch_size])
