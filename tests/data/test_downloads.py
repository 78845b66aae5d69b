"""Downloads under torchrun: one process at a time per data folder fetches (a file lock), the
others then read; no collective (tests/engine/test_multi_node.py runs two real processes)."""

from pathlib import Path

import pytest
import torch

from convzoo.data.cifar import load_cifar
from convzoo.data.mnist import load_mnist_like
from convzoo.errors import ConvzooError


@pytest.fixture
def four_process_job(monkeypatch):
    """This process as one of four in a torchrun job (the process group's calls recorded)."""
    import torch.distributed as dist

    events = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 4)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    monkeypatch.setattr(dist, "barrier", lambda *args, **kwargs: events.append("barrier"))
    return events


def fake_torchvision_dataset(monkeypatch, name, events, shape, fail=False):
    """torchvision's dataset class ``name`` on a folder without its files, recording whether
    it was allowed to download, and whether it held the data folder's lock."""
    import numpy as np
    import torchvision.datasets

    def construct(self, root, train, download):
        locked = (Path(root) / ".convzoo-download.lock").is_file()
        events.append(f"read, download={download}" + (", locked" if locked else ""))
        if fail or not download:
            raise RuntimeError("Dataset not found or corrupted.")
        if len(shape) == 3:  # MNIST: tensors
            self.data, self.targets = torch.zeros(shape, dtype=torch.uint8), torch.zeros(shape[0], dtype=torch.long)
        else:  # CIFAR: a NumPy array and a list
            self.data, self.targets = np.zeros(shape, dtype=np.uint8), [0] * shape[0]

    monkeypatch.setattr(torchvision.datasets, name, type(name, (), {"__init__": construct}))


@pytest.mark.parametrize(("load", "dataset_class", "shape"), [
    (lambda root: load_mnist_like("mnist", root, True), "MNIST", (2, 28, 28)),
    (lambda root: load_cifar("cifar10", root, True), "CIFAR10", (2, 32, 32, 3)),
], ids=["mnist", "cifar10"])
@pytest.mark.parametrize("local_rank", [0, 1, 3])
def test_every_process_downloads_under_the_data_folders_lock_and_without_a_collective(
    monkeypatch, tmp_path, four_process_job, local_rank, load, dataset_class, shape
):
    """Whatever its rank and its disk, a process reaches no collective here (a barrier only
    some reach hangs the job, issue 21 item 5); the folder's lock keeps writers apart."""
    fake_torchvision_dataset(monkeypatch, dataset_class, four_process_job, shape)
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    images, labels = load(tmp_path / "data")
    assert len(images) == len(labels) == 2
    assert "barrier" not in four_process_job and four_process_job[-1] == "read, download=True, locked"
    assert not (tmp_path / "data" / ".convzoo-download.lock").exists()


def test_a_failed_download_leaves_neither_lock_nor_folders(monkeypatch, tmp_path, four_process_job):
    fake_torchvision_dataset(monkeypatch, "MNIST", four_process_job, (2, 28, 28), fail=True)
    with pytest.raises(ConvzooError, match="mnist files not found"):
        load_mnist_like("mnist", tmp_path / "data", True)
    assert four_process_job == ["read, download=True, locked"]
    assert list(tmp_path.iterdir()) == []
