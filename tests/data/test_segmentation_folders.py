"""``voc:PATH`` and ``segfolder:PATH``: small files in the real formats (JPEG images, palette
PNG masks with void), read end to end through ``build_loaders``."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convzoo.data import build_loaders, get_dataset_spec
from convzoo.data.class_names import dataset_class_names
from convzoo.data.segmentation import VOC_CLASSES, VOID, voc_files
from convzoo.errors import ConvzooError

BLOCK = 16
"""Side of the squares of one class in the test pictures: big enough to survive a 3x downscale."""


def voc_palette() -> list[int]:
    """Pascal VOC's colour map (its devkit's ``labelcolormap``): class bits spread over R, G, B."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [red, green, blue]
    return palette


def class_pattern(height: int, width: int, seed: int) -> np.ndarray:
    """Classes 0-9 in squares that tell left from right and top from bottom, with a void
    outline around the first square, as VOC outlines objects."""
    rows, cols = np.arange(height)[:, None] // BLOCK, np.arange(width)[None, :] // BLOCK
    mask = ((cols + 3 * rows + seed) % 10).astype(np.uint8)
    mask[BLOCK - 1, :BLOCK] = VOID
    return mask


def encoded_image(mask: np.ndarray) -> Image.Image:
    """A grey picture whose pixel values say the class (24 grey levels apart), void light grey."""
    values = np.where(mask == VOID, 250, mask.astype(np.int32) * 24 + 10).astype(np.uint8)
    return Image.fromarray(np.stack([values] * 3, -1), "RGB")


def decode(images: torch.Tensor, mean, std) -> torch.Tensor:
    grey = images[:, 0] * std[0] + mean[0]
    return ((grey * 255 - 10) / 24).round().long()


SIZES = [(48, 64), (64, 48), (80, 56), (56, 72)]  # (height, width)


