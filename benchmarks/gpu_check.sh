#!/usr/bin/env bash
# What only a CUDA GPU can show, in one command that ends by a deadline (default 8 minutes,
# inside the 10 a lent GPU machine gives one command): the `cuda`-marked tests, short
# end-to-end CUDA runs through the CLI (a run stopped mid-epoch and resumed, one process
# under torchrun on NCCL), the time-to-accuracy recipes, `probe`/`attack`/`explain`/
# `visualize erf` on CUDA, the scratch convolution against cuDNN, and `convzoo bench`
# beside torchvision and timm.
#
#   bash benchmarks/gpu_check.sh [--deadline SECONDS] [--dry-run] OUT_DIR
#
# Needs convzoo importable (pip install -e .[dev], or PYTHONPATH=. with its packages), python3,
# and MNIST / Fashion-MNIST where $CONVZOO_DATA points. For a bare GPU machine that cannot reach
# a package registry, `bash benchmarks/prepare_gpu_check.sh` (run where pip works) puts the
# missing wheels in .whl/ and the datasets in .gpu-data/; BENCHMARKS.md ("The GPU check")
# gives the whole recipe. A copy without .git reports the commit from $GPU_CHECK_COMMIT.
#
# Writes three files into OUT_DIR, all rewritten after every step (so a run cut short still
# leaves its report): gpu_check.json and gpu_check.md (versions, one row per step: status,
# seconds, limit, last line of output; the time-to-accuracy and bench tables) and
# gpu_check-logs.tar.gz (each step's log, the bench CSVs, pytest's JUnit XML, each run's
# metrics.jsonl). Each step runs under `timeout -k` with its own limit, cut to what is left
# before the deadline; a step with too little time left is recorded as skipped. Exits
# non-zero when any step failed or was skipped. --dry-run runs every step as an echo (and a
# sleep of $GPU_CHECK_DRY_STEP_S seconds): what CI checks of the deadline, archive and report.
# To add a step: one more `check NAME LIMIT_S COMMAND...`.
set -uo pipefail

usage="usage: bash benchmarks/gpu_check.sh [--deadline SECONDS] [--dry-run] OUT_DIR"
deadline_s="${GPU_CHECK_DEADLINE_S:-480}"
dry_run=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --deadline) deadline_s="${2:?$usage}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) echo "$usage"; exit 0 ;;
        -*) echo "error: unknown option $1. $usage" >&2; exit 2 ;;
        *) break ;;
    esac
done
out="${1:?$usage}"
export GPU_CHECK_DEADLINE_S="$deadline_s" GPU_CHECK_DRY_RUN="$dry_run"
kill_after_s=10    # `timeout -k`: a step that ignores SIGTERM is killed this long after it
reserve_s="${GPU_CHECK_RESERVE_S:-15}"   # kept for the last report after the last step
min_step_s=5       # a step with less time than this left is skipped, not started
started=$(date +%s)

mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
logs="$work/logs"
runs="$work/runs"
mkdir -p "$logs" "$runs"
trap 'rm -rf "$work"' EXIT
: > "$work/results.tsv"

report() {  # report [--final]: rewrite OUT's three files from what $work holds now
    python3 benchmarks/gpu_check_report.py report "$out" "$work" "$@"
}

record() {  # record NAME STATUS SECONDS LIMIT LAST_LINE
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$work/results.tsv"
}

check() {  # check NAME LIMIT_S COMMAND... : run under the deadline, log, record, report
    local name="$1" limit="$2"
    shift 2
    local left=$(( deadline_s - ($(date +%s) - started) - reserve_s - kill_after_s ))
    if (( left < min_step_s )); then
        record "$name" skipped 0 0 "not started: ${left}s left before the ${deadline_s}s deadline"
        echo "$name: skipped (deadline)"
        report
        return
    fi
    (( limit > left )) && limit=$left
    if (( dry_run )); then
        set -- bash -c 'echo "dry run: $*"; sleep "${GPU_CHECK_DRY_STEP_S:-0}"' dry-run "$@"
    fi
    local start status seconds last
    start=$(date +%s.%N)
    timeout -k "$kill_after_s" "$limit" "$@" > "$logs/$name.log" 2>&1
    status=$?
    seconds=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
    last=$(grep -v '^\s*$' "$logs/$name.log" | tail -n 1 | tr '\t' ' ' | cut -c1-300)
    record "$name" "$status" "$seconds" "$limit" "$last"
    echo "$name: exit $status in ${seconds}s (limit ${limit}s)"
    report
}

