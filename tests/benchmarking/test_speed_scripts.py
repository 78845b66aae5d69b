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


def test_cpu_families_table_reports_compiled_speed_against_the_default():
    """``--compiled`` adds three columns (speed, ratio to the default layout, first step);
    compiling for real takes minutes, so the table is built from a measured-like row."""
    import argparse

    bench = load("bench_cpu_families")
    args = argparse.Namespace(batch_size=128, steps=5, conv="torch", compiled=True)
    row = {"model": "resnet20", "input": "3x32x32", "batch": 128, "nchw": 200.0, "channels_last": 250.0,
           "default_layout": "channels_last", "default": 250.0, "torchvision": None, "notes": [],
           "compiled": 375.0, "compile_s": 61.25}
    table = bench.markdown([row], args).splitlines()
    assert table[3].endswith("compiled img/s | compiled / default | first compiled step (s) |")
    assert table[4].count("|") == table[3].count("|") == table[5].count("|")
    assert table[5].endswith("| 375.0 | 1.50 | 61.2 |")


def test_imagefolder_benchmark_reports_a_ratio(capsys, tmp_path, one_thread):
    bench = load("bench_imagefolder")
    bench.main(["--images", "16", "--classes", "2", "--batch-size", "4", "--workers", "0", "--repeats", "1",
                "--decoders", "tensor,pil", "--folder", str(tmp_path / "jpegs")])
    out = capsys.readouterr().out
    assert "| convzoo (tensor) |" in out and "| convzoo (pil) |" in out
    assert out.strip().splitlines()[-1].endswith("| 1.00 |")  # the canonical pipeline, against itself


def test_lenet_recipe_benchmark_times_each_contender_whole_process(capsys, data_dir):
    from tests.conftest import require_dataset

    require_dataset(data_dir, "MNIST")
    bench = load("bench_lenet_recipe")
    bench.main(["--data-dir", str(data_dir), "--rounds", "1", "--variant", "batch 64=--batch-size 64",
                "--common", "--epochs 1 --set train_size=256 --set test_size=256"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| shipped") or line.startswith("| batch 64")]
    assert len(rows) == 2 and rows[0].endswith("| 1.00 |")
    assert float(rows[1].split("|")[2]) > float(rows[1].split("|")[3])  # the whole process outlasts its training


def test_default_commands_table_runs_the_plain_command(tmp_path, capsys, data_dir):
    """Issue 27's benchmark, at smoke size: one model, its plain default command, one row."""
    from tests.conftest import require_dataset

    require_dataset(data_dir, "FashionMNIST")
    bench = load("bench_default_commands")
    table = tmp_path / "table.md"
    try:
        bench.main(["--models", "lenet5", "--epochs", "1", "--train-size", "256", "--data-dir", str(data_dir),
                    "--markdown", str(table)])
    except SystemExit as stop:  # 256 images cannot reach 70 %: the table says "no"
        assert stop.code == 1
    row = next(line for line in table.read_text().splitlines() if line.startswith("| lenet5"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1].endswith("%") and float(cells[3]) > 0 and cells[4] in ("yes", "no")


def test_augmentation_benchmark_reports_the_ratio(capsys, data_dir, one_thread):
    from tests.conftest import require_dataset

    require_dataset(data_dir, "FashionMNIST")
    bench = load("bench_augment")
    bench.main(["--data-dir", str(data_dir), "--quick", "--train-size", "64", "--batch-size", "32"])
    out = capsys.readouterr().out
    assert "trivialaugment + random erasing 0.25" in out
    assert out.strip().splitlines()[-1].startswith("augmented / plain training throughput: ")


def test_finetune_benchmark_runs_every_way_of_transfer(tmp_path, capsys, data_dir):
    """Issue 23's benchmark, at smoke size (--quick): the pretraining run and the seven MNIST
    runs, one table row each (the image-folder part runs in the README's section)."""
    from tests.conftest import require_dataset

    require_dataset(data_dir, "MNIST")
    require_dataset(data_dir, "FashionMNIST")
    bench = load("bench_finetune")
    table = tmp_path / "table.md"
    bench.main(["--quick", "--skip-folder", "--data-dir", str(data_dir), "--markdown", str(table)])
    rows = [line for line in table.read_text().splitlines() if line.startswith(("| from scratch", "| fine-tuned"))]
    assert len(rows) == 7 and all(row.rstrip(" |").endswith(" s") for row in rows)
    assert "`--freeze backbone --reset-head --head-lr-mult 10`" in table.read_text()
