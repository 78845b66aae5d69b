"""``mnist-scenes`` from the real MNIST files: what the segmentation and detection tasks rely on."""

import dataclasses

import pytest
import torch

from convzoo.data import build_loaders, get_dataset_spec, load_tensors
from convzoo.data.class_names import dataset_class_names
from convzoo.data.mnist import load_mnist_like
from convzoo.data.scenes import (
    MAX_DIGITS, THRESHOLD, Scenes, cache_path, compose_scenes, digit_side_range, generate_scenes, load_scenes,
    split_seed,
)
from convzoo.errors import ConvzooError
from tests.conftest import require_dataset


@pytest.fixture
def scenes_dir(data_dir, tmp_path):
    """A data folder holding the real MNIST (linked) where the scenes' cache may be written."""
    require_dataset(data_dir, "MNIST")
    (tmp_path / "MNIST").symlink_to(data_dir / "MNIST")
    return tmp_path


@pytest.fixture(scope="module")
def mnist_splits():
    from tests.conftest import real_data_dir

    root = real_data_dir()
    if root is None or not (root / "MNIST" / "raw").is_dir():
        pytest.skip("real MNIST not found: set CONVZOO_DATA to the folder holding MNIST/")
    return {train: load_mnist_like("mnist", root, train) for train in (True, False)}


def scenes_of(mnist_splits, train, count=300, image_size=64):
    digits, labels = mnist_splits[train]
    return generate_scenes(digits, labels, count, image_size=image_size, seed=split_seed(train))


def test_scenes_are_the_same_for_the_same_seed_and_differ_between_splits(mnist_splits, one_thread):
    first, again = scenes_of(mnist_splits, True), scenes_of(mnist_splits, True)
    for field in dataclasses.fields(Scenes):
        assert torch.equal(getattr(first, field.name), getattr(again, field.name)), field.name
    assert not torch.equal(first.images, scenes_of(mnist_splits, False).images)


def test_every_digit_is_the_mnist_digit_of_its_own_split_scaled_where_it_says(mnist_splits, one_thread):
    """No leakage: recomposing each scene from the MNIST digits it names, of its own split,
    scaled by ``F.interpolate`` and placed where it says, gives the scene's exact pixels."""
    for train in (True, False):
        scenes = scenes_of(mnist_splits, train, count=100)
        digits, digit_labels = mnist_splits[train]
        assert scenes.digit_indices.max() < len(digits)
        for scene in range(len(scenes)):
            canvas = torch.zeros(64, 64, dtype=torch.uint8)
            for slot in range(scenes.counts[scene]):
                index = scenes.digit_indices[scene, slot]
                top, left, side = scenes.placements[scene, slot].tolist()
                scaled = torch.nn.functional.interpolate(digits[index][None].float(), size=(side, side),
                                                         mode="bilinear", align_corners=False)
                scaled = scaled.round().clamp(0, 255).to(torch.uint8)[0, 0]
                canvas[top:top + side, left:left + side] = canvas[top:top + side, left:left + side].maximum(scaled)
                assert scenes.labels[scene, slot] == digit_labels[index] + 1
            assert torch.equal(canvas, scenes.images[scene, 0]), (train, scene)
    # The test scenes name test digits: the training digits of the same indices are other pictures.
    test_scenes = scenes_of(mnist_splits, False, count=20)
    first = test_scenes.digit_indices[:, 0]
    assert not torch.equal(mnist_splits[True][0][first], mnist_splits[False][0][first])


