"""Fine-tuning (issue 23): freezing, unfreezing at an epoch, per-block learning rates.

"Pretrained" weights are a state dict of the same shape saved to a file, passed as
``--weights FILE`` (strict loading), so every test knows exactly where training started.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.conftest import require_dataset
from tests.engine.test_train import stop_after_first_epoch
from convzoo.config import TrainConfig, read_yaml
from convzoo.engine.checkpoint import load_checkpoint
from convzoo.engine.train import train
from convzoo.registry import create_model

MNIST_RUN = ("--model", "resnet18", "--dataset", "mnist", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
             "--set", "train_size=64", "--set", "test_size=64")


def saved_weights(path, model_name: str, in_channels: int, image_size: int, seed: int = 0) -> str:
    torch.manual_seed(seed)
    torch.save(create_model(model_name, num_classes=10, in_channels=in_channels, image_size=image_size).state_dict(),
               path)
    return str(path)


def unchanged_and_changed(before: dict, after: dict, prefixes: tuple[str, ...]) -> tuple[set[str], set[str]]:
    """The top-level ``prefixes`` whose every tensor (parameters and BatchNorm statistics) is
    bit-equal in ``before`` and ``after``, and those with some tensor changed."""
    unchanged, changed = set(), set()
    for prefix in prefixes:
        keys = [key for key in before if key.split(".")[0] == prefix]
        assert keys, prefix
        same = all(torch.equal(before[key], after[key]) for key in keys)
        (unchanged if same else changed).add(prefix)
    return unchanged, changed


RESNET_PARTS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


def test_freeze_backbone_trains_the_head_only_and_the_checkpoint_evaluates(cli, data_dir, tmp_path, monkeypatch):
    require_dataset(data_dir, "MNIST")
    weights = saved_weights(tmp_path / "pretrained.pt", "resnet18", 1, 28)
    code, out, err = cli("train", *MNIST_RUN, "--data-dir", data_dir, "--weights", weights, "--freeze", "backbone",
                         "--out", tmp_path / "runs", "--name", "head", "--json")
    assert code == 0, err
    assert "fine-tuning: 11,167,680 of 11,172,810 parameters frozen" in err
    run_dir = tmp_path / "runs" / "head"
    before, after = torch.load(weights), load_checkpoint(run_dir / "last.pt")["model"]
    unchanged, changed = unchanged_and_changed(before, after, RESNET_PARTS)
    # Running means and variances included: frozen BatchNorm layers stayed in eval mode.
    assert unchanged == set(RESNET_PARTS) - {"fc"} and changed == {"fc"}
    # A fine-tuned checkpoint is a checkpoint like any other: eval and predict rebuild it fresh
    # (on 64 test images: the README test's quick mode).
    monkeypatch.setenv("CONVZOO_QUICK", "1")
    code, out, err = cli("eval", "--checkpoint", run_dir / "best.pt", "--data-dir", data_dir, "--device", "cpu",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 64
    code, out, err = cli("predict", "--checkpoint", run_dir / "best.pt", "--data-dir", data_dir, "--samples", "2",
                         "--device", "cpu", "--json")
    assert code == 0, err
    assert len(json.loads(out)["predictions"]) == 2
    code, out, err = cli("export", "--checkpoint", run_dir / "best.pt", "--format", "torchscript", "--out",
                         tmp_path / "model.pt", "--json")
    assert code == 0, err


def family_representatives() -> list[str]:
    from convzoo.registry import get_model_info, list_models

    first: dict[str, str] = {}
    for name in list_models():
        first.setdefault(get_model_info(name).family, name)
    return list(first.values())


@pytest.mark.parametrize("model_name", family_representatives())
def test_every_family_splits_into_blocks_from_stem_to_head(model_name):
    """Every parameter in one block; the stem (the registry's first convolution) at depth 0,
    the head at N, depths 0..N without a gap; --freeze backbone leaves exactly the head."""
    from convzoo.engine.finetune import Freezing, depth_blocks
    from convzoo.registry import get_model_info

    info = get_model_info(model_name)
    size = info.input_size[1] if info.fixed_input_size else 28
    model = create_model(model_name, num_classes=10, in_channels=1, image_size=size)
    blocks = depth_blocks(model, model_name, torch.zeros(1, 1, size, size))
    owners = {name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))}
    assert set(blocks) == owners
    depths = sorted({depth for depth, _ in blocks.values()})
    assert depths == list(range(len(depths))) and len(depths) >= 4
    assert blocks[info.stem] == (0, "stem")
    assert {name for name, (depth, block) in blocks.items() if block == "head"} == set(info.head)
    assert all(depth == depths[-1] for depth, block in blocks.values() if block == "head")

    config = TrainConfig(model=model_name, freeze="backbone")
    Freezing(model, config).set_epoch(model, 0)
    training = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert training == {name for name, _ in model.named_parameters() if name.rsplit(".", 1)[0] in info.head}


def test_freeze_until_a_layer_freezes_it_and_everything_before(data_dir, tmp_path):
    require_dataset(data_dir, "MNIST")
    weights = saved_weights(tmp_path / "pretrained.pt", "resnet18", 1, 28)
    config = TrainConfig(model="resnet18", dataset="mnist", data_dir=str(data_dir), epochs=1, batch_size=32,
                         train_size=64, test_size=64, lr=0.01, device="cpu", weights=weights, freeze_until="layer2",
                         out=str(tmp_path / "runs"), name="until")
    result = train(config, quiet=True)
    after = load_checkpoint(result["run_dir"] + "/last.pt")["model"]
    unchanged, changed = unchanged_and_changed(torch.load(weights), after, RESNET_PARTS)
    assert unchanged == {"conv1", "bn1", "layer1", "layer2"}
    assert changed == {"layer3", "layer4", "fc"}


def test_layer_decay_and_head_multiplier_rates_from_the_optimiser():
    from convzoo.engine.optim import build_optimizer

    lr = 0.1
    config = TrainConfig(model="resnet18", lr=lr, weight_decay=1e-4, layer_decay=0.5, head_lr_mult=10)
    model = create_model("resnet18", num_classes=10, in_channels=3, image_size=32)
    optimizer = build_optimizer(model, config)
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    # ResNet-18: stem (conv1, bn1) at depth 0, layer1..layer4 at 1..4, the head (fc) at N = 5.
    expected = {"stem": lr * 0.5 ** 5, "layer1": lr * 0.5 ** 4, "layer2": lr * 0.5 ** 3, "layer3": lr * 0.5 ** 2,
                "layer4": lr * 0.5, "head": lr * 10}
    assert rates.keys() == expected.keys()
    assert all(math.isclose(rates[name], expected[name]) for name in expected), rates
    # Still no decay on biases and BatchNorm scales, and every parameter in exactly one group.
    for group in optimizer.param_groups:
        assert group["weight_decay"] == (1e-4 if group["params"][0].ndim > 1 else 0.0)
        assert all((parameter.ndim > 1) == (group["weight_decay"] > 0) for parameter in group["params"])
    grouped = [id(parameter) for group in optimizer.param_groups for parameter in group["params"]]
    assert sorted(grouped) == sorted(id(parameter) for parameter in model.parameters())
    stem = {id(parameter) for group in optimizer.param_groups if group["name"] == "stem" for parameter in group["params"]}
    assert stem == {id(model.conv1.weight), id(model.bn1.weight), id(model.bn1.bias)}


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_every_block_rate_follows_the_schedule_and_is_logged(tmp_path, schedule):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(model="lenet5", dataset="synthetic", epochs=2, batch_size=32, train_size=128, test_size=64,
                         lr=0.05, schedule=schedule, layer_decay=0.5, head_lr_mult=10, device="cpu",
                         out=str(tmp_path / "runs"), name="rates")
    run_dir = train(config, quiet=True)["run_dir"]
    records = [json.loads(line) for line in open(f"{run_dir}/metrics.jsonl")]
    # LeNet-5: stem (C1), then the blocks its exits close (C3, C5, F6), then the head (output layer).
    scales = {"stem": 0.5 ** 4, "features.4": 0.5 ** 3, "features.7": 0.5 ** 2, "classifier.1": 0.5, "head": 10}
    for record in records:
        assert record["lr_blocks"].keys() == scales.keys()
        for block, scale in scales.items():
            assert math.isclose(record["lr_blocks"][block], record["lr"] * scale, rel_tol=1e-9, abs_tol=1e-15)
    events = EventAccumulator(run_dir)
    events.Reload()
    for block in scales:
        logged = [event.value for event in events.Scalars(f"lr/{block}")]
        assert logged == pytest.approx([record["lr_blocks"][block] for record in records], rel=1e-6)


def test_unfreeze_at_trains_the_backbone_from_that_epoch_and_resumes_bit_identically(tmp_path, monkeypatch):
    """ResNet-20 (BatchNorm) on synthetic images: epoch 1 trains the head, epoch 2 everything;
    a run killed after epoch 1 and resumed equals the uninterrupted one, bit for bit."""
    weights = saved_weights(tmp_path / "pretrained.pt", "resnet20", 3, 32)

    def config(name: str, **changes) -> TrainConfig:
        values = dict(model="resnet20", dataset="synthetic", epochs=2, batch_size=32, train_size=64, test_size=32,
                      lr=0.02, seed=3, device="cpu", weights=weights, freeze="backbone", unfreeze_at=2,
                      out=str(tmp_path / "runs"), name=name)
        return TrainConfig(**{**values, **changes})

    straight = load_checkpoint(train(config("straight"), quiet=True)["run_dir"] + "/last.pt")["model"]
    stop_after_first_epoch(config("split"), monkeypatch)
    saved = read_yaml(tmp_path / "runs" / "split" / "config.yaml")
    assert (saved["freeze"], saved["unfreeze_at"], saved["weights"]) == ("backbone", 2, weights)
    after_epoch_1 = load_checkpoint(tmp_path / "runs" / "split" / "last.pt")["model"]
    parts = ("conv1", "bn1", "layer1", "layer2", "layer3", "fc")
    assert unchanged_and_changed(torch.load(weights), after_epoch_1, parts) == (set(parts) - {"fc"}, {"fc"})
    assert unchanged_and_changed(after_epoch_1, straight, parts) == (set(), set(parts))
    resumed = load_checkpoint(train(None, resume=tmp_path / "runs" / "split", quiet=True)["run_dir"] + "/last.pt")
    assert all(torch.equal(straight[key], resumed["model"][key]) for key in straight)

    # Resumed before the unfreeze epoch, the run is still frozen there (and equal to a straight run).
    straight = load_checkpoint(train(config("straight3", epochs=3, unfreeze_at=3), quiet=True)["run_dir"] + "/last.pt")
    stop_after_first_epoch(config("split3", epochs=3, unfreeze_at=3), monkeypatch)
    resumed = train(None, resume=tmp_path / "runs" / "split3", quiet=True)
    resumed_weights = load_checkpoint(resumed["run_dir"] + "/last.pt")["model"]
    assert all(torch.equal(straight["model"][key], resumed_weights[key]) for key in straight["model"])


@pytest.mark.parametrize("options, message", [
    (("--freeze-until", "fc"), "nothing left to train: --freeze-until fc freezes every parameter of resnet20"),
    (("--freeze-until", "layer5"), "unknown layer 'layer5'. Did you mean: "),
    (("--freeze", "backbone", "--unfreeze-at", "3"), "--unfreeze-at must be an epoch from 2 to the run's 2"),
    (("--unfreeze-at", "2"), "--unfreeze-at needs something frozen first"),
    (("--freeze", "head"), "--freeze must be one of none, backbone"),
    (("--layer-decay", "1.5"), "--layer-decay must be in (0, 1]"),
    (("--nproc-per-node", "2", "--freeze-until", "layer9"), "unknown layer 'layer9'"),  # before torchrun starts
])
def test_fine_tuning_refusals_are_one_line(cli, tmp_path, options, message):
    code, out, err = cli("train", "--model", "resnet20", "--epochs", "2", "--batch-size", "32", "--set", "train_size=64",
                         "--device", "cpu",
                         "--out", tmp_path / "runs", *options)
    assert code != 0 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_unfreezing_under_torchrun_all_reduces_the_backbone_too(tmp_path):
    """DDP hooks only the parameters that require grad when it is built: the loop builds it
    again at ``--unfreeze-at``, so the backbone's gradients are averaged over the ranks from
    then on and the two replicas stay equal (without the rebuild each rank would step its
    backbone with its own shard's gradient, and the replicas would part)."""
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("finetune_worker.py")
    records = tmp_path / "records"
    records.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(worker),
               str(records), "train", "--model", "resnet20", "--epochs", "2", "--batch-size", "16", "--device", "cpu",
               "--set", "train_size=64", "--set", "test_size=32", "--freeze", "backbone", "--unfreeze-at", "2",
               "--out", str(tmp_path / "runs"), "--name", "ddp"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    ranks = [json.loads((records / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    epoch_1, epoch_2 = ranks[0]["sums"]
    for name in epoch_1:
        for epoch in (0, 1):
            assert ranks[1]["sums"][epoch][name] == pytest.approx(ranks[0]["sums"][epoch][name], rel=1e-6, abs=1e-9)
    backbone = [name for name in epoch_1 if not name.startswith("fc.")]
    moved = [name for name in backbone if epoch_2[name] != epoch_1[name]]
    assert len(moved) > len(backbone) // 2
