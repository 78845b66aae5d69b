"""Does transfer pay? Fine-tuning beside training from scratch, on real data (issue 23).

    python benchmarks/bench_finetune.py --data-dir ../shared/data
    python benchmarks/bench_finetune.py --pretrained runs/resnet20-fashion-mnist/best.pt   # reuse a run
    python benchmarks/bench_finetune.py --quick        # a smoke run of every step, in a minute

Part 1 (acceptance 1). ResNet-20 is trained on Fashion-MNIST by the shipped config
(``configs/resnet20-fashion-mnist.yaml``, shortened by ``--pretrain-epochs`` and
``--pretrain-size``), then trained on the first ``--few`` MNIST training images seven ways,
each for the same number of steps and tested on the full MNIST test set:
  - from scratch, with the fine-tuning config's values (``configs/resnet20-finetune-mnist.yaml``
    without its weights);
  - from scratch, with ResNet-20's own Fashion-MNIST recipe (its higher rate suits a fresh net);
  - fine-tuned: every layer, from the Fashion-MNIST weights (their classifier too, or with
    ``--reset-head`` a fresh one: MNIST's classes are not Fashion-MNIST's);
  - fine-tuned with ``--freeze-until layer2``: the third stage and the classifier train;
  - fine-tuned with ``--freeze backbone``: only the classifier trains (as loaded, or fresh
    at ten times the rate).

Part 2 (acceptance 2). The transfer-learning tutorial's workflow on an image folder of a
few hundred JPEGs that ``examples/shapes_folder.py`` writes: ``convzoo train`` with
``configs/resnet18-finetune-imagefolder.yaml``, ``convzoo eval`` and ``convzoo predict`` on
pictures in neither split, all with the folder's class names. Its weights are
``--weights`` (default ``torchvision``: ImageNet, downloaded once; offline, pass a file).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # beside its sibling, however it is loaded
from bench_default_commands import cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def convzoo(*arguments: object, json_output: bool = True) -> dict | str:
    """Run one convzoo command; its --json object (or its stdout), or exit with its error."""
    command = [sys.executable, "-m", "convzoo", *map(str, arguments)] + (["--json"] if json_output else [])
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if finished.returncode != 0:
        sys.exit(f"failed ({finished.returncode}): {' '.join(command)}\n{finished.stderr.strip()[-2000:]}")
    print(f"  {time.perf_counter() - started:6.0f} s  convzoo {' '.join(map(str, arguments))}", file=sys.stderr,
          flush=True)
    return json.loads(finished.stdout) if json_output else finished.stdout


def transfer_rows(args: argparse.Namespace, out: Path) -> tuple[list[dict], str]:
    """Part 1: the four MNIST runs; also the line saying where the weights came from."""
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    if args.pretrained:
        pretrained, source = Path(args.pretrained).resolve(), f"`{args.pretrained}`"
    else:
        result = convzoo("train", "--config", "configs/resnet20-fashion-mnist.yaml", "--epochs", args.pretrain_epochs,
                         "--set", f"train_size={args.pretrain_size}", *data, "--out", out, "--name", "pretrain",
                         "--quiet")
        pretrained = out / "pretrain" / "best.pt"
        source = (f"`configs/resnet20-fashion-mnist.yaml --epochs {args.pretrain_epochs} --set "
                  f"train_size={args.pretrain_size}`: {100 * result['best_acc']:.2f} % on Fashion-MNIST's test set")
    few = ["--epochs", args.epochs, "--set", f"train_size={args.few}", *data, "--out", out, "--quiet"]
    if args.test_size:
        few += ["--set", f"test_size={args.test_size}"]
    finetune = ["--config", "configs/resnet20-finetune-mnist.yaml"]
    values = yaml.safe_load((REPO / "configs" / "resnet20-finetune-mnist.yaml").read_text())
    values.pop("weights")
    (out / "scratch.yaml").write_text(yaml.safe_dump(values))
    runs = [
        ("from scratch, the fine-tuning config's values", ["--config", out / "scratch.yaml"]),
        ("from scratch, ResNet-20's Fashion-MNIST recipe", ["--config", "configs/resnet20-fashion-mnist.yaml",
                                                             "--dataset", "mnist"]),
        ("fine-tuned, every layer", [*finetune, "--weights", pretrained]),
        ("fine-tuned, every layer, `--reset-head`", [*finetune, "--weights", pretrained, "--reset-head"]),
        ("fine-tuned, `--freeze-until layer2`", [*finetune, "--weights", pretrained, "--freeze-until", "layer2"]),
        ("fine-tuned, `--freeze backbone`", [*finetune, "--weights", pretrained, "--freeze", "backbone"]),
        ("fine-tuned, `--freeze backbone --reset-head --head-lr-mult 10`",
         [*finetune, "--weights", pretrained, "--freeze", "backbone", "--reset-head", "--head-lr-mult", "10"]),
    ]
    rows = []
    for index, (what, arguments) in enumerate(runs):
        result = convzoo("train", *arguments, *few, "--name", f"mnist-{index}")
        records = [json.loads(line) for line in (out / f"mnist-{index}" / "metrics.jsonl").read_text().splitlines()]
        rows.append({"run": what, "test_acc": [r["test_acc"] for r in records],
                     "final_acc": result["final_acc"], "train_time_s": result["train_time_s"],
                     "test_images": records[-1]["test_images"]})
    return rows, source


def tutorial_rows(args: argparse.Namespace, out: Path) -> dict:
    """Part 2: write the folder, then train, eval and predict as the README's section does."""
    folder = out / "images"
    subprocess.run([sys.executable, str(REPO / "examples" / "shapes_folder.py"), str(folder),
                    "--train", str(args.folder_train), "--val", str(args.folder_val)], check=True, capture_output=True)
    trained = convzoo("train", "--config", "configs/resnet18-finetune-imagefolder.yaml", "--dataset",
                      f"imagefolder:{folder}", "--weights", args.weights, "--epochs", args.folder_epochs, "--set",
                      f"image_size={args.image_size}", "--out", out, "--name", "shapes", "--quiet")
    evaluated = convzoo("eval", "--checkpoint", out / "shapes" / "best.pt")
    predicted = convzoo("predict", "--checkpoint", out / "shapes" / "best.pt", folder / "new", "--top-k", "1")
    return {"train": trained, "eval": evaluated,
            "predictions": [(Path(p["image"]).name, p["top_k"][0]["name"], p["top_k"][0]["probability"])
                            for p in predicted["predictions"]]}