def test_masks_instances_and_boxes_agree(mnist_splits, one_thread):
    scenes = scenes_of(mnist_splits, True, count=500)
    counts = scenes.counts
    assert counts.min() >= 1 and counts.max() == MAX_DIGITS and set(counts.tolist()) == {1, 2, 3, 4}
    assert set(scenes.masks.unique().tolist()) <= set(range(11)) and scenes.masks.dtype == torch.uint8
    assert scenes.images.shape == (500, 1, 64, 64) and scenes.images.dtype == torch.uint8
    assert scenes.boxes.shape == (500, MAX_DIGITS, 4) and scenes.boxes.dtype == torch.float32
    low, high = digit_side_range(64)
    for scene in range(len(scenes)):
        count = counts[scene].item()
        labels = scenes.labels[scene]
        assert (labels[:count] >= 1).all() and (labels[count:] == -1).all()
        assert (scenes.boxes[scene, count:] == 0).all() and (scenes.digit_indices[scene, count:] == -1).all()
        instances = scenes.instances[scene]
        assert instances.max() == count
        # The class mask is the instance map with each instance's label.
        expected = torch.cat([torch.zeros(1, dtype=torch.long), labels[:count]])[instances.long()]
        assert torch.equal(scenes.masks[scene].long(), expected)
        for slot in range(count):
            rows, cols = (instances == slot + 1).nonzero(as_tuple=True)
            tight = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert scenes.boxes[scene, slot].tolist() == [float(value) for value in tight]
            top, left, side = scenes.placements[scene, slot].tolist()
            assert low <= side <= high
            assert left <= tight[0] and top <= tight[1] and tight[2] <= left + side and tight[3] <= top + side
        # Where a digit is, the image is at least the threshold (the upper digit's or brighter).
        assert (scenes.images[scene, 0][instances > 0] >= THRESHOLD).all()


def test_a_fully_hidden_digit_leaves_the_scene(mnist_splits):
    """A digit drawn exactly under a copy of itself owns no pixel: it is dropped (no box, no
    instance id, no trace in the image), and the digits above it are numbered from 1."""
    digits, labels = mnist_splits[True]
    chosen = torch.tensor([[0, 0, 1, 0]])
    sides = torch.tensor([[28, 28, 20, 28]])
    corners = torch.tensor([[[5, 5], [5, 5], [40, 40], [0, 0]]])
    drawn = torch.tensor([[True, True, True, False]])
    scenes = Scenes(*compose_scenes(digits, labels, chosen, sides, corners, drawn, 64))
    assert scenes.counts.tolist() == [2] and scenes.digit_indices.tolist() == [[0, 1, -1, -1]]
    assert scenes.placements[0, :2].tolist() == [[5, 5, 28], [40, 40, 20]]
    assert scenes.instances.max() == 2 and (scenes.boxes[0, 2:] == 0).all()
    without_hidden = torch.tensor([[False, True, True, False]])
    alone = Scenes(*compose_scenes(digits, labels, chosen, sides, corners, without_hidden, 64))
    assert torch.equal(scenes.images, alone.images) and torch.equal(scenes.masks, alone.masks)


def test_scenes_take_the_configured_canvas_size(scenes_dir, one_thread):
    spec = get_dataset_spec("mnist-scenes", image_size=32)
    assert (spec.image_size, spec.channels, spec.num_classes) == (32, 1, 11)
    assert dataset_class_names(spec) == ("background", *"0123456789")
    images, masks = load_tensors(spec, train=False, data_dir=str(scenes_dir), size=50, targets="masks")
    assert images.shape == (50, 1, 32, 32) and masks.shape == (50, 32, 32)
    _, boxes = load_tensors(spec, train=False, data_dir=str(scenes_dir), size=50, targets="boxes")
    real = boxes[..., 4] >= 0
    assert boxes.shape == (50, MAX_DIGITS, 5) and boxes.dtype == torch.float32
    assert (boxes[..., 2] - boxes[..., 0])[real].max() <= digit_side_range(32)[1] == 20
    assert (boxes[..., 4][~real] == -1).all() and (boxes[..., :4][real] >= 0).all() and (boxes[..., :4] <= 32).all()


def test_each_split_is_made_of_its_own_mnist_split(scenes_dir, mnist_splits, one_thread):
    """``load_scenes`` (what ``load_tensors`` serves) draws the training scenes from MNIST's
    training digits and the test scenes from its test digits, each with its split's seed."""
    for train in (True, False):
        loaded = load_scenes(train=train, data_dir=scenes_dir, size=30)
        assert torch.equal(loaded.images, scenes_of(mnist_splits, train, count=30).images)


