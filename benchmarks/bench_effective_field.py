"""Effective receptive fields of the CIFAR ResNets, random and trained (issue 12, acceptance 3).

For each model, ``convzoo visualize erf`` at the family's last spatial exit (``layer3``):
the sides of the smallest centred squares holding 50, 90 and 99 % of the centre unit's
mean |input gradient|, as fractions of the theoretical receptive field (Luo et al. 2016).
Random-init networks are measured on Fashion-MNIST test images; every ``--checkpoint``
given is measured the same way. ``--noise-side S`` adds a run on S x S uniform noise,
where the fields are not cut off by the 28-pixel images.

    python benchmarks/bench_effective_field.py --models resnet20,resnet56,resnet110 \
        --checkpoint runs/resnet20-fashion-mnist/best.pt --samples 64 --noise-side 96
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet20,resnet56,resnet110")
    parser.add_argument("--checkpoint", action="append", default=[], help="trained checkpoints to measure too")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--noise-side", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/bench-erf")
    args = parser.parse_args()

    import torch

    from convzoo.commands.visualize_erf import run_erf

    common = dict(layer=None, split="test", device=args.device, seed=0, out=args.out, name=None, data_dir=None,
                  conv=None, compare_random=False, weights=None)
    runs = []
    for model in args.models.split(","):
        runs.append((f"{model} random-init, {args.dataset} test", dict(model=model, random_init=True, checkpoint=None,
                                                                       dataset=args.dataset, noise=False,
                                                                       input_side=None)))
        if args.noise_side:
            runs.append((f"{model} random-init, noise {args.noise_side}px",
                         dict(model=model, random_init=True, checkpoint=None, dataset=args.dataset, noise=True,
                              input_side=args.noise_side)))
    for checkpoint in args.checkpoint:
        runs.append((f"{checkpoint} (trained), test", dict(model=None, random_init=False, checkpoint=checkpoint,
                                                           dataset=None, noise=False, input_side=None)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.samples} images each")
    print("| network | inputs | layer | theoretical | 50 % | 90 % | 99 % | std (px) | time |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for label, options in runs:
        started = time.perf_counter()
        result = run_erf(samples=args.samples, **options, **common)
        seconds = time.perf_counter() - started
        for row in result["results"]:
            squares = " | ".join(f"{row[f'square_{p}']} px ({row[f'fraction_{p}']:.2f})" if row[f"square_{p}"] is not None
                                 else "clipped" for p in (50, 90, 99))
            print(f"| {label.split(',')[0]} | {result['inputs']} | {row['layer']} | {row['theoretical_side']} px | "
                  f"{squares} | {row['std_pixels']:.1f} | {seconds:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
