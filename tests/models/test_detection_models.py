"""The detectors (models/detection.py): torchvision's Faster R-CNN on the zoo's backbones.

Each is built once, for 1x32x32 canvases and 3 classes (background and two), by a
module-scoped fixture; the images are bright squares on black, as the boxes say.
"""

from __future__ import annotations

import pytest
import torch

from convzoo.models.pretrained import backbone_prefix, load_pretrained, load_weights
from convzoo.registry import create_model, get_model_info, list_models

DETECTORS = [name for name in list_models() if get_model_info(name).task == "detection"]
SIDE, NUM_CLASSES = 32, 3
LOSSES = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}


def canvases(count: int, side: int = SIDE, seed: int = 0) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Black 1-channel canvases with one or two bright squares of 1/4 to 1/2 the side,
    labelled 1 when smaller than 3/8 of it and 2 when larger, and their targets in torchvision's format."""
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for index in range(count):
        image, boxes, labels = torch.zeros(1, side, side), [], []
        for _ in range(1 + index % 2):
            size = int(torch.randint(side // 4, side // 2, (1,), generator=generator))
            x, y = (int(value) for value in torch.randint(0, side - size, (2,), generator=generator))
            image[:, y:y + size, x:x + size] = 1.0
            boxes.append([x, y, x + size, y + size])
            labels.append(1 if size < 3 * side / 8 else 2)
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    return images, targets


@pytest.fixture(scope="module", params=DETECTORS)
def detector(request):
    torch.manual_seed(0)
    return request.param, create_model(request.param, num_classes=NUM_CLASSES, in_channels=1, image_size=SIDE)


def test_training_returns_torchvisions_losses_and_takes_an_image_without_objects(detector):
    _, model = detector
    images, targets = canvases(2)
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model.train()(images, targets)
    assert set(losses) == LOSSES
    assert all(torch.isfinite(loss) and loss >= 0 for loss in losses.values())
    sum(losses.values()).backward()
    model.zero_grad(set_to_none=True)


def test_eval_returns_boxes_in_the_input_images_pixels(detector):
    """A canvas of the built size and one of another (scaled inside, mapped back)."""
    _, model = detector
    images = [canvases(1)[0][0], torch.rand(1, 40, 24)]
    with torch.no_grad():
        detections = model.eval()(images)
    assert len(detections) == 2
    for image, found in zip(images, detections):
        height, width = image.shape[-2:]
        boxes, labels, scores = found["boxes"], found["labels"], found["scores"]
        assert boxes.shape == (len(labels), 4) and scores.shape == (len(labels),)
        assert len(labels) <= model.roi_heads.detections_per_img
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 0] <= boxes[:, 2]).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all() and (boxes[:, 1] <= boxes[:, 3]).all()
        assert ((labels >= 1) & (labels <= NUM_CLASSES - 1)).all()
        assert ((scores >= 0) & (scores <= 1)).all()


def test_the_transform_keeps_a_normalised_canvas_as_it_is(detector):
    """The loop hands over normalised images: no second normalisation, no resizing to 800."""
    _, model = detector
    image = torch.randn(1, SIDE, SIDE)
    batch, _ = model.transform.eval()([image])
    assert batch.image_sizes == [(SIDE, SIDE)]
    torch.testing.assert_close(batch.tensors[0, :, :SIDE, :SIDE], image)


