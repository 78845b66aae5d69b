#!/usr/bin/env bash
# What only a CUDA GPU can show, in one command sized for about eight minutes: the
# `cuda`-marked tests, short end-to-end CUDA runs through the CLI, the time-to-accuracy
# recipes, `convzoo bench` beside torchvision and timm, the scratch convolution against
# cuDNN, and `convzoo probe` on CUDA.
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# Needs convzoo importable (pip install -e .[dev], or PYTHONPATH=. with its packages) and
# MNIST / Fashion-MNIST where $CONVZOO_DATA points. For a bare GPU machine that cannot reach
# a package registry, `bash benchmarks/prepare_gpu_check.sh` (run where pip works) puts the
# missing wheels in .whl/ and the datasets in .gpu-data/; BENCHMARKS.md ("The GPU check")
# gives the whole recipe.
#
# Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (one row per check: status,
# seconds, last line of output; then the time-to-accuracy and bench tables), each check's
# full log, the bench CSVs and pytest's JUnit XML. Exits non-zero when any check failed.
# To add a check: one more `check NAME TIMEOUT COMMAND...`.
set -uo pipefail

out="${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
results="$out/results.tsv"
: > "$results"

check() {  # check NAME TIMEOUT_S COMMAND... : run, log, and record status, seconds, last line
    local name="$1" limit="$2"
    shift 2
    local start status
    start=$(date +%s.%N)
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    status=$?
    local seconds last
    seconds=$(python -c "print(round($(date +%s.%N) - $start, 1))")
    last=$(grep -v '^\s*$' "$out/$name.log" | tail -n 1 | tr '\t' ' ' | cut -c1-300)
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$seconds" "$last" >> "$results"
    echo "$name: exit $status in ${seconds}s"
}

# 1. Every GPU-only test: autocast through chained scratch convolutions, channels-last,
#    CUDA training steps and resume, TF32/cuDNN settings, sync-free augmentation.
#    A module that fails to import is reported (and fails the check) but does not stop the rest.
check pytest_cuda 240 python -m pytest -m cuda -q -p no:cacheprovider --continue-on-collection-errors \
    --junitxml="$out/pytest-cuda.xml"

# 2. The CLI end to end on CUDA, with bf16 autocast (the default there) and the scratch convolution.
check train_scratch_conv_bf16 60 python -m convzoo train --model resnet20 --conv scratch --dataset synthetic \
    --epochs 1 --batch-size 128 --set train_size=2048 --device cuda --out "$work/runs" --name scratch --json

# 3. float32 on CUDA (TF32 tensor cores, cuDNN autotuning), then a resume of the same run.
check train_float32_then_resume 60 bash -c "
    python -m convzoo train --model resnet20 --dataset synthetic --epochs 2 --no-amp --batch-size 128 \
        --set train_size=2048 --device cuda --out '$work/runs' --name fp32 --json &&
    python -m convzoo train --resume '$work/runs/fp32' --device cuda --json"

# 4. An image folder streamed to the GPU (channels-last batches from pinned memory, default workers).
check train_image_folder 60 bash -c "
    python -c \"
from pathlib import Path
from PIL import Image
for split, count in (('train', 16), ('val', 4)):
    for label, colour in enumerate(((200, 60, 40), (40, 90, 210))):
        folder = Path('$work/images', split, f'class{label}')
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = Image.new('RGB', (40 + index, 48 - index), colour)
            (image.convert('L') if index % 2 else image).save(folder / f'{index}.jpg')
\" &&
    python -m convzoo train --model resnet20 --dataset 'imagefolder:$work/images' --set image_size=64 --epochs 1 \
        --batch-size 8 --device cuda --out '$work/runs' --name folder --json &&
    python -m convzoo eval --checkpoint '$work/runs/folder/best.pt' --device cuda --json"

# 4b. One GPU through `--nproc-per-node 1` (torchrun, NCCL) against the plain run: same data,
#     same seed; cuDNN's autotuned kernels are not bit-identical, so accuracies must agree
#     within a point and the weights closely.
check nproc_per_node_1_nccl 120 bash -c "
    python -m convzoo train --model resnet20 --dataset synthetic --epochs 2 --batch-size 128 --set train_size=4096 \
        --device cuda --out '$work/runs' --name plain --quiet &&
    python -m convzoo train --model resnet20 --dataset synthetic --epochs 2 --batch-size 128 --set train_size=4096 \
        --device cuda --out '$work/runs' --name nccl1 --quiet --nproc-per-node 1 &&
    python benchmarks/compare_checkpoints.py '$work/runs/plain/last.pt' '$work/runs/nccl1/last.pt' --max-accuracy-gap 0.01"

# 5. Time to accuracy with the shipped recipes, data resident on the GPU (bf16, channels-last).
check lenet5_mnist 90 python -m convzoo train --config configs/lenet5-mnist.yaml --device cuda \
    --out "$work/runs" --name lenet5-mnist --quiet
check resnet20_fashion_mnist 150 python -m convzoo train --config configs/resnet20-fashion-mnist.yaml --device cuda \
    --out "$work/runs" --name resnet20-fashion-mnist --quiet

# 6. `convzoo probe` on CUDA, on the LeNet-5 just trained.
check probe_cuda 60 python -m convzoo probe --checkpoint "$work/runs/lenet5-mnist/best.pt" --device cuda \
    --out "$work/probe" --json

# 6b. Issue 12's pictures on CUDA, timed: FGSM and PGD over the whole MNIST test split at seven
#     epsilons, saliency/SmoothGrad/Grad-CAM with the sanity check, and ResNet-56's effective field.
check attack_cuda 90 python -m convzoo attack --checkpoint "$work/runs/lenet5-mnist/best.pt" --method fgsm,pgd \
    --device cuda --out "$work/inspect" --json
