"""The EMA of the weights (``--ema``): the average itself, its place in checkpoints, resume
and the CLI."""

import json

import pytest
import torch

from convzoo.config import TrainConfig, config_from_dict
from convzoo.engine.checkpoint import load_checkpoint
from convzoo.engine.ema import WeightAverage, ema_decay
from convzoo.engine.train import train
from convzoo.errors import ConvzooError


def test_the_average_is_the_hand_computed_one_over_parameters_and_batchnorm_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = WeightAverage(model, decay=0.9, every=2, warmup=True)
    expected = None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(1, 8):
        model(torch.randn(8, 3)).square().mean().backward()  # also moves BatchNorm's running statistics
        optimizer.step()
        optimizer.zero_grad()
        average.update(model, step)
        if step % 2 == 0:
            current = {key: value.clone() for key, value in model.state_dict().items()}
            if expected is None:
                expected = current  # the first update copies the model
            else:
                decay = min(0.9, (1 + step) / (10 + step))
                expected = {key: value if not value.is_floating_point() else decay * expected[key] + (1 - decay) * value
                            for key, value in current.items()}
    averaged = average.module.state_dict()
    assert set(averaged) == set(model.state_dict())  # a model's keys: best.pt can hold it as its weights
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value, rtol=0, atol=1e-6, msg=key)
    assert averaged["1.num_batches_tracked"] == 6  # copied at the last update (step 6)
    assert average.state_dict()["updates"] == 3


def test_the_warmup_follows_the_model_early_and_reaches_the_decay():
    assert ema_decay(0.9998, 0, warmup=True) == pytest.approx(0.1)
    assert ema_decay(0.9998, 8, warmup=True) == pytest.approx(0.5)
    assert ema_decay(0.9998, 10**6, warmup=True) == 0.9998
    assert ema_decay(0.9998, 0, warmup=False) == 0.9998


@pytest.mark.parametrize("values", [{"ema": 1.0}, {"ema": 0}, {"ema": 0.99, "ema_every": 0}])
def test_out_of_range_settings_are_refused(values):
    with pytest.raises(ConvzooError, match="ema"):
        config_from_dict(values)


def ema_config(tmp_path, name, **changes) -> TrainConfig:
    values = dict(model="resnet20", dataset="synthetic", epochs=2, batch_size=32, train_size=192, test_size=64,
                  image_size=8, lr=0.05, ema=0.9, ema_every=2, out=str(tmp_path / "runs"), name=name, seed=3,
                  device="cpu")
    return TrainConfig(**(values | changes))


def test_a_run_resumed_mid_epoch_continues_the_same_average(tmp_path, monkeypatch, one_thread):
    from tests.engine.test_mid_epoch_resume import assert_same_run, killed_after_checkpoint

    runs = tmp_path / "runs"
    train(ema_config(tmp_path, "straight"), quiet=True)
    killed_after_checkpoint(ema_config(tmp_path, "stopped", checkpoint_every=3), monkeypatch, epoch=0, step=3)
    assert train(None, resume=runs / "stopped", quiet=True)["complete"]
    assert_same_run(runs / "straight", runs / "stopped")
    straight, resumed = (load_checkpoint(runs / run / "last.pt") for run in ("straight", "stopped"))
    assert straight["ema"]["updates"] == resumed["ema"]["updates"] == 6  # 12 steps, one update every 2
    for key, value in straight["ema"]["weights"].items():
        assert torch.equal(value, resumed["ema"]["weights"][key]), key
    records = [[json.loads(line)[key] for key in ("ema_test_loss", "ema_test_acc")]
               for run in ("straight", "stopped") for line in (runs / run / "metrics.jsonl").read_text().splitlines()]
    assert records[:2] == records[2:]


@pytest.mark.parametrize("better", ["ema", "model"])
def test_the_cli_reports_both_models_and_best_pt_holds_the_better(tmp_path, cli, data_dir, monkeypatch, better):
    """Which one scores higher is the data's business: both outcomes are forced here, and
    best.pt's weights, evaluated as ``eval`` would, give the accuracy it records."""
    import convzoo.engine.train as engine
    from convzoo.tasks.classification import evaluate
    from convzoo.engine.setup import build_model, dataset_spec_for, loaders_for
    from tests.conftest import require_dataset

    require_dataset(data_dir, "MNIST")
    monkeypatch.setattr(engine, "better_of", lambda test, ema_test, metric: (better, ema_test if better == "ema" else test))
    code, stdout, stderr = cli(
        "train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", data_dir, "--epochs", "1",
        "--batch-size", "32", "--set", "train_size=320", "--set", "test_size=200", "--ema", "0.9",
        "--device", "cpu", "--out", tmp_path, "--name", "ema", "--quiet")
    assert code == 0, stderr
    assert "ema loss" in stderr and "(EMA " in stdout
    run = tmp_path / "ema"
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"test_acc", "ema_test_acc", "ema_test_loss", "ema_test_acc5"} <= set(record) and record["better"] == better
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert best["weights"] == better and "ema" not in best
    assert best["test_acc"] == record["ema_test_acc" if better == "ema" else "test_acc"]
    kept = last["ema"]["weights"] if better == "ema" else last["model"]
    assert all(torch.equal(best["model"][key], kept[key]) for key in kept)
    assert (run / "config.yaml").read_text().count("ema: 0.9") == 1

    config = config_from_dict(best["config"])
    spec, pad_to = dataset_spec_for(config)
    loaders = loaders_for(config, spec, pad_to, torch.device("cpu"), test_only=True)
    model = build_model(config.model, spec, loaders.image_size)
    model.load_state_dict(best["model"])
    assert evaluate(model, loaders.test, torch.device("cpu"), num_classes=10)["acc1"] == best["test_acc"]
