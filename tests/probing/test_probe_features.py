"""Exit features: pooled sizes, hook capture equal to a plain forward, layer names."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.probing.features import FeatureTaps, choose_exits, plan_exit, pool_features
from convzoo.probing.layers import LayerInfo, trace_layers
from convzoo.registry import create_model, get_model_info, list_models


def layer(shape: tuple[int, ...], name: str = "x") -> LayerInfo:
    return LayerInfo(name, "Module", shape, 1)


def test_pooling_gives_zhang_et_al_feature_sizes_for_alexnet():
    # AlexNet's conv1..conv5 outputs; Zhang et al. (2017) pooled them to 9600, 9216, 9600, 9600, 9216.
    shapes = [(96, 55, 55), (256, 27, 27), (384, 13, 13), (384, 13, 13), (256, 13, 13)]
    assert [plan_exit(layer(shape), 9216).dim for shape in shapes] == [9600, 9216, 9600, 9600, 9216]
    assert [plan_exit(layer(shape), 9216).pooled for shape in shapes] == [(10, 10), (6, 6), (5, 5), (5, 5), (6, 6)]


def test_small_outputs_stay_whole_and_long_vectors_are_windowed():
    assert plan_exit(layer((84,)), 9216).pooled is None and plan_exit(layer((84,)), 9216).dim == 84
    assert plan_exit(layer((6, 28, 28)), 9216).dim == 4704
    assert plan_exit(layer((20_000,)), 9216).dim == 9216
    wide = plan_exit(layer((2048, 7, 7)), 1000)  # more channels than asked: one value per channel
    assert (wide.pooled, wide.dim) == ((1, 1), 2048)


@settings(max_examples=60, deadline=None)
@given(channels=st.integers(1, 512), target=st.integers(64, 20_000), extra=st.integers(1, 40))
def test_pooled_dims_are_close_to_the_target(channels, target, extra):
    """With room to pool (at least 4 spatial cells per channel asked for), the dimension is
    within about 1.56x of the target: the nearest square side is at most half a step away."""
    if channels * 4 > target:
        return
    side = math.isqrt(target // channels) + extra
    exit = plan_exit(layer((channels, side, side)), target)
    assert 0.43 * target <= exit.dim <= 1.57 * target
    assert exit.dim == channels * exit.pooled[0] * exit.pooled[1]


def test_pooled_features_are_new_tensors():
    output = torch.randn(2, 4, 6, 6)
    for pooled in (None, (3, 3)):
        features = pool_features(output, pooled)
        before = features.clone()
        output.relu_()  # what a later ReLU(inplace=True) does to the hooked tensor
        assert torch.equal(features, before)
    assert torch.allclose(pool_features(output, (3, 3)), nn.functional.adaptive_avg_pool2d(output, 3).flatten(1))


class ReusedReLU(nn.Module):
    """conv -> ReLU(inplace) -> conv -> the same ReLU: tests in-place overwrites and reuse."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))))


def capture(model: nn.Module, names: list[str], images: torch.Tensor, target: int = 10**9) -> dict[str, torch.Tensor]:
    exits = choose_exits(model, images[:1], names, target)
    with torch.no_grad(), FeatureTaps(model, exits) as taps:
        return dict(zip([exit.name for exit in exits], taps.extract(images)))


def test_captured_features_equal_a_plain_forward_despite_inplace_relu():
    torch.manual_seed(0)
    model = create_model("lenet5").eval()
    images = torch.randn(3, 1, 32, 32)
    features = capture(model, ["features.0", "features.1", "features.3", "classifier.0", "classifier.1"], images)
    with torch.no_grad():
        conv1 = model.features[0](images)
        assert (conv1 < 0).any()  # the ReLU after it, in place, would have zeroed these
        expected = {
            "input": images,
            "features.0": conv1,
            "features.1": model.features[:2](images),
            "features.3": model.features[:4](images),
            "classifier.0": model.classifier[0](model.features(images).flatten(1)),
        }
        expected["classifier.1"] = expected["classifier.0"].relu()
    for name, tensor in expected.items():
        assert torch.allclose(features[name], tensor.flatten(1), atol=1e-6), name


