"""The segmentation models (FCN, U-Net): score maps of the input's size, the paper's bilinear
upsampling and zero-initialised skips, backbone weights that load, published sizes.

Kept small for CI's two cores: 1-channel images of 32x32 and 37x45, batch 2, 3 classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convzoo.model_catalog import meta_parameter_count
from convzoo.models.fcn import bilinear_kernel, upsampling
from convzoo.models.pretrained import load_pretrained
from convzoo.registry import create_model, get_model_info, list_models
from tests.conftest import torchvision_standin

SEGMENTATION_MODELS = [name for name in list_models() if get_model_info(name).task == "segmentation"]
NUM_CLASSES = 3


def test_the_fcn_and_unet_variants_are_registered_for_segmentation():
    assert set(SEGMENTATION_MODELS) >= {
        "fcn32s_vgg16", "fcn16s_vgg16", "fcn8s_vgg16", "fcn32s_resnet18", "fcn16s_resnet18", "fcn8s_resnet18",
        "fcn8s_resnet50", "fcn8s_mobilenet_v2", "unet", "unet_resnet18"}


@pytest.mark.parametrize("name", SEGMENTATION_MODELS)
def test_scores_every_pixel_of_any_size_and_learns(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=1, image_size=32).train()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, NUM_CLASSES, 32, 32)
    odd = torch.randn(2, 1, 37, 45)  # neither side a multiple of any stride
    scores = model(odd)
    assert scores.shape == (2, NUM_CLASSES, 37, 45)
    F.cross_entropy(scores, torch.randint(NUM_CLASSES, (2, 37, 45))).backward()
    first_conv = dict(model.named_modules())[get_model_info(name).stem]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("factor", [2, 4, 8, 32])
def test_bilinear_initialisation_equals_bilinear_interpolation_inside_the_map(factor):
    torch.manual_seed(0)
    scores = torch.randn(1, 3, 6, 5)
    # The transposed convolution as the paper writes it (kernel 2f, stride f, no padding),
    # cropped by f/2 on each side as the FCN crops it (its padding).
    full = F.conv_transpose2d(scores, bilinear_kernel(3, factor), stride=factor)
    cropped = full[..., factor // 2: factor // 2 + 6 * factor, factor // 2: factor // 2 + 5 * factor]
    with torch.no_grad():
        layer = upsampling(3, factor)(scores)
    torch.testing.assert_close(layer, cropped)
    expected = F.interpolate(scores, scale_factor=factor, mode="bilinear", align_corners=False)
    inside = (..., slice(factor, -factor), slice(factor, -factor))  # the borders see one input unit, not two
    torch.testing.assert_close(layer[inside], expected[inside], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, score_layers", [
    ("fcn32s_resnet18", {"score_fr"}),
    ("fcn16s_resnet18", {"score_fr", "score_pool4"}),
    ("fcn8s_resnet18", {"score_fr", "score_pool4", "score_pool3"}),
])
def test_fcn_variants_differ_by_their_zero_initialised_skips(name, score_layers):
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=1, image_size=32)
    modules = dict(model.named_modules())
    assert {module for module in modules if module.startswith("score_")} == score_layers
    for skip in score_layers - {"score_fr"}:  # Long et al. section 4.2: each finer net starts as the coarser
        assert not modules[skip].weight.any() and not modules[skip].bias.any()
    assert modules["score_fr"].weight.any()


@pytest.mark.parametrize("backbone, dense", [
    ("resnet18", "fcn8s_resnet18"), ("vgg16", "fcn32s_vgg16"), ("mobilenet_v2", "fcn8s_mobilenet_v2"),
    ("resnet18", "unet_resnet18"),
])
def test_classification_weights_of_the_backbone_load_into_it_exactly(backbone, dense, tmp_path):
    torch.manual_seed(0)
    classifier = create_model(backbone, num_classes=10, in_channels=1, image_size=32)
    torch.save({"model": classifier.state_dict()}, tmp_path / "best.pt")  # a convzoo checkpoint
    model = create_model(dense, num_classes=NUM_CLASSES, in_channels=1, image_size=32)
    fit = load_pretrained(model, dense, str(tmp_path / "best.pt"))
    assert not fit.mismatched and not fit.unexpected and not fit.adapted and not fit.fresh_stem
    assert {key.rsplit(".", 1)[0] for key in fit.head} == set(get_model_info(dense).head)
    theirs = classifier.state_dict()
    for key, tensor in model.backbone.state_dict().items():  # VGG's fc6 and fc7 as convolutions: reshaped
        assert torch.equal(tensor, theirs[key].reshape(tensor.shape)), key
    assert len(model.backbone.state_dict()) == len(theirs) - 2  # all but the classifier's weight and bias


def test_torchvision_weights_of_the_backbone_load_into_an_fcn(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    reference = torch.load(torchvision_standin(tmp_path / "torch-home", "resnet18"), weights_only=True)
    model = create_model("fcn8s_resnet18", num_classes=NUM_CLASSES)
    fit = load_pretrained(model, "fcn8s_resnet18", "torchvision")
    assert fit.source == "torchvision resnet18 (ImageNet)" and len(fit.loaded) == len(reference) - 2
    assert all(torch.equal(tensor, reference[key]) for key, tensor in model.backbone.state_dict().items())


def test_published_parameter_counts():
    # Ronneberger et al. 2015, Figure 1 with BatchNorm, as the common implementations build it
    # (31,037,698 for 3 input channels in milesial's Pytorch-UNet): 31.0 M.
    assert meta_parameter_count("unet", num_classes=2, in_channels=1) == 31_036_546
    assert meta_parameter_count("unet", num_classes=2, in_channels=1, batch_norm=False) == 31_030_658
    # Long et al. 2015, Table 1: FCN-VGG16 has 134 M parameters; the 64x64 upsampling of
    # FCN-32s (21 x 21 x 64 x 64, fixed in the paper) comes on top.
    fcn32s = meta_parameter_count("fcn32s_vgg16", num_classes=21)
    assert fcn32s == 136_152_917 and fcn32s - 21 * 21 * 64 * 64 == 134_346_581
