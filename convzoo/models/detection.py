"""Faster R-CNN (Ren, He, Girshick & Sun, "Faster R-CNN: Towards Real-Time Object Detection
with Region Proposal Networks", NeurIPS 2015) on the zoo's own backbones.

The detector is torchvision's, assembled from its parts: ``FasterRCNN`` (transform, RPN,
RoI heads), ``AnchorGenerator``, ``RPNHead``, ``MultiScaleRoIAlign`` and, for the ResNets,
``BackboneWithFPN`` (Lin et al. 2017, "Feature Pyramid Networks"). The backbone is the
registry's classification network, built as for a classification run of the same images
(so a small image gets the family's small-input stem) and cut where the detector reads it.

The contract with the training loop and ``predict``:

- **input**: a list of CHW float tensors, **already normalised** as convzoo's data pipeline
  normalises every image (the dataset's mean and std). The model's transform therefore
  normalises with mean 0 and std 1 (it would otherwise normalise twice) and, with
  ``min_size = max_size = image_size``, leaves an ``image_size`` canvas at its size, not
  scaled to torchvision's 800 px (an image of another size is scaled so that its longer
  side is ``image_size``; the boxes come back in its own pixels); a 4-d batch works too;
- **targets** (training): one dict per image, ``boxes`` a float (N, 4) tensor of
  ``x1, y1, x2, y2`` in the image's pixels (N may be 0: an image without objects) and
  ``labels`` an int64 (N,) tensor in ``1 .. num_classes - 1``;
- **output**: in training, torchvision's dict of four losses (``loss_classifier``,
  ``loss_box_reg``, ``loss_objectness``, ``loss_rpn_box_reg``); in eval mode, one dict per
  image of ``boxes`` (in the input image's pixels), ``labels`` and ``scores``.

``num_classes`` counts the background as class 0, torchvision's convention: 10 digits are
``num_classes=11``.

Anchors follow the canvas: the smallest anchor is 1/8 of ``image_size`` and each size
doubles the last, with aspect ratios 0.5, 1 and 2 (the paper's, section 3.1.1). With an
FPN there is one size per pyramid level, P2 to P6 (so 8, 16, 32, 64, 128 px on a 64-px
canvas); on a single map, three sizes (8, 16, 32 px on a 64-px canvas; the paper's 128,
256, 512 px are 0.2, 0.4 and 0.85 of its 600-px images). ``anchor_sizes`` overrides them.
The anchor generator and the RoI pooler infer each map's stride from its size and the
image's, so the small-input stems need no stride stated here: up to 64 px ResNet's layer1
to layer4 are at strides 1 to 8 (4 to 32 otherwise), MobileNet's last map at 16 (32), and
VGG's conv5_3 at 16 either way (the variants differ only in pool5, which goes).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.rpn import RPNHead
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import MultiScaleRoIAlign, roi_pool

from convzoo.models import mobilenet, resnet, vgg  # noqa: F401  (the backbones register before the detectors)
from convzoo.models._common import is_small_input
from convzoo.recipes import recipe
from convzoo.registry import create_model, get_model_info, register_model

ASPECT_RATIOS = (0.5, 1.0, 2.0)
ROI_OPS = ("torchvision", "scratch")
BACKBONE_PREFIX = "backbone.body."
"""Where the classification backbone's state dict sits in a detector's: every detector's
backbone keeps the classification network's module names under ``backbone.body``, so a
classification checkpoint loads with this prefix (models/pretrained.py)."""

SMALL_IMAGE_SETTINGS = dict(
    rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
    rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
    box_batch_size_per_image=128, box_detections_per_img=20,
)
"""Up to 64 px (the zoo's small-input rule) torchvision's defaults (2000 proposals kept in
training, 1000 at test, 512 RoIs sampled per image, 100 detections) far outnumber the few
objects a small canvas holds: the RPN keeps 600 top proposals (per level with an FPN)
before NMS and 300 after it in training, 300 and 100 at test; the RoI head samples 128
RoIs per image and reports at most 20 detections."""


class OneMapBackbone(nn.Module):
    """A classification network's trunk up to one map: ``body`` returns ``{"0": map}``."""

    def __init__(self, network: nn.Module, last_module: str, out_channels: int) -> None:
        super().__init__()
        self.body = IntermediateLayerGetter(network, return_layers={last_module: "0"})
        self.out_channels = out_channels

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.body(images)


class OneMapRoIPool(nn.Module):
    """RoI max pooling on one map (Fast R-CNN, Girshick 2015, section 2.1), with the box
    RoI pooler's signature in torchvision's ``FasterRCNN``; the map's scale is inferred from
    the image size as ``MultiScaleRoIAlign`` does (a power of 2)."""

    def __init__(self, output_size: int, pool=roi_pool) -> None:
        super().__init__()
        self.output_size = output_size
        self.pool = pool

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        feature = features["0"]
        image_height = max(height for height, _ in image_shapes)
        scale = 2.0 ** round(math.log2(feature.shape[-2] / image_height))
        return self.pool(feature, proposals, self.output_size, scale)


def anchor_sizes_for(image_size: int, levels: int) -> tuple[int, ...]:
    """The module docstring's rule: 1/8 of the canvas, doubling per level or size."""
    smallest = max(1, round(image_size / 8))
    return tuple(smallest * 2 ** level for level in range(levels))


def box_roi_pooler(roi_op: str, featmap_names: list[str], max_pool: bool = False) -> nn.Module:
    """The box head's RoI op, 7x7 (the paper's, after VGG's pool5): torchvision's or convzoo's
    own (``convzoo.ops.roi``, imported only when asked for)."""
    if roi_op not in ROI_OPS:
        raise ValueError(f"roi_op must be one of {', '.join(ROI_OPS)}, got {roi_op!r}")
    if roi_op == "scratch":
        if max_pool:
            from convzoo.ops.roi import roi_pool as scratch_roi_pool

            return OneMapRoIPool(7, scratch_roi_pool)
        from convzoo.ops.modules import MultiScaleRoIAlign as ScratchMultiScaleRoIAlign

        return ScratchMultiScaleRoIAlign(featmap_names=featmap_names, output_size=7, sampling_ratio=2)
    if max_pool:
        return OneMapRoIPool(7)
    return MultiScaleRoIAlign(featmap_names=featmap_names, output_size=7, sampling_ratio=2)


def faster_rcnn(backbone: nn.Module, num_maps: int, num_classes: int, in_channels: int, image_size: int, roi_op: str,
                anchor_sizes: tuple[int, ...] | None, max_pool: bool = False, **kwargs) -> FasterRCNN:
    """torchvision's ``FasterRCNN`` on ``backbone``'s ``num_maps`` maps (one anchor size per
    map with several, three sizes on one), with the small-image defaults up to 64 px."""
    sizes = anchor_sizes or anchor_sizes_for(image_size, num_maps if num_maps > 1 else 3)
    per_map = tuple((size,) for size in sizes) if num_maps > 1 else (tuple(sizes),)
    anchor_generator = AnchorGenerator(sizes=per_map, aspect_ratios=(ASPECT_RATIOS,) * num_maps)
    rpn_head = RPNHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0])
    featmap_names = [str(index) for index in range(min(num_maps, 4))]  # RoIs on P2-P5 (Lin et al., section 4.2)
    settings = dict(SMALL_IMAGE_SETTINGS) if is_small_input(image_size) else {}
    settings.update(kwargs)
    model = FasterRCNN(
        backbone, num_classes=num_classes,
        min_size=image_size, max_size=image_size,
        # convzoo's loaders hand over images already normalised (module docstring).
        image_mean=[0.0] * in_channels, image_std=[1.0] * in_channels,
        rpn_anchor_generator=anchor_generator, rpn_head=rpn_head,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=featmap_names, output_size=7, sampling_ratio=2), **settings)
    # Set after construction: FasterRCNN accepts only torchvision's MultiScaleRoIAlign as an argument.
    model.roi_heads.box_roi_pool = box_roi_pooler(roi_op, featmap_names, max_pool)
    return model


