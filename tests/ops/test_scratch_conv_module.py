"""``convzoo.ops.Conv2d`` is a drop-in ``nn.Conv2d`` and ``use_scratch_conv`` puts it into
any model of the zoo without changing what the model computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from convzoo.ops import Conv2d, use_scratch_conv
from convzoo.receptive_field import image_network
from convzoo.registry import create_model, get_model_info, list_models

CONSTRUCTIONS = [
    dict(in_channels=4, out_channels=6, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(2, 5), stride=(2, 1), padding=(1, 2), bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, padding="same", dilation=2, groups=2),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, groups=4, padding_mode="reflect"),
    dict(in_channels=4, out_channels=6, kernel_size=4, padding="same", padding_mode="circular"),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, padding_mode="replicate"),
]


@pytest.mark.parametrize("arguments", CONSTRUCTIONS, ids=str)
def test_conv2d_module_is_nn_conv2d_with_the_same_state_and_output(arguments):
    torch.manual_seed(0)
    reference = nn.Conv2d(**arguments).double()
    scratch = Conv2d(**arguments).double()
    assert isinstance(scratch, nn.Conv2d)
    assert scratch.state_dict().keys() == reference.state_dict().keys()
    scratch.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 4, 11, 9, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, expected = scratch(x), reference(x_ref)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(scratch.weight.grad, reference.weight.grad, rtol=1e-10, atol=1e-10)
    reference.load_state_dict(scratch.state_dict(), strict=True)  # and back again


class Custom(nn.Conv2d):
    """A subclass with behaviour of its own, which the swap must leave alone."""

    def forward(self, input):
        return super().forward(input) * 2


def test_use_scratch_conv_swaps_in_place_keeping_the_very_parameters():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 1, bias=False)), Custom(4, 2, 1))
    model = model.to(torch.float64)
    modules_before = list(model.modules())
    parameters_before = {name: p for name, p in model.named_parameters()}
    assert use_scratch_conv(model) is model
    assert list(model.modules()) == modules_before, "same module objects, swapped in place"
    assert type(model[0]) is Conv2d and type(model[2][0]) is Conv2d
    assert type(model[3]) is Custom
    for name, parameter in model.named_parameters():
        assert parameter is parameters_before[name]
        assert parameter.dtype == torch.float64 and parameter.device.type == "cpu"


def test_use_scratch_conv_model_trains_like_the_original():
    """One SGD step on a small ResNet and a MobileNet (strided, depthwise, 1x1, batch norm) moves
    every parameter as torch's convolutions would."""
    for name in ("resnet20", "mobilenet_v2"):
        torch.manual_seed(0)
        original = create_model(name, num_classes=10, image_size=32).double()
        scratch = use_scratch_conv(copy.deepcopy(original))
        images, labels = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
        for model in (original, scratch):
            model.train()
            torch.manual_seed(1)  # the same dropout masks for both
            nn.functional.cross_entropy(model(images), labels).backward()
        for (param_name, expected), got in zip(original.named_parameters(), scratch.parameters()):
            torch.testing.assert_close(got.grad, expected.grad, rtol=1e-8, atol=1e-10, msg=f"{name} {param_name}")


def bfloat16_reference(module: nn.Conv2d, record: dict) -> dict:
    """``F.conv2d`` in float64 on the very bfloat16 values the layer saw: its output and gradients."""
    x = record["input"].to(torch.bfloat16).double().requires_grad_()
    weight = module.weight.detach().to(torch.bfloat16).double().requires_grad_()
    bias = None if module.bias is None else module.bias.detach().to(torch.bfloat16).double()
    out = nn.functional.conv2d(x, weight, bias, module.stride, module.padding, module.dilation, module.groups)
    out.backward(record["grad_output"].double())
    return {"output": out, "input": x.grad, "weight": weight.grad}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_scratch_models_train_under_bfloat16_autocast_like_f_conv2d(name, device):
    """Chained layers under autocast: from the second layer on a bfloat16 activation meets a
    float32 weight.  Forward and backward run through the whole network, and every layer's
    output, input gradient and weight gradient is F.conv2d's on the same values within
    bfloat16's precision (a few units of 2**-8; the network as a whole amplifies rounding
    the same way with either convolution)."""
    torch.manual_seed(0)
    model = use_scratch_conv(create_model(name, num_classes=10, image_size=32)).to(device).train()
    records: dict[nn.Module, dict] = {}

    def keep_forward(module, inputs, output):
        records[module] = {"input": inputs[0].detach(), "output": output.detach()}

    def keep_backward(module, grad_input, grad_output):
        records[module].update(grad_input=grad_input[0], grad_output=grad_output[0])

    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for module in convolutions:
        module.register_forward_hook(keep_forward)
        module.register_full_backward_hook(keep_backward)
    images = torch.randn(2, 3, 32, 32, device=device, requires_grad=True)
    with torch.autocast(device, dtype=torch.bfloat16):
        logits = model(images)
        loss = nn.functional.cross_entropy(logits.float(), torch.tensor([0, 1], device=device))
    loss.backward()
    assert logits.dtype == torch.bfloat16
    for index, module in enumerate(convolutions):
        record = records[module]
        expected = bfloat16_reference(module, record)
        got = {"output": record["output"], "input": record["grad_input"], "weight": module.weight.grad}
        assert got["weight"].dtype == torch.float32, "gradients reach the float32 parameters"
        for key, value in got.items():
            error = (value.double() - expected[key]).abs().max() / expected[key].abs().max()
            assert error < 1e-2, f"{name} layer {index} {key}: relative error {error:.1e}"


@pytest.mark.parametrize("name", list_models())
def test_every_model_gives_the_same_logits_with_scratch_convolutions(name):
    info = get_model_info(name)
    side = info.input_size[1] if info.fixed_input_size else 32
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, image_size=side).eval()
    images = torch.randn(2, info.input_size[0], side, side)
    convolutions = sum(type(m) is nn.Conv2d for m in model.modules())
    network = image_network(model)  # a detector: its backbone's maps (its boxes are sorted and thresholded)
    with torch.no_grad():
        expected = network(images)
        use_scratch_conv(model)
        got = network(images)
    assert sum(type(m) is Conv2d for m in model.modules()) == convolutions > 0
    maps = expected.values() if isinstance(expected, dict) else [expected]
    scale = max(tensor.abs().max().item() for tensor in maps)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * scale)
