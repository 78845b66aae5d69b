"""One SGD step on a fixed batch of small images lowers the training loss, for one model
of every family (the smallest, so that a newly registered family is covered cheaply)."""

from __future__ import annotations

from itertools import groupby

import pytest
import torch
import torch.nn.functional as F

from convzoo.model_catalog import meta_parameter_count
from convzoo.registry import create_model, get_model_info, list_models


def smallest_model_of_each_family() -> list[str]:
    def family(name: str) -> str:
        return get_model_info(name).family

    by_family = groupby(sorted(list_models(), key=family), key=family)
    return [min(names, key=meta_parameter_count) for _, names in by_family]


def training_loss(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)  # the same dropout masks before and after the step
    outputs = model(images)
    if isinstance(outputs, tuple):  # main head + aux_loss_weight x each auxiliary head
        main, *auxiliary = outputs
        auxiliary_loss = sum(F.cross_entropy(logits, labels) for logits in auxiliary)
        return F.cross_entropy(main, labels) + model.aux_loss_weight * auxiliary_loss
    return F.cross_entropy(outputs, labels)


# Cross-entropy on logits: a classifier's loss (tests/models/test_detection_models.py trains a detector).
@pytest.mark.parametrize("name", [name for name in smallest_model_of_each_family()
                                  if get_model_info(name).task == "classification"])
def test_one_sgd_step_lowers_the_loss(name):
    info = get_model_info(name)
    channels, side = (1, 28) if info.input_size[0] == 1 else (3, 32)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=side).train()
    if info.fixed_input_size:
        side = info.input_size[1]
    images, labels = torch.randn(8, channels, side, side), torch.arange(8) % 10
    if info.task == "segmentation":  # a class per pixel
        labels = torch.arange(8 * side * side).reshape(8, side, side) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    before = training_loss(model, images, labels)
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = training_loss(model, images, labels)
    assert after.item() < before.item()