check explain_cuda 90 python -m convzoo explain --checkpoint "$work/runs/lenet5-mnist/best.pt" --samples 8 \
    --method saliency,smoothgrad,gradcam --sanity --device cuda --out "$work/inspect" --json
check erf_cuda 60 python -m convzoo visualize erf --model resnet56 --random-init --dataset fashion-mnist --samples 32 \
    --device cuda --out "$work/inspect" --json

# 7. The scratch convolution against cuDNN, ResNet-50's layers (forward + backward).
check scratch_conv_vs_cudnn 90 python benchmarks/bench_conv.py --device cuda --models resnet50 --batch-size 32 \
    --repeats 3 --no-memory

# 8. Training and inference steps beside torchvision and timm: ResNet-50 at 224 three ways
#    (fp32 NCHW eager, bf16 channels-last, bf16 channels-last compiled), then the other families.
bench() {  # bench NAME TIMEOUT_S BENCH-ARGS...
    local name="$1" limit="$2"
    shift 2
    check "$name" "$limit" python -m convzoo bench --device cuda --steps 30 --warmup 5 --csv "$out/$name.csv" "$@"
}
bench bench_resnet50_fp32_nchw 90 -m resnet50 --batch-size 256 --no-amp --no-channels-last --compare torchvision,timm
bench bench_resnet50_bf16_cl 90 -m resnet50 --batch-size 256 --amp --channels-last --compare torchvision,timm
bench bench_families_bf16_cl 150 -m resnet18 -m mobilenet_v2 -m densenet121 -m vgg16 --batch-size 256 --mode train \
    --amp --channels-last --compare torchvision,timm
bench bench_resnet50_bf16_cl_compiled 240 -m resnet50 --batch-size 256 --mode train --amp --channels-last --compile \
    --compare torchvision

python - "$out" "$work" <<'PYTHON'
import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

out = Path(sys.argv[1])
checks = []
for line in (out / "results.tsv").read_text().splitlines():
    name, status, seconds, last = (line.split("\t") + [""])[:4]
    checks.append({"name": name, "passed": status == "0", "exit_code": int(status), "seconds": float(seconds),
                   "last_line": last, "log": f"{name}.log"})
junit = out / "pytest-cuda.xml"
pytest_counts = None
if junit.is_file():
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    pytest_counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    gpu = "unknown"


def time_to_accuracy(run: str, target: float) -> dict | None:
    """Training seconds until the first epoch whose test accuracy reached ``target``."""
    metrics = Path(sys.argv[2]) / "runs" / run / "metrics.jsonl"
    if not metrics.is_file():
        return None
    elapsed, reached, best = 0.0, None, 0.0
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        elapsed += record["epoch_time_s"]
        best = max(best, record["test_acc"])
        if reached is None and record["test_acc"] >= target:
            reached = {"epoch": record["epoch"], "train_s": round(elapsed, 2)}
    return {"run": run, "target": target, "reached": reached, "best_acc": best, "train_s_total": round(elapsed, 2)}


def number(text: str, spec: str) -> str:
    return format(float(text), spec) if text else "-"


recipes = [found for found in (time_to_accuracy("lenet5-mnist", 0.99), time_to_accuracy("resnet20-fashion-mnist", 0.94))
           if found]
benches = {}
for table in sorted(out.glob("bench_*.csv")):
    with table.open() as file:
        benches[table.stem] = list(csv.DictReader(file))
summary = {
    "passed": all(check["passed"] for check in checks),
    "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
    "cuda_available": torch.cuda.is_available(), "pytest_cuda": pytest_counts, "checks": checks,
    "time_to_accuracy": recipes, "bench": benches,
}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
rows = [f"| {c['name']} | {'pass' if c['passed'] else 'FAIL (exit %d)' % c['exit_code']} | {c['seconds']:.1f} | "
        f"{c['last_line'].replace('|', '/')[:120]} |" for c in checks]
(out / "gpu_check.md").write_text("\n".join([
    f"# GPU check: {'passed' if summary['passed'] else 'FAILED'}", "",
    f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); pytest -m cuda: {pytest_counts}", "",
    "| check | result | seconds | last line of output |", "|---|---|---|---|", *rows, "",
    "## Time to accuracy (training seconds, evaluation excluded)", "",
    "| recipe | target | reached at | best |", "|---|---:|---|---:|",
    *[f"| {r['run']} | {100 * r['target']:.0f} % | "
      + (f"epoch {r['reached']['epoch']}, {r['reached']['train_s']:.1f} s" if r["reached"] else "not reached")
      + f" | {100 * r['best_acc']:.2f} % |" for r in recipes], "",
    "## convzoo bench (images/s; ratio = implementation / convzoo)", "",
    "| run | model | implementation | mode | batch | img/s | ratio | peak MB | compile s |",
    "|---|---|---|---|---:|---:|---:|---:|---:|",
    *[f"| {name} | {row['model']} | {row['implementation']} | {row['mode']} | {row['batch_size']} | "
      f"{number(row['images_per_s'], ',.0f')} | {number(row['ratio_vs_convzoo'], '.2f')} | "
      f"{number(row['peak_memory_mb'], ',.0f')} | "
      f"{row['compile_s'] or '-'} |" for name, rows in benches.items() for row in rows], "",
]))
print((out / "gpu_check.md").read_text())
sys.exit(0 if summary["passed"] else 1)
PYTHON
