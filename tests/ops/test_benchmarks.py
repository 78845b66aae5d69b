"""The ops benchmarks (convolution, RoI pooling) still run (a smoke run each; their numbers go to BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[script] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_conv_smoke_run_prints_ratios(capfd):
    bench = load("bench_conv")
    bench.run(bench.parse_args(["--quick", "--models", "lenet5", "--threads", "1"]))
    out, err = capfd.readouterr()
    assert "profiler_start" not in err and "Memory block" not in err  # no profiler log on stderr
    assert "total time ratio, each distinct shape once:" in out
    assert out.count("lenet5") >= 3  # three convolution shapes and the whole-network line
    assert "worst peak-memory ratio:" in out


def test_bench_conv_models_smoke_run_prints_a_ratio(capsys):
    bench = load("bench_conv_models")
    bench.run(bench.parse_args(["--quick", "--models", "lenet5", "--threads", "1"]))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("lenet5")]
    assert len(lines) == 1 and float(lines[0].split()[-1]) > 0


def test_bench_conv_transpose_smoke_run_prints_ratios(capsys):
    bench = load("bench_conv_transpose")
    bench.run(bench.parse_args(["--quick", "--threads", "1"]))
    out = capsys.readouterr().out
    assert out.startswith("# bench_conv_transpose:") and f"torch {bench.torch.__version__}" in out
    rows = [line for line in out.splitlines() if line.startswith(("fcn8s", "unet"))]
    assert len(rows) == 2 * len(bench.SHAPES) and all(float(row.split()[-1]) > 0 for row in rows)
    assert "total time ratio, forward:" in out and "total time ratio, fwd+bwd:" in out


def test_bench_roi_smoke_run_prints_both_ops_and_their_ratios(capsys):
    bench = load("bench_roi")
    bench.run(bench.parse_args(["--quick", "--threads", "1"]))
    out = capsys.readouterr().out
    assert "torch " + __import__("torch").__version__ in out
    rows = [line.split() for line in out.splitlines() if line.startswith("roi_")]
    assert [row[:2] for row in rows] == [[op, step] for op in ("roi_pool", "roi_align")
                                         for step in ("forward", "forward+backward")]
    assert all(float(row[4]) > 0 and float(row[5]) < 1e-4 for row in rows)  # a ratio; the same numbers


def test_bench_segmentation_scratch_step_smoke_run_compares_and_times(capsys, monkeypatch):
    bench = load("bench_segmentation")
    monkeypatch.setattr("sys.argv", ["bench_segmentation.py", "--quick", "--skip-training",
                                     "--step-model", "fcn8s_mobilenet_v2"])
    bench.main()
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("| ") and "e-" in line][0]
    cells = [cell.strip(" *x") for cell in row.strip("|").split("|")]
    assert float(cells[0]) < 1e-4 and float(cells[1]) < 1e-4  # the same outputs and the same update
    assert float(cells[-1]) > 0
