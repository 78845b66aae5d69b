"""GoogLeNet against Table 1 of Szegedy et al. 2014, and its auxiliary classifiers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convzoo.registry import create_model

# Table 1: output size, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
TABLE_1 = {
    "3a": (28, 64, 96, 128, 16, 32, 32),
    "3b": (28, 128, 128, 192, 32, 96, 64),
    "4a": (14, 192, 96, 208, 16, 48, 64),
    "4b": (14, 160, 112, 224, 24, 64, 64),
    "4c": (14, 128, 128, 256, 24, 64, 64),
    "4d": (14, 112, 144, 288, 32, 64, 64),
    "4e": (14, 256, 160, 320, 32, 128, 128),
    "5a": (7, 256, 160, 320, 32, 128, 128),
    "5b": (7, 384, 192, 384, 48, 128, 128),
}


def branch_convs(block: torch.nn.Module) -> list[torch.nn.Conv2d]:
    """The block's convolutions in Table 1's column order."""
    return [block.branch1.conv, block.branch2[0].conv, block.branch2[1].conv,
            block.branch3[0].conv, block.branch3[1].conv, block.branch4[1].conv]


@pytest.fixture(scope="module")
def paper_googlenet():
    with torch.device("meta"):
        return create_model("googlenet")


@pytest.mark.parametrize("block", sorted(TABLE_1))
def test_inception_widths_and_kernels_are_table_1s(paper_googlenet, block):
    convs = branch_convs(getattr(paper_googlenet, f"inception{block}"))
    assert tuple(conv.out_channels for conv in convs) == TABLE_1[block][1:]
    assert [conv.kernel_size[0] for conv in convs] == [1, 1, 3, 1, 5, 1]  # the 5x5 branch is 5x5


@pytest.mark.parametrize("image_size", [224, 28])
def test_inception_blocks_run_at_table_1s_map_sizes(output_shapes, image_size):
    """At 224 as in Table 1; the small-input stem brings a 28x28 image to the same sizes."""
    model = create_model("googlenet", num_classes=10, image_size=image_size)
    blocks = [f"inception{block}" for block in TABLE_1]
    shapes = output_shapes(model, blocks, torch.randn(1, 3, image_size, image_size))
    assert [shapes[block][-1] for block in blocks] == [row[0] for row in TABLE_1.values()]


def test_auxiliary_classifiers_train_and_disappear_at_evaluation():
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=10, in_channels=1, image_size=28)
    images, labels = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    outputs = model.train()(images)
    assert outputs._fields == ("logits", "aux1", "aux2")
    loss = F.cross_entropy(outputs.logits, labels) + model.aux_loss_weight * sum(
        F.cross_entropy(aux, labels) for aux in outputs[1:])
    loss.backward()
    assert model.aux_loss_weight == 0.3
    assert model.aux1.fc2.weight.grad.abs().sum() > 0 and model.aux2.fc2.weight.grad.abs().sum() > 0
    with torch.no_grad():
        logits = model.eval()(images)
    assert type(logits) is torch.Tensor and logits.shape == (4, 10)
