"""A failing export loses nothing: one line, no partial or 0-byte file, the previous file intact.

A full disk is simulated at the system-call level (``os.write`` refusing with ENOSPC
part-way through), the way the kernel answers; before, TorchScript and ExportedProgram
were written by torch's C++ writer, which aborted the process and left a 0-byte file.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

FORMATS = {"onnx": "m.onnx", "torchscript": "m.torchscript.pt", "exported-program": "m.pt2",
           "safetensors": "m.safetensors"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_full_disk_leaves_the_previous_export_intact(fmt, synthetic_checkpoint, tmp_path, cli, monkeypatch):
    target = tmp_path / FORMATS[fmt]
    code, out, err = cli("export", "--checkpoint", synthetic_checkpoint, "--format", fmt, "--out", target)
    assert code == 0, err
    before = target.read_bytes()
    real_write = os.write

    def full(fd, data):
        if len(data) > 1000:
            real_write(fd, bytes(data[:1000]))  # the disk fills part-way through the file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    code, out, err = cli("export", "--checkpoint", synthetic_checkpoint, "--format", fmt, "--out", target)
    monkeypatch.undo()
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "no space left on the device" in err and str(target) in err, err
    assert target.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [target.name]  # no temporary file left


def test_out_naming_a_device_is_refused_and_the_device_kept(synthetic_checkpoint, tmp_path, cli):
    device = tmp_path / "null.safetensors"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    except (PermissionError, OSError):
        pytest.skip("cannot create a device file here")
    code, out, err = cli("export", "--checkpoint", synthetic_checkpoint, "--format", "safetensors", "--out", device)
    assert code == 2 and "not a regular file" in err and len(err.strip().splitlines()) == 1, err
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_exports_honour_the_umask(synthetic_checkpoint, tmp_path, cli):
    previous = os.umask(0o022)
    try:
        for fmt in ("safetensors", "torchscript"):
            target = tmp_path / FORMATS[fmt]
            code, out, err = cli("export", "--checkpoint", synthetic_checkpoint, "--format", fmt, "--out", target)
            assert code == 0, err
            assert stat.S_IMODE(target.stat().st_mode) == 0o644, fmt
    finally:
        os.umask(previous)


@pytest.mark.parametrize("options, allowed", [
    (["--opset", "30"], "choose 7 to"), (["--opset", "-1"], "choose 7 to"),
    (["--exporter", "torchscript", "--opset", "22"], "torchscript ONNX exporter"),
])
def test_an_opset_the_exporter_cannot_write_is_refused_before_exporting(synthetic_checkpoint, tmp_path, cli, options,
                                                                       allowed):
    target = tmp_path / "m.onnx"
    code, out, err = cli("export", "--checkpoint", synthetic_checkpoint, "--format", "onnx", "--out", target, *options)
    assert code == 2 and len(err.strip().splitlines()) == 1 and allowed in err, err
    assert not target.exists()


def test_the_dynamo_exporter_says_which_opset_it_wrote(synthetic_checkpoint, tmp_path, cli):
    import json

    import onnx

    target = tmp_path / "m.onnx"
    code, out, err = cli("export", "--checkpoint", synthetic_checkpoint, "--format", "onnx", "--exporter", "dynamo",
                         "--out", target, "--json")
    assert code == 0, err
    written = next(entry.version for entry in onnx.load(str(target)).opset_import if entry.domain in ("", "ai.onnx"))
    assert written == 18
    assert any("opset 18, not 17" in note for note in json.loads(out)["notes"])
