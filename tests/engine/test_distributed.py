"""Multi-process training under torchrun (gloo on CPU): ranks shard, rank 0 alone writes."""

import json
import shutil
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "convzoo", "train",
         "--model", "lenet5", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path), "--name", "ddp", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    (line,) = completed.stdout.strip().splitlines()  # one result, from rank 0 only
    result = json.loads(line)
    assert result["run_dir"].endswith("ddp")
    assert "10,000 images" in completed.stderr and "x2" in completed.stderr
    run_dir = tmp_path / "ddp"
    assert (run_dir / "last.pt").is_file() and (run_dir / "best.pt").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
