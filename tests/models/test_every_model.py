"""What every registered model must do, parametrised over the registry: a model is tested
here the moment it is registered.

The 3x32x32 build of each model is made once by a module-scoped fixture (pytest groups
the tests by it) and shared by the checks of train/eval behaviour and probe layers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convzoo.registry import create_model, get_model_info, list_models

NUM_CLASSES = 10
# Logits per image: what a classifier returns (detectors are checked in test_detection_models.py).
CLASSIFIERS = [name for name in list_models() if get_model_info(name).task == "classification"]


def main_logits(output):
    return output[0] if isinstance(output, tuple) else output


def build_small(name: str, channels: int, side: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model's small-input variant for 10 classes, and a batch of 4 images it takes."""
    info = get_model_info(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=channels, image_size=side)
    if info.fixed_input_size:  # LeNet-5 takes 32x32 only; the data pipeline pads 28x28 to it
        side = info.input_size[1]
    return model, torch.randn(4, channels, side, side)


def assert_output_shapes(name: str, model: torch.nn.Module, batch: torch.Tensor) -> None:
    """Logits per image (a segmentation model: per pixel) in both modes; auxiliary heads (a
    tuple) only in training."""
    with torch.no_grad():
        trained = model.train()(batch[:2])
        evaluated = model.eval()(batch[:2])
    scores = (2, NUM_CLASSES) + (tuple(batch.shape[-2:]) if get_model_info(name).task == "segmentation" else ())
    assert main_logits(trained).shape == scores
    if isinstance(trained, tuple):  # the engine adds aux_loss_weight x each auxiliary loss
        assert all(aux.shape == scores for aux in trained[1:])
        assert 0 < model.aux_loss_weight < 1
    assert type(evaluated) is torch.Tensor and evaluated.shape == scores
    assert torch.isfinite(evaluated).all()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_output_shapes_for_grey_28x28_images(name):
    assert_output_shapes(name, *build_small(name, channels=1, side=28))


@pytest.fixture(scope="module", params=CLASSIFIERS)
def cifar_model(request):
    """(name, model, batch) for 3x32x32 images, built once for all the tests below."""
    return (request.param, *build_small(request.param, channels=3, side=32))


def test_output_shapes_for_colour_32x32_images(cifar_model):
    assert_output_shapes(*cifar_model)


def test_eval_mode_logits_do_not_depend_on_the_rest_of_the_batch(cifar_model):
    name, model, batch = cifar_model
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch[:1]), model(batch[:2])[:1], rtol=1e-4, atol=1e-4)


def test_train_mode_uses_batch_statistics_and_dropout(cifar_model):
    name, model, batch = cifar_model
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    if not norms and not dropouts:
        pytest.skip(f"{name} has neither BatchNorm nor dropout")
    running_mean = norms[0].running_mean.clone() if norms else None
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        first = main_logits(model(batch[:2]))
        torch.manual_seed(2)
        second = main_logits(model(batch[:2]))
        torch.manual_seed(1)
        other_partner = main_logits(model(batch[[0, 2]]))
    if dropouts:  # new masks, new logits
        assert not torch.allclose(first, second)
    if norms:  # the same image with another batch partner: other batch statistics
        assert not torch.allclose(first[0], other_partner[0])
        assert not torch.equal(norms[0].running_mean, running_mean), "training updates running statistics"
        running_mean = norms[0].running_mean.clone()
        with torch.no_grad():
            model.eval()(batch[:2])
        assert torch.equal(norms[0].running_mean, running_mean), "evaluation must not update them"


def test_probe_layers_fire_once_in_depth_order(cifar_model):
    name, model, batch = cifar_model
    probe_layers = get_model_info(name).probe_layers
    assert probe_layers, f"{name} declares no probe layers"
    modules = dict(model.named_modules())
    fired: list[str] = []
    handles = [modules[layer].register_forward_hook(lambda module, args, output, layer=layer: fired.append(layer))
               for layer in probe_layers]
    try:
        with torch.no_grad():
            model.eval()(batch[:1])
    finally:
        for handle in handles:
            handle.remove()
    assert fired == list(probe_layers)


@pytest.mark.parametrize("name", list_models())
def test_paper_variant_builds_on_meta_with_its_probe_layers(name):
    with torch.device("meta"):
        model = create_model(name)
    modules = dict(model.named_modules())
    missing = [layer for layer in get_model_info(name).probe_layers if layer not in modules]
    assert not missing


@pytest.mark.parametrize("name", list_models())
def test_in_channels_changes_only_the_first_convolution(name):
    with torch.device("meta"):
        rgb = create_model(name, in_channels=3).state_dict()
        grey = create_model(name, in_channels=1).state_dict()
    assert list(rgb) == list(grey)
    changed = [key for key in rgb if rgb[key].shape != grey[key].shape]
    assert len(changed) == 1
    assert rgb[changed[0]].shape[1] == 3 and grey[changed[0]].shape[1] == 1


@pytest.mark.parametrize("name", list_models())
def test_small_input_variant_keeps_the_parameter_names(name):
    with torch.device("meta"):
        paper = create_model(name)
        small = create_model(name, image_size=32)
    assert list(paper.state_dict()) == list(small.state_dict())
