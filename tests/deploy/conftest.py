"""Small checkpoints made on the spot for the predict and export tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """One intra-op thread for torch and onnxruntime (which follows torch's count): on a
    busy 2-core CI machine two threads each made exports and checks several times slower,
    as tests/models/conftest.py found for DenseNet's forward."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_tiny(out, name: str, **values) -> str:
    """best.pt of a run of a few seconds: enough for a checkpoint with class names."""
    from convzoo.config import config_from_dict
    from convzoo.engine.train import train

    settings = {"model": "lenet5", "dataset": "synthetic", "epochs": 1, "batch_size": 64, "train_size": 512,
                "test_size": 256, "optimizer": "adamw", "lr": 3e-3, "schedule": "constant", "out": str(out),
                "name": name}
    settings.update(values)
    return train(config_from_dict(settings), quiet=True)["run_dir"] + "/best.pt"


@pytest.fixture(scope="session")
def synthetic_checkpoint(tmp_path_factory) -> str:
    """LeNet-5 on convzoo's synthetic shapes (no data files needed): named classes."""
    return train_tiny(tmp_path_factory.mktemp("deploy-runs"), "lenet-synthetic")


@pytest.fixture(scope="session")
def mnist_checkpoint(synthetic_checkpoint, tmp_path_factory) -> str:
    """The synthetic run's LeNet-5 relabelled as an MNIST run (same 1x32x32 input, 10
    classes): a checkpoint ``eval`` and ``predict`` rebuild for MNIST, without the half
    minute of reading MNIST's training split and training on it."""
    from tests.conftest import real_data_dir

    data_dir = real_data_dir()
    if data_dir is None or not (data_dir / "MNIST" / "raw").is_dir():
        pytest.skip("MNIST not found: set CONVZOO_DATA to the folder holding MNIST/")
    checkpoint = torch.load(synthetic_checkpoint, weights_only=True)
    checkpoint["config"].update(dataset="mnist", data_dir=str(data_dir))
    checkpoint["class_names"] = [str(digit) for digit in range(10)]
    path = tmp_path_factory.mktemp("deploy-runs") / "lenet-mnist.pt"
    torch.save(checkpoint, path)
    return str(path)
