"""``mnist-scenes``: canvases of 1-4 real MNIST digits, for segmentation and detection.

Each scene is a ``image_size`` x ``image_size`` canvas (64 by default) holding 1-4 digits
(uniformly many) at uniform random positions, each scaled to a side drawn uniformly from
``[20, 40]`` pixels at 64 x 64 (``SIDE_RANGE``, scaled with the canvas for other sizes),
bilinearly, as ``F.interpolate`` resizes. The digits come from MNIST's training split for
the training scenes and from its test split for the test scenes, so no test digit is ever
trained on.

Digits are stacked in order, the first at the bottom. The image is the pixel-wise maximum
of the placed digits (overlapping strokes look like ink on ink, not a black box pasted
over a stroke); a digit owns the pixels where its scaled value is at least ``THRESHOLD``
(128 of 255) and, where two digits own a pixel, the upper one wins. The class mask holds
0 for background and ``digit + 1`` for a digit's pixels (11 classes); the instance map holds
``k`` for the k-th digit of the scene (bottom first). A digit left with no pixel of its
own after occlusion is removed from the scene altogether (image, mask and boxes), as if it
had never been drawn, so every digit that is kept is visible and has a box; the top digit
is never occluded, so no scene is empty.

Every scene is fixed by the split's seed: every run trains on the same scenes. A split is
generated once per (split, count, size) and cached as a file beside the MNIST files
(``ROOT/MNISTScenes``), written atomically; where that folder is read-only, scenes are
generated afresh (a few seconds).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from convzoo.seeding import derived_seed

MAX_DIGITS = 4
DEFAULT_IMAGE_SIZE = 64
SIDE_RANGE = (20, 40)
"""Digit side in pixels on a 64 x 64 canvas, both ends included; ``image_size / 64`` times that otherwise."""
THRESHOLD = 128
"""A digit's scaled value (of 255) from which a pixel is the digit's."""
NUM_CLASSES = 11
CLASS_NAMES = ("background", *(str(digit) for digit in range(10)))
DEFAULT_TRAIN_SIZE = 20_000
DEFAULT_TEST_SIZE = 2_000
CACHE_FOLDER = "MNISTScenes"
CACHE_VERSION = 1
"""Part of every cache file's name: raise it whenever generation changes, so old files are not read."""
_CHUNK = 2048
"""Scenes generated at once: their (chunk, 4, H, W) digit layers stay within tens of megabytes."""


@dataclass(frozen=True)
class Scenes:
    """One split of ``mnist-scenes``. Per-digit fields have ``MAX_DIGITS`` rows per scene,
    the scene's digits first (bottom to top, instance ids 1, 2, ...), then padding."""

    images: torch.Tensor
    """uint8 (N, 1, H, W)."""
    masks: torch.Tensor
    """uint8 (N, H, W): 0 background, ``digit + 1`` where a digit is."""
    instances: torch.Tensor
    """uint8 (N, H, W): 0 background, k where the scene's k-th digit is."""
    boxes: torch.Tensor
    """float32 (N, 4, 4): x1, y1, x2, y2 in pixels, tight around the digit's instance pixels,
    x2 and y2 exclusive (torchvision's convention); 0 in padding rows."""
    labels: torch.Tensor
    """int64 (N, 4): the digit's class (``digit + 1``, as in ``masks``); -1 in padding rows."""
    digit_indices: torch.Tensor
    """int64 (N, 4): the digit's index in its MNIST split; -1 in padding rows."""
    placements: torch.Tensor
    """int64 (N, 4, 3): the scaled digit's top row, left column and side; -1 in padding rows."""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def counts(self) -> torch.Tensor:
        """Digits per scene (N,)."""
        return (self.labels >= 0).sum(1)

    def padded_boxes(self) -> torch.Tensor:
        """float32 (N, 4, 5): x1, y1, x2, y2, label per row, label -1 in padding rows."""
        return torch.cat([self.boxes, self.labels.unsqueeze(-1).float()], dim=-1)


def digit_side_range(image_size: int) -> tuple[int, int]:
    """The smallest and largest digit side on an ``image_size`` canvas."""
    low, high = (max(1, round(side * image_size / DEFAULT_IMAGE_SIZE)) for side in SIDE_RANGE)
    return low, min(high, image_size)


def split_seed(train: bool) -> int:
    """The fixed seed of a split: every run sees the same scenes."""
    return derived_seed(0, "mnist-scenes", "train" if train else "test")