def markdown(header: str, source: str, rows: list[dict], tutorial: dict | None) -> str:
    lines = [header, "", f"Pretrained: {source}.", "",
             "| MNIST run (same steps each) | test accuracy per epoch | final | training time |",
             "|---|---|---:|---:|"]
    for row in rows:
        curve = " → ".join(f"{100 * acc:.2f}" for acc in row["test_acc"])
        lines.append(f"| {row['run']} | {curve} | **{100 * row['final_acc']:.2f} %** | {row['train_time_s']:.0f} s |")
    if rows:
        lines.append(f"\nTest set: {rows[0]['test_images']:,} MNIST test images.")
    if tutorial:
        lines += ["", f"Image folder (`examples/shapes_folder.py`): best {100 * tutorial['train']['best_acc']:.2f} % "
                      f"in training, `convzoo eval` {100 * tutorial['eval']['acc1']:.2f} %; `convzoo predict` on new "
                      "pictures: " + ", ".join(f"{name} → {label} ({100 * p:.1f} %)"
                                              for name, label, p in tutorial["predictions"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("CONVZOO_DATA"))
    parser.add_argument("--pretrained", help="a Fashion-MNIST ResNet-20 checkpoint to start from (else one is trained)")
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--pretrain-size", type=int, default=60_000)
    parser.add_argument("--few", type=int, default=1000, help="MNIST training images")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every MNIST run")
    parser.add_argument("--test-size", type=int, help="MNIST test images (default: all 10,000)")
    parser.add_argument("--weights", default="torchvision", help="part 2's starting weights")
    parser.add_argument("--folder-train", type=int, default=160, help="part 2's training pictures per class")
    parser.add_argument("--folder-val", type=int, default=40)
    parser.add_argument("--folder-epochs", type=int, default=25)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--skip-folder", action="store_true", help="part 1 only")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny sizes everywhere")
    parser.add_argument("--markdown", help="write the tables here")
    args = parser.parse_args(argv)
    if args.quick:
        args.pretrain_epochs, args.pretrain_size, args.few, args.epochs, args.test_size = 1, 256, 128, 1, 128
        args.folder_train, args.folder_val, args.folder_epochs, args.image_size = 8, 4, 1, 32
    import torch

    header = (f"`python benchmarks/bench_finetune.py {' '.join(argv if argv is not None else sys.argv[1:])}` — "
              f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    with tempfile.TemporaryDirectory() as folder:
        rows, source = transfer_rows(args, Path(folder))
        tutorial = None if args.skip_folder else tutorial_rows(args, Path(folder))
    table = markdown(header, source, rows, tutorial)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)
    scratch = max(row["final_acc"] for row in rows[:2])  # rows[2]: every layer fine-tuned
    if rows[2]["final_acc"] <= scratch and not args.quick:
        sys.exit("fine-tuning every layer did not beat training from scratch")


if __name__ == "__main__":
    main()
