#!/usr/bin/env bash
# What only a CUDA GPU can show: the `cuda`-marked tests, then short end-to-end CUDA runs
# through the CLI. For a bare machine with one CUDA GPU where convzoo is installed
# (pip install -e .[dev]); finishes in a few minutes (every step has a timeout, at most
# about six minutes in all).
#
#   bash benchmarks/gpu_check.sh OUT_DIR
#
# Writes OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md (one row per check: status,
# seconds, last line of output), each check's full log, and pytest's JUnit XML. Exits
# non-zero when any check failed. To add a check: one more `check NAME TIMEOUT COMMAND...`.
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

python - "$out" <<'PYTHON'
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
summary = {
    "passed": all(check["passed"] for check in checks),
    "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
    "cuda_available": torch.cuda.is_available(), "pytest_cuda": pytest_counts, "checks": checks,
}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
rows = [f"| {c['name']} | {'pass' if c['passed'] else 'FAIL (exit %d)' % c['exit_code']} | {c['seconds']:.1f} | "
        f"{c['last_line'].replace('|', '/')[:120]} |" for c in checks]
(out / "gpu_check.md").write_text("\n".join([
    f"# GPU check: {'passed' if summary['passed'] else 'FAILED'}", "",
    f"{gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); pytest -m cuda: {pytest_counts}", "",
    "| check | result | seconds | last line of output |", "|---|---|---|---|", *rows, "",
]))
print((out / "gpu_check.md").read_text())
sys.exit(0 if summary["passed"] else 1)
PYTHON
