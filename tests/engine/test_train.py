"""The training engine on small synthetic runs: learning, resume, checkpoints, failures."""

import json
import math

import pytest
import torch

from convzoo.config import TrainConfig
from convzoo.engine.checkpoint import load_checkpoint
from convzoo.engine.train import train
from convzoo.errors import ConvzooError


def small_config(tmp_path, **changes) -> TrainConfig:
    values = dict(model="lenet5", dataset="synthetic", epochs=2, batch_size=32, train_size=512,
                  lr=0.05, out=str(tmp_path / "runs"), name="run", seed=3)
    values.update(changes)
    return TrainConfig(**values)


def initial_test_loss(config: TrainConfig) -> float:
    """The test loss of the model exactly as ``train`` initialises it (same seed)."""
    from convzoo.engine.evaluate import evaluate
    from convzoo.engine.setup import build_model, dataset_spec_for, loaders_for

    torch.manual_seed(config.seed)
    spec, pad_to = dataset_spec_for(config)
    loaders = loaders_for(config, spec, pad_to, torch.device("cpu"))
    model = build_model(config.model, spec, loaders.image_size)
    return evaluate(model, loaders.test, torch.device("cpu"), num_classes=spec.num_classes)["loss"]


def test_one_epoch_on_synthetic_lowers_the_loss(tmp_path):
    config = small_config(tmp_path, epochs=1, train_size=4096, schedule="constant", lr=0.03)
    before = initial_test_loss(config)
    result = train(config, quiet=True)
    run_dir = tmp_path / "runs" / "run"
    (record,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert record["test_loss"] < before - 0.1
    assert result["best_acc"] > 0.2 and 0 <= result["final_acc"] <= 1
    for name in ("config.yaml", "last.pt", "best.pt"):
        assert (run_dir / name).is_file()
    assert any(path.name.startswith("events.out.tfevents") for path in run_dir.iterdir())


def test_the_saved_config_reproduces_the_run(tmp_path):
    from convzoo.config import load_config

    config = small_config(tmp_path, epochs=1)
    train(config, quiet=True)
    saved = load_config(tmp_path / "runs" / "run" / "config.yaml")
    assert saved == config


def test_seeded_cpu_runs_are_reproducible(tmp_path):
    first = train(small_config(tmp_path, name="a"), quiet=True)
    second = train(small_config(tmp_path, name="b"), quiet=True)
    weights_a = load_checkpoint(first["run_dir"] + "/last.pt")["model"]
    weights_b = load_checkpoint(second["run_dir"] + "/last.pt")["model"]
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


class Interrupted(Exception):
    pass


def test_resuming_gives_bit_identical_weights(tmp_path, monkeypatch):
    import convzoo.engine.train as engine

    straight = train(small_config(tmp_path, name="straight"), quiet=True)
    # The same two-epoch run, killed right after epoch 1's checkpoint, then resumed.
    save = engine.atomic_save

    def save_then_die(state, path):
        save(state, path)
        if str(path).endswith("last.pt") and state["epoch"] == 1:
            raise Interrupted

    monkeypatch.setattr(engine, "atomic_save", save_then_die)
    with pytest.raises(Interrupted):
        train(small_config(tmp_path, name="split"), quiet=True)
    monkeypatch.setattr(engine, "atomic_save", save)
    assert load_checkpoint(tmp_path / "runs" / "split" / "last.pt")["epoch"] == 1

    resumed = train(None, resume=tmp_path / "runs" / "split", quiet=True)
    assert resumed["epochs"] == 2
    weights_straight = load_checkpoint(straight["run_dir"] + "/last.pt")["model"]
    weights_resumed = load_checkpoint(resumed["run_dir"] + "/last.pt")["model"]
    for key in weights_straight:
        assert torch.equal(weights_straight[key], weights_resumed[key]), key
    lines = (tmp_path / "runs" / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_resuming_a_complete_run_says_so(tmp_path):
    train(small_config(tmp_path, epochs=1), quiet=True)
    result = train(None, resume=tmp_path / "runs" / "run", quiet=True)
    assert result["already_complete"] is True and result["epochs"] == 1


@pytest.mark.parametrize("changed", [{"model": "resnet20"}, {"epochs": 5}, {"dataset": "mnist"}, {"schedule": "step"}])
def test_resume_refuses_flags_that_change_the_run(tmp_path, changed):
    train(small_config(tmp_path, epochs=1), quiet=True)
    with pytest.raises(ConvzooError, match="Start a new run instead"):
        train(None, resume=tmp_path / "runs" / "run", overrides=changed, quiet=True)


def test_resume_accepts_flags_that_do_not_change_the_run(tmp_path):
    train(small_config(tmp_path, epochs=1), quiet=True)
    result = train(None, resume=tmp_path / "runs" / "run", overrides={"device": "cpu", "epochs": 1}, quiet=True)
    assert result["already_complete"]


def test_an_existing_run_folder_is_never_overwritten(tmp_path):
    train(small_config(tmp_path, epochs=1), quiet=True)
    before = (tmp_path / "runs" / "run" / "last.pt").read_bytes()
    with pytest.raises(ConvzooError, match="already holds a run"):
        train(small_config(tmp_path, epochs=1), quiet=True)
    assert (tmp_path / "runs" / "run" / "last.pt").read_bytes() == before


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    train(small_config(tmp_path, epochs=1, name="good"), quiet=True)
    good = tmp_path / "runs" / "good" / "last.pt"
    before = good.read_bytes()
    with pytest.raises(ConvzooError, match="loss became nan"):
        train(small_config(tmp_path, epochs=1, name="diverged", lr=1e30, schedule="constant"), quiet=True)
    assert not (tmp_path / "runs" / "diverged" / "last.pt").exists()
    assert good.read_bytes() == before


def test_runs_without_a_name_get_distinct_folders(tmp_path):
    first = train(small_config(tmp_path, epochs=1, name=None, train_size=64), quiet=True)
    second = train(small_config(tmp_path, epochs=1, name=None, train_size=64), quiet=True)
    assert first["run_dir"] != second["run_dir"]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "constant"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_optimizer_and_schedule_trains(tmp_path, schedule, optimizer):
    lr = 0.05 if optimizer == "sgd" else 2e-3
    result = train(small_config(tmp_path, epochs=1, schedule=schedule, optimizer=optimizer, lr=lr,
                                warmup_epochs=0.5, label_smoothing=0.1, grad_clip=1.0), quiet=True)
    assert result["final_loss"] < math.log(10) + 0.1


def test_warmup_then_cosine_schedule_shape():
    from convzoo.engine.optim import lr_factor

    config = TrainConfig(epochs=10, warmup_epochs=1, schedule="cosine")
    factors = [lr_factor(step, 100, 10, config, 10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[-1] < 0.01
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "constant"])
@pytest.mark.parametrize("warmup_epochs", [0, 0.5, 1])
@pytest.mark.parametrize(("epochs", "steps_per_epoch"), [(1, 1), (2, 1), (2, 2), (4, 1), (3, 3), (10, 7)])
def test_schedules_step_through_runs_of_any_length(schedule, warmup_epochs, epochs, steps_per_epoch):
    """Tiny runs (a smoke test's handful of steps) must not trip a schedule's arithmetic."""
    from convzoo.engine.optim import build_scheduler

    if warmup_epochs >= epochs:
        pytest.skip("validation refuses a warm-up as long as the run")
    config = TrainConfig(epochs=epochs, warmup_epochs=warmup_epochs, schedule=schedule, lr=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    rates = []
    for _ in range(epochs * steps_per_epoch):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert all(math.isfinite(rate) and 0 <= rate <= 0.1 + 1e-12 for rate in rates)