def generate_scenes(digits: torch.Tensor, digit_labels: torch.Tensor, count: int, *,
                    image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0) -> Scenes:
    """``count`` scenes of the uint8 ``digits`` (M, 1, 28, 28) with labels (M,), the same
    for the same arguments."""
    generator = torch.Generator().manual_seed(seed)
    low, high = digit_side_range(image_size)
    num_digits = torch.randint(1, MAX_DIGITS + 1, (count,), generator=generator)
    drawn = torch.arange(MAX_DIGITS)[None, :] < num_digits[:, None]
    chosen = torch.randint(0, len(digits), (count, MAX_DIGITS), generator=generator)
    sides = torch.randint(low, high + 1, (count, MAX_DIGITS), generator=generator)
    # Top-left corners uniform over the positions where the whole digit fits.
    corners = (torch.rand(count, MAX_DIGITS, 2, generator=generator) * (image_size - sides + 1)[..., None]).long()
    parts = [
        compose_scenes(digits, digit_labels, chosen[part], sides[part], corners[part], drawn[part], image_size)
        for part in torch.arange(count).split(_CHUNK)
    ]
    return Scenes(*(torch.cat(tensors) for tensors in zip(*parts)))


def place_digits(digits: torch.Tensor, sides: torch.Tensor, corners: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 layers (n, image_size, image_size): digit i scaled to ``sides[i]`` with its top-left
    corner at ``corners[i]`` (row, column), zero elsewhere."""
    layers = torch.zeros(len(digits), image_size, image_size, dtype=torch.uint8)
    for side in sides.unique().tolist():
        which = (sides == side).nonzero().squeeze(1)
        scaled = torch.nn.functional.interpolate(digits[which].float(), size=(side, side), mode="bilinear",
                                                 align_corners=False)
        scaled = scaled.round_().clamp_(0, 255).to(torch.uint8).squeeze(1)
        offsets = torch.arange(side)
        rows = corners[which, 0, None] + offsets
        cols = corners[which, 1, None] + offsets
        layers[which[:, None, None], rows[:, :, None], cols[:, None, :]] = scaled
    return layers


def compose_scenes(digits: torch.Tensor, digit_labels: torch.Tensor, chosen: torch.Tensor, sides: torch.Tensor,
                   corners: torch.Tensor, drawn: torch.Tensor, image_size: int) -> tuple[torch.Tensor, ...]:
    """The fields of ``Scenes`` for scenes whose slot j (bottom first) holds digit
    ``chosen[:, j]`` of ``digits`` scaled to ``sides[:, j]`` at ``corners[:, j]`` (row,
    column) where ``drawn[:, j]``; a drawn digit left with no pixel of its own is dropped."""
    count = len(chosen)
    layers = torch.zeros(count, MAX_DIGITS, image_size, image_size, dtype=torch.uint8)
    layers[drawn] = place_digits(digits[chosen[drawn]], sides[drawn], corners[drawn], image_size)
    # The top-most digit owning each pixel (slot + 1; 0 where none does), one slot at a time:
    # uint8 passes over (count, H, W), not int64 gathers over (count, 4, H, W).
    top_slot = torch.zeros(count, image_size, image_size, dtype=torch.uint8)
    for slot in range(MAX_DIGITS):
        top_slot.masked_fill_(layers[:, slot] >= THRESHOLD, slot + 1)
    owned = [top_slot == slot + 1 for slot in range(MAX_DIGITS)]
    kept = drawn & torch.stack([pixels.flatten(1).any(1) for pixels in owned], 1)
    # Kept digits first, in stacking order: instance id k is the k-th kept digit.
    order = torch.sort((~kept).to(torch.uint8), dim=1, stable=True).indices
    kept_sorted = kept.gather(1, order)
    instance_ids = torch.where(kept, kept.cumsum(1), 0).to(torch.uint8)
    instances = torch.zeros_like(top_slot)
    for slot, pixels in enumerate(owned):
        instances = torch.where(pixels, instance_ids[:, slot, None, None], instances)
    boxes = torch.stack([tight_boxes(pixels) for pixels in owned], 1).gather(1, order[..., None].expand(-1, -1, 4))

    images = torch.where(kept[:, :, None, None], layers, 0).amax(1, keepdim=True)
    labels = torch.where(kept_sorted, digit_labels[chosen.gather(1, order)] + 1, -1)
    masks = class_masks(instances, labels)
    digit_indices = torch.where(kept_sorted, chosen.gather(1, order), -1)
    placements = torch.cat([corners, sides[..., None]], -1).gather(1, order[..., None].expand(-1, -1, 3))
    placements = torch.where(kept_sorted[..., None], placements, -1)
    return images, masks, instances, boxes, labels, digit_indices, placements


def class_masks(instances: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """uint8 class masks (N, H, W) of instance maps (N, H, W) whose instance k has class
    ``labels[:, k - 1]`` (N, K); 0 where there is no instance."""
    masks = torch.zeros_like(instances)
    for slot in range(labels.shape[1]):
        classes = labels[:, slot].clamp(min=0).to(torch.uint8)
        masks = torch.where(instances == slot + 1, classes[:, None, None], masks)
    return masks


def tight_boxes(pixels: torch.Tensor) -> torch.Tensor:
    """float32 (N, 4) boxes x1, y1, x2, y2 (x2, y2 exclusive, as torchvision's) tight around
    the true pixels of each boolean map (N, H, W); zeros for a map with none."""
    edges = []
    for occupied in (pixels.any(1), pixels.any(2)):  # (N, W): columns; (N, H): rows
        occupied = occupied.to(torch.uint8)
        first = occupied.argmax(-1)  # argmax gives the first of equal maxima
        last = occupied.shape[-1] - occupied.flip(-1).argmax(-1)
        edges.append((first, last))
    (x1, x2), (y1, y2) = edges
    present = pixels.flatten(1).any(1)
    return torch.where(present[:, None], torch.stack([x1, y1, x2, y2], -1), 0).float()


def load_scenes(*, train: bool, data_dir: str | Path | None = None, size: int | None = None,
                image_size: int = DEFAULT_IMAGE_SIZE, cache: bool = True) -> Scenes:
    """One split's scenes, ``size`` of them (else ``DEFAULT_TRAIN_SIZE``/``DEFAULT_TEST_SIZE``),
    made from MNIST's files in the data folder (``resolve_data_dir``): the cached file when
    there is one, else generated (and cached, with ``cache``, where the folder is writable)."""
    from convzoo.data.files import resolve_data_dir

    count = size or (DEFAULT_TRAIN_SIZE if train else DEFAULT_TEST_SIZE)
    return _load_scenes(resolve_data_dir(data_dir).absolute(), train, count, image_size, cache)


@functools.lru_cache(maxsize=4)
def _load_scenes(root: Path, train: bool, count: int, image_size: int, cache: bool) -> Scenes:
    """Once per process (tests, probes); callers never write into the returned tensors."""
    path = cache_path(root, train, count, image_size)
    if cache and path.is_file():
        found = _read_cache(path)
        if found is not None:
            return found
    from convzoo.data.mnist import load_mnist_like

    digits, digit_labels = load_mnist_like("mnist", root, train)
    scenes = generate_scenes(digits, digit_labels, count, image_size=image_size, seed=split_seed(train))
    if cache:
        _write_cache(scenes, path)
    return scenes


def cache_path(root: Path, train: bool, count: int, image_size: int) -> Path:
    split = "train" if train else "test"
    return root / CACHE_FOLDER / f"{split}-{count}-{image_size}px-v{CACHE_VERSION}.pt"


def _read_cache(path: Path) -> Scenes | None:
    """The cached scenes, or None when the file cannot be read (then they are generated again)."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        saved["masks"] = class_masks(saved["instances"], saved["labels"])
        return Scenes(**{name: saved[name] for name in Scenes.__dataclass_fields__})
    except (OSError, RuntimeError, KeyError, TypeError, EOFError):
        return None


def _write_cache(scenes: Scenes, path: Path) -> None:
    """Atomically (a temporary file renamed over ``path``), so a reader never sees half a
    file; a folder that cannot be written leaves the scenes uncached."""
    import io

    from convzoo.engine.checkpoint import atomic_write_bytes
    from convzoo.errors import ConvzooError

    buffer = io.BytesIO()
    # The class masks follow from the instances and labels: a third less to write and read.
    torch.save({name: getattr(scenes, name) for name in Scenes.__dataclass_fields__ if name != "masks"}, buffer)
    try:
        atomic_write_bytes(buffer.getbuffer(), path, lambda file, error: f"cannot cache {file}: {error}")
    except ConvzooError:
        pass