def test_a_reused_module_is_tapped_at_its_last_call():
    torch.manual_seed(0)
    model = ReusedReLU().eval()
    images = torch.randn(2, 3, 12, 12)
    (relu,) = [info for info in trace_layers(model, images[:1]) if info.name == "relu"]
    assert relu.calls == 2 and relu.shape == (4, 8, 8)
    features = capture(model, ["conv1", "relu"], images)
    with torch.no_grad():
        assert torch.allclose(features["conv1"], model.conv1(images).flatten(1))
        assert torch.allclose(features["relu"], model(images).flatten(1))


def test_the_forward_stops_after_the_deepest_exit():
    model = create_model("lenet5").eval()
    (features4,) = [info for info in trace_layers(model, torch.zeros(1, 1, 32, 32)) if info.name == "features.4"]
    classifier_calls = []
    model.classifier.register_forward_pre_hook(lambda *_: classifier_calls.append(1))
    with torch.no_grad(), FeatureTaps(model, [plan_exit(features4, 9216)]) as taps:
        (features,) = taps.extract(torch.randn(2, 1, 32, 32))
    assert features.shape == (2, 1600) and classifier_calls == []


def lenet_exits(requested: list[str] | None, default_names: tuple[str, ...] = ()) -> list[str]:
    exits = choose_exits(create_model("lenet5"), torch.zeros(1, 1, 32, 32), requested, 9216, default_names,
                         "convzoo probe --model lenet5 --list-layers")
    return [exit.name for exit in exits]


def test_layers_resolve_in_depth_order_with_globs_and_input_first():
    assert lenet_exits(["classifier.?", "features.1,input"]) == [
        "input", "features.1", "classifier.0", "classifier.1", "classifier.2", "classifier.3"]
    declared = get_model_info("lenet5").probe_layers
    assert lenet_exits(None, declared) == ["input", "features.1", "features.4", "features.7", "classifier.1"]


def test_unknown_layer_names_give_one_line_errors_naming_close_ones():
    with pytest.raises(ConvzooError) as raised:
        lenet_exits(["feature.1"])
    message = str(raised.value)
    assert "unknown layer 'feature.1'" in message and "features.1" in message and "--list-layers" in message
    assert "\n" not in message
    with pytest.raises(ConvzooError, match="matches no tappable module"):
        lenet_exits(["layer*"])
    with pytest.raises(ConvzooError, match="declares no probe layers"):
        lenet_exits(None)
    model = ReusedReLU()
    model.auxiliary = nn.Linear(4, 10)  # registered but never called in forward, like an eval-mode aux head
    with pytest.raises(ConvzooError, match="'auxiliary' produces no single tensor"):
        choose_exits(model, torch.zeros(1, 3, 12, 12), ["auxiliary"], 100)


def small_input(name: str) -> dict[str, int]:
    info = get_model_info(name)
    channels, side, _ = info.input_size
    return {"in_channels": channels, "image_size": side if info.fixed_input_size else 32}


# Linear probes read a classifier's exits from one image batch; a detector declares none.
@pytest.mark.parametrize("name", [name for name in list_models() if get_model_info(name).task == "classification"])
def test_every_model_declares_exits_that_one_forward_reaches(name):
    """On the meta device (shapes only, no arithmetic), so every model is checked in moments."""
    shape = small_input(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=10, **shape).eval()
        images = torch.empty(2, shape["in_channels"], shape["image_size"], shape["image_size"])
    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    features = capture(model, list(get_model_info(name).probe_layers), images, target=2048)
    assert list(features)[1:] == list(get_model_info(name).probe_layers)
    assert len(forwards) == 2  # one trace, one extraction
    for exit_name, tensor in features.items():
        assert tensor.shape[0] == 2 and 0 < tensor.shape[1] <= 2 * 2048, exit_name
