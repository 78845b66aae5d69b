"""kill -9 at random moments, each run resumed: are the final weights bit-identical to a
run never interrupted? (issue 14, acceptance 2)

One uninterrupted run sets the reference weights and the length of its training (from
its first line on stderr, once Python, torch and the data are loaded, to its exit). Then,
N times: the same command (``--resume auto --checkpoint-every S``, as torchrun's
``--max-restarts`` would run it) is started, killed with SIGKILL a random fraction of that
length after its first line (seeded, so the moments can be replayed), and run again until
it completes; its final
last.pt is compared tensor by tensor with the reference. A kill before the first
checkpoint restarts from scratch, one after it from the newest mid-epoch last.pt.

    python benchmarks/bench_kill_resume.py                       # 10 kills, lenet5 on synthetic data
    python benchmarks/bench_kill_resume.py --kills 3 --train-size 512 --epochs 2   # a quick check
    python benchmarks/bench_kill_resume.py --dataset fashion-mnist --data-dir ../shared/data --model resnet20

Only CPU runs are expected to match bit for bit (CUDA kernels are not all deterministic).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def train_command(args: argparse.Namespace, out: Path, name: str) -> list[str]:
    command = [sys.executable, "-m", "convzoo", "train", "--model", args.model, "--dataset", args.dataset,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
               "--device", "cpu", "--out", str(out), "--name", name, "--resume", "auto",
               "--checkpoint-every", str(args.checkpoint_every), "--quiet", "--set", f"test_size={args.test_size}"]
    if args.train_size:
        command += ["--set", f"train_size={args.train_size}"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return command


def start(command: list[str]) -> subprocess.Popen:
    """Start ``command`` and return once it has printed its first line (training begins)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process.stderr.readline()
    return process


def run(command: list[str]) -> float:
    """Run ``command`` to its end; the seconds from its first line on."""
    process = start(command)
    started = time.perf_counter()
    rest = process.stderr.read()
    if process.wait() != 0:
        sys.exit(f"the run failed: {rest.strip().splitlines()[-1:]}")
    return time.perf_counter() - started


def position(run_dir: Path) -> str:
    """Where the newest last.pt of ``run_dir`` stands: ``epoch E step S``, ``end of epoch E`` or none yet."""
    last = run_dir / "last.pt"
    if not last.exists():
        return "no checkpoint yet"
    state = torch.load(last, weights_only=True, map_location="cpu")
    return f"epoch {state['epoch'] + 1} step {state['step']}" if state.get("step") else f"end of epoch {state['epoch']}"


def same_weights(run_a: Path, run_b: Path) -> bool:
    weights_a, weights_b = (torch.load(run / "last.pt", weights_only=True)["model"] for run in (run_a, run_b))
    return weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10, help="runs to kill, each at its own random moment")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments and of the runs")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=4096, help="training images (0: the whole split)")
    parser.add_argument("--test-size", type=int, default=256)
    parser.add_argument("--checkpoint-every", default="10", help="steps (10) or minutes (1min)")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-kill-resume-"))
    print(f"# {platform.node()} {platform.machine()}, torch {torch.__version__}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; {args.model} on {args.dataset}, {args.epochs} epochs, "
          f"checkpoint every {args.checkpoint_every}; runs in {out}")
    reference_s = run(train_command(args, out, "reference"))
    print(f"uninterrupted run: {reference_s:.1f}s of training and evaluation")

    moments = random.Random(args.seed)
    identical = 0
    print(f"{'kill':>4}  {'after s':>8}  {'last.pt at the kill':<22}  {'resume s':>8}  bit-identical")
    for kill in range(1, args.kills + 1):
        name = f"killed-{kill}"
        after = moments.uniform(0.05, 0.95) * reference_s
        process = start(train_command(args, out, name))
        try:
            process.wait(timeout=after)
            where = "finished before the kill"
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            where = position(out / name)
        resume_s = run(train_command(args, out, name))
        same = same_weights(out / "reference", out / name)
        identical += same
        print(f"{kill:>4}  {after:>8.1f}  {where:<22}  {resume_s:>8.1f}  {'yes' if same else 'NO'}", flush=True)
    print(f"{identical}/{args.kills} bit-identical")
    sys.exit(0 if identical == args.kills else 1)


if __name__ == "__main__":
    main()
