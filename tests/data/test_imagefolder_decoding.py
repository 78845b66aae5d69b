"""Image folders decoded as uint8 tensors (``torchvision.io`` + ``transforms.v2``) give what
torchvision's PIL pipeline gives: the same files and labels, the same evaluation images up
to one grey level of resampling; formats ``torchvision.io`` cannot read go through PIL."""

from __future__ import annotations

import pytest
import torch

from convzoo.data.image_decoding import read_image
from convzoo.data.imagefolder import build_imagefolder_dataset, imagefolder_spec

ONE_GREY_LEVEL = 1 / 255 / 0.224
"""One step of 8-bit intensity after ImageNet normalisation (the smallest std, green's)."""


@pytest.mark.parametrize("image_size", [32, 64])
def test_tensor_and_pil_decoders_agree_on_files_labels_and_evaluation_images(image_folder, image_size, one_thread):
    spec = imagefolder_spec(str(image_folder), image_size=image_size)
    tensor_set = build_imagefolder_dataset(spec, train=False, augment=False, decoder="tensor")
    pil_set = build_imagefolder_dataset(spec, train=False, augment=False, decoder="pil")
    assert tensor_set.samples == pil_set.samples and tensor_set.class_to_idx == pil_set.class_to_idx
    for index in range(len(tensor_set)):
        (image, label), (reference, reference_label) = tensor_set[index], pil_set[index]
        assert label == reference_label
        assert image.shape == reference.shape == (3, image_size, image_size) and image.dtype == torch.float32
        difference = (image - reference).abs()
        # Measured on this fixture and on 300x250 photo-like JPEGs: mean below 1e-3, max one grey level.
        assert difference.mean() < 0.01 and difference.max() <= ONE_GREY_LEVEL + 1e-4


def test_training_images_are_random_crops_of_the_right_shape(image_folder, one_thread):
    spec = imagefolder_spec(str(image_folder), image_size=32)
    dataset = build_imagefolder_dataset(spec, train=True, augment=True, decoder="tensor")
    torch.manual_seed(0)
    first, _ = dataset[0]
    second, _ = dataset[0]
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert not torch.equal(first, second)  # drawn anew on every read


def test_grey_palette_alpha_and_pil_only_formats_become_rgb_uint8(tmp_path):
    from PIL import Image

    colour = Image.new("RGB", (13, 9), (200, 60, 40))
    files = {
        "grey.jpg": colour.convert("L"), "palette.png": colour.convert("P"), "alpha.png": colour.convert("RGBA"),
        "grey.png": colour.convert("L"), "picture.bmp": colour, "picture.tiff": colour, "anim.gif": colour,
    }
    for name, image in files.items():
        image.save(tmp_path / name)
    for name in files:
        image = read_image(str(tmp_path / name))
        assert image.shape == (3, 9, 13) and image.dtype == torch.uint8, name
    assert read_image(str(tmp_path / "picture.bmp"))[:, 0, 0].tolist() == [200, 60, 40]
    assert read_image(str(tmp_path / "alpha.png"))[:, 0, 0].tolist() == [200, 60, 40]


def test_a_file_whose_suffix_lies_is_read_by_pil(tmp_path):
    from PIL import Image

    Image.new("RGB", (5, 4), (1, 2, 3)).save(tmp_path / "really-a-bmp.png", format="BMP")
    assert read_image(str(tmp_path / "really-a-bmp.png"))[:, 0, 0].tolist() == [1, 2, 3]
