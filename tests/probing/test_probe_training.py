"""Probe training: heads learn, one backbone forward per batch, a backbone left untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.data import build_loaders, get_dataset_spec
from convzoo.probing import ProbeSettings, probe, resolve_backbone
from convzoo.probing.features import choose_exits
from convzoo.probing.run import probe_exits
from convzoo.registry import create_model

CPU = torch.device("cpu")


def synthetic_loaders(channels: int = 1, train_size: int = 512, batch_size: int = 64):
    spec = get_dataset_spec("synthetic", image_size=32, channels=channels)
    return spec, build_loaders(spec, batch_size=batch_size, eval_batch_size=500, device=CPU, augment=False,
                               train_size=train_size)


def exits_of(model: nn.Module, names: list[str], channels: int = 1):
    return choose_exits(model, torch.zeros(1, channels, 32, 32), names, 9216)


def test_heads_learn_and_the_trained_network_beats_its_random_twin(lenet_checkpoint, tmp_path):
    settings = ProbeSettings(epochs=2, train_size=2000, compare_random=True)
    backbone = resolve_backbone(checkpoint=lenet_checkpoint)
    result = probe(backbone, settings, device="cpu", out=str(tmp_path), quiet=True)
    rows = {row["name"]: row for row in result["layers"]}
    assert list(rows) == ["input", "features.1", "features.4", "features.7", "classifier.1"]
    last = rows["classifier.1"]
    assert last["test_acc"] > 0.4  # ten classes: chance is 0.1
    assert last["test_acc"] > last["random_test_acc"] + 0.1
    assert last["test_acc"] > rows["input"]["test_acc"] + 0.2
    # Same seed, same data, same head initialisation: the pixels' probe cannot tell the networks apart.
    assert rows["input"]["test_acc"] == rows["input"]["random_test_acc"]


@pytest.mark.parametrize("cache", [False, True])
def test_one_backbone_forward_per_batch_however_many_exits(cache):
    spec, loaders = synthetic_loaders(train_size=256)
    epochs = 2
    counts = []
    for names in (["classifier.1"], ["features.1", "features.4", "features.7", "classifier.1"]):
        model = create_model("lenet5").eval()
        exits = exits_of(model, names)
        forwards = []
        model.register_forward_pre_hook(lambda *_: forwards.append(1))
        settings = ProbeSettings(epochs=epochs, batch_size=64, cache_features=cache)
        outcome = probe_exits(model, exits, loaders, spec.num_classes, settings, 0, CPU)
        assert len(outcome.test_acc) == len(names) + 1
        counts.append(len(forwards))
    train_epochs_run = 1 if cache else epochs
    assert counts == [train_epochs_run * len(loaders.train) + len(loaders.test)] * 2


class SmallBatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def test_the_backbone_weights_and_batchnorm_statistics_are_untouched():
    spec, loaders = synthetic_loaders(channels=3, train_size=256)
    torch.manual_seed(0)
    model = SmallBatchNormNet()
    with torch.no_grad():  # non-trivial running statistics, so a change would show
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    exits = exits_of(model, ["features.1", "features.2", "features.6"], channels=3)
    model.train()  # as a caller might hand it over: probing must switch it to eval mode
    probe_exits(model, exits, loaders, spec.num_classes, ProbeSettings(epochs=1, batch_size=64), 0, CPU)
    after = model.state_dict()
    assert set(after) == set(before) and not model.training
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert all(parameter.grad is None for parameter in model.parameters())


def test_cached_features_train_heads_as_well_as_streamed_ones():
    spec, loaders = synthetic_loaders(train_size=512)
    results = []
    for cache in (False, True):
        torch.manual_seed(0)
        model = create_model("lenet5").eval()
        settings = ProbeSettings(epochs=3, batch_size=64, cache_features=cache)
        results.append(probe_exits(model, exits_of(model, ["features.4"]), loaders, spec.num_classes, settings, 0, CPU))
    streamed, cached = results
    assert streamed.history[0].accuracies == cached.history[0].accuracies  # epoch 1 is the same pass
    assert abs(streamed.test_acc[1] - cached.test_acc[1]) < 0.1