def test_a_few_sgd_steps_lower_the_loss():
    torch.manual_seed(0)
    # 64 FPN channels (256 by default) keep the 12 steps to a few seconds.
    model = create_model("fasterrcnn_resnet18_fpn", num_classes=NUM_CLASSES, in_channels=1, image_size=SIDE,
                         fpn_channels=64).train()
    images, targets = canvases(2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(12):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert totals[-1] < 0.6 * totals[0], totals


@pytest.mark.parametrize("name, image_size, sizes, map_sides", [
    # Small-input stems (up to 64 px): ResNet's layer1 at stride 1, VGG's conv5_3 and MobileNet's last map at 16.
    ("fasterrcnn_resnet18_fpn", 64, ((8,), (16,), (32,), (64,), (128,)), [64, 32, 16, 8, 4]),
    ("fasterrcnn_vgg16", 64, ((8, 16, 32),), [4]),
    ("fasterrcnn_mobilenet_v2", 64, ((8, 16, 32),), [4]),
    # ImageNet stems: layer1 at stride 4, conv5_3 at 16 (the paper's), MobileNet's last map at 32.
    ("fasterrcnn_resnet50_fpn", 224, ((28,), (56,), (112,), (224,), (448,)), [56, 28, 14, 7, 4]),
    ("fasterrcnn_vgg16", 224, ((28, 56, 112),), [14]),
    ("fasterrcnn_mobilenet_v2", 224, ((28, 56, 112),), [7]),
])
def test_anchors_follow_the_canvas_on_maps_of_the_stems_strides(name, image_size, sizes, map_sides):
    with torch.device("meta"):
        model = create_model(name, num_classes=NUM_CLASSES, image_size=image_size).eval()
        maps = model.backbone(torch.empty(1, 3, image_size, image_size))
    assert model.rpn.anchor_generator.sizes == sizes
    assert model.rpn.anchor_generator.aspect_ratios == ((0.5, 1.0, 2.0),) * len(sizes)
    assert [feature.shape[-1] for feature in maps.values()] == map_sides
    assert model.transform.min_size == (image_size,) and model.transform.max_size == image_size
    small = image_size <= 64
    assert model.rpn.post_nms_top_n() == (100 if small else 1000)  # eval mode's
    assert model.roi_heads.detections_per_img == (20 if small else 100)


def test_a_zoo_classification_checkpoint_loads_into_the_backbone(tmp_path):
    torch.manual_seed(0)
    classifier = create_model("resnet18", num_classes=10, in_channels=1, image_size=SIDE)
    torch.save({"model": classifier.state_dict()}, tmp_path / "best.pt")
    model = create_model("fasterrcnn_resnet18_fpn", num_classes=NUM_CLASSES, in_channels=1, image_size=SIDE)
    fit = load_pretrained(model, "fasterrcnn_resnet18_fpn", str(tmp_path / "best.pt"))
    body = model.backbone.body.state_dict()
    assert all(torch.equal(body[key], value) for key, value in classifier.state_dict().items() if key in body)
    assert len(body) == len(fit.loaded) == len(classifier.state_dict()) - 2  # all but fc.weight, fc.bias
    assert "beside the backbone" in fit.line()


def test_a_detection_checkpoint_for_other_classes_loads_all_but_the_box_predictor():
    source = create_model("fasterrcnn_resnet18_fpn", num_classes=5, in_channels=1, image_size=SIDE, fpn_channels=64)
    model = create_model("fasterrcnn_resnet18_fpn", num_classes=NUM_CLASSES, in_channels=1, image_size=SIDE,
                         fpn_channels=64)
    fit = load_weights(model, "fasterrcnn_resnet18_fpn", source.state_dict(), "a detector for 5 classes")
    assert {key.rsplit(".", 2)[0] for key in fit.head} == {"roi_heads.box_predictor"}
    assert fit.num_classes == NUM_CLASSES and len(fit.loaded) == fit.total - 4


def test_an_unknown_roi_op_is_refused():
    with pytest.raises(ValueError, match="roi_op"):
        create_model("fasterrcnn_resnet18_fpn", num_classes=NUM_CLASSES, in_channels=1, image_size=SIDE, roi_op="numpy")


@pytest.mark.parametrize("name", DETECTORS)
def test_convzoos_roi_op_pools_as_torchvisions(name):
    pytest.importorskip("convzoo.ops.roi")
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=1, image_size=SIDE, roi_op="scratch")
    torch.manual_seed(0)
    reference = create_model(name, num_classes=NUM_CLASSES, in_channels=1, image_size=SIDE)
    pooler = model.roi_heads.box_roi_pool
    assert type(pooler).__module__.startswith("convzoo.ops") or pooler.pool.__module__ == "convzoo.ops.roi"
    images = [torch.rand(1, SIDE, SIDE)]
    with torch.no_grad():
        features = reference.eval().backbone(torch.stack(images))
        proposals = [torch.tensor([[2.0, 3.0, 20.0, 17.5], [0.0, 0.0, 32.0, 32.0]])]
        expected = reference.roi_heads.box_roi_pool(features, proposals, [(SIDE, SIDE)])
        got = model.roi_heads.box_roi_pool(features, proposals, [(SIDE, SIDE)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_resnet50_fpn_has_torchvisions_state_dict():
    """Key for key and shape for shape, as torchvision builds it untrained (with trainable
    BatchNorm; it freezes BatchNorm only under pretrained weights)."""
    import torchvision

    with torch.device("meta"):
        ours = create_model("fasterrcnn_resnet50_fpn", num_classes=91).state_dict()
        theirs = torchvision.models.detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    assert {key: value.shape for key, value in ours.items()} == {key: value.shape for key, value in theirs.items()}


def test_torchvisions_imagenet_weights_load_into_the_backbone(monkeypatch):
    """``--weights torchvision`` on a detector: its backbone's ImageNet weights (downloaded, in
    use; here torchvision's untrained resnet18 stands in for them)."""
    import torchvision

    get_model = torchvision.models.get_model
    monkeypatch.setattr(torchvision.models, "get_model", lambda name, weights=None: get_model(name, weights=None))
    torch.manual_seed(0)
    model = create_model("fasterrcnn_resnet18_fpn", num_classes=NUM_CLASSES, image_size=224, fpn_channels=64)
    fit = load_pretrained(model, "fasterrcnn_resnet18_fpn", "torchvision")
    assert fit.source == "torchvision resnet18 (ImageNet)" and backbone_prefix("fasterrcnn_resnet18_fpn") == "backbone.body."
    assert len(fit.loaded) == len(model.backbone.body.state_dict())