# A signal to the script itself (the machine's own limit) still leaves the last report.
trap 'report --final; exit 143' TERM
trap 'report --final; exit 130' INT

python3 benchmarks/gpu_check_report.py environment "$work"
report

# 1. Every GPU-only test: autocast through chained scratch convolutions, channels-last,
#    CUDA training steps and resume, TF32/cuDNN settings, sync-free augmentation. A module
#    that fails to import fails the step but does not stop the rest; so does a run in which
#    every test was skipped (no GPU seen).
check pytest_cuda 150 bash -c "
    python3 -m pytest -m cuda -q -p no:cacheprovider --continue-on-collection-errors --junitxml='$logs/pytest-cuda.xml'
    status=\$?
    python3 benchmarks/gpu_check_report.py tests-ran '$logs/pytest-cuda.xml' || status=1
    exit \$status"

# 2. The CLI end to end on CUDA, with bf16 autocast (the default there) and the scratch convolution.
check train_scratch_conv_bf16 60 python3 -m convzoo train --model resnet20 --conv scratch --dataset synthetic \
    --epochs 1 --batch-size 128 --set train_size=2048 --device cuda --out "$runs" --name scratch --json

# 3. float32 on CUDA (TF32 tensor cores, cuDNN autotuning), stopped by SIGTERM in epoch 2
#    (step 20 of 2 x 16: a mid-epoch last.pt, exit 143), then resumed from that step.
check train_float32_stopped_then_resumed 90 bash -c "
    python3 benchmarks/stop_at_step.py 20 train --model resnet20 --dataset synthetic --epochs 2 --no-amp \
        --batch-size 128 --set train_size=2048 --device cuda --out '$runs' --name fp32 --json
    test \$? -eq 143 || { echo 'the run was not stopped by SIGTERM (exit 143 expected)'; exit 1; }
    python3 -m convzoo train --resume '$runs/fp32' --device cuda --json 2>&1 | tee '$logs/resume.txt'
    grep -q 'continuing epoch 2 at step 4/16' '$logs/resume.txt' && grep -q '\"complete\": true' '$logs/resume.txt'"

# 4. An image folder streamed to the GPU (channels-last batches from pinned memory, default workers).
check train_image_folder 60 bash -c "
    python3 -c \"
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
    python3 -m convzoo train --model resnet20 --dataset 'imagefolder:$work/images' --set image_size=64 --epochs 1 \
        --batch-size 8 --device cuda --out '$runs' --name folder --json &&
    python3 -m convzoo eval --checkpoint '$runs/folder/best.pt' --device cuda --json"

# 5. One GPU through `--nproc-per-node 1` (torchrun: process group on NCCL, DDP) against the
#    plain run: same data, same seed; cuDNN's autotuned kernels are not bit-identical, so
#    accuracies must agree within a point and the weights closely. The run's first line names
#    its device with the process count ("on cuda:0 x1") only when it trained in a process group.
check nproc_per_node_1_nccl 120 bash -c "
    set -o pipefail
    python3 -m convzoo train --model resnet20 --dataset synthetic --epochs 2 --batch-size 128 --set train_size=4096 \
        --device cuda --out '$runs' --name plain --quiet &&
    python3 -m convzoo train --model resnet20 --dataset synthetic --epochs 2 --batch-size 128 --set train_size=4096 \
        --device cuda --out '$runs' --name nccl1 --nproc-per-node 1 2>&1 | tee '$logs/nccl1.txt' &&
    grep -q 'on cuda:0 x1 ' '$logs/nccl1.txt' &&
    python3 benchmarks/compare_checkpoints.py '$runs/plain/last.pt' '$runs/nccl1/last.pt' --max-accuracy-gap 0.01"

