"""TrivialAugment, RandAugment, AutoAugment and random erasing for in-memory batches, on the device,
with a different random draw for every image.

torchvision's ``transforms.v2`` policies applied to a batch tensor draw one op and one magnitude
for the whole batch; the recipes (Müller & Hutter 2021, Cubuk et al. 2019 and 2020) draw them per
image. Here every image's ops and magnitudes for a whole epoch are drawn at its start, on the
CPU, from the loader's generator seeded by (seed, epoch, rank), as its crops and flips are: a
resumed epoch applies exactly what an uninterrupted one would. The images of a batch are then
grouped by op (an order sorted once per epoch, so no batch waits for the host) and each op runs
once on its group with per-image magnitudes: the five geometric ops as one ``grid_sample`` with
a per-image affine matrix, the colour ops as per-image arithmetic.

Every op is torchvision's (``transforms/v2/_auto_augment.py`` and ``v2.functional``), with the
same magnitude bins, nearest interpolation and zero fill, on uint8 images: each op's output is
rounded back to uint8 as torchvision's is, so the pipeline's dtypes and pixel ranges do not
change. Grey images take torchvision's rules (``Color`` leaves them as they are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OPS = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
       "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
"""Every op of the three policies; TrivialAugment and RandAugment draw from all but ``Invert``,
AutoAugment's ImageNet policy names its own."""
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
SIGNED = GEOMETRIC + ("Brightness", "Color", "Contrast", "Sharpness")
"""Ops whose magnitude is negated with probability 1/2."""
UNIFORM_OPS = len(OPS) - 1

AUTOAUGMENT_IMAGENET = (
    # Cubuk et al. 2019, the ImageNet policy (appendix, table 9): sub-policies of two (op, probability,
    # magnitude bin of 10), as torchvision lists them.
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Equalize", 0.4, 0), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 0)), (("Posterize", 0.8, 5), ("Equalize", 1.0, 0)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, 0), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, 0)),
    (("Equalize", 0.0, 0), ("Equalize", 0.8, 0)), (("Invert", 0.6, 0), ("Equalize", 1.0, 0)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, 0)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 0)), (("Color", 0.4, 0), ("Equalize", 0.6, 0)),
    (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
    (("Invert", 0.6, 0), ("Equalize", 1.0, 0)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)),
)


def magnitude_bins(wide: bool, num_bins: int, height: int, width: int) -> torch.Tensor:
    """(len(OPS), num_bins) float64: each op's magnitude per bin (0 where it has none).

    ``wide``: TrivialAugment-Wide's ranges; else RandAugment's and AutoAugment's. torchvision
    builds them as float32 ``linspace``; so does this, for the same numbers.
    """
    tops = {"ShearX": 0.99 if wide else 0.3, "ShearY": 0.99 if wide else 0.3,
            "TranslateX": 32.0 if wide else 150.0 / 331.0 * width, "TranslateY": 32.0 if wide else 150.0 / 331.0 * height,
            "Rotate": 135.0 if wide else 30.0}
    tops.update(dict.fromkeys(("Brightness", "Color", "Contrast", "Sharpness"), 0.99 if wide else 0.9))
    table = torch.zeros(len(OPS), num_bins, dtype=torch.float64)
    for name, top in tops.items():
        table[OPS.index(name)] = torch.linspace(0.0, top, num_bins).double()
    steps = (num_bins - 1) / (6 if wide else 4)
    table[OPS.index("Posterize")] = (8 - (torch.arange(num_bins) / steps)).round()
    table[OPS.index("Solarize")] = torch.linspace(1.0, 0.0, num_bins).double()
    return table


