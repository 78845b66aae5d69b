"""CIFAR-10 and CIFAR-100 through torchvision, as uint8 tensors (N, 3, 32, 32)."""

from __future__ import annotations

from pathlib import Path

import torch

from convzoo.data.files import missing_data_error, no_new_empty_folders, one_writer_at_a_time, quiet_stdout


def load_cifar(name: str, root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision import datasets

    dataset_class = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        with no_new_empty_folders(root), quiet_stdout():
            try:
                dataset = dataset_class(str(root), train=train, download=False)
            except RuntimeError:  # missing, or being written: download, one process at a time per data folder
                with one_writer_at_a_time(root):
                    dataset = dataset_class(str(root), train=train, download=True)
    except (OSError, RuntimeError) as error:
        raise missing_data_error(name, root, error) from error
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(dataset.targets, dtype=torch.long)