# 6. Time to accuracy with the shipped recipes, data resident on the GPU (bf16, channels-last).
check lenet5_mnist 90 python3 -m convzoo train --config configs/lenet5-mnist.yaml --device cuda \
    --out "$runs" --name lenet5-mnist --quiet
check resnet20_fashion_mnist 150 python3 -m convzoo train --config configs/resnet20-fashion-mnist.yaml --device cuda \
    --out "$runs" --name resnet20-fashion-mnist --quiet

# 6b. Issues 23 and 24 on CUDA: fine-tuning the run of step 2 (fused SGD with frozen
#    parameters, the unfreeze's rebuild, per-block rates) with every modern ingredient on
#    (EMA, MixUp/CutMix, per-image TrivialAugment and erasing batched on the device, drop-path);
#    then what the batched augmentation costs a ResNet-20 epoch on the GPU (target >= 0.85x).
check finetune_modern_cuda 60 python3 -m convzoo train --model resnet20 --dataset synthetic \
    --weights "$runs/scratch/best.pt" --freeze-until layer1 --unfreeze-at 2 --layer-decay 0.8 --head-lr-mult 5 \
    --ema 0.99 --mixup 0.2 --cutmix 1.0 --auto-augment trivialaugment --random-erasing 0.25 --drop-path 0.1 \
    --epochs 2 --batch-size 128 --set train_size=2048 --device cuda --out "$runs" --name finetune-modern --json
check augment_cost_cuda 90 python3 benchmarks/bench_augment.py --device cuda --data-dir "${CONVZOO_DATA:-../shared/data}" \
    --train-size 16384 --repeats 3

# 7. `convzoo probe` on CUDA, on the LeNet-5 just trained; then issue 12's pictures, timed:
#    FGSM and PGD over the whole MNIST test split at seven epsilons, saliency/SmoothGrad/
#    Grad-CAM with the sanity check, and ResNet-56's effective field.
check probe_cuda 60 python3 -m convzoo probe --checkpoint "$runs/lenet5-mnist/best.pt" --device cuda \
    --out "$work/probe" --json
check attack_cuda 90 python3 -m convzoo attack --checkpoint "$runs/lenet5-mnist/best.pt" --method fgsm,pgd \
    --device cuda --out "$work/inspect" --json
check explain_cuda 90 python3 -m convzoo explain --checkpoint "$runs/lenet5-mnist/best.pt" --samples 8 \
    --method saliency,smoothgrad,gradcam --sanity --device cuda --out "$work/inspect" --json
check erf_cuda 60 python3 -m convzoo visualize erf --model resnet56 --random-init --dataset fashion-mnist \
    --samples 32 --device cuda --out "$work/inspect" --json

# 8. The scratch convolution against cuDNN, ResNet-50's layers (forward + backward).
check scratch_conv_vs_cudnn 90 python3 benchmarks/bench_conv.py --device cuda --models resnet50 --batch-size 32 \
    --repeats 3 --no-memory

# 9. Training and inference steps beside torchvision and timm: ResNet-50 at 224 three ways
#    (fp32 NCHW eager, bf16 channels-last, bf16 channels-last compiled), then the other families.
bench() {  # bench NAME LIMIT_S BENCH-ARGS...
    local name="$1" limit="$2"
    shift 2
    check "$name" "$limit" python3 -m convzoo bench --device cuda --steps 30 --warmup 5 --csv "$logs/$name.csv" "$@"
}
bench bench_resnet50_fp32_nchw 90 -m resnet50 --batch-size 256 --no-amp --no-channels-last --compare torchvision,timm
bench bench_resnet50_bf16_cl 90 -m resnet50 --batch-size 256 --amp --channels-last --compare torchvision,timm
bench bench_families_bf16_cl 150 -m resnet18 -m mobilenet_v2 -m densenet121 -m vgg16 --batch-size 256 --mode train \
    --amp --channels-last --compare torchvision,timm
bench bench_resnet50_bf16_cl_compiled 240 -m resnet50 --batch-size 256 --mode train --amp --channels-last --compile \
    --compare torchvision

report --final
