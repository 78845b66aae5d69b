"""MNIST and Fashion-MNIST through torchvision, as uint8 tensors.

torchvision finds (or downloads) and verifies the four ``.gz`` files under
``ROOT/MNIST/raw`` and extracts them next to them. When that folder is read-only, the
verified archives are decoded in memory instead, so a shared read-only data folder works.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from convzoo.data.files import missing_data_error, no_new_empty_folders, quiet_stdout
from convzoo.engine.runtime import local_main_first

_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx_gz(path: Path) -> torch.Tensor:
    """Decode an IDX file (LeCun's format: magic, dimensions, then raw uint8 data)."""
    data = gzip.decompress(path.read_bytes())
    num_dims = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(num_dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * num_dims:]), dtype=torch.uint8).view(*dims)


def load_mnist_like(name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 of ``mnist`` or ``fashion-mnist``."""
    from torchvision import datasets

    dataset_class = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    try:
        with (
            local_main_first() as may_download,  # under torchrun one process per node downloads
            quiet_stdout(),
            no_new_empty_folders(root / dataset_class.__name__ / "raw"),
        ):
            dataset = dataset_class(str(root), train=train, download=may_download)
        images, labels = dataset.data, dataset.targets
    except PermissionError:
        raw = root / dataset_class.__name__ / "raw"
        image_file, label_file = _FILES[train]
        try:
            images = _read_idx_gz(raw / f"{image_file}.gz")
            labels = _read_idx_gz(raw / f"{label_file}.gz")
        except OSError as error:
            raise missing_data_error(name, root, error) from error
    except (OSError, RuntimeError) as error:
        raise missing_data_error(name, root, error) from error
    return images.unsqueeze(1).contiguous(), labels.long()
