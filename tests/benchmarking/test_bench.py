"""``convzoo bench``: schema, peers side by side, out-of-memory retry, the data-pipeline mode, errors."""

from __future__ import annotations

import json

import pytest
import torch

from convzoo.benchmarking import BenchSettings, Contender, run_benchmark
from convzoo.benchmarking import harness
from convzoo.registry import create_model

RESULT_KEYS = {"model", "implementation", "mode", "batch_size", "ms_per_step", "images_per_s", "compile_s",
               "peak_memory_mb", "memory_kind", "input", "ratio_vs_convzoo"}


def test_bench_json_has_one_row_per_mode(cli):
    code, out, err = cli("bench", "--model", "lenet5", "--batch-size", "2", "--steps", "2", "--warmup", "0",
                         "--device", "cpu", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["device"] == "cpu" and payload["torch"] == torch.__version__
    assert [(r["implementation"], r["mode"]) for r in payload["results"]] == [("convzoo", "train"), ("convzoo", "infer")]
    for row in payload["results"]:
        assert RESULT_KEYS <= set(row)
        assert row["input"] == "1x32x32" and row["batch_size"] == 2
        assert row["ms_per_step"] > 0 and row["images_per_s"] == pytest.approx(2e3 / row["ms_per_step"])


def test_bench_compares_torchvision_same_architecture(cli, tmp_path):
    csv_file = tmp_path / "bench.csv"
    code, out, err = cli("bench", "--model", "resnet18", "--input-size", "3", "72", "72", "--batch-size", "2",
                         "--steps", "1", "--warmup", "0", "--mode", "train", "--compare", "torchvision",
                         "--num-classes", "10", "--device", "cpu", "--csv", csv_file, "--json")
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert [r["implementation"] for r in rows] == ["convzoo", "torchvision"]
    assert rows[1]["ratio_vs_convzoo"] == pytest.approx(rows[1]["images_per_s"] / rows[0]["images_per_s"])
    assert csv_file.read_text().splitlines()[0].startswith("model,implementation,mode")
    assert len(csv_file.read_text().splitlines()) == 3


def test_timm_peer_or_a_clear_note(cli):
    code, out, err = cli("bench", "--model", "resnet18", "--input-size", "3", "72", "72", "--batch-size", "1",
                         "--steps", "1", "--warmup", "0", "--mode", "infer", "--compare", "timm",
                         "--num-classes", "10", "--device", "cpu", "--json")
    assert code == 0, err
    payload = json.loads(out)
    try:
        import timm  # noqa: F401
    except ImportError:
        assert any("timm: not installed" in note for note in payload["notes"])
    else:
        assert [r["implementation"] for r in payload["results"]] == ["convzoo", "timm"]


def test_small_input_has_no_peer_and_says_why(cli):
    code, out, err = cli("bench", "--model", "resnet20", "--input-size", "3", "32", "32", "--batch-size", "2",
                         "--steps", "1", "--warmup", "0", "--mode", "infer", "--compare", "torchvision",
                         "--num-classes", "10", "--device", "cpu", "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert [r["implementation"] for r in payload["results"]] == ["convzoo"]
    assert any("no peer at 32 px" in note for note in payload["notes"])


def test_out_of_memory_halves_the_batch_and_says_so(monkeypatch):
    real_step = harness._Runner.step

    def step_that_fits_only_two(self):
        if self.batch_size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB") \
                if hasattr(torch, "OutOfMemoryError") else RuntimeError("CUDA out of memory")
        real_step(self)

    monkeypatch.setattr(harness._Runner, "step", step_that_fits_only_two)
    contender = Contender("convzoo", lambda: create_model("lenet5", num_classes=10))
    settings = BenchSettings(batch_size=8, input_size=(1, 32, 32), steps=1, warmup=1, num_classes=10)
    messages: list[str] = []
    [result] = run_benchmark("lenet5", [contender], ["train"], settings, messages.append)
    assert result.batch_size == 2
    assert messages == ["convzoo train: out of memory at batch 8; retrying at 4",
                        "convzoo train: out of memory at batch 4; retrying at 2"]
    assert result.notes == messages


def test_other_errors_are_not_retried(monkeypatch):
    def broken(self):
        raise ValueError("not a memory problem")

    monkeypatch.setattr(harness._Runner, "step", broken)
    contender = Contender("convzoo", lambda: create_model("lenet5", num_classes=10))
    with pytest.raises(ValueError):
        run_benchmark("lenet5", [contender], ["infer"], BenchSettings(batch_size=4, input_size=(1, 32, 32),
                                                                      steps=1, warmup=1, num_classes=10))


def test_channels_last_and_amp_paths_run(cli):
    code, out, err = cli("bench", "--model", "resnet20", "--input-size", "3", "32", "32", "--batch-size", "2",
                         "--steps", "1", "--warmup", "1", "--mode", "train", "--channels-last", "--amp",
                         "--num-classes", "10", "--device", "cpu", "--json")
    assert code == 0, err
    assert json.loads(out)["settings"]["channels_last"] is True


def test_data_mode_times_synthetic_pipeline(cli):
    code, out, err = cli("bench", "--data", "synthetic", "--batch-size", "64", "--steps", "3", "--json")
    assert code == 0, err
    [row] = json.loads(out)["results"]
    assert row["implementation"] == "convzoo" and row["images"] == 3 * 64 and row["images_per_s"] > 0


def test_data_mode_compares_torchvision_on_mnist(cli, data_dir):
    from tests.conftest import require_dataset

    require_dataset(data_dir, "MNIST")
    code, out, err = cli("bench", "--data", "mnist", "--data-dir", data_dir, "--batch-size", "128", "--steps", "3",
                         "--num-workers", "0", "--json")
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert [r["implementation"] for r in rows] == ["convzoo", "torchvision"]
    assert all(r["images"] == 3 * 128 for r in rows)


def test_data_mode_on_an_image_folder(cli, tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for label in ("cat", "dog"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for index in range(4):
                Image.new("RGB", (40 + index, 30), (index * 40, 80, 120)).save(folder / f"{index}.jpg")
    code, out, err = cli("bench", "--data", f"imagefolder:{tmp_path / 'images'}", "--batch-size", "2",
                         "--steps", "2", "--num-workers", "0", "--json")
    assert code == 0, err
    rows = json.loads(out)["results"]
    assert [r["implementation"] for r in rows] == ["convzoo", "torchvision"]


@pytest.mark.parametrize("args, message", [
    (["--model", "lenet5", "--mode", "fast"], "--mode must be train, infer or both"),
    (["--model", "lenet5", "--compare", "keras"], "--compare 'keras' is not a peer library"),
    (["--model", "lenet5", "--input-size", "1", "28", "28"], "lenet5 takes only 1x32x32 input"),
    (["--model", "lenet5", "--steps", "0"], "--steps must be at least 1"),
    ([], "pass --model NAME"),
    (["--model", "lenet5", "--data", "synthetic"], "drop --model"),
    (["--model", "resnet7"], "unknown model"),
])
def test_bench_errors_are_one_line(cli, args, message):
    code, out, err = cli("bench", *args, "--device", "cpu")
    assert code != 0 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err
