"""Save canvases of mnist-scenes' test split as PNG files, as a user's own images would come.

    python examples/mnist_scene.py data/scenes --data-dir ../shared/data            # 4 canvases of 96 px
    python examples/mnist_scene.py data/scenes --count 10 --size 64 --data-dir ../shared/data

Each file is a grey canvas of 1-4 real MNIST test digits (``convzoo.data.scenes``: the
dataset ``--dataset mnist-scenes`` trains and tests on); beside it ``NAME.mask.png`` holds
its true class mask (pixel value = digit + 1, background 0, Pascal VOC's palette), to
compare with what ``convzoo predict`` writes for a segmentation model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convzoo.data.scenes import load_scenes
from convzoo.deploy.segment import write_mask_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="Folder for the PNG files.")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--size", type=int, default=96, help="Canvas side in pixels.")
    parser.add_argument("--data-dir", default=None, help="Folder holding MNIST/ (default: $CONVZOO_DATA).")
    args = parser.parse_args()
    from PIL import Image

    scenes = load_scenes(train=False, data_dir=args.data_dir, size=args.count, image_size=args.size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for index in range(args.count):
        Image.fromarray(scenes.images[index, 0].numpy()).save(out / f"scene{index}.png")
        write_mask_png(scenes.masks[index], out / f"scene{index}.mask.png")
    print(f"{args.count} canvases of {args.size}x{args.size} -> {out}/scene*.png (true masks: scene*.mask.png)")


if __name__ == "__main__":
    main()
