"""Every family's default command, trained as a user types it (issue 27, acceptance 1).

    python benchmarks/bench_default_commands.py --data-dir ../shared/data
    python benchmarks/bench_default_commands.py --models resnet50,vgg16 --epochs 2 --train-size 10000

Each model runs ``convzoo train --model M --dataset fashion-mnist --epochs E --set
train_size=N`` and nothing else: its own recipe (convzoo/recipes.py) decides the rest. The
table gives the test accuracy after every epoch, the training speed, the largest test loss
seen and whether the run met the targets (every model >= 70 % after 2 epochs, no epoch's
test loss above 2 x ln 10). A row is printed as soon as its run ends and ``--markdown``
is rewritten after every run, so a benchmark cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPRESENTATIVES = ("lenet5", "alexnet", "vgg11", "vgg16", "vgg16_bn", "googlenet", "resnet18", "resnet50",
                   "resnet20", "resnet56", "densenet121", "mobilenet_v1", "mobilenet_v2", "bagnet17")
ACCURACY_TARGET = 0.70
LOSS_LIMIT = 2 * math.log(10)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_one(model: str, args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, "-m", "convzoo", "train", "--model", model, "--dataset", "fashion-mnist",
               "--epochs", str(args.epochs), "--set", f"train_size={args.train_size}", "--out", str(out),
               "--name", model, "--json", "--quiet"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    row = {"model": model, "wall_s": wall, "exit": finished.returncode}
    if finished.returncode != 0:
        row["error"] = (finished.stderr.strip().splitlines() or ["?"])[-1]
        return row
    result = json.loads(finished.stdout)
    records = [json.loads(line) for line in (out / model / "metrics.jsonl").read_text().splitlines() if line.strip()]
    recipe_lines = [line for line in finished.stderr.splitlines() if "default recipe" in line]
    row.update({
        "test_acc": [r["test_acc"] for r in records],
        "images_per_s": sum(r["train_images"] for r in records) / sum(r["epoch_time_s"] for r in records),
        "max_test_loss": max(r["test_loss"] for r in records),
        "warnings": result.get("warnings", []),
        "recipe": recipe_lines[0] if recipe_lines else "(the config defaults)",
    })
    row["passed"] = row["test_acc"][-1] >= ACCURACY_TARGET and row["max_test_loss"] <= LOSS_LIMIT
    return row


def markdown(rows: list[dict], header: str) -> str:
    lines = [header, "", "| model | test accuracy per epoch | train img/s | largest test loss | targets met | wall |",
             "|---|---|---:|---:|---|---:|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | failed: {row['error']} | | | no | {row['wall_s']:.0f} s |")
            continue
        accuracies = " → ".join(f"{100 * acc:.2f} %" for acc in row["test_acc"])
        lines.append(f"| {row['model']} | {accuracies} | {row['images_per_s']:,.0f} | {row['max_test_loss']:.3f} | "
                     f"{'yes' if row['passed'] else 'no'} | {row['wall_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(REPRESENTATIVES))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--data-dir", default=os.environ.get("CONVZOO_DATA"))
    parser.add_argument("--markdown", help="write the table here after every run")
    parser.add_argument("--json", dest="json_path", help="write the rows here after every run")
    args = parser.parse_args(argv)
    import torch

    header = (f"`python benchmarks/bench_default_commands.py --models {args.models} --epochs {args.epochs} "
              f"--train-size {args.train_size}` — {datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores, "
              f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models.split(","):
            row = run_one(model.strip(), args, Path(folder))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.markdown:
                Path(args.markdown).write_text(markdown(rows, header))
            if args.json_path:
                Path(args.json_path).write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    print(markdown(rows, header))
    if not all(row.get("passed") for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
