"""Run folders as the commands claim them (issue 22, items 7, 8 and 12): a failed or
interrupted command leaves no empty folder blocking its retry, ``--name`` cannot lead out
of ``--out``, and a read-only ``--out`` is one line, not an ``OSError``."""

from __future__ import annotations

import os
import subprocess

import pytest


def test_a_failed_explain_leaves_no_folder_and_the_retry_takes_its_name(cli, lenet_checkpoint, tmp_path):
    code, _, err = cli("explain", "--checkpoint", lenet_checkpoint, "--samples", "1", "--method", "gradcam",
                       "--layer", "features.44", "--out", tmp_path, "--name", "retry")
    assert code != 0 and "unknown layer" in err
    assert not (tmp_path / "retry").exists()
    code, _, err = cli("explain", "--checkpoint", lenet_checkpoint, "--samples", "1", "--method", "saliency",
                       "--out", tmp_path, "--name", "retry")
    assert code == 0, err


def test_an_interrupted_attack_leaves_no_folder(cli, lenet_checkpoint, tmp_path, monkeypatch):
    import convzoo.adversarial

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convzoo.adversarial, "robust_accuracy", interrupted)
    code, _, err = cli("attack", "--checkpoint", lenet_checkpoint, "--samples", "4", "--out", tmp_path, "--name", "a")
    assert code == 130
    assert not (tmp_path / "a").exists()


def test_an_interrupted_probe_leaves_no_folder(cli, lenet_checkpoint, tmp_path, monkeypatch):
    import convzoo.probing.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convzoo.probing.run, "probe_exits", interrupted)
    code, _, err = cli("probe", "--checkpoint", lenet_checkpoint, "--features", "100", "--epochs", "1",
                       "--out", tmp_path, "--name", "p")
    assert code == 130
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/convzoo-absolute-run", "a/b"])
@pytest.mark.parametrize("command", ["train", "explain"])
def test_a_name_cannot_lead_out_of_out(cli, lenet_checkpoint, tmp_path, command, name):
    out = tmp_path / "runs"
    arguments = (["train", "--model", "lenet5", "--epochs", "1", "--set", "train_size=64", "--set", "test_size=16"]
                 if command == "train" else ["explain", "--checkpoint", lenet_checkpoint, "--samples", "1"])
    code, _, err = cli(*arguments, "--out", out, "--name", name)
    assert code == 2 and "is not a folder name" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "escaped").exists() and not os.path.exists("/tmp/convzoo-absolute-run")
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture
def read_only_out(tmp_path):
    """A folder no run folder can be created in: a read-only tmpfs where the tests run as
    root (root ignores permission bits), else a folder without write permission."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot make a read-only folder here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.parametrize("command", ["train", "explain", "probe"])
def test_a_read_only_out_is_one_line(cli, lenet_checkpoint, read_only_out, command):
    arguments = {
        "train": ["train", "--model", "lenet5", "--epochs", "1", "--set", "train_size=64", "--set", "test_size=16"],
        "explain": ["explain", "--checkpoint", lenet_checkpoint, "--samples", "1"],
        "probe": ["probe", "--checkpoint", lenet_checkpoint, "--features", "100", "--epochs", "1"],
    }[command]
    code, _, err = cli(*arguments, "--out", read_only_out)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and f"cannot create a run folder in {read_only_out}" in err, err
