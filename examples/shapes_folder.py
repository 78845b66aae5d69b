"""Write a small image folder to fine-tune on: two classes of pictures, as JPEG files.

    python examples/shapes_folder.py data/shapes                 # 160 + 40 per class, and new/
    python examples/shapes_folder.py data/shapes --train 400 --val 100 --size 160

``discs/`` holds a filled disc and ``stripes/`` parallel bands, each of a random colour,
place, size and angle on a noisy background of another colour, drawn at varying sizes
(``--size`` ± 25 %) as photos are. The layout is the one ``--dataset imagefolder:PATH``
reads (``PATH/train/CLASS/*.jpg``, ``PATH/val/CLASS/*.jpg``), and PyTorch's transfer-learning
tutorial's ants/bees folder has; ``PATH/new/`` gets a few pictures of each class that are in
neither split, for ``convzoo predict``. Seeded: the same arguments write the same files.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torchvision.io import write_jpeg

CLASSES = ("discs", "stripes")


def picture(kind: str, side: int, generator: torch.Generator) -> torch.Tensor:
    """One (3, side, side) uint8 picture of ``kind``."""

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=generator).item()

    rows, columns = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                                   indexing="ij")
    background, colour = torch.rand(3, generator=generator), torch.rand(3, generator=generator)
    while (background - colour).abs().sum() < 0.6:  # a shape must stand out from its background
        colour = torch.rand(3, generator=generator)
    if kind == "discs":
        centre_row, centre_column = uniform(0.3, 0.7) * side, uniform(0.3, 0.7) * side
        radius = uniform(0.15, 0.3) * side
        mask = (rows - centre_row) ** 2 + (columns - centre_column) ** 2 <= radius ** 2
    else:
        angle, period = uniform(0, math.pi), uniform(0.12, 0.25) * side
        along = rows * math.cos(angle) + columns * math.sin(angle) + uniform(0, period)
        mask = torch.remainder(along, period) < period / 2
    image = torch.where(mask, colour[:, None, None], background[:, None, None])
    image = image + 0.08 * torch.randn(image.shape, generator=generator)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def write_folder(root: Path, *, train: int, val: int, new: int, size: int, seed: int) -> int:
    """Write the folder; returns the number of files written."""
    generator = torch.Generator().manual_seed(seed)
    written = 0
    for split, count in (("train", train), ("val", val), ("new", new)):
        for kind in CLASSES:
            folder = root / split if split == "new" else root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                side = int(round(size * (0.75 + 0.5 * torch.rand((), generator=generator).item())))
                name = f"{kind[:-1]}-{index}.jpg" if split == "new" else f"{index:04d}.jpg"
                write_jpeg(picture(kind, side, generator), str(folder / name), quality=90)
                written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder to write (train/, val/ and new/ inside)")
    parser.add_argument("--train", type=int, default=160, help="training pictures per class")
    parser.add_argument("--val", type=int, default=40, help="validation pictures per class")
    parser.add_argument("--new", type=int, default=2, help="pictures per class in new/, for predict")
    parser.add_argument("--size", type=int, default=96, help="typical picture side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = write_folder(args.root, train=args.train, val=args.val, new=args.new, size=args.size, seed=args.seed)
    print(f"wrote {count} JPEG files to {args.root} ({', '.join(CLASSES)})")


if __name__ == "__main__":
    main()
