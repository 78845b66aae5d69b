"""The effective receptive field: how much each input pixel actually moves one unit.

Luo, Li, Urtasun & Zemel, "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks" (NeurIPS 2016): the gradient of the centre unit of a
layer's output with respect to the input, in absolute value and averaged over images,
is roughly Gaussian, and occupies only a fraction of the theoretical receptive field
(``convzoo.receptive_field``), a fraction that shrinks as O(1/sqrt(n)) with depth n. For n
stacked k x k convolutions with equal weights and no nonlinearity it is exactly the
n-fold convolution of a uniform k-box, of variance n (k^2 - 1) / 12 per axis (their
section 2.2); training grows it (section 4.2).

``effective_field`` measures it on any model; ``EffectiveField.mass_square`` gives the
side of the smallest square, centred on the theoretical field's centre, that holds a
fraction of the gradient's mass, and ``fraction_of_field`` divides that by the field's side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from convzoo.attribution.wrapping import GradientReadyModel
from convzoo.inspection import Preprocessing

MASS_FRACTIONS = (0.5, 0.9, 0.99)


@dataclass
class EffectiveField:
    """The mean absolute input gradient of one unit, and its theoretical field's box."""

    layer: str
    gradient: torch.Tensor
    """(H, W): |d unit / d pixel| summed over input channels, averaged over the images."""
    position: tuple[int, int]
    """The unit: (row, column) in the layer's output map."""
    box: tuple[tuple[int, int], tuple[int, int]]
    """Theoretical field of the unit: (first, last) input rows and columns, inclusive;
    may reach beyond the image (into the padding) in deep networks."""
    images: int

    @property
    def theoretical_side(self) -> int:
        (top, bottom), (left, right) = self.box
        return max(bottom - top + 1, right - left + 1)

    @property
    def centre(self) -> tuple[float, float]:
        (top, bottom), (left, right) = self.box
        return (top + bottom) / 2, (left + right) / 2

    def outside_mass(self) -> float:
        """Gradient mass outside the theoretical box (zero, exactly, if the theory holds)."""
        (top, bottom), (left, right) = self.box
        outside = self.gradient.clone()
        outside[max(top, 0):bottom + 1, max(left, 0):right + 1] = 0
        return float(outside.sum())

    def mass_square(self, fraction: float) -> int:
        """Side of the smallest square centred on the field's centre holding ``fraction`` of the mass.

        Sides grow by 2 so that the square stays centred (odd sides around a pixel, even
        ones around a corner between four pixels).
        """
        total = float(self.gradient.sum())
        if total <= 0:
            return 0
        height, width = self.gradient.shape
        centre_row, centre_column = self.centre
        rows = torch.arange(height, dtype=torch.float64)
        columns = torch.arange(width, dtype=torch.float64)
        # Chebyshev distance from the centre, in half-pixels: a square of side s holds the
        # pixels at distance <= (s - 1) / 2.
        distance = torch.maximum((rows[:, None] - centre_row).abs(), (columns[None, :] - centre_column).abs())
        order = torch.argsort(distance.flatten())
        cumulative = torch.cumsum(self.gradient.flatten().double()[order], 0)
        needed = int(torch.searchsorted(cumulative, fraction * total - 1e-12 * total))
        radius = float(distance.flatten()[order][min(needed, len(order) - 1)])
        return int(round(2 * radius + 1))

    def fraction_of_field(self, fraction: float) -> float:
        return self.mass_square(fraction) / self.theoretical_side

    @property
    def exceeds_input(self) -> bool:
        """Whether the theoretical field reaches past the image (deep networks on small
        inputs: ResNet-56's 249 pixels in a 64-pixel image)."""
        (top, bottom), (left, right) = self.box
        height, width = self.gradient.shape
        return top < 0 or left < 0 or bottom > height - 1 or right > width - 1

    def is_clipped(self, side: int) -> bool:
        """Whether a square of ``side`` centred on the field reaches the image's edge: the
        gradient beyond the edge was never measured, so such a square is the image's
        extent, not the effective field's."""
        height, width = self.gradient.shape
        centre_row, centre_column = self.centre
        room = min(centre_row, height - 1 - centre_row, centre_column, width - 1 - centre_column)
        return (side - 1) / 2 >= room

    def standard_deviation(self) -> tuple[float, float]:
        """Spread of the gradient mass along rows and columns, in pixels (Luo et al.'s measure)."""
        weights = self.gradient.double() / self.gradient.double().sum()
        spreads = []
        for axis in (0, 1):
            marginal = weights.sum(1 - axis)
            coordinates = torch.arange(len(marginal), dtype=torch.float64)
            mean = (marginal * coordinates).sum()
            spreads.append(float(((marginal * (coordinates - mean) ** 2).sum()).sqrt()))
        return spreads[0], spreads[1]

    def summary(self) -> dict[str, object]:
        """The numbers ``visualize erf`` reports; a square the image's edge clipped is None
        (not a measure of the effective field), as is its fraction."""
        row_spread, column_spread = self.standard_deviation()
        squares = {fraction: self.mass_square(fraction) for fraction in MASS_FRACTIONS}
        measured = {fraction: None if self.is_clipped(side) else side for fraction, side in squares.items()}
        return {
            "layer": self.layer, "unit": list(self.position), "images": self.images,
            "input_side": list(self.gradient.shape), "exceeds_input": self.exceeds_input,
            "theoretical_side": self.theoretical_side, "theoretical_box": [list(axis) for axis in self.box],
            **{f"square_{round(100 * f)}": side for f, side in measured.items()},
            **{f"fraction_{round(100 * f)}": None if side is None else round(side / self.theoretical_side, 4)
               for f, side in measured.items()},
            "std_pixels": round((row_spread + column_spread) / 2, 3), "mass_outside_field": self.outside_mass(),
        }


