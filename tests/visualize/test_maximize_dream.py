"""Maximum-response images and Deep Dream raise what they claim to raise."""

from __future__ import annotations

import pytest
import torch

from convzoo.inspection import build_source_model, input_pipeline, resolve_model_source
from convzoo.visualize import deep_dream, maximize, resolve_layers
from convzoo.visualize.fourier import FourierImage
from convzoo.visualize.maximize import LUCID_STEPS, dataset_best


def _lenet(checkpoint: str | None):
    source = (resolve_model_source(checkpoint=checkpoint) if checkpoint
              else resolve_model_source(model="lenet5", random_init=True))
    _, preprocessing = input_pipeline(source)
    model = build_source_model(source, "cpu", seed=0)
    example = torch.zeros(1, preprocessing.channels, preprocessing.model_side, preprocessing.model_side)
    return model, preprocessing, example


@pytest.mark.parametrize("trained", [True, False], ids=["trained", "random-init"])
def test_default_recipe_raises_channels_tenfold(trained, lenet_checkpoint):
    """The issue's claim, at the default 512 steps: every target channel ends >= 10x its
    activation on the starting image (and above zero: a unit off at the start counts too)."""
    model, preprocessing, example = _lenet(lenet_checkpoint if trained else None)
    (layer,) = resolve_layers(model, example, ["features.4"])
    training_flags = [module.training for module in model.modules()]
    result = maximize(model, preprocessing.normalize, (1, 32), layer=layer, channels=[0, 1, 2, 3], seed=0)
    assert LUCID_STEPS == 512
    assert (result.after > 0).all() and (result.after >= 10 * result.before).all(), (result.before, result.after)
    assert result.images.shape == (4, 1, 32, 32) and 0 <= result.images.min() and result.images.max() <= 1
    assert [module.training for module in model.modules()] == training_flags
    assert all(parameter.requires_grad for parameter in model.parameters())


def test_same_seed_same_images_and_plain_ascent_rises():
    model, preprocessing, example = _lenet(None)
    (layer,) = resolve_layers(model, example, ["features.1"])
    runs = [maximize(model, preprocessing.normalize, (1, 32), layer=layer, channels=[0, 3], steps=6, seed=seed)
            for seed in (7, 7, 8)]
    assert torch.equal(runs[0].images, runs[1].images) and not torch.equal(runs[0].images, runs[2].images)
    plain = maximize(model, preprocessing.normalize, (1, 32), classes=[2], steps=20, plain=True, seed=0)
    assert plain.after[0] > 3 * plain.before[0] + 0.1


def _square_detector(bias: float):
    """One channel that fires only where a bright 3x3 square sits on a dark surround: +1
    over the square, -1 over the 16 pixels around it, ``bias``, circular padding. Every
    pixel is under 9 squares and 16 surrounds, so the channel's mean pre-activation is
    -7 x (mean pixel) + bias, below zero for every image: Lucid's redirected gradient,
    which ascends that mean, fades the image to black instead of drawing a square."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 5, padding=2, padding_mode="circular"), torch.nn.ReLU())
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].weight[0, 0, 1:4, 1:4] = 1.0
        model[0].bias.fill_(bias)
    (layer,) = resolve_layers(model, torch.zeros(1, 1, 16, 16), ["1"])
    return model, layer


def test_a_unit_off_at_the_start_reaches_its_best_dataset_image():
    """Issue 21, item 13: a unit at zero on the grey start that the data makes fire ends at
    least as high as on its best dataset image (Lucid's rule alone: 0.013 against 0.072)."""
    model, layer = _square_detector(-0.5)
    square = torch.zeros(1, 1, 16, 16)
    square[..., 7:10, 7:10] = 1.0
    data = torch.cat([torch.full((1, 1, 16, 16), 0.5), square, torch.zeros(1, 1, 16, 16)])
    best = dataset_best(model, [data[:2], data[2:]], layer=layer, channels=[0])
    assert best.image_indices.tolist() == [1] and best.images_seen == 3
    with torch.no_grad():
        torch.testing.assert_close(best.values, model(square).mean((1, 2, 3)))
    result = maximize(model, lambda pixels: pixels, (1, 16), layer=layer, channels=[0], reach=best.values, seed=0)
    assert result.before[0] == 0 and result.after[0] >= best.values[0], (result.after, best.values)
    assert result.retried == [0]


def test_plain_ascent_starts_a_unit_off_everywhere_on_the_noise():
    """The lecture's bare ascent follows the true gradient, zero for a unit off at every
    position of its U[0, 1] start; the redirected gradient starts it."""
    model, layer = _square_detector(-1.5)
    result = maximize(model, lambda pixels: pixels, (1, 16), layer=layer, channels=[0], plain=True, steps=64, seed=0)
    assert result.before[0] == 0 and result.after[0] > 0


def test_fourier_image_starts_grey_and_decorrelates_colour():
    image = FourierImage(2, 3, 28, generator=torch.Generator().manual_seed(0))()
    assert image.shape == (2, 3, 28, 28) and (image - 0.5).abs().max() < 0.05


def test_dream_raises_the_norm_and_keeps_the_size(lenet_checkpoint):
    model, preprocessing, example = _lenet(lenet_checkpoint)
    (layer,) = resolve_layers(model, example, ["features.4"])
    image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.3
    result = deep_dream(model, preprocessing.normalize, image, layer, steps=5, fixed_side=32)
    assert result.image.shape == image.shape and result.after > 1.2 * result.before
    resnet = build_source_model(resolve_model_source(model="resnet20", random_init=True), "cpu", seed=0)
    (block,) = resolve_layers(resnet, torch.zeros(1, 3, 32, 32), ["layer2"])
    photo = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    dreamed = deep_dream(resnet, lambda x: x, photo, block, octaves=3, steps=3)
    assert dreamed.image.shape == photo.shape and dreamed.after > dreamed.before
    assert dreamed.octave_sides == [16, 23, 32]
