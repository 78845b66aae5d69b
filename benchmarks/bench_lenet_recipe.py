"""The LeNet-5 MNIST recipe, whole process: how long `convzoo train --config
configs/lenet5-mnist.yaml` takes from the shell's point of view, start-up included.

Issue 10's acceptance 3 times the whole command, because that is what a user waits for:
importing torch, reading MNIST, training, evaluating after each epoch and writing the
checkpoints. Each contender is one command line; the contenders run in turn, round after
round, so that a change in the machine's speed hits them alike (a shared VM's host speed
drifts by more than the differences measured here). A contender is either a variant of
the shipped recipe (flags added to the command) or, with ``--baseline-tree``, another
checkout of convzoo running its own config: the code and recipe before a change.

    python benchmarks/bench_lenet_recipe.py --data-dir ../shared/data
    python benchmarks/bench_lenet_recipe.py --data-dir ../shared/data --rounds 2 \\
        --variant "2 epochs, batch 64=--epochs 2 --batch-size 64 --lr 0.1" --baseline-tree ../convzoo-before
    python benchmarks/bench_lenet_recipe.py --data-dir ../shared/data --variant "one thread=OMP_NUM_THREADS=1"

A variant's leading ``NAME=VALUE`` words set environment variables of its process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Contender:
    label: str
    tree: Path
    """The checkout whose code and ``configs/lenet5-mnist.yaml`` run."""
    extra: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)
    train_times: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)


def run_once(contender: Contender, data_dir: str, out: Path, common: list[str]) -> None:
    """One whole ``convzoo train`` process, timed from spawn to exit."""
    command = [sys.executable, "-m", "convzoo", "train", "--config", str(contender.tree / "configs" / "lenet5-mnist.yaml"),
               "--data-dir", data_dir, "--out", str(out), "--json", *common, *contender.extra]
    environment = {**os.environ, "PYTHONPATH": str(contender.tree), **contender.environment}
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=contender.tree, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{contender.label}: exit {finished.returncode}: {finished.stderr.strip().splitlines()[-1:]}")
    result = json.loads(finished.stdout)
    contender.walls.append(wall)
    contender.train_times.append(float(result["train_time_s"]))
    contender.accuracies.append(float(result["best_acc"]))
    print(f"  {contender.label}: {wall:.1f} s whole process, {result['train_time_s']:.1f} s training, "
          f"best {100 * result['best_acc']:.2f} %", file=sys.stderr, flush=True)


def markdown(contenders: list[Contender], rounds: int) -> str:
    reference = statistics.median(contenders[0].walls)
    lines = [
        f"{datetime.date.today()}, {rounds} round(s), contenders alternating; python {' '.join(sys.argv)}",
        "",
        "| contender | wall (s), each round | training (s) | best test accuracy | wall vs first |",
        "|---|---:|---:|---:|---:|",
    ]
    for contender in contenders:
        lines.append(
            f"| {contender.label} | {', '.join(f'{wall:.1f}' for wall in contender.walls)} "
            f"| {', '.join(f'{seconds:.1f}' for seconds in contender.train_times)} "
            f"| {', '.join(f'{100 * accuracy:.2f} %' for accuracy in sorted(set(contender.accuracies)))} "
            f"| {statistics.median(contender.walls) / reference:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CONVZOO_DATA"), help="Folder holding MNIST.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                        help="A variant of the shipped recipe: a label, '=', and the flags to add (repeatable).")
    parser.add_argument("--baseline-tree", help="Another convzoo checkout, timed with its own code and config.")
    parser.add_argument("--common", default="", help="Flags added to every contender (e.g. a smoke run's "
                                                     "'--epochs 1 --set train_size=512').")
    args = parser.parse_args(argv)
    if not args.data_dir:
        raise SystemExit("--data-dir (or $CONVZOO_DATA) must name the folder holding MNIST.")
    contenders = [Contender("shipped recipe", REPO, [])]
    for variant in args.variant:
        label, _, flags = variant.partition("=")
        words = shlex.split(flags)
        settings = {}
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            name, _, value = words.pop(0).partition("=")
            settings[name] = value
        contenders.append(Contender(label.strip(), REPO, words, settings))
    if args.baseline_tree:
        contenders.append(Contender(f"baseline ({args.baseline_tree})", Path(args.baseline_tree).resolve(), []))
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(args.rounds):
            print(f"round {round_index + 1}/{args.rounds}", file=sys.stderr, flush=True)
            for contender in contenders:
                run_once(contender, args.data_dir, Path(scratch) / f"round{round_index}", shlex.split(args.common))
    print(markdown(contenders, args.rounds))


if __name__ == "__main__":
    main()
