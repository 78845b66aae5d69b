"""Commands that promise one line on stderr keep it (issue 22, item 21): no torch.jit
deprecation warnings on a TorchScript export, no "No CUDA runtime" under --compile on a
machine without a GPU, no torch hub "Downloading" line before the offline error."""

from __future__ import annotations

import os
import subprocess
import sys

ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_python(*arguments: str) -> subprocess.CompletedProcess:
    """A fresh interpreter, since these messages go to the process's stderr (C++ and loggers)
    or are printed once per process."""
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=ENVIRONMENT, timeout=300)


def test_torchscript_export_prints_nothing_on_stderr(tmp_path):
    done = run_python("-m", "convzoo", "export", "--model", "lenet5", "--random-init", "--format", "torchscript",
                      "--out", str(tmp_path / "lenet5.torchscript.pt"), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_compile_on_cpu_keeps_cpp_extensions_cuda_warning_quiet():
    import pytest

    importing = "import torch.utils.cpp_extension"
    plain = run_python("-c", importing)
    if "No CUDA runtime" not in plain.stderr:
        pytest.skip("this machine has a GPU or no CUDA toolkit: torch does not warn here")
    compiled = run_python("-c", "import torch; from convzoo.engine.fast_path import compile_model; "
                                f"compile_model(torch.nn.Linear(2, 2), 'cpu'); {importing}")
    assert compiled.returncode == 0, compiled.stderr
    assert "No CUDA runtime" not in compiled.stderr


def test_offline_torchvision_weights_fail_in_one_line(cli, tmp_path, monkeypatch):
    import urllib.error

    import torch.hub

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # nothing cached: torch.hub must download
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    (tmp_path / "image.png").write_bytes(b"")
    code, out, err = cli("predict", "--model", "resnet18", "--weights", "torchvision", tmp_path / "image.png",
                         "--device", "cpu", "--json")
    assert code != 0 and out == ""
    assert err.splitlines() == [err.strip()] and err.startswith("error: downloading torchvision's resnet18 weights")
