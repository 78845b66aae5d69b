"""Checkpoints within an epoch (issue 14): a run stopped mid-epoch and resumed ends with the
weights and the logged numbers of a run never stopped, on the in-memory and the
DataLoader (image-folder) paths; signals stop a run with a resumable last.pt.

The deterministic stops here happen in-process, right after a mid-epoch last.pt is
written (as a ``kill -9`` then would find it); test_signals_cli.py kills real processes.
"""

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from convzoo.config import TrainConfig
from convzoo.engine.checkpoint import load_checkpoint
from convzoo.engine.interrupts import StoppedBySignal
from convzoo.engine.train import train
from convzoo.errors import ConvzooError


class Killed(Exception):
    pass


def with_dropout(build_model):
    """LeNet-5 has no dropout; put some in front of it, so that the test covers the draws of a step."""
    def build(*args, **kwargs):
        return torch.nn.Sequential(torch.nn.Dropout(0.3), build_model(*args, **kwargs))
    return build


def memory_config(tmp_path, name, **changes) -> TrainConfig:
    """8 steps per epoch, crop-and-flip augmentation (3-channel synthetic data) and dropout."""
    values = dict(model="lenet5", dataset="synthetic", epochs=2, batch_size=32, train_size=256, test_size=64,
                  in_channels=3, lr=0.05, out=str(tmp_path / "runs"), name=name, seed=3, device="cpu")
    return TrainConfig(**(values | changes))


def killed_after_checkpoint(config: TrainConfig | None, monkeypatch, epoch: int, step: int, resume=None) -> None:
    """Train ``config`` (or resume ``resume``) until last.pt holds (``epoch`` done, ``step``), then die there."""
    import convzoo.engine.train as engine
    import convzoo.tasks.classification as classification

    save = engine.atomic_save

    def save_then_die(state, path):
        save(state, path)
        if str(path).endswith("last.pt") and (state["epoch"], state["step"]) == (epoch, step):
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(engine, "atomic_save", save_then_die)
        with pytest.raises(Killed):
            train(config, resume=resume, quiet=True)