@pytest.fixture
def voc_root(tmp_path) -> Path:
    """VOC 2012 as its archive extracts (ROOT/VOCdevkit/VOC2012), four training and two validation images."""
    folder = tmp_path / "VOCdevkit" / "VOC2012"
    for name in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / name).mkdir(parents=True)
    ids = {"train": [f"2007_00{index}" for index in range(4)], "val": ["2008_000", "2008_001"]}
    for split, names in ids.items():
        (folder / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for index, name in enumerate(names):
            mask = class_pattern(*SIZES[index], seed=index)
            encoded_image(mask).save(folder / "JPEGImages" / f"{name}.jpg", quality=95)
            png = Image.fromarray(mask, "P")
            png.putpalette(voc_palette())
            png.save(folder / "SegmentationClass" / f"{name}.png")
    return tmp_path


@pytest.fixture
def seg_folder(tmp_path) -> Path:
    root = tmp_path / "seg"
    for split, count in (("train", 4), ("val", 2)):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for index in range(count):
            mask = class_pattern(*SIZES[index], seed=index + 5)
            mask[mask == 9] = 6  # the largest class of these masks is 8
            encoded_image(mask).save(root / split / "images" / f"photo{index}.jpg", quality=95)
            Image.fromarray(mask, "L").save(root / split / "masks" / f"photo{index}.png")
    return root


def loaders(name, image_size=32, **options):
    spec = get_dataset_spec(name, image_size=image_size)
    values = dict(batch_size=2, eval_batch_size=2, device="cpu", num_workers=0, targets="masks")
    return spec, build_loaders(spec, **(values | options))


@pytest.mark.parametrize("where", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc_is_found_from_any_folder_of_its_archive(voc_root, where):
    spec = get_dataset_spec(f"voc:{voc_root / where}")
    assert (spec.num_classes, spec.channels, spec.image_size, spec.targets) == (21, 3, 256, ("masks",))
    assert dataset_class_names(spec) == VOC_CLASSES and VOC_CLASSES[15] == "person"


def test_voc_lists_the_files_torchvision_lists(voc_root):
    from torchvision.datasets import VOCSegmentation

    for train, image_set in ((True, "train"), (False, "val")):
        theirs = VOCSegmentation(str(voc_root), year="2012", image_set=image_set)
        assert voc_files(voc_root, train) == (theirs.images, theirs.masks)


def test_voc_evaluation_keeps_the_palette_indices_and_void(voc_root):
    """At its own size a validation mask comes back index for index, void (255) included, and
    the padding of a non-square image is void too."""
    spec, built = loaders(f"voc:{voc_root}", image_size=64)
    images, masks = next(iter(built.test))
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32
    assert masks.shape == (2, 64, 64) and masks.dtype == torch.int64
    first = torch.from_numpy(class_pattern(48, 64, seed=0)).long()
    assert torch.equal(masks[0, :48], first) and (masks[0, 48:] == VOID).all()
    second = torch.from_numpy(class_pattern(64, 48, seed=1)).long()
    assert torch.equal(masks[1, :, :48], second) and (masks[1, :, 48:] == VOID).all()
    assert (masks == VOID).any() and set(masks.unique().tolist()) <= set(range(10)) | {VOID}
    # The images' pixels say the same classes (JPEG keeps flat squares to within a grey level).
    decoded = decode(images, spec.mean, spec.std)
    assert torch.equal(decoded[0, :48][first != VOID], first[first != VOID])


@pytest.mark.parametrize("dataset", ["voc", "segfolder"])
def test_training_crops_and_flips_move_image_and_mask_together(voc_root, seg_folder, dataset):
    path = voc_root if dataset == "voc" else seg_folder
    spec, built = loaders(f"{dataset}:{path}", image_size=48)
    # Agreement of the decoded image with the mask as it comes, flipped, and moved one pixel
    # either way along each axis: the mask must fit its image better than any of those.
    moves = {"as is": lambda t: t, "flipped": lambda t: t.flip(-1)}
    for axis in (-1, -2):
        moves[f"{axis} +1"] = lambda t, axis=axis: t.roll(1, axis)
        moves[f"{axis} -1"] = lambda t, axis=axis: t.roll(-1, axis)
    agree, total = dict.fromkeys(moves, 0), 0
    for epoch in range(3):
        built.train.set_epoch(epoch)
        for images, masks in built.train:
            assert images.shape == (2, 3, 48, 48) and masks.shape == (2, 48, 48) and masks.dtype == torch.int64
            labelled = masks != VOID
            decoded = decode(images, spec.mean, spec.std)
            for name, move in moves.items():
                agree[name] += (move(decoded) == masks)[labelled].sum().item()
            total += labelled.sum().item()
    # Only pixels where resizing blends two squares may disagree (as is: 94 %; one pixel off: 88-90 %).
    assert agree["as is"] / total > 0.9
    assert agree["flipped"] / total < 0.5
    assert all(agree["as is"] > count + 0.02 * total for name, count in agree.items() if name != "as is"), agree


def test_segmentation_epochs_resume_at_any_batch_as_they_were(seg_folder):
    """Each image's crop comes from (seed, epoch, index): an epoch entered at batch 1 yields
    what an uninterrupted one yields there (data/resumable.py), as for image folders."""
    _, whole = loaders(f"segfolder:{seg_folder}", seed=5)
    whole.train.set_epoch(2)
    batches = list(whole.train)
    _, resumed = loaders(f"segfolder:{seg_folder}", seed=5)
    resumed.train.set_epoch(2, start_step=1)
    again = list(resumed.train)
    assert len(again) == len(batches) - 1
    for (images, masks), (images_again, masks_again) in zip(batches[1:], again):
        assert torch.equal(images, images_again) and torch.equal(masks, masks_again)


def test_segfolder_classes_come_from_classes_txt_else_the_masks(seg_folder):
    spec = get_dataset_spec(f"segfolder:{seg_folder}")
    assert spec.num_classes == 9 and dataset_class_names(spec) == tuple(str(index) for index in range(9))
    (seg_folder / "classes.txt").write_text("\n".join(f"kind{index}" for index in range(12)) + "\n")
    named = get_dataset_spec(f"segfolder:{seg_folder}")
    assert named.num_classes == 12 and dataset_class_names(named)[11] == "kind11"


def test_segfolder_streams_through_a_worker(seg_folder):
    _, built = loaders(f"segfolder:{seg_folder}", num_workers=1)
    try:
        images, masks = next(iter(built.test))
        assert images.shape == (2, 3, 32, 32) and masks.dtype == torch.int64
    finally:
        built.close()


def test_segmentation_layouts_are_explained_when_wrong(tmp_path, seg_folder):
    with pytest.raises(ConvzooError, match="no JPEGImages/"):
        get_dataset_spec(f"voc:{tmp_path}")
    (tmp_path / "VOC2012" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(ConvzooError, match="has no SegmentationClass or ImageSets"):
        get_dataset_spec(f"voc:{tmp_path}")
    (seg_folder / "val" / "masks" / "photo1.png").unlink()
    with pytest.raises(ConvzooError, match="1 images of .* have no mask of the same name.*photo1.jpg"):
        get_dataset_spec(f"segfolder:{seg_folder}")
    with pytest.raises(ConvzooError, match="has no train/"):
        get_dataset_spec(f"segfolder:{seg_folder / 'train'}")
    with pytest.raises(ConvzooError, match="has no masks"):
        build_loaders(get_dataset_spec("mnist"), batch_size=2, eval_batch_size=2, device="cpu", targets="masks")
