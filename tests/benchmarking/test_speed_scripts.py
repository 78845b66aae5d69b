"""The speed benchmarks of issue 10 still run: a smoke run each (their numbers go to the README)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load(script: str):
    spec = importlib.util.spec_from_file_location(script, BENCHMARKS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[script] = module
    spec.loader.exec_module(module)
    return module


def test_cpu_families_table_has_every_column(capsys, one_thread):
    bench = load("bench_cpu_families")
    bench.main(["--models", "lenet5,resnet18", "--steps", "1", "--warmup", "0", "--batch-size", "2",
                "--image-size", "16", "--peer-size", "72"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| lenet5") or line.startswith("| resnet18")]
    assert len(rows) == 3  # lenet5; resnet18 at 16 px (no peer) and at 72 px beside torchvision
    assert rows[-1].split("|")[7].strip() != "-" and "torch " + __import__("torch").__version__ in out


def test_imagefolder_benchmark_reports_a_ratio(capsys, tmp_path, one_thread):
    bench = load("bench_imagefolder")
    bench.main(["--images", "16", "--classes", "2", "--batch-size", "4", "--workers", "0", "--repeats", "1",
                "--decoders", "tensor,pil", "--folder", str(tmp_path / "jpegs")])
    out = capsys.readouterr().out
    assert "| convzoo (tensor) |" in out and "| convzoo (pil) |" in out
    assert out.strip().splitlines()[-1].endswith("| 1.00 |")  # the canonical pipeline, against itself
