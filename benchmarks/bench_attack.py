"""Adversarial robustness of a checkpoint: FGSM and PGD accuracy against epsilon (issue 12, acceptance 1).

Runs ``convzoo attack`` twice on the same checkpoint and test split, times each, and
prints one table (both attacks, every epsilon) for BENCHMARKS.md:

- FGSM over the whole test split at all epsilons (the acceptance asks for <= 60 s on 2
  CPU cores for LeNet-5's 10,000 MNIST images);
- PGD (10 steps of 2.5 eps / 10, Madry et al.) over ``--pgd-samples`` images (default:
  the whole split; on a shared 2-core CPU pass fewer).

    python benchmarks/bench_attack.py --checkpoint runs/lenet5-mnist/best.pt
    python benchmarks/bench_attack.py --checkpoint runs/lenet5-mnist/best.pt --pgd-samples 2000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--eps", default="0,0.05,0.1,0.15,0.2,0.25,0.3")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pgd-samples", type=int, default=None, help="PGD on N random test images (default: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/bench-attack")
    parser.add_argument("--methods", default="fgsm,pgd")
    args = parser.parse_args()

    import torch

    from convzoo.commands.attack import run_attack

    common = dict(epsilons=[float(e) for e in args.eps.split(",")], steps=args.steps, step_size=None,
                  random_start=False, checkpoint=args.checkpoint, model=None, random_init=False, weights=None,
                  dataset=None, split="test", batch_size=1000, example_eps=None, device=args.device, seed=0,
                  out=args.out, name=None, data_dir=None, conv=None)
    results = {}
    for method, samples in (("fgsm", None), ("pgd", args.pgd_samples)):
        if method not in args.methods.split(","):
            continue
        started = time.perf_counter()
        results[method] = run_attack(methods=[method], samples=samples, **common)
        results[method]["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {next(iter(results.values()))['device']}")
    print("| eps | " + " | ".join(f"{method.upper()} accuracy" for method in results) + " |")
    print("|---:|" + "---:|" * len(results))
    accuracy = {method: {row["eps"]: row["accuracy"] for row in result["results"]} for method, result in results.items()}
    for eps in next(iter(results.values()))["epsilons"]:
        print(f"| {eps:g} | " + " | ".join(f"{100 * accuracy[method][eps]:.2f} %" for method in results) + " |")
    for method, result in results.items():
        print(f"{method.upper()}: {result['images']:,} images, attack loop {result['seconds'][method]:.1f} s wall, "
              f"{result['cpu_seconds'][method]:.1f} s CPU; command {result['wall_s']:.1f} s (with data loading) "
              f"-> {result['run_dir']}")
    print(json.dumps({method: result["results"] for method, result in results.items()}))
    plot_together(results, f"{args.out}/attack-{'-'.join(results)}.png")


def plot_together(results: dict, path: str) -> None:
    """Both attacks' accuracy against epsilon on one plot (each run above drew its own)."""
    from types import SimpleNamespace

    from convzoo.adversarial.figures import accuracy_figure

    curves = [SimpleNamespace(method=method, epsilons=[row["eps"] for row in result["results"]],
                              accuracies=[row["accuracy"] for row in result["results"]])
              for method, result in results.items()]
    first = next(iter(results.values()))
    figure = accuracy_figure(curves, f"{first['model']} on {first['dataset']} (test split)")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    print(f"plot -> {path}")


if __name__ == "__main__":
    main()
