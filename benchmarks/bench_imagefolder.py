"""ImageFolder input pipeline: convzoo's training loader against torchvision's canonical one.

Writes a folder of JPEGs (default 2,000 in 10 classes, about 300x250 pixels of smooth
random scenery with some grain, so the files are the size of photos' rather than of flat
colour) and drains, in turn, convzoo's training loader (``convzoo.data.build_loaders`` on
``imagefolder:PATH``, the loader ``convzoo train`` uses) and the canonical torchvision
pipeline (``ImageFolder`` + PIL + ``transforms`` v1 in a ``DataLoader``: see
``convzoo.benchmarking.data_pipeline.canonical_loader``). Both use the same transforms
(random-resized crop to 224, flip, normalise), batch size and workers. The passes are
interleaved (alternating which goes first) so that load from other processes hits both
alike; the median images/s of each and their ratio are printed.

    python benchmarks/bench_imagefolder.py                      # 2,000 JPEGs, 2 workers, 5 passes each
    python benchmarks/bench_imagefolder.py --images 200 --repeats 1 --workers 0   # smoke run
    python benchmarks/bench_imagefolder.py --decoders tensor,pil  # also convzoo with the PIL decoder
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from convzoo.benchmarking.data_pipeline import canonical_loader, drain
from convzoo.data import build_loaders, get_dataset_spec
from convzoo.data import imagefolder


def write_jpegs(root: Path, images: int, classes: int, seed: int = 0) -> None:
    """``images`` JPEGs in ``root/train/<class>/`` (and 2 per class in ``root/val/``).

    Each image is a low-resolution random field upsampled bicubically (smooth shapes, like
    a photo's large structures) plus fine noise (texture), saved at quality 90; sizes vary
    around 300x250 as a photo collection's do.
    """
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", 2 * classes)):
        for index in range(count):
            folder = root / split / f"class{index % classes:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            width, height = int(generator.integers(260, 341)), int(generator.integers(220, 281))
            coarse = generator.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
            smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
            grain = generator.normal(0, 12, (height, width, 3))
            pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:05d}.jpg", quality=90)


def convzoo_loader(spec, batch_size: int, workers: int, decoder: str):
    """The training loader ``convzoo train`` builds for the folder, decoding with ``decoder``."""
    previous = imagefolder.DEFAULT_DECODER
    imagefolder.DEFAULT_DECODER = decoder  # read when the datasets are built, just below
    try:
        loaders = build_loaders(spec, batch_size=batch_size, eval_batch_size=batch_size,
                                device=torch.device("cpu"), num_workers=workers)
    finally:
        imagefolder.DEFAULT_DECODER = previous
    return loaders.train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="Passes over the folder per pipeline.")
    parser.add_argument("--decoders", default=imagefolder.DEFAULT_DECODER,
                        help="convzoo decoders to time, comma-separated (tensor, pil).")
    parser.add_argument("--folder", help="Use (and keep) this folder instead of a temporary one.")
    args = parser.parse_args(argv)
    decoders = [name.strip() for name in args.decoders.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="convzoo-imagefolder-") as scratch:
        root = Path(args.folder or scratch)
        if not (root / "train").is_dir():
            write_jpegs(root, args.images, args.classes)
        files = sorted((root / "train").rglob("*.jpg"))
        megabytes = sum(path.stat().st_size for path in files) / 2**20
        print(f"{len(files)} JPEGs, {megabytes:.1f} MB ({1024 * megabytes / max(len(files), 1):.0f} KB each) in {root}")
        spec = get_dataset_spec(f"imagefolder:{root}")
        pipelines = {f"convzoo ({decoder})": convzoo_loader(spec, args.batch_size, args.workers, decoder)
                     for decoder in decoders}
        pipelines["torchvision (ImageFolder + PIL + transforms v1)"] = canonical_loader(
            spec, None, args.batch_size, args.workers)
        batches = len(files) // args.batch_size
        rates: dict[str, list[float]] = {name: [] for name in pipelines}
        for repeat in range(args.repeats):
            order = list(pipelines) if repeat % 2 == 0 else list(reversed(pipelines))
            for name in order:
                loader = pipelines[name]
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(repeat)
                images, seconds = drain(loader, batches, torch.device("cpu"))
                rates[name].append(images / seconds if seconds > 0 else float("nan"))
    canonical = statistics.median(rates[list(pipelines)[-1]])
    print(f"\ntorch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, {datetime.date.today()}; "
          f"batch {args.batch_size}, {args.workers} workers, {args.repeats} passes each (median)")
    print(f"command: python {' '.join(sys.argv)}\n")
    print("| pipeline | images/s | ratio vs torchvision |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:,.0f} | {rate / canonical:.2f} |")


if __name__ == "__main__":
    main()