def draw_policy(policy: tuple[str, int, int], count: int, height: int, width: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Ops (count, steps) and signed magnitudes (count, steps) of ``count`` images, on the CPU.

    ``policy`` is ``(name, num_ops, magnitude)`` as ``parse_auto_augment`` returns it.
    """
    name, num_ops, magnitude = policy
    if name == "autoaugment":
        table = magnitude_bins(False, 10, height, width)
        chosen = torch.randint(len(AUTOAUGMENT_IMAGENET), (count,), generator=generator)
        sub_ops = torch.tensor([[OPS.index(op) for op, _, _ in pair] for pair in AUTOAUGMENT_IMAGENET])[chosen]
        chance = torch.tensor([[p for _, p, _ in pair] for pair in AUTOAUGMENT_IMAGENET], dtype=torch.float64)[chosen]
        bins = torch.tensor([[b for _, _, b in pair] for pair in AUTOAUGMENT_IMAGENET])[chosen]
        applied = torch.rand(count, 2, generator=generator, dtype=torch.float64) <= chance
        ops = torch.where(applied, sub_ops, 0)
    else:
        wide = name == "trivialaugment"
        table = magnitude_bins(wide, 31, height, width)
        ops = torch.randint(UNIFORM_OPS, (count, num_ops), generator=generator)
        bins = torch.randint(31, (count, 1), generator=generator) if wide else torch.full_like(ops, magnitude)
    signed = torch.tensor([op in SIGNED for op in OPS])[ops]
    negate = signed & (torch.rand(ops.shape, generator=generator) <= 0.5)
    magnitudes = table[ops, bins.expand_as(ops)]
    return ops, torch.where(negate, -magnitudes, magnitudes)


def op_parameters(ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """(n, 2): each colour op's argument as torchvision computes it from the magnitude, and
    1 - argument (the blending weight of the other image), both in float64 before the float32
    they are applied in, for torchvision's numbers: ``1 + magnitude`` for the blending ops,
    the threshold ``255 * magnitude`` for Solarize, the magnitude itself otherwise."""
    blending = torch.isin(ops, torch.tensor([OPS.index(op) for op in ("Brightness", "Color", "Contrast", "Sharpness")]))
    argument = torch.where(blending, 1.0 + magnitudes, magnitudes)
    argument = torch.where(ops == OPS.index("Solarize"), 255.0 * magnitudes, argument)
    return torch.stack([argument, 1.0 - argument], 1)


def inverse_affine(ops: torch.Tensor, magnitudes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) float32: torchvision's inverse affine matrix (pixels, origin at the image's
    centre) for each image's geometric op, the identity for the others; in float64 as
    torchvision computes it (``_get_inverse_affine_matrix``).

    Shears turn about the top-left corner (torchvision's ``center=[0, 0]``), rotations
    about the centre; translations are whole pixels (``int(magnitude)``).
    """
    theta = torch.zeros(len(ops), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    m = magnitudes
    shear_x, shear_y = ops == OPS.index("ShearX"), ops == OPS.index("ShearY")
    theta[shear_x, 0, 1] = m[shear_x]
    theta[shear_x, 0, 2] = m[shear_x] * height / 2
    theta[shear_y, 1, 0] = m[shear_y]
    theta[shear_y, 1, 2] = m[shear_y] * width / 2
    theta[ops == OPS.index("TranslateX"), 0, 2] = -m[ops == OPS.index("TranslateX")].trunc()
    theta[ops == OPS.index("TranslateY"), 1, 2] = -m[ops == OPS.index("TranslateY")].trunc()
    rotate = ops == OPS.index("Rotate")
    angle = torch.deg2rad(m[rotate] % 360)
    theta[rotate] = torch.stack([torch.stack([angle.cos(), -angle.sin(), torch.zeros_like(angle)], -1),
                                 torch.stack([angle.sin(), angle.cos(), torch.zeros_like(angle)], -1)], 1)
    return theta.float()


def affine(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Each uint8 image resampled through its own inverse matrix, as ``v2.functional.affine``
    (nearest, zero fill): torchvision's ``_affine_grid`` with a batch of matrices."""
    count, _, height, width = images.shape
    xs = torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=images.device)
    ys = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=images.device)
    base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width),
                        torch.ones(height, width, device=images.device)], -1).view(1, height * width, 3)
    scale = torch.tensor([0.5 * width, 0.5 * height], device=images.device)
    grid = base.expand(count, -1, -1).bmm(theta.transpose(1, 2) / scale).view(count, height, width, 2)
    resampled = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return resampled.round_().to(torch.uint8)


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``factor[:, 0]`` of each image plus ``factor[:, 1]`` (1 - the first) of ``other``."""
    # addcmul: one fused multiply-add, as torchvision's add_(other, alpha=...) rounds it.
    blended = torch.addcmul(images.float().mul(_per_image(factor[:, 0])), other, _per_image(factor[:, 1]))
    return blended.clamp_(0, 255).to(torch.uint8)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """torchvision's luma, floored as it floors it for uint8 images."""
    red, green, blue = images.float().unbind(1)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).unsqueeze(1).floor_()


def brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return images.float().mul(_per_image(factor[:, 0])).clamp_(0, 255).to(torch.uint8)


def color(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:  # torchvision (and PIL) leave a grey image's saturation alone
        return images
    return _blend(images, _grey(images), factor)


def contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    grey = _grey(images) if images.shape[1] == 3 else images.float()
    return _blend(images, grey.mean(dim=(1, 2, 3), keepdim=True), factor)


def sharpness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with a 3x3 smoothing of the image (borders kept), as torchvision/PIL sharpen."""
    channels, height, width = images.shape[1:]
    if height <= 2 or width <= 2:
        return images
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=images.device) / 13.0
    output = images.float()
    blurred = F.conv2d(output, kernel.expand(channels, 1, 3, 3), groups=channels).round_()
    inner = output[..., 1:-1, 1:-1]
    inner.addcmul_(blurred.sub_(inner), _per_image(factor[:, 1]))
    return output.clamp_(0, 255).to(torch.uint8)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    kept = bits[:, 0].to(torch.int32)
    return images & _per_image((255 << (8 - kept)) & 255).to(torch.uint8)


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(images.float() >= _per_image(threshold[:, 0]), images.bitwise_not(), images)


def _tv(function_name: str):
    """A torchvision op that takes no parameter and already works image by image on a batch."""
    def op(images: torch.Tensor, parameter: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional

        return getattr(functional, function_name)(images)
    return op


# Each colour op takes uint8 images and their (n, 2) ``op_parameters``.
COLOUR_OPS = {
    "Brightness": brightness, "Color": color, "Contrast": contrast, "Sharpness": sharpness, "Posterize": posterize,
    "Solarize": solarize, "AutoContrast": _tv("autocontrast"), "Equalize": _tv("equalize"), "Invert": _tv("invert"),
}
GROUPS = ("Identity", "geometric", *COLOUR_OPS)
"""What the images of a batch are grouped by: one ``affine`` call serves all geometric ops."""
_GROUP_OF_OP = torch.tensor([GROUPS.index("geometric" if op in GEOMETRIC else op) for op in OPS])


@dataclass
class EpochPolicy:
    """An epoch's drawn ops, ready to apply batch by batch on the device.

    For each step of the policy: ``order`` (positions of the epoch, sorted by batch then by
    group), the sorted images' colour-op ``parameters`` and affine ``theta``, and ``counts[step][batch]``:
    how many images of the batch each group holds.
    """

    order: list[torch.Tensor]
    parameters: list[torch.Tensor]
    theta: list[torch.Tensor]
    counts: list[list[list[int]]]
    batch_size: int

    @classmethod
    def draw(cls, policy: tuple[str, int, int], count: int, batch_size: int, height: int, width: int,
             generator: torch.Generator) -> "EpochPolicy":
        ops, magnitudes = draw_policy(policy, count, height, width, generator)
        batches = torch.arange(count) // batch_size
        num_batches = int(batches[-1]) + 1 if count else 0
        plan = cls([], [], [], [], batch_size)
        for step in range(ops.shape[1]):
            group = _GROUP_OF_OP[ops[:, step]]
            order = torch.argsort(batches * len(GROUPS) + group, stable=True)
            sorted_ops, sorted_magnitudes = ops[order, step], magnitudes[order, step]
            plan.order.append(order)
            plan.parameters.append(op_parameters(sorted_ops, sorted_magnitudes).float())
            plan.theta.append(inverse_affine(sorted_ops, sorted_magnitudes, height, width))
            counts = torch.bincount(batches * len(GROUPS) + group, minlength=num_batches * len(GROUPS))
            plan.counts.append(counts.view(num_batches, len(GROUPS)).tolist())
        return plan

    def to(self, device: torch.device) -> "EpochPolicy":
        from convzoo.data.memory import to_device

        moved = [[to_device(tensor, device) for tensor in tensors] for tensors in (self.order, self.parameters, self.theta)]
        return EpochPolicy(*moved, self.counts, self.batch_size)

    def apply(self, images: torch.Tensor, batch_index: int) -> torch.Tensor:
        """Batch ``batch_index``'s uint8 images, each through its own ops."""
        start = batch_index * self.batch_size
        batch = slice(start, start + len(images))
        for order, parameters, theta, counts in zip(self.order, self.parameters, self.theta, self.counts):
            local = order[batch] - start
            grouped, group_start = images[local], 0
            batch_parameters, batch_theta = parameters[batch], theta[batch]
            for group, size in zip(GROUPS, counts[batch_index]):
                part = slice(group_start, group_start + size)
                group_start += size
                if size == 0 or group == "Identity":
                    continue
                if group == "geometric":
                    grouped[part] = affine(grouped[part], batch_theta[part])
                else:
                    grouped[part] = COLOUR_OPS[group](grouped[part], batch_parameters[part])
            images = torch.empty_like(grouped).index_copy_(0, local, grouped)
        return images


ERASING_SCALE = (0.02, 0.33)
ERASING_RATIO = (0.3, 1 / 0.3)
ERASING_ATTEMPTS = 10


def draw_erasing(count: int, probability: float, height: int, width: int,
                 generator: torch.Generator) -> torch.Tensor:
    """(count, 4) boxes ``top, left, box height, box width`` (0 x 0: no erasing), on the CPU.

    Zhong et al. 2020 as torchvision's ``RandomErasing`` draws them: with ``probability``
    an area of 2-33 % of the image with aspect ratio in [0.3, 1/0.3] (log-uniform), the
    first of 10 attempts that fits.
    """
    erase = torch.rand(count, generator=generator) < probability
    area = height * width * torch.empty(count, ERASING_ATTEMPTS).uniform_(*ERASING_SCALE, generator=generator)
    log_ratio = torch.empty(count, ERASING_ATTEMPTS).uniform_(*map(math.log, ERASING_RATIO), generator=generator)
    box_height = (area * log_ratio.exp()).sqrt().round().long()
    box_width = (area / log_ratio.exp()).sqrt().round().long()
    fits = (box_height < height) & (box_width < width)
    first = fits.long().argmax(1, keepdim=True)
    erase &= fits.any(1)
    box_height = torch.where(erase, box_height.gather(1, first)[:, 0], 0)
    box_width = torch.where(erase, box_width.gather(1, first)[:, 0], 0)
    top = (torch.rand(count, generator=generator) * (height - box_height + 1)).long()
    left = (torch.rand(count, generator=generator) * (width - box_width + 1)).long()
    return torch.stack([top, left, box_height, box_width], 1)


def erase(images: torch.Tensor, boxes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Normalised float images with each box filled with standard normal noise per pixel
    (torchvision's ``value="random"``, timm's ``mode="pixel"``), drawn from ``generator``."""
    height, width = images.shape[-2:]
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    top, left, box_height, box_width = boxes.unbind(1)
    inside_rows = (rows >= top[:, None]) & (rows < (top + box_height)[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < (left + box_width)[:, None])
    inside = inside_rows[:, None, :, None] & inside_cols[:, None, None, :]
    noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return torch.where(inside, noise, images)
