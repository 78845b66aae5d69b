"""Pieces several model families share: the small-input rule, LRN, width rounding, init.

Private (the leading underscore keeps ``convzoo.models`` from importing it as a family).
"""

from __future__ import annotations

import torch
from torch import nn

SMALL_INPUT_MAX = 64
"""Images up to this side (MNIST's 28, CIFAR's 32) get a family's small-input variant:
the ImageNet stems downsample by 4 to 32 before the first block, which would leave a
32x32 image with a 1x1 (or empty) feature map long before the classifier."""


def is_small_input(image_size: int) -> bool:
    return image_size <= SMALL_INPUT_MAX


def alexnet_local_response_norm() -> nn.LocalResponseNorm:
    """Krizhevsky et al. 2012, section 3.3: k=2, n=5, alpha=1e-4, beta=0.75.

    The paper divides by ``(k + alpha * sum)``; PyTorch divides by ``(k + alpha / n * sum)``,
    so the paper's alpha is passed multiplied by n. VGG's A-LRN uses the same layer
    (Simonyan & Zisserman 2014, section 2.1).
    """
    size = 5
    return nn.LocalResponseNorm(size=size, alpha=1e-4 * size, beta=0.75, k=2.0)


def drop_branch(drop_path: nn.Module | None, branch: torch.Tensor) -> torch.Tensor:
    """A residual branch's output through its block's stochastic depth, if it has one."""
    return branch if drop_path is None else drop_path(branch)


def add_stochastic_depth(model: nn.Module, rate: float) -> int:
    """Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth", section 3):
    in training, the residual branch of block l of L is dropped for a whole image with
    probability ``rate * l / L`` (the linear decay rule, eq. 4), and scaled by 1 / (1 - p)
    when kept (torchvision's ``StochasticDepth(p, "row")``; the paper scales at test time
    instead, which is the same in expectation); in eval mode nothing changes.

    The blocks are those that carry a ``drop_path`` slot (ResNet's and BagNet's blocks,
    MobileNet-v2's inverted residuals with a skip), in depth order. ``StochasticDepth``
    has no parameters: the state dict keeps its keys (torchvision's weights still load).
    Returns L; 0 means the model has no residual branch to drop.
    """
    from torchvision.ops import StochasticDepth

    blocks = [module for module in model.modules() if hasattr(module, "drop_path")]
    for depth, block in enumerate(blocks, start=1):
        block.drop_path = StochasticDepth(rate * depth / len(blocks), "row")
    return len(blocks)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a width-multiplied channel count to a multiple of ``divisor``, never losing more
    than 10%: the rounding of the MobileNet reference code, which torchvision keeps."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


INITIALISATIONS = ("torchvision", "he", "glorot")
"""The ``init`` a plain (BatchNorm-free) network's builder takes: torchvision's (He normal
convolutions scaled by fan-out, linear layers N(0, 0.01)), He et al. 2015's for every layer
(scaled by fan-in, linear layers too), or Glorot & Bengio 2010's uniform."""


def plain_init_(model: nn.Module, init: str) -> None:
    """Re-initialise every convolution and linear layer of a plain network, biases zero.

    ``he``: He et al. 2015 ("Delving Deep into Rectifiers", section 2.2) derive the scale
    that keeps each ReLU layer's output variance, std sqrt(2 / fan_in), and show it trains a
    30-layer plain network from scratch where Glorot's scale stalls (their Figure 3). The
    torchvision scale (fan-out convolutions, N(0, 0.01) linear layers) shrinks the signal at
    every widening layer and in each 4096-wide layer: a small-input VGG-16 starts with
    logits of std 3e-4, and SGD does not move it. ``glorot``: Glorot & Bengio 2010's uniform
    initialisation, which the VGG paper names for training without pre-training (section 3.1).
    """
    if init not in INITIALISATIONS:
        raise ValueError(f"init must be one of {', '.join(INITIALISATIONS)}, got {init!r}")
    if init == "torchvision":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if init == "he":
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def init_weights_(model: nn.Module, *, conv_mode: str = "fan_out", linear_std: float | None = None) -> None:
    """He (Kaiming) normal convolutions with zero bias, BatchNorm at identity, and Linear
    layers drawn from N(0, ``linear_std``) with zero bias (PyTorch's default when None).

    This is the initialisation torchvision gives ResNet, VGG, MobileNet and DenseNet
    (``conv_mode`` is ``fan_out`` for the first three, ``fan_in`` for DenseNet).
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode=conv_mode, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0, linear_std)
            nn.init.zeros_(module.bias)