class _Captured(Exception):
    """Raised by the layer's hook: nothing after it is needed."""


def effective_field(model: nn.Module, inputs: torch.Tensor, layer: str, preprocessing: Preprocessing | None = None,
                    *, position: tuple[int, int] | None = None, batch_size: int = 64) -> EffectiveField:
    """Mean |gradient| of the unit at ``position`` (default: the centre) of ``layer``'s
    output, summed over its channels, with respect to ``inputs`` (pixels when
    ``preprocessing`` is given). The model is not changed (an in-place-free copy runs)."""
    from convzoo.receptive_field import receptive_fields

    ready = GradientReadyModel(model, preprocessing)
    module = ready.layer(layer)
    device = next((p.device for p in ready.parameters()), inputs.device)
    captured: dict[str, torch.Tensor] = {}

    def capture(_module: nn.Module, _args: object, output: object) -> None:
        captured["output"] = output[0] if isinstance(output, (tuple, list)) else output
        raise _Captured

    handle = module.register_forward_hook(capture)
    total = torch.zeros(inputs.shape[-2:], dtype=torch.float64, device=device)
    try:
        for start in range(0, inputs.shape[0], batch_size):
            batch = inputs[start:start + batch_size].to(device).float().requires_grad_(True)
            try:
                ready(batch)
            except _Captured:
                pass
            except RuntimeError as error:  # e.g. a 5x5 kernel meeting a 2x2 map of a too small input
                from convzoo.errors import ConvzooError

                raise ConvzooError(
                    f"the model does not run on {tuple(inputs.shape[1:])} inputs up to {layer} "
                    f"({str(error).splitlines()[0]}); use larger inputs (e.g. the model's own size).") from None
            output = captured.pop("output")
            if position is None:
                position = (output.shape[-2] // 2, output.shape[-1] // 2)
            # Eval mode keeps images independent, so one backward of the batch's sum gives
            # every image's own gradient.
            output[:, :, position[0], position[1]].sum().backward()
            total += batch.grad.abs().sum(1).double().sum(0)
    finally:
        handle.remove()
    try:
        trace = receptive_fields(ready.network, tuple(inputs.shape[1:]))
    except RuntimeError as error:
        from convzoo.errors import ConvzooError

        raise ConvzooError(f"the model does not run on {tuple(inputs.shape[1:])} inputs ({str(error).splitlines()[0]}); "
                           "use its own input size.") from None
    field = trace.field(layer)
    if field is None or not field.is_known or field.is_global:
        box = ((0, inputs.shape[-2] - 1), (0, inputs.shape[-1] - 1))
    else:
        box = field.box(*position)
    return EffectiveField(layer, (total / inputs.shape[0]).float().cpu(), tuple(position), box, inputs.shape[0])


def analytic_standard_deviation(layers: int, kernel: int) -> float:
    """Per-axis spread of n stacked k x k uniform convolutions: sqrt(n (k^2 - 1) / 12) (Luo et al. 2016)."""
    return math.sqrt(layers * (kernel ** 2 - 1) / 12)
