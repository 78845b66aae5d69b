#!/usr/bin/env bash
# Prepare this checkout for `benchmarks/gpu_check.sh` on a GPU machine that cannot reach a
# package registry and whose image has torch, torchvision and timm but not all of convzoo's
# packages. Run it here, where pip works; it fills two ignored folders that travel with the
# checkout:
#
#   .whl/       wheels of the packages the GPU image lacks (captum, torchinfo), for Python 3.12
#               on x86-64 Linux (override with PYTHON_VERSION=3.11 etc.)
#   .gpu-data/  MNIST and Fashion-MNIST's original .gz files (about 42 MB), from $CONVZOO_DATA
#               or ../shared/data
#
#   bash benchmarks/prepare_gpu_check.sh
#
# Then on the GPU machine, from the checkout's root (BENCHMARKS.md, "The GPU check"):
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site:$PWD CONVZOO_DATA=$PWD/.gpu-data GPU_CHECK_COMMIT=<commit> bash benchmarks/gpu_check.sh OUT_DIR
#
# (a copy without .git names its commit through GPU_CHECK_COMMIT; the line printed at the end has it)
set -euo pipefail
cd "$(dirname "$0")/.."
python_version="${PYTHON_VERSION:-3.12}"
source_data="${CONVZOO_DATA:-../shared/data}"
# Pinned to versions known to install beside torch 2.4+ (check with `pip index versions NAME`).
wheels=("captum==${CAPTUM_VERSION:-0.9.0}" "torchinfo==${TORCHINFO_VERSION:-1.8.0}")

rm -rf .whl .gpu-data
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "${wheels[@]}"
for name in MNIST FashionMNIST; do
    mkdir -p ".gpu-data/$name/raw"
    cp "$source_data/$name/raw/"*.gz ".gpu-data/$name/raw/"
done
echo "prepared: $(ls .whl | tr '\n' ' ')and $(du -sh .gpu-data | cut -f1) of data in .gpu-data/"
echo "then: PYTHONPATH=/tmp/site:\$PWD CONVZOO_DATA=\$PWD/.gpu-data GPU_CHECK_COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown) bash benchmarks/gpu_check.sh \"\$OUT\""
