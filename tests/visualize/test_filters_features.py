"""Filters: one tile per filter. Feature maps: equal to a plain forward to the layer,
including layers whose output a later in-place ReLU overwrites."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from convzoo.visualize import conv_layer_weight, feature_maps, filter_images, resolve_layers


def test_first_layer_filters_are_images_one_tile_per_filter(random_model):
    lenet = random_model("lenet5", side=32)
    name, weight = conv_layer_weight(lenet)
    assert name == "features.0"
    tiles = filter_images(weight)
    assert tiles.shape == (6, 1, 5, 5)
    assert torch.allclose(tiles.flatten(1).amin(1), torch.zeros(6)) and torch.allclose(tiles.flatten(1).amax(1), torch.ones(6))
    rgb = filter_images(random_model("resnet20", in_channels=3, side=32).conv1.weight)
    assert rgb.shape == (16, 3, 3, 3)


def test_deeper_filters_tile_their_input_slices(random_model):
    weight = random_model("lenet5", side=32).features[3].weight  # 16 filters of 6 slices 5x5
    tiles = filter_images(weight, "global")
    assert tiles.shape[0] == 16 and tiles.shape[1] == 1
    assert torch.equal(tiles[3, 0, :5, :5], (weight[3, 0] - weight.min()) / (weight.max() - weight.min()))


def test_filters_command_grid_has_one_tile_per_filter(cli, tmp_path):
    from PIL import Image

    code, out, err = cli("visualize", "filters", "--model", "resnet20", "--random-init", "--layer", "layer1.0.conv2",
                         "--out", tmp_path, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["filters"] == 16 and result["weight_shape"] == [16, 16, 3, 3]
    png = next(path for path in result["files"] if path.endswith("filters.png"))
    tile = 4 * (3 + 1) - 1  # 4x4 mosaic of 3x3 slices, 1 px apart
    enlarged = tile * max(1, round(48 / tile))
    columns = math.ceil(math.sqrt(16))
    rows = math.ceil(16 / columns)
    assert Image.open(png).size == (columns * (enlarged + 2) + 2, rows * (enlarged + 2) + 2)


@pytest.mark.parametrize("name, layers", [("lenet5", ["features.0", "features.1", "features.4"]),
                                          ("resnet20", ["conv1", "layer1.0.bn1", "layer1", "layer2"])])
def test_feature_maps_equal_a_plain_forward(name, layers, random_model):
    model = random_model(name, side=32)
    x = torch.randn(3, 1, 32, 32)
    chosen = resolve_layers(model, x[:1], layers)
    maps = feature_maps(model, x, chosen)
    with torch.no_grad():
        if name == "lenet5":
            conv = F.conv2d(x, model.features[0].weight, model.features[0].bias)  # overwritten in place by the ReLU
            expected = {"features.0": conv, "features.1": conv.relu(), "features.4": model.features[:5](x.clone())}
        else:
            stem = model.bn1(model.conv1(x))
            block = model.layer1[0]
            layer1 = model.layer1(stem.relu())
            expected = {"conv1": model.conv1(x), "layer1.0.bn1": block.bn1(block.conv1(stem.relu())),
                        "layer1": layer1, "layer2": model.layer2(layer1.clone())}
    for layer in chosen:
        torch.testing.assert_close(maps[layer.name], expected[layer.name])


def test_feature_maps_run_in_eval_mode_and_leave_the_mode_as_it_was(random_model):
    model = random_model("resnet20", side=32)
    x = torch.randn(2, 1, 32, 32)
    (layer,) = resolve_layers(model.train(), x[:1], ["layer1"])
    maps = feature_maps(model, x, [layer])
    assert model.training and all(module.training for module in model.modules())
    with torch.no_grad():
        expected = model.eval().layer1(model.relu(model.bn1(model.conv1(x))))
    torch.testing.assert_close(maps["layer1"], expected)
