"""Real processes stopped as clusters and people stop them (issue 14): SIGTERM, then
``kill -9``, each followed by the same command with ``--resume auto``, as torchrun's
``--max-restarts`` would run it; the run ends with the weights of one never stopped.
(The last restart runs in-process: a third start of Python and torch costs CI seconds.)"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from convzoo.config import load_config
from convzoo.engine.checkpoint import load_checkpoint
from convzoo.engine.train import train

pytestmark = pytest.mark.slow

RUN = dict(model="lenet5", epochs=2, batch_size=32, train_size=1024, test_size=64, seed=3, device="cpu")
"""32 steps per epoch: long enough for a signal to land mid-epoch after a checkpoint line."""


def command(out, name):
    return [sys.executable, "-m", "convzoo", "train", "--model", RUN["model"], "--epochs", str(RUN["epochs"]),
            "--batch-size", str(RUN["batch_size"]), "--set", f"train_size={RUN['train_size']}",
            "--set", f"test_size={RUN['test_size']}", "--seed", str(RUN["seed"]), "--device", "cpu",
            "--out", str(out), "--name", name, "--resume", "auto", "--checkpoint-every", "3"]


def run_until_checkpoint_then(signal_number, arguments, log, whole_group=False) -> tuple[int, str]:
    """Start ``arguments``; once stderr says a checkpoint was written, send ``signal_number``
    to the process or, ``whole_group``, to its process group (its own), as torchrun does."""
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "w") as stderr:
        process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=stderr, env=environment,
                                   start_new_session=whole_group)
    deadline = time.time() + 120
    while "checkpoint written" not in log.read_text() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if whole_group:
        os.killpg(process.pid, signal_number)
    else:
        process.send_signal(signal_number)
    code = process.wait(timeout=120)
    if whole_group:
        time.sleep(0.5)
        with pytest.raises(ProcessLookupError):
            os.killpg(process.pid, 0)  # no worker outlived the run
    return code, log.read_text()


def test_sigterm_then_kill_9_then_resume_auto_ends_bit_identical(tmp_path):
    # load_config, as the CLI: the model's recipe scales the rate to the batch.
    straight = train(load_config(None, dict(RUN, dataset="synthetic", out=str(tmp_path / "runs"), name="straight")),
                     quiet=True)
    arguments = command(tmp_path / "runs", "preempted")
    run_dir = tmp_path / "runs" / "preempted"

    code, err = run_until_checkpoint_then(signal.SIGTERM, arguments, tmp_path / "first.log")
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 143 and len(lines) == 1, err
    stopped = re.fullmatch(rf"error: stopped by SIGTERM at epoch 1 step (\d+); resume with --resume {run_dir}", lines[0])
    assert stopped, lines[0]
    assert load_checkpoint(run_dir / "last.pt")["step"] == int(stopped.group(1))

    code, err = run_until_checkpoint_then(signal.SIGKILL, arguments, tmp_path / "second.log")
    assert code == -signal.SIGKILL
    assert f"continuing epoch 1 at step {stopped.group(1)}/32" in err

    config = load_config(None, dict(RUN, dataset="synthetic", out=str(tmp_path / "runs"), name="preempted",
                                    checkpoint_every=3))
    assert train(config, resume="auto", quiet=True)["complete"]
    assert not list(run_dir.glob(".*.tmp"))
    weights = load_checkpoint(run_dir / "last.pt")["model"]
    reference = load_checkpoint(straight["run_dir"] + "/last.pt")["model"]
    assert all(torch.equal(weights[key], reference[key]) for key in reference)


def noise_image_folder(root, per_class):
    """``train/`` with ``per_class`` 32x32 PNGs of noise in each of two classes, ``val/`` with 4."""
    from PIL import Image

    for split, count in (("train", per_class), ("val", 4)):
        for label, name in enumerate(("cats", "dogs")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.effect_noise((32, 32), 30 + 40 * label).convert("RGB").save(folder / f"{index}.png")
    return root


def test_sigterm_to_the_process_group_stops_an_image_folder_run_with_a_mid_epoch_checkpoint(tmp_path):
    """torchrun, Slurm and ``timeout`` send SIGTERM to the whole group, DataLoader workers
    included (issue 21, item 1): the workers must outlive it until the trainer has finished
    its step and written last.pt, then end with it. The run stops as when the trainer alone
    is signalled: one line, exit 143, a mid-epoch last.pt, and no process of it left."""
    images = noise_image_folder(tmp_path / "images", per_class=48)  # 24 steps of 4
    run_dir = tmp_path / "runs" / "grouped"
    arguments = [sys.executable, "-m", "convzoo", "train", "--model", "lenet5", "--dataset", f"imagefolder:{images}",
                 "--set", "image_size=32", "--set", "num_workers=2", "--epochs", "2", "--batch-size", "4", "--seed", "3",
                 "--device", "cpu", "--out", str(tmp_path / "runs"), "--name", "grouped", "--checkpoint-every", "3"]

    code, err = run_until_checkpoint_then(signal.SIGTERM, arguments, tmp_path / "grouped.log", whole_group=True)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 143 and len(lines) == 1 and "Traceback" not in err, err
    stopped = re.fullmatch(rf"error: stopped by SIGTERM at epoch 1 step (\d+); resume with --resume {run_dir}", lines[0])
    assert stopped, lines[0]
    assert load_checkpoint(run_dir / "last.pt")["step"] == int(stopped.group(1))