def _resnet_fpn(backbone_name: str, num_classes: int, in_channels: int, image_size: int, roi_op: str,
                anchor_sizes: tuple[int, ...] | None, fpn_channels: int, **kwargs) -> FasterRCNN:
    network = create_model(backbone_name, in_channels=in_channels, image_size=image_size)
    stage_channels = [getattr(network, f"layer{stage}")[-1].last_bn().num_features for stage in range(1, 5)]
    backbone = BackboneWithFPN(network, return_layers={f"layer{stage}": str(stage - 1) for stage in range(1, 5)},
                               in_channels_list=stage_channels, out_channels=fpn_channels)
    return faster_rcnn(backbone, 5, num_classes, in_channels, image_size, roi_op, anchor_sizes, **kwargs)


DETECTION_RECIPE = recipe(
    0.02, batch_size=16, momentum=0.9, nesterov=False, weight_decay=1e-4, schedule="cosine", warmup_epochs=1.0,
    source="Ren et al. 2015 section 3.1.3 (SGD, momentum 0.9); torchvision's detection reference "
           "(0.02 for 16 images, weight decay 1e-4, linear warm-up)")
"""The paper trains at 0.001 with one or two images a batch (weight decay 5e-4); torchvision's
references train every Faster R-CNN at 0.02 for 16 images (2 per GPU on 8 GPUs), the paper's
rate scaled to the batch, with a warm-up over the first 1000 iterations. Here the warm-up is
one epoch, capped at a quarter of the run (recipes.py), and the schedule convzoo's cosine
(torchvision steps the rate down at epochs 16 and 22 of 26)."""


