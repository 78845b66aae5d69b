"""Weights that only partly fit (issue 23): ImageNet weights into a model built for the
user's classes, channels and image size. The head starts at the model's own
initialisation, the first convolution is adapted to the channel count (timm's rule) or,
for a small-input stem, starts fresh; anything else is refused unless not strict."""

from __future__ import annotations

import pytest
import torch
import torchvision

from convzoo.errors import ConvzooError
from convzoo.models.pretrained import adapt_input_conv, load_pretrained
from convzoo.registry import create_model

FULL_SIZE = 72  # above 64 px: the 7x7 stride-2 stem of torchvision's ResNet


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """Stand-in for torchvision's ImageNet ResNet-18 (no download): its state dict, saved."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def fresh(seed: int = 1, **build) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet18", **build)


def test_every_tensor_but_the_head_comes_from_the_file(imagenet_file, one_thread):
    model, untouched = fresh(num_classes=3, image_size=FULL_SIZE), fresh(num_classes=3, image_size=FULL_SIZE)
    fit = load_pretrained(model, "resnet18", str(imagenet_file))
    saved = torch.load(imagenet_file, weights_only=True)
    assert fit.head == ["fc.weight", "fc.bias"] and not (fit.adapted or fit.fresh_stem or fit.mismatched)
    for key, value in model.state_dict().items():
        expected = untouched.state_dict()[key] if key.startswith("fc.") else saved[key]
        assert torch.equal(value, expected), key
    assert fit.line() == f"loaded 120/122 tensors from {imagenet_file}; re-initialised fc.weight, fc.bias for 3 classes"


def test_reset_head_leaves_a_fitting_head_at_its_initialisation(imagenet_file, one_thread):
    """A new task with ImageNet's class count: --reset-head keeps fc fresh, the rest loads."""
    model, untouched = fresh(image_size=FULL_SIZE), fresh(image_size=FULL_SIZE)
    saved = torch.load(imagenet_file, weights_only=True)
    assert load_pretrained(fresh(image_size=FULL_SIZE), "resnet18", str(imagenet_file)).exact
    fit = load_pretrained(model, "resnet18", str(imagenet_file), reset_head=True)
    for key, value in model.state_dict().items():
        expected = untouched.state_dict()[key] if key.startswith("fc.") else saved[key]
        assert torch.equal(value, expected), key
    assert fit.line() == (f"loaded 120/122 tensors from {imagenet_file}; re-initialised fc.weight, fc.bias for "
                          "1000 classes (--reset-head)")


def test_one_channel_stem_is_the_sum_of_the_rgb_filters(imagenet_file, one_thread):
    model = fresh(num_classes=10, in_channels=1, image_size=FULL_SIZE)
    fit = load_pretrained(model, "resnet18", str(imagenet_file))
    rgb = torch.load(imagenet_file, weights_only=True)["conv1.weight"]
    torch.testing.assert_close(model.conv1.weight.detach(), rgb.sum(dim=1, keepdim=True))
    assert "conv1.weight adapted from 3 to 1 channels" in fit.line()
    # A grey image gives the response of the RGB image with its value in every channel.
    grey = torch.rand(1, 1, 9, 9)
    torch.testing.assert_close(torch.nn.functional.conv2d(grey, model.conv1.weight.detach()),
                               torch.nn.functional.conv2d(grey.expand(1, 3, 9, 9), rgb), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels", [1, 2, 4, 5, 6, 7])
def test_adapted_stem_follows_timm(channels):
    timm_models = pytest.importorskip("timm.models")
    weight = torch.randn(16, 3, 3, 3)
    torch.testing.assert_close(adapt_input_conv(weight, channels),
                               timm_models.adapt_input_conv(channels, weight.clone()), rtol=0, atol=0)


def test_four_channel_stem_repeats_rgb_scaled_by_three_quarters(imagenet_file, one_thread):
    model = fresh(num_classes=1000, in_channels=4, image_size=FULL_SIZE)
    load_pretrained(model, "resnet18", str(imagenet_file))
    rgb = torch.load(imagenet_file, weights_only=True)["conv1.weight"]
    torch.testing.assert_close(model.conv1.weight.detach(), torch.cat([rgb, rgb[:, :1]], dim=1) * 0.75)


def test_small_input_stem_starts_fresh(imagenet_file, one_thread):
    model, untouched = fresh(num_classes=10, image_size=32), fresh(num_classes=10, image_size=32)
    fit = load_pretrained(model, "resnet18", str(imagenet_file))
    assert torch.equal(model.conv1.weight, untouched.conv1.weight)
    assert torch.equal(model.layer1[0].conv1.weight, torch.load(imagenet_file, weights_only=True)["layer1.0.conv1.weight"])
    assert "conv1.weight starts fresh (shape (64, 3, 3, 3) here, (64, 3, 7, 7) in the weights)" in fit.line()


def test_another_architecture_is_refused_naming_the_keys_unless_not_strict(tmp_path, one_thread):
    path = tmp_path / "lenet5.pt"
    torch.save(create_model("lenet5").state_dict(), path)
    with pytest.raises(ConvzooError) as raised:
        load_pretrained(fresh(num_classes=10, image_size=32), "resnet18", str(path))
    message = str(raised.value)
    assert "\n" not in message and "missing conv1.weight" in message and "unexpected features.0.weight" in message
    assert "--weights-strict false" in message
    model, untouched = fresh(num_classes=10, image_size=32), fresh(num_classes=10, image_size=32)
    fit = load_pretrained(model, "resnet18", str(path), strict=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), untouched.state_dict().values()))
    assert "re-initialised (--weights-strict false) conv1.weight" in fit.line() and "ignored" in fit.line()


def test_exact_weights_load_as_before_and_say_nothing(imagenet_file, one_thread):
    model = fresh()
    fit = load_pretrained(model, "resnet18", str(imagenet_file))
    assert fit.exact and fit.line() is None


def test_inspection_builds_for_the_dataset_and_loads_what_fits(imagenet_file, capsys, one_thread):
    """``--model resnet18 --weights FILE --dataset cifar10`` in probe/visualize/explain/attack:
    built for CIFAR-10 (10 classes, 32 px), filled by the same loading as training."""
    from convzoo.inspection.source import build_source_model, resolve_model_source

    source = resolve_model_source(model="resnet18", weights=str(imagenet_file), dataset="cifar10")
    model = build_source_model(source)
    assert model.fc.out_features == 10
    assert torch.equal(model.layer4[1].conv2.weight, torch.load(imagenet_file, weights_only=True)["layer4.1.conv2.weight"])
    line = capsys.readouterr().err.strip()
    assert line.startswith("loaded 119/122 tensors from") and "fc.weight, fc.bias for 10 classes" in line