def test_scenes_are_cached_atomically_and_read_back_identical(scenes_dir, one_thread):
    from convzoo.data.scenes import _load_scenes

    _load_scenes.cache_clear()
    generated = load_scenes(train=False, data_dir=scenes_dir, size=40)
    path = cache_path(scenes_dir.absolute(), False, 40, 64)
    assert path.is_file() and [file.name for file in path.parent.iterdir()] == [path.name]  # no temporary left
    _load_scenes.cache_clear()
    stamp = path.stat().st_mtime_ns
    cached = load_scenes(train=False, data_dir=scenes_dir, size=40)
    assert path.stat().st_mtime_ns == stamp  # read, not written again
    for field in dataclasses.fields(Scenes):
        assert torch.equal(getattr(cached, field.name), getattr(generated, field.name)), field.name
    # A damaged file is not trusted: the scenes are generated again, the same.
    path.write_bytes(path.read_bytes()[:1000])
    _load_scenes.cache_clear()
    assert torch.equal(load_scenes(train=False, data_dir=scenes_dir, size=40).masks, generated.masks)
    _load_scenes.cache_clear()


def test_loaders_carry_masks_and_boxes_in_place_of_labels(scenes_dir, one_thread):
    spec = get_dataset_spec("mnist-scenes")
    common = dict(batch_size=8, eval_batch_size=16, device="cpu", data_dir=str(scenes_dir), train_size=64,
                  test_size=20)
    images, masks = load_tensors(spec, train=False, data_dir=str(scenes_dir), size=20, targets="masks")
    _, boxes = load_tensors(spec, train=False, data_dir=str(scenes_dir), size=20, targets="boxes")
    loaders = build_loaders(spec, targets="masks", **common)
    batch_images, batch_masks = next(iter(loaders.test))
    assert batch_images.shape == (16, 1, 64, 64) and batch_images.dtype == torch.float32
    assert batch_masks.dtype == torch.int64 and torch.equal(batch_masks, masks[:16].long())
    # A fixed-size model's padding: masks padded with background, boxes moved with their image.
    loaders = build_loaders(spec, targets="masks", pad_to=70, **common)
    _, padded_masks = next(iter(loaders.test))
    assert padded_masks.shape == (16, 70, 70) and torch.equal(padded_masks[:, 3:67, 3:67], masks[:16].long())
    assert padded_masks.sum() == masks[:16].long().sum()
    loaders = build_loaders(spec, targets="boxes", pad_to=70, **common)
    _, padded_boxes = next(iter(loaders.test))
    real = boxes[:16, :, 4] >= 0
    assert torch.equal(padded_boxes[..., :4][real], boxes[:16, :, :4][real] + 3)
    assert torch.equal(padded_boxes[~real], boxes[:16][~real])
    # Training batches keep each image with its own mask, whatever the order.
    train_images, train_masks = load_tensors(spec, train=True, data_dir=str(scenes_dir), size=64, targets="masks")
    loaders = build_loaders(spec, targets="masks", seed=3, **common)
    for batch_images, batch_masks in loaders.train:
        pixels = torch.round(batch_images * spec.std[0] * 255 + spec.mean[0] * 255).to(torch.uint8)
        for image, mask in zip(pixels, batch_masks):
            match = (train_images == image).flatten(1).all(1).nonzero()
            assert torch.equal(train_masks[match[0, 0]].long(), mask)


def test_scenes_refuse_what_they_do_not_have(scenes_dir):
    spec = get_dataset_spec("mnist-scenes")
    with pytest.raises(ConvzooError, match="has no labels"):
        load_tensors(spec, train=False, data_dir=str(scenes_dir), size=10)
    with pytest.raises(ConvzooError, match="has no masks"):
        load_tensors(get_dataset_spec("mnist"), train=False, data_dir=str(scenes_dir), targets="masks")
    common = dict(batch_size=8, eval_batch_size=8, device="cpu", data_dir=str(scenes_dir), targets="masks")
    with pytest.raises(ConvzooError, match="auto_augment"):
        build_loaders(spec, auto_augment="trivialaugment", **common)
    with pytest.raises(ConvzooError, match="moves images but not their masks"):
        build_loaders(dataclasses.replace(spec, augmentation="crop_flip"), **common)