def _register(backbone_name: str):
    """Stem and natural exits are the backbone's, under ``backbone.body``; the head is the
    box predictor, the two layers whose outputs are per class (scores, box offsets)."""
    backbone = get_model_info(backbone_name)
    register = register_model(family="faster_rcnn", paper="Ren et al. 2015", task="detection",
                              input_size=(3, 600, 600), num_classes=21, recipe=DETECTION_RECIPE,
                              head=("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"),
                              stem=f"{BACKBONE_PREFIX}{backbone.stem}", backbone=backbone_name,
                              probe_layers=tuple(f"{BACKBONE_PREFIX}{name}" for name in backbone.probe_layers))
    return register


@_register("resnet18")
def fasterrcnn_resnet18_fpn(num_classes: int = 21, in_channels: int = 3, image_size: int = 600,
                            roi_op: str = "torchvision", anchor_sizes: tuple[int, ...] | None = None,
                            fpn_channels: int = 256, **kwargs) -> FasterRCNN:
    """Faster R-CNN with an FPN (Lin et al. 2017) on the zoo's resnet18, layers 1-4 as P2-P5 (P6, pooled from P5,
    for the RPN only); 28,380,856 parameters for 21 classes."""
    return _resnet_fpn("resnet18", num_classes, in_channels, image_size, roi_op, anchor_sizes, fpn_channels, **kwargs)


@_register("resnet50")
def fasterrcnn_resnet50_fpn(num_classes: int = 21, in_channels: int = 3, image_size: int = 600,
                            roi_op: str = "torchvision", anchor_sizes: tuple[int, ...] | None = None,
                            fpn_channels: int = 256, **kwargs) -> FasterRCNN:
    """Faster R-CNN with an FPN on the zoo's resnet50, layers 1-4: torchvision's fasterrcnn_resnet50_fpn (its state
    dict, key for key) but for anchors and image sizes; 41,449,656 parameters for 21 classes."""
    return _resnet_fpn("resnet50", num_classes, in_channels, image_size, roi_op, anchor_sizes, fpn_channels, **kwargs)


@_register("vgg16")
def fasterrcnn_vgg16(num_classes: int = 21, in_channels: int = 3, image_size: int = 600, roi_op: str = "torchvision",
                     anchor_sizes: tuple[int, ...] | None = None, init: str = "he", **kwargs) -> FasterRCNN:
    """The paper's detector (section 3.3): VGG-16's conv5_3 (stride 16, 512 channels, no FPN), RoI max pooling
    to 7x7 on it; the box head is torchvision's two 1024-wide layers, not VGG's fc6/fc7; 43,945,942 parameters."""
    # Both VGG variants have the same trunk but for pool5, which goes here; the small one's classifier,
    # discarded with it, reads 512 features instead of 25,088 (100 M fewer weights to initialise).
    # He's initialisation by default, as vgg16's recipe: without BatchNorm, torchvision's scale leaves a plain
    # VGG's signal too small to train from scratch (models/_common.py, plain_init_); the paper starts from ImageNet.
    network = create_model("vgg16", in_channels=in_channels, image_size=64, init=init)
    network.features[-1] = nn.Identity()  # pool5 goes: RoI pooling takes its place (Fast R-CNN, section 2.3)
    backbone = OneMapBackbone(network, "features", out_channels=512)
    return faster_rcnn(backbone, 1, num_classes, in_channels, image_size, roi_op, anchor_sizes, max_pool=True, **kwargs)


@_register("mobilenet_v2")
def fasterrcnn_mobilenet_v2(num_classes: int = 21, in_channels: int = 3, image_size: int = 600,
                            roi_op: str = "torchvision", anchor_sizes: tuple[int, ...] | None = None,
                            **kwargs) -> FasterRCNN:
    """Faster R-CNN on MobileNet v2's last map (1280 channels, stride 32; 16 up to 64 px), no FPN, RoIAlign 7x7:
    the torchvision tutorial's detector; 82,411,926 parameters, 64 M of them in the box head's first layer."""
    network = create_model("mobilenet_v2", in_channels=in_channels, image_size=image_size)
    backbone = OneMapBackbone(network, "features", out_channels=network.classifier[-1].in_features)
    return faster_rcnn(backbone, 1, num_classes, in_channels, image_size, roi_op, anchor_sizes, **kwargs)
