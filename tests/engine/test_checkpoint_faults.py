"""Faults while writing a checkpoint lose nothing: one clean line, previous checkpoint intact, no temp file.

On a real full disk (a tiny tmpfs, when the tests run as root and may mount) and a
read-only file system; elsewhere the same errors are simulated at the system-call level.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convzoo.engine.checkpoint import atomic_save
from convzoo.errors import ConvzooError

SMALL = {"weights": torch.arange(10.0)}
LARGE = {"weights": torch.zeros(200_000)}  # 800 kB: more than the 256 kB file system below holds


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 kB file system, or None where mounting is not allowed."""
    folder = tmp_path / "tiny"
    if not _mount_tmpfs(folder, "256k"):
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_full_disk_is_one_clear_line_and_keeps_previous_checkpoint(tiny_disk, tmp_path, monkeypatch):
    folder = tiny_disk or tmp_path
    target = folder / "last.pt"
    atomic_save(SMALL, target)
    if tiny_disk is None:  # no mount here: the kernel's answer to a full disk, simulated
        real_write = os.write

        def full(fd, data):
            if len(data) > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", full)
    with pytest.raises(ConvzooError) as caught:
        atomic_save(LARGE, target)
    message = str(caught.value)
    assert "\n" not in message
    assert str(target) in message and "no space left on the device" in message
    assert "previous checkpoint there is intact" in message and "--resume" in message
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["weights"], SMALL["weights"])
    assert _leftovers(folder) == []


def test_read_only_folder_is_one_clear_line(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    mounted = _mount_tmpfs(folder, "1m")
    try:
        atomic_save(SMALL, folder / "last.pt")
        if mounted:
            assert subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True).returncode == 0
        else:
            import tempfile

            def read_only(*args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))

            monkeypatch.setattr(tempfile, "mkstemp", read_only)
        with pytest.raises(ConvzooError) as caught:
            atomic_save(LARGE, folder / "last.pt")
        assert "read-only" in str(caught.value) and str(folder / "last.pt") in str(caught.value)
        assert torch.equal(torch.load(folder / "last.pt", weights_only=True)["weights"], SMALL["weights"])
        assert _leftovers(folder) == []
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_permission_denied_names_the_cause(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "open", denied)  # creating the temporary file is refused
    with pytest.raises(ConvzooError, match="permission denied.*make the run folder writable"):
        atomic_save(SMALL, tmp_path / "best.pt")


FULL_DISK_APPEND = """
import json, resource, signal, sys
from pathlib import Path
from convzoo.engine.logging import RunLogger

record = {"epoch": 1, "epochs": 2, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5,
          "test_acc5": 1.0, "lr": 0.1, "images_per_s": 100.0, "epoch_time_s": 1.0}
logger = RunLogger(Path(sys.argv[1]), enabled=True, quiet=True)
logger.log_epoch(record)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write() fails with EFBIG instead
size = (Path(sys.argv[1]) / "metrics.jsonl").stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, resource.RLIM_INFINITY))
try:
    logger.log_epoch({**record, "epoch": 2})
except OSError as error:
    print("append failed:", error.strerror)
"""


def test_an_append_to_metrics_that_the_disk_cuts_short_leaves_whole_lines(tmp_path):
    """The kernel writes what fits and then refuses (here a file-size limit, as a full disk
    does): the append is undone, so metrics.jsonl holds whole lines only (issue 21, item 3)."""
    done = subprocess.run([sys.executable, "-c", FULL_DISK_APPEND, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "append failed" in done.stdout, done.stderr
    lines = (tmp_path / "metrics.jsonl").read_text().split("\n")
    assert lines[-1] == "" and [json.loads(line)["epoch"] for line in lines[:-1]] == [1]


def test_checkpoints_honour_the_umask_as_torch_save_does(tmp_path):
    import stat

    previous = os.umask(0o022)
    try:
        atomic_save(SMALL, tmp_path / "last.pt")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o644  # not mkstemp's 0600
