"""Parameter counts against the published figures (1000 classes, 3x224x224 unless noted),
counted on the meta device: no weight is allocated, so VGG-19 costs nothing."""

from __future__ import annotations

import pytest

from convzoo.model_catalog import meta_parameter_count

# Exact: torchvision's models and the issue's table (BagNet: the authors' reference code).
EXACT = {
    "alexnet": 61_100_840,
    "alexnet_paper": 60_965_224,
    "vgg11": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg16_bn": 138_365_992,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "bagnet9": 15_688_744,
    "bagnet17": 16_213_032,
    "bagnet33": 18_310_184,
}

# Rounded, in millions, as the papers print them: VGG Table 2 (A, A-LRN, B, C, D, E) and the
# CIFAR ResNets of He et al. Table 6 (10 classes, 32x32).
MILLIONS = {
    "vgg11": "133", "vgg11_lrn": "133", "vgg13": "133", "vgg16_c": "134", "vgg16": "138", "vgg19": "144",
    "resnet20": "0.27", "resnet32": "0.46", "resnet44": "0.66", "resnet56": "0.85", "resnet110": "1.7",
}

# MobileNet v1 Table 6: width multiplier -> millions of parameters.
MOBILENET_V1_WIDTHS = {1.0: "4.2", 0.75: "2.6", 0.5: "1.3", 0.25: "0.5"}


def rounded_millions(count: int, published: str) -> str:
    """``count`` in millions, rounded to as many decimals as the published figure has."""
    decimals = len(published.split(".")[1]) if "." in published else 0
    return f"{count / 1e6:.{decimals}f}"


@pytest.mark.parametrize("name", sorted(EXACT))
def test_exact_parameter_count(name):
    assert meta_parameter_count(name) == EXACT[name]


@pytest.mark.parametrize("name", sorted(MILLIONS))
def test_parameter_count_as_published_in_millions(name):
    assert rounded_millions(meta_parameter_count(name), MILLIONS[name]) == MILLIONS[name]


@pytest.mark.parametrize("width_mult", sorted(MOBILENET_V1_WIDTHS))
def test_mobilenet_v1_width_multiplier_matches_table_6(width_mult):
    count = meta_parameter_count("mobilenet_v1", width_mult=width_mult)
    assert rounded_millions(count, MOBILENET_V1_WIDTHS[width_mult]) == MOBILENET_V1_WIDTHS[width_mult]
