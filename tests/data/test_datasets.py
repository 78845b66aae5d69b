"""Every dataset loader on real files (MNIST, Fashion-MNIST) or files in the real format."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from convzoo.data import build_loaders, dataset_shape, get_dataset_spec, load_tensors, resolve_data_dir
from convzoo.errors import ConvzooError
from tests.conftest import require_dataset


@pytest.mark.parametrize(("name", "folder", "first_labels"), [
    ("mnist", "MNIST", [5, 0, 4, 1, 9]),  # the famous first digits of MNIST's training set
    ("fashion-mnist", "FashionMNIST", [9, 0, 0, 3, 0]),
])
def test_mnist_like_loaders_read_the_real_files(data_dir, name, folder, first_labels):
    require_dataset(data_dir, folder)
    spec = get_dataset_spec(name)
    train_images, train_labels = load_tensors(spec, train=True, data_dir=str(data_dir))
    test_images, test_labels = load_tensors(spec, train=False, data_dir=str(data_dir))
    assert train_images.shape == (60_000, 1, 28, 28) and train_images.dtype == torch.uint8
    assert test_images.shape == (10_000, 1, 28, 28)
    assert train_labels.tolist()[:5] == first_labels
    assert torch.bincount(test_labels).tolist() == [1000] * 10 if name == "fashion-mnist" else len(test_labels) == 10_000
    # The spec's normalisation constants are the dataset's own statistics.
    assert abs(train_images.float().mean().item() / 255 - spec.mean[0]) < 1e-3
    assert abs(train_images.float().std().item() / 255 - spec.std[0]) < 1e-3


def test_mnist_is_read_from_a_read_only_copy_of_the_archives(data_dir, tmp_path, monkeypatch):
    import torchvision.datasets.mnist

    require_dataset(data_dir, "MNIST")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (data_dir / "MNIST" / "raw").glob("t10k-*.gz"):
        (raw / path.name).write_bytes(path.read_bytes())

    def read_only(*args, **kwargs):  # what extracting into a read-only folder raises
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", read_only)
    images, labels = load_tensors(get_dataset_spec("mnist"), train=False, data_dir=str(tmp_path))
    assert images.shape == (10_000, 1, 28, 28) and labels[:3].tolist() == [7, 2, 1]


def write_cifar_files(root: Path, name: str, per_batch: int = 20) -> None:
    """Small files in the real CIFAR python format (pickled dicts of uint8 rows)."""
    rng = np.random.default_rng(0)
    folder, label_key, classes = {
        "cifar10": ("cifar-10-batches-py", "labels", 10),
        "cifar100": ("cifar-100-python", "fine_labels", 100),
    }[name]
    (root / folder).mkdir(parents=True)
    files = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]
    if name == "cifar100":
        files = ["train", "test"]
    for file in files:
        batch = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            label_key: rng.integers(0, classes, per_batch).tolist(),
        }
        (root / folder / file).write_bytes(pickle.dumps(batch))
    meta_file, meta_key = ("batches.meta", "label_names") if name == "cifar10" else ("meta", "fine_label_names")
    (root / folder / meta_file).write_bytes(pickle.dumps({meta_key: [f"class{i}" for i in range(classes)]}))


@pytest.mark.parametrize(("name", "train_count"), [("cifar10", 100), ("cifar100", 20)])
def test_cifar_loaders_read_files_in_the_real_format(tmp_path, monkeypatch, name, train_count):
    import torchvision.datasets.cifar

    write_cifar_files(tmp_path, name)
    # The test files cannot match the published MD5 sums; everything else is torchvision's real path.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    spec = get_dataset_spec(name)
    images, labels = load_tensors(spec, train=True, data_dir=str(tmp_path))
    assert images.shape == (train_count, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.long and int(labels.max()) < spec.num_classes
    # Rows are stored channel-major (1024 red, 1024 green, 1024 blue values).
    first_row = pickle.loads((tmp_path / next(p.name for p in tmp_path.iterdir()) / ("data_batch_1" if name == "cifar10" else "train")).read_bytes())["data"][0]
    assert torch.equal(images[0, 1].flatten(), torch.from_numpy(first_row[1024:2048].copy()))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_files_without_network_say_where_they_were_looked_for(tmp_path, monkeypatch, name):
    import torchvision.datasets.utils as utils

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(utils, "urlretrieve", offline, raising=False)
    monkeypatch.setattr(utils, "_urlretrieve", offline, raising=False)
    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ConvzooError) as raised:
        load_tensors(get_dataset_spec(name), train=False, data_dir=str(tmp_path / "empty"))
    message = str(raised.value)
    assert str(tmp_path / "empty") in message and "--data-dir" in message and "CONVZOO_DATA" in message


def test_data_dir_comes_from_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVZOO_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    monkeypatch.delenv("CONVZOO_DATA")
    assert resolve_data_dir(None).name == "data"


def test_unknown_dataset_is_a_one_line_error_listing_the_known_ones():
    with pytest.raises(ConvzooError) as raised:
        get_dataset_spec("mnsit")
    assert "'mnsit'" in str(raised.value) and "mnist" in str(raised.value) and "imagefolder:PATH" in str(raised.value)


def test_dataset_shape_is_known_without_loading():
    assert dataset_shape("cifar100") == (3, 32, 32, 100)
    assert dataset_shape("mnist") == (1, 28, 28, 10)


def test_image_folder_streams_with_imagenet_transforms(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
            folder = tmp_path / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(3):
                Image.new("RGB", (40 + index, 30), colour).save(folder / f"{index}.png")
    spec = get_dataset_spec(f"imagefolder:{tmp_path}", image_size=24)
    assert (spec.num_classes, spec.image_size, spec.in_memory) == (2, 24, False)
    loaders = build_loaders(spec, batch_size=2, eval_batch_size=4, device="cpu", num_workers=0)
    images, labels = next(iter(loaders.train))
    assert images.shape == (2, 3, 24, 24) and images.dtype == torch.float32
    test_images, test_labels = next(iter(loaders.test))
    assert test_images.shape == (4, 3, 24, 24)
    assert len(loaders.train) == 3  # 6 images, batch 2, drop_last
    with pytest.raises(ConvzooError, match="does not exist"):
        get_dataset_spec(f"imagefolder:{tmp_path / 'nope'}")


def test_image_folder_subsets_are_fixed_random_picks_across_classes(tmp_path):
    from PIL import Image

    from convzoo.data import fixed_random_subset

    for split in ("train", "val"):  # the same images in both splits
        for label in range(4):
            folder = tmp_path / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(25):
                Image.new("RGB", (8, 8), (label * 60, 0, 0)).save(folder / f"{index}.png")
    spec = get_dataset_spec(f"imagefolder:{tmp_path}", image_size=8)
    loaders = build_loaders(spec, batch_size=10, eval_batch_size=100, device="cpu", num_workers=0,
                            train_size=40, test_size=30)
    assert len(loaders.train) == 4  # 40 of the 100 images, batch 10
    test_labels = torch.cat([labels for _, labels in loaders.test])
    assert len(test_labels) == 30
    assert len(set(test_labels.tolist())) == 4  # the first 30 files would hold only classes 0 and 1
    again = fixed_random_subset(list(range(100)), 30)
    assert len(again) == 30 and list(again) == sorted(again) and list(again) != list(range(30))
    assert list(fixed_random_subset(list(range(100)), 30)) == list(again)  # the same pick every run
    assert fixed_random_subset(list(range(5)), 30) == list(range(5))
