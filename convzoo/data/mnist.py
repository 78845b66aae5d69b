"""MNIST and Fashion-MNIST in torchvision's layout, as uint8 tensors.

Files already on disk (``ROOT/MNIST/raw``'s IDX files, extracted or ``.gz``) are read
directly, in the few lines LeCun's format needs: importing torchvision's datasets took
3.0 s on our 2-core CPU, as it pulls in ``torch._dynamo``. ``eval``, ``explain`` and
``attack`` on MNIST import neither and save all of it; training saves 0.3 s of it, since
torch's optimisers import ``torch._dynamo`` on their first step anyway.
Missing files are left to torchvision, which downloads, verifies and extracts them, one
process at a time per data folder (``one_writer_at_a_time``): under torchrun, whether the
folder is shared by every node or each node has its own; when the folder is read-only,
the verified archives are decoded in memory instead, so a shared read-only data folder works.
"""

from __future__ import annotations

import contextlib
import gzip
import math
from pathlib import Path

import torch

from convzoo.data.files import missing_data_error, no_new_empty_folders, one_writer_at_a_time, quiet_stdout
from convzoo.errors import ConvzooError

_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
"""torchvision's folder (its dataset class's name) for each dataset."""


def _decode_idx(data: bytes, path: Path) -> torch.Tensor:
    """Decode IDX bytes (LeCun's format: two zero bytes, the type 0x08 for uint8, the number
    of dimensions, each dimension as a big-endian int32, then the data)."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an IDX file of uint8 data")
    num_dims = data[3]
    header = 4 + 4 * num_dims
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(num_dims)]
    if len(data) - header != math.prod(dims):
        raise ValueError(f"{path} holds {len(data) - header} bytes of data, its header promises {math.prod(dims)}")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).view(*dims)


def _read_idx_gz(path: Path) -> torch.Tensor:
    return _decode_idx(gzip.decompress(path.read_bytes()), path)


def _read_idx(path: Path) -> torch.Tensor:
    return _decode_idx(path.read_bytes(), path)


def read_local_files(name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The split's images and labels from the files under ``ROOT/<folder>/raw`` (extracted
    first, else the archives), or None when they are not all there."""
    raw = root / _FOLDERS[name] / "raw"
    image_file, label_file = _FILES[train]
    for suffix, read in (("", _read_idx), (".gz", _read_idx_gz)):
        images_path, labels_path = raw / f"{image_file}{suffix}", raw / f"{label_file}{suffix}"
        if images_path.is_file() and labels_path.is_file():
            try:
                return read(images_path), read(labels_path)
            except (OSError, ValueError, EOFError, gzip.BadGzipFile) as error:
                raise ConvzooError(
                    f"cannot read {name}: {error}. Delete the damaged file and run again to download it afresh."
                ) from None
    return None


def load_mnist_like(name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 of ``mnist`` or ``fashion-mnist``."""
    with contextlib.suppress(ConvzooError):  # a file still being written by another process: read below, after it
        found = read_local_files(name, root, train)
        if found is not None:
            images, labels = found
            return images.unsqueeze(1).contiguous(), labels.long()
    from torchvision import datasets

    dataset_class = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    image_file, label_file = _FILES[train]
    wanted = (f"the {'training' if train else 'test'} split: {dataset_class.__name__}/raw/{image_file} and "
              f"{label_file}, or their .gz")
    try:
        with (
            no_new_empty_folders(root / dataset_class.__name__ / "raw"),
            one_writer_at_a_time(root),
            quiet_stdout(),
        ):
            found = read_local_files(name, root, train)  # written meanwhile by the process before
            if found is None:
                dataset = dataset_class(str(root), train=train, download=True)
                found = dataset.data, dataset.targets
        images, labels = found
    except PermissionError:
        raw = root / dataset_class.__name__ / "raw"
        try:
            images = _read_idx_gz(raw / f"{image_file}.gz")
            labels = _read_idx_gz(raw / f"{label_file}.gz")
        except OSError as error:
            raise missing_data_error(name, root, error, wanted) from error
    except (OSError, RuntimeError) as error:
        raise missing_data_error(name, root, error, wanted) from error
    return images.unsqueeze(1).contiguous(), labels.long()
