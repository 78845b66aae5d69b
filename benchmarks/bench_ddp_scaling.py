"""1, 2 and 4 data-parallel CPU processes (gloo) at the same global batch: accuracy and
wall time side by side (issue 14, acceptance 1).

Each row is one ``convzoo train --nproc-per-node P`` run of ResNet-20 on Fashion-MNIST for
one epoch, each process taking ``global batch / P`` images per step, so every row takes
the same steps with the same learning rates and sees the same images; what changes is how
the work is split. Rows report the test accuracy, the run's own training time (slowest
rank), and the wall time of the whole command (process start, data loading and
evaluation included).

On CPU, processes share the machine's cores: torchrun gives each process one thread
(``OMP_NUM_THREADS=1``) when it starts more than one, while a single process uses every
core for its own convolutions. More processes than cores only queue; expect no gain past
the core count and some loss from the gradient all-reduce. The table says what it is.

    python benchmarks/bench_ddp_scaling.py --data-dir ../shared/data                     # the full epoch
    python benchmarks/bench_ddp_scaling.py --data-dir ../shared/data --train-size 1024 --test-size 512  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: argparse.Namespace, processes: int, out: Path) -> dict:
    command = [sys.executable, "-m", "convzoo", "train", "--config", args.config, "--epochs", str(args.epochs),
               "--batch-size", str(args.global_batch // processes), "--device", "cpu", "--seed", str(args.seed),
               "--out", str(out), "--name", f"processes-{processes}", "--nproc-per-node", str(processes),
               "--json", "--quiet"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    for key in ("train_size", "test_size"):
        if getattr(args, key):
            command += ["--set", f"{key}={getattr(args, key)}"]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"{processes} process(es) failed: {completed.stderr.strip().splitlines()[-1:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"processes": processes, "wall_s": wall, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder holding FashionMNIST/ (default: $CONVZOO_DATA)")
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "resnet20-fashion-mnist.yaml"))
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--global-batch", type=int, default=128, help="images per step, summed over the processes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=None, help="training images (default: all 60,000)")
    parser.add_argument("--test-size", type=int, default=None, help="test images (default: all 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    for processes in args.processes:
        if args.global_batch % processes:
            parser.error(f"--global-batch {args.global_batch} does not split evenly over {processes} processes")

    import torch

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-ddp-"))
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"{Path(args.config).name}, {args.epochs} epoch(s), global batch {args.global_batch}; runs in {out}")
    print(f"{'processes':>9}  {'batch/process':>13}  {'test acc %':>10}  {'train s':>8}  {'wall s':>7}  {'vs 1':>5}")
    rows = []
    for processes in args.processes:
        row = run(args, processes, out)
        rows.append(row)
        base = rows[0]["train_time_s"]
        print(f"{processes:>9}  {args.global_batch // processes:>13}  {100 * row['final_acc']:>10.2f}  "
              f"{row['train_time_s']:>8.1f}  {row['wall_s']:>7.1f}  {base / row['train_time_s']:>5.2f}", flush=True)


if __name__ == "__main__":
    main()
