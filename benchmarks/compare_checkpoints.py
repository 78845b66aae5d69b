"""Compare two runs' checkpoints: test accuracy, and how far apart their weights are.

Used by the GPU check to hold a ``--nproc-per-node 1`` run (torchrun, NCCL) against the
plain run of the same config: cuDNN's autotuned kernels are not bit-identical from run to
run, so the runs are held to an accuracy gap, not to equal bits.

    python benchmarks/compare_checkpoints.py runs/a/last.pt runs/b/last.pt --max-accuracy-gap 0.01
"""

from __future__ import annotations

import argparse
import sys

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--max-accuracy-gap", type=float, default=0.01, help="largest test-accuracy difference allowed")
    args = parser.parse_args()
    first, second = (torch.load(path, map_location="cpu", weights_only=True) for path in (args.first, args.second))
    weights_a, weights_b = first["model"], second["model"]
    if weights_a.keys() != weights_b.keys():
        print(f"the checkpoints hold different layers: {sorted(weights_a.keys() ^ weights_b.keys())[:3]}")
        return 1
    gap = max((weights_a[key].double() - weights_b[key].double()).abs().max().item() for key in weights_a)
    identical = all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)
    accuracy_gap = abs(first["test_acc"] - second["test_acc"])
    print(f"test accuracy {first['test_acc']:.4f} and {second['test_acc']:.4f} (gap {accuracy_gap:.4f}); "
          f"largest weight difference {gap:.2e}{' (bit-identical)' if identical else ''}")
    return 0 if accuracy_gap <= args.max_accuracy_gap else 1


if __name__ == "__main__":
    sys.exit(main())
