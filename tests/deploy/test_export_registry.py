"""Every registered model exports to ONNX, and onnxruntime's logits equal eager PyTorch's.

Parametrised over the registry, so a new model is exported the moment it is registered:
each at its small input (3x32x32, LeNet-5 1x32x32, 10 classes), and two ImageNet models
at 224x224. ``export_model`` itself checks batches of 1 and 7 against the eager model and
raises over the tolerance; the test asserts what it reports.

Deeper twins of a family (ResNet-152 of ResNet-50, VGG-19 of VGG-11, ...) are built
from exactly the same module types as their representative, only more of them, so they
export to the same ONNX operators. On the shared 2-core VM the 16 exports here took 52 s
and the 18 twins would add 91 s, past CI's 2 minutes for this test.
``test_deeper_twins_add_no_module_type`` keeps that claim true, and
``benchmarks/bench_export.py`` exports every model (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from convzoo.registry import create_model, get_model_info, list_models

pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")

DEEPER_TWINS = {
    "resnet34": "resnet18", "resnet101": "resnet50", "resnet152": "resnet50",
    "resnet32": "resnet20", "resnet44": "resnet20", "resnet56": "resnet20", "resnet110": "resnet20",
    "densenet161": "densenet121", "densenet169": "densenet121", "densenet201": "densenet121",
    "vgg13": "vgg11", "vgg16": "vgg11", "vgg19": "vgg11",
    "vgg13_bn": "vgg11_bn", "vgg16_bn": "vgg11_bn", "vgg19_bn": "vgg11_bn",
    "bagnet17": "bagnet9", "bagnet33": "bagnet9",
    # FCN-32s and FCN-16s hold a subset of FCN-8s's layers (fewer skips), on the same trunk.
    "fcn32s_vgg16": "fcn8s_vgg16", "fcn16s_vgg16": "fcn8s_vgg16",
    "fcn32s_resnet18": "fcn8s_resnet18", "fcn16s_resnet18": "fcn8s_resnet18",
}
IMAGENET_SUBSET = ("resnet18", "mobilenet_v2")


def random_init_source(name: str, image_size: int | None = None):
    from convzoo.inspection import resolve_model_source

    source = resolve_model_source(model=name, random_init=True)
    if image_size is not None:
        source.config = dataclasses.replace(source.config, image_size=image_size)
    return source


def check_onnx_export(source, tmp_path) -> None:
    from convzoo.deploy import export_model

    result = export_model(source, "onnx", tmp_path / f"{source.model_name}.onnx")
    assert result.checked_batches == [1, 7]
    assert result.max_abs_diff <= result.tolerance


# The export checks one logits tensor per batch: what a classifier returns.
@pytest.mark.parametrize("name", [name for name in list_models()
                                  if name not in DEEPER_TWINS and get_model_info(name).task == "classification"])
def test_every_model_exports_to_onnx_at_its_small_input(name, tmp_path):
    check_onnx_export(random_init_source(name), tmp_path)


@pytest.mark.parametrize("name", IMAGENET_SUBSET)
def test_imagenet_models_export_to_onnx_at_224(name, tmp_path):
    from convzoo.inspection import input_pipeline

    source = random_init_source(name, image_size=224)
    assert input_pipeline(source)[1].model_side == 224
    check_onnx_export(source, tmp_path)


@functools.lru_cache(maxsize=None)
def module_types(name: str) -> frozenset[type]:
    with torch.device("meta"):
        return frozenset(type(module) for module in create_model(name, num_classes=10, image_size=32).modules())


@pytest.mark.parametrize("twin", sorted(DEEPER_TWINS))
def test_deeper_twins_add_no_module_type(twin):
    assert module_types(twin) <= module_types(DEEPER_TWINS[twin])
