"""MNIST and Fashion-MNIST read straight from their IDX files, without torchvision's
datasets (whose import costs seconds): the same tensors torchvision gives, from extracted
files or the archives alone, and a one-line error for a damaged file."""

import gzip
import shutil

import pytest
import torch

from convzoo.data.mnist import load_mnist_like
from convzoo.errors import ConvzooError
from tests.conftest import require_dataset


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
def test_the_files_read_directly_equal_torchvisions_dataset(data_dir, name, folder, train):
    from torchvision import datasets

    require_dataset(data_dir, folder)
    images, labels = load_mnist_like(name, data_dir, train)
    reference = getattr(datasets, folder)(str(data_dir), train=train, download=False)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(images, reference.data.unsqueeze(1))
    assert torch.equal(labels, reference.targets)


def test_the_archives_alone_are_enough(data_dir, tmp_path):
    require_dataset(data_dir, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        source = data_dir / "MNIST" / "raw" / stem
        with (source.open("rb") if source.is_file() else gzip.open(f"{source}.gz")) as plain, \
                gzip.open(raw / f"{stem}.gz", "wb") as archive:
            shutil.copyfileobj(plain, archive)
    images, labels = load_mnist_like("mnist", tmp_path, train=False)
    expected_images, expected_labels = load_mnist_like("mnist", data_dir, train=False)
    assert torch.equal(images, expected_images) and torch.equal(labels, expected_labels)


def test_a_truncated_file_is_a_one_line_error_naming_it(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    header = bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    (raw / "t10k-images-idx3-ubyte").write_bytes(header + bytes(100))  # 10 images promised, 100 bytes given
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(10))
    with pytest.raises(ConvzooError, match=r"t10k-images-idx3-ubyte holds 100 bytes of data.*7840.*download it afresh"):
        load_mnist_like("fashion-mnist", tmp_path, train=False)
