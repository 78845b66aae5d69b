"""``convzoo bench`` rows measured on their own (issue 22, items 12 and 19): the CPU's
out-of-memory error is retried as the README says, each row's peak memory is its own,
the layout is train's, a bad ``--csv`` is refused before the timing, the spread is shown."""

from __future__ import annotations

import json

import pytest
import torch

from convzoo.benchmarking import harness


def test_cpu_out_of_memory_is_retried_at_half_the_batch(cli, monkeypatch):
    real_step = harness._Runner.step

    def step_that_fits_only_two(self):
        if self.batch_size > 2:  # the message torch's CPU allocator raises
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 274877906944 bytes. Error code 12 (Cannot allocate memory)")
        real_step(self)

    monkeypatch.setattr(harness._Runner, "step", step_that_fits_only_two)
    code, out, err = cli("bench", "--model", "lenet5", "--mode", "infer", "--batch-size", "8", "--steps", "1",
                         "--warmup", "1", "--device", "cpu", "--json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert row["batch_size"] == 2


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/clear_refs"), reason="needs Linux's clear_refs")
def test_a_small_model_after_a_large_one_does_not_inherit_its_peak(cli):
    code, out, err = cli("bench", "--model", "resnet50", "--model", "lenet5", "--mode", "infer", "--batch-size", "8",
                         "--steps", "1", "--warmup", "0", "--device", "cpu", "--json")
    assert code == 0, err
    large, small = json.loads(out)["results"]
    assert (large["model"], small["model"]) == ("resnet50", "lenet5")
    assert small["peak_memory_mb"] < large["peak_memory_mb"] - 50, (small, large)


def test_the_default_layout_is_trains_and_the_spread_is_reported(cli):
    from convzoo.engine.fast_path import use_channels_last

    code, out, err = cli("bench", "--model", "lenet5", "--mode", "infer", "--batch-size", "2", "--steps", "5",
                         "--warmup", "0", "--device", "cpu", "--json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert row["channels_last"] is use_channels_last("lenet5", torch.device("cpu")) is True
    assert row["ms_iqr"] >= 0


def test_a_csv_in_a_missing_folder_is_refused_before_the_timing(cli, tmp_path):
    code, out, err = cli("bench", "--model", "lenet5", "--steps", "1", "--warmup", "0", "--device", "cpu",
                         "--csv", tmp_path / "missing" / "bench.csv")
    assert code == 2 and "does not exist" in err
    assert "timing" not in err  # no model was timed first
