"""ONNX export of every registered model: does it export, how close is onnxruntime to
eager PyTorch, and how fast is each at batch 1 and 32 on the CPU.

Each model is built at its small input (3x32x32, LeNet-5 1x32x32, 10 classes, random
weights, seed 0) and exported with ``convzoo.deploy.export_model`` (which checks batches
of 1 and 7 against eager); then eager ``model(x)`` under ``inference_mode`` and
onnxruntime's CPU session (same thread count) are timed alternately on the same batch,
median of ``--repeats`` after a warm-up. Prints a Markdown table for BENCHMARKS.md.

Worker threads wait passively in both (``OMP_WAIT_POLICY=PASSIVE`` is set before torch is
imported; onnxruntime's ``allow_spinning=0``): on a machine shared with other jobs,
spinning threads made a 2-thread DenseNet forward 50-80x slower than one thread.

    python benchmarks/bench_export.py                      # the registry, 2 threads
    python benchmarks/bench_export.py --models 'resnet*' --repeats 5
    python benchmarks/bench_export.py --image-size 224 --models resnet18 mobilenet_v2
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402  (after OMP_WAIT_POLICY, which OpenMP reads once)


def median_time(function, repeats: int) -> float:
    function()  # warm-up: allocator, oneDNN primitive and onnxruntime arena creation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(name: str, image_size: int | None, threads: int, repeats: int, folder: Path) -> dict:
    import onnxruntime

    from convzoo.deploy import export_model
    from convzoo.inspection import build_source_model, input_pipeline, resolve_model_source

    source = resolve_model_source(model=name, random_init=True)
    if image_size is not None:
        source.config = dataclasses.replace(source.config, image_size=image_size)
    row = {"model": name}
    try:
        result = export_model(source, "onnx", folder / f"{name}.onnx")
    except Exception as error:  # noqa: BLE001 - a failing model is a row of the table, not the end of it
        row.update(ok=False, error=str(error).splitlines()[0][:100])
        return row
    row.update(ok=True, max_abs_diff=result.max_abs_diff, export_s=result.export_time_s, notes=result.notes)
    model = build_source_model(source)
    _, preprocessing = input_pipeline(source)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as OMP_WAIT_POLICY=PASSIVE
    session = onnxruntime.InferenceSession(result.path, options, providers=["CPUExecutionProvider"])
    row["side"] = preprocessing.model_side
    for batch_size in (1, 32):
        batch = torch.randn(batch_size, preprocessing.channels, preprocessing.model_side, preprocessing.model_side)
        array = batch.numpy()

        def eager():
            with torch.inference_mode():
                model(batch)

        def ort():
            session.run(None, {"input": array})

        row[f"torch_ms_{batch_size}"] = 1000 * median_time(eager, repeats)
        row[f"ort_ms_{batch_size}"] = 1000 * median_time(ort, repeats)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["*"], help="Names or wildcards (default: the registry).")
    parser.add_argument("--image-size", type=int, default=None, help="Build at this side (default: the small input).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    from convzoo.registry import list_models

    names = [name for name in list_models() if any(fnmatch.fnmatchcase(name, p) for p in args.models)]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.repeats} repeats", file=sys.stderr)
    print("| model | side | ONNX ok | max abs diff | export s | torch b1 ms | ORT b1 ms | torch b32 ms | ORT b32 ms | ORT speed-up b32 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            row = measure(name, args.image_size, args.threads, args.repeats, Path(folder))
            if not row["ok"]:
                print(f"| {name} | | no: {row['error']} | | | | | | | |", flush=True)
                continue
            note = " (dynamo)" if any("dynamo" in note for note in row["notes"]) else ""
            print(f"| {name} | {row['side']} | yes{note} | {row['max_abs_diff']:.1e} | {row['export_s']:.1f} | "
                  f"{row['torch_ms_1']:.2f} | {row['ort_ms_1']:.2f} | {row['torch_ms_32']:.1f} | {row['ort_ms_32']:.1f} | "
                  f"{row['torch_ms_32'] / row['ort_ms_32']:.2f}x |", flush=True)
            Path(folder, f"{name}.onnx").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
