import subprocess
import sys
import textwrap

import pytest
import torch

from convzoo.engine.checkpoint import CHECKPOINT_FORMAT, atomic_save, load_checkpoint, load_model_state
from convzoo.errors import ConvzooError


def checkpoint_payload(value: float) -> dict:
    return {"format": CHECKPOINT_FORMAT, "model_name": "lenet5", "model": {"w": torch.full((3,), value)},
            "config": {}, "epoch": 1}


@pytest.mark.parametrize("die_in", ["fsync", "write"])
def test_a_write_killed_midway_leaves_the_previous_checkpoint_loadable(tmp_path, die_in):
    path = tmp_path / "last.pt"
    atomic_save(checkpoint_payload(1.0), path)
    # A second process starts overwriting it and is killed hard in the middle of the write.
    script = textwrap.dedent(f"""
        import os, io, torch
        from convzoo.engine import checkpoint
        if {die_in!r} == "fsync":
            os.fsync = lambda fd: os._exit(9)
        else:
            real_save = torch.save
            def half_then_die(obj, file):
                buffer = io.BytesIO(); real_save(obj, buffer)
                file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2]); file.flush()
                os._exit(9)
            torch.save = half_then_die
        payload = {{"format": checkpoint.CHECKPOINT_FORMAT, "model_name": "lenet5",
                    "model": {{"w": torch.full((3,), 2.0)}}, "config": {{}}, "epoch": 2}}
        checkpoint.atomic_save(payload, {str(path)!r})
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert completed.returncode == 9, completed.stderr.decode()
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], torch.full((3,), 1.0))


def test_a_truncated_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "best.pt"
    atomic_save(checkpoint_payload(1.0), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConvzooError, match="truncated, corrupt or not a PyTorch checkpoint") as raised:
        load_checkpoint(path)
    assert "\n" not in str(raised.value)


def test_a_foreign_file_is_not_taken_for_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ConvzooError, match="not a convzoo checkpoint"):
        load_checkpoint(path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConvzooError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(ConvzooError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoints_that_would_run_code_are_refused(tmp_path):
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"format": CHECKPOINT_FORMAT, "x": Payload()}, path)
    with pytest.raises(ConvzooError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_a_run_folder_resolves_to_its_best_checkpoint(tmp_path):
    atomic_save(checkpoint_payload(1.0), tmp_path / "last.pt")
    atomic_save(checkpoint_payload(3.0), tmp_path / "best.pt")
    assert load_checkpoint(tmp_path)["model"]["w"][0] == 3.0


def test_weights_for_another_model_are_named_not_traced(tmp_path):
    import convzoo

    model = convzoo.create_model("lenet5")
    other = convzoo.create_model("lenet5", num_classes=7).state_dict()
    with pytest.raises(ConvzooError, match=r"shape of classifier.2.weight is \(7, 84\)"):
        load_model_state(model, other, "x.pt", "lenet5")
    with pytest.raises(ConvzooError, match="missing features.0.weight"):
        load_model_state(model, {}, "x.pt", "lenet5")