def assert_same_run(run_a, run_b) -> None:
    weights_a, weights_b = (load_checkpoint(run / "last.pt")["model"] for run in (run_a, run_b))
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)
    records_a, records_b = ([json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
                            for run in (run_a, run_b))
    numbers = ("epoch", "train_loss", "train_acc", "train_images", "test_loss", "test_acc", "lr")
    assert [[r[k] for k in numbers] for r in records_a] == [[r[k] for k in numbers] for r in records_b]


def assert_resumed_mid_epoch_run_is_bit_identical(tmp_path, monkeypatch, **changes) -> Path:
    """A run of ``memory_config`` with ``changes``, stopped after step 3 of epoch 1 and resumed,
    equals the same run uninterrupted; returns the resumed run's folder."""
    runs = tmp_path / "runs"
    train(memory_config(tmp_path, "straight", **changes), quiet=True)
    killed_after_checkpoint(memory_config(tmp_path, "stopped", checkpoint_every=3, **changes), monkeypatch,
                            epoch=0, step=3)
    assert train(None, resume=runs / "stopped", quiet=True)["complete"]
    assert_same_run(runs / "straight", runs / "stopped")
    return runs / "stopped"


@pytest.fixture
def dropout(monkeypatch):
    import convzoo.engine.train as engine
    import convzoo.tasks.classification as classification

    monkeypatch.setattr(engine, "build_model", with_dropout(engine.build_model))


def test_in_memory_runs_resumed_mid_epoch_are_bit_identical(tmp_path, monkeypatch, dropout, one_thread):
    runs = tmp_path / "runs"
    train(memory_config(tmp_path, "straight"), quiet=True)
    # Two stops: in epoch 1 (step 3), and again after resuming, in epoch 2 (step 4 = global step 12).
    killed_after_checkpoint(memory_config(tmp_path, "stopped", checkpoint_every=3), monkeypatch, epoch=0, step=3)
    saved = load_checkpoint(runs / "stopped" / "last.pt")
    assert (saved["epoch"], saved["step"], saved["running"]["seen"]) == (0, 3, 96)
    killed_after_checkpoint(None, monkeypatch, epoch=1, step=4, resume=runs / "stopped")
    assert train(None, resume=runs / "stopped", quiet=True)["complete"]
    assert_same_run(runs / "straight", runs / "stopped")


@pytest.mark.parametrize("augmentation", [{}, {"auto_augment": "trivialaugment", "random_erasing": 0.5, "repeated_aug": 2}])
def test_image_folder_runs_resumed_mid_epoch_are_bit_identical(tmp_path, monkeypatch, image_folder, augmentation,
                                                               one_thread):
    """Two workers decode and augment: the resumed epoch starts at another batch, so another
    worker gets each image; its crop (and issue 24's policy, erasing and copies) must not change
    (seeded per image, data/resumable.py)."""
    values = dict(model="resnet20", dataset=f"imagefolder:{image_folder}", epochs=2, batch_size=4, image_size=16,
                  num_workers=2, lr=0.05, out=str(tmp_path / "runs"), seed=3, device="cpu", **augmentation)
    runs = tmp_path / "runs"
    train(TrainConfig(**values, name="straight"), quiet=True)
    killed_after_checkpoint(TrainConfig(**values, name="stopped", checkpoint_every=3), monkeypatch, epoch=0, step=3)
    assert train(None, resume=runs / "stopped", quiet=True)["complete"]
    assert_same_run(runs / "straight", runs / "stopped")


def test_sigterm_stops_after_the_step_with_a_resumable_checkpoint(tmp_path, monkeypatch, one_thread):
    """The signal arrives during step 5 of epoch 1 (as from a cluster's scheduler): the step
    finishes, last.pt holds it, and the run resumed from there ends as one never stopped."""
    import convzoo.engine.train as engine
    import convzoo.tasks.classification as classification

    runs = tmp_path / "runs"
    train(memory_config(tmp_path, "straight"), quiet=True)
    calls = {"steps": 0}
    training_loss = classification.training_loss

    def loss_then_signal(*args, **kwargs):
        calls["steps"] += 1
        if calls["steps"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return training_loss(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(classification, "training_loss", loss_then_signal)
        with pytest.raises(StoppedBySignal, match=f"stopped by SIGTERM at epoch 1 step 5; resume with --resume {runs / 'stopped'}") as stopped:
            train(memory_config(tmp_path, "stopped"), quiet=True)
    assert stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run
    saved = load_checkpoint(runs / "stopped" / "last.pt")
    assert (saved["epoch"], saved["step"]) == (0, 5)
    assert train(None, resume=runs / "stopped", quiet=True)["complete"]
    assert_same_run(runs / "straight", runs / "stopped")


def test_a_mid_epoch_checkpoint_never_holds_nan_weights(tmp_path):
    """Checkpoints after every step of a run that diverges at once: the last one written
    (if any) holds finite weights, the run ends with the NaN's one line."""
    with pytest.raises(ConvzooError, match="(loss|weights) became .* in epoch 1; the run stopped and its last good"):
        train(memory_config(tmp_path, "diverged", lr=1e30, schedule="constant", checkpoint_every=1), quiet=True)
    last = tmp_path / "runs" / "diverged" / "last.pt"
    if last.exists():
        assert all(torch.isfinite(weights).all() for weights in load_checkpoint(last)["model"].values())


def test_a_mid_epoch_checkpoint_of_another_world_size_restarts_its_epoch(tmp_path, monkeypatch, capsys):
    """Each rank's position is in its own shard: with another number of processes the
    epoch restarts from its first step, and says so."""
    config = memory_config(tmp_path, "run", epochs=1, checkpoint_every=3)
    killed_after_checkpoint(config, monkeypatch, epoch=0, step=3)
    last = tmp_path / "runs" / "run" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["world_size"] = 2
    state["running"] = {key: value.repeat(2) if torch.is_tensor(value) else value
                        for key, value in state["running"].items()}
    torch.save(state, last)
    result = train(None, resume=tmp_path / "runs" / "run", overrides={}, progress_bars=False)
    assert result["complete"]
    assert "epoch 1 restarts from its first step" in capsys.readouterr().err
    (record,) = [json.loads(line) for line in (tmp_path / "runs" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert record["train_images"] == 256


def test_a_resume_forgets_what_a_kill_left_after_the_checkpoint(tmp_path, monkeypatch):
    """Killed after logging epoch 2 but before its last.pt (or while writing it): the resumed
    run logs epoch 2 once, and the cut-short write's temporary file goes."""
    config = memory_config(tmp_path, "run", train_size=64)
    killed_after_checkpoint(config, monkeypatch, epoch=1, step=0)
    run_dir = tmp_path / "runs" / "run"
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"epoch": 2, "train_loss": 1.0}) + "\n")
    (run_dir / ".last.pt.k9x2.tmp").write_bytes(b"half a checkpoint")
    assert train(None, resume=run_dir, quiet=True)["complete"]
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert not list(run_dir.glob(".*.tmp"))


def test_a_resume_drops_a_last_metrics_line_cut_short_and_says_so(tmp_path, monkeypatch, cli):
    """A crash or a full disk while epoch 2's line was appended left half of it (issue 21,
    item 3): every later resume failed on it (JSONDecodeError). The resume drops it, says
    so, and logs epoch 2 again, whole."""
    killed_after_checkpoint(memory_config(tmp_path, "run", train_size=64), monkeypatch, epoch=1, step=0)
    run_dir = tmp_path / "runs" / "run"
    line = json.dumps({"epoch": 2, "epochs": 2, "train_loss": 1.0, "train_acc": 0.5})
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        metrics.write(line[:len(line) // 2])
    code, _, err = cli("train", "--resume", run_dir)
    assert code == 0, err
    assert f"dropped the last line of {run_dir / 'metrics.jsonl'}: it was cut short" in err
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]



def stopped_during_last_step_of_epoch_1(config: TrainConfig, monkeypatch) -> list:
    """Train ``config`` (8 steps per epoch) with SIGTERM arriving in epoch 1's last step;
    returns the list to which each later evaluation appends what last.pt then held."""
    import convzoo.engine.train as engine
    import convzoo.tasks.classification as classification

    calls = {"steps": 0}
    last_pt_at_evaluation = []
    last = Path(config.out) / config.name / "last.pt"
    training_loss, evaluate = classification.training_loss, classification.evaluate

    def loss_then_signal(*args, **kwargs):
        calls["steps"] += 1
        if calls["steps"] == 8:
            os.kill(os.getpid(), signal.SIGTERM)
        return training_loss(*args, **kwargs)

    def evaluate_noting_last_pt(*args, **kwargs):
        saved = load_checkpoint(last) if last.exists() else {}
        last_pt_at_evaluation.append((saved.get("epoch"), saved.get("step")))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(classification, "evaluate", evaluate_noting_last_pt)
    with monkeypatch.context() as patch:
        patch.setattr(classification, "training_loss", loss_then_signal)
        with pytest.raises(StoppedBySignal, match="stopped by SIGTERM at the end of epoch 1, before its evaluation; "
                                                  f"resume with --resume {last.parent}"):
            train(config, quiet=True)
    return last_pt_at_evaluation


def test_a_stop_at_an_epochs_end_writes_last_pt_before_evaluating(tmp_path, monkeypatch, one_thread):
    """SIGTERM during epoch 1's last step (issue 21, item 4): a large test set takes longer to
    evaluate than the ~30 s a scheduler waits before SIGKILL, so last.pt (the trained epoch,
    not yet evaluated) comes first; the resumed run evaluates epoch 1, then goes on, and ends
    as a run never stopped."""
    runs = tmp_path / "runs"
    train(memory_config(tmp_path, "straight"), quiet=True)
    last_pt_at_evaluation = stopped_during_last_step_of_epoch_1(memory_config(tmp_path, "stopped"), monkeypatch)
    assert last_pt_at_evaluation == []
    saved = load_checkpoint(runs / "stopped" / "last.pt")
    assert (saved["epoch"], saved["step"], saved["running"]["seen"]) == (0, 8, 256)
    assert train(None, resume=runs / "stopped", quiet=True)["complete"]
    assert last_pt_at_evaluation[0] == (0, 8)  # epoch 1's evaluation, after resuming
    assert_same_run(runs / "straight", runs / "stopped")


def test_an_epoch_trained_in_full_by_two_processes_is_evaluated_not_retrained_by_one(tmp_path, monkeypatch,
                                                                                     one_thread):
    """The stop's last.pt rewritten as two processes would have written it (4 steps each,
    each rank's half of the sums): resumed alone, the epoch is not trained again; its logged
    numbers are the whole job's."""
    runs = tmp_path / "runs"
    train(memory_config(tmp_path, "straight"), quiet=True)
    stopped_during_last_step_of_epoch_1(memory_config(tmp_path, "stopped"), monkeypatch)
    last = runs / "stopped" / "last.pt"
    state = torch.load(last, weights_only=True)
    correct = int(state["running"]["correct"][0])
    state.update(world_size=2, steps_per_epoch=4, step=4)
    state["running"].update(loss_sum=state["running"]["loss_sum"].div(2).repeat(2), seen=128,
                            correct=torch.tensor([correct // 2, correct - correct // 2]))
    torch.save(state, last)
    assert train(None, resume=runs / "stopped", quiet=True)["complete"]
    assert_same_run(runs / "straight", runs / "stopped")


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment:2:9", "autoaugment"])
def test_in_memory_runs_with_per_image_augmentation_resumed_mid_epoch_are_bit_identical(tmp_path, monkeypatch, policy,
                                                                                         one_thread):
    """Issue 24's augmentation on top of crop and flip: the policy's per-image ops, the erased
    boxes and their noise, and the repeated order all come back the same in the resumed epoch."""
    assert_resumed_mid_epoch_run_is_bit_identical(tmp_path, monkeypatch, auto_augment=policy, random_erasing=0.5,
                                                  repeated_aug=2)

