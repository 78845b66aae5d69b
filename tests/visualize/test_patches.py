"""Top-activating patches: the running top-k equals a brute-force search over every image
and position, and each crop is the unit's receptive-field box, clipped at the border."""

from __future__ import annotations

import pytest
import torch

from convzoo.visualize import resolve_layers, top_activating_patches
from convzoo.visualize.patches import input_batches

# Field boxes worked out by hand (Araujo et al. 2019): unit (r, c) sees rows
# start + r * jump .. + size - 1.  LeNet-5 features.4: conv5, pool2, conv5 -> 14 px, jump 2,
# start 0.  ResNet-20 layer1: seven 3x3 convolutions at stride 1 -> 15 px, jump 1, start -7.
FIELDS = {("lenet5", "features.4"): (14, 2, 0), ("resnet20", "layer1"): (15, 1, -7)}


@pytest.mark.parametrize("name, layer_name", list(FIELDS))
def test_top_patches_match_brute_force_and_field_boxes(name, layer_name, random_model):
    model = random_model(name, side=32, seed=3)
    images = torch.rand(37, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    (layer,) = resolve_layers(model, images[:1], [layer_name])
    channels, top = [0, 5, 2, 7], 4
    found = top_activating_patches(model, layer, input_batches(images, lambda b: b, 8), channels, top)

    captured = []
    handle = dict(model.named_modules())[layer_name].register_forward_hook(lambda m, i, o: captured.append(o.clone()))
    with torch.no_grad():
        for image in images:  # one image at a time, every position
            model(image[None])
    handle.remove()
    activations = torch.cat(captured)[:, channels]  # (N, C, H, W)
    per_image = activations.flatten(2).amax(2)
    brute_values, _ = per_image.topk(top, dim=0)
    torch.testing.assert_close(found.values, brute_values, rtol=1e-5, atol=1e-5)

    size, jump, start = FIELDS[(name, layer_name)]
    crops = found.crops(lambda index: images[index])
    for column, channel in enumerate(channels):
        for rank in range(top):
            index = int(found.image_indices[rank, column])
            row, col = (int(v) for v in found.positions[rank, column])
            assert activations[index, column, row, col] == pytest.approx(float(found.values[rank, column]), abs=1e-5)
            top_row, left = start + row * jump, start + col * jump
            rows = slice(max(top_row, 0), min(top_row + size, 32))
            cols = slice(max(left, 0), min(left + size, 32))
            assert torch.equal(crops[column][rank], images[index][:, rows, cols])
