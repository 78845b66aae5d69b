"""The foundation's promise on real data: the shipped LeNet-5 config reaches LeCun's accuracy."""

import pytest

from convzoo.config import load_config
from convzoo.engine.train import train
from tests.conftest import REPO, require_dataset


@pytest.mark.slow
def test_lenet5_reaches_99_percent_on_real_mnist(data_dir, tmp_path):
    require_dataset(data_dir, "MNIST")
    config = load_config(REPO / "configs" / "lenet5-mnist.yaml",
                         {"data_dir": str(data_dir), "out": str(tmp_path), "name": "mnist"})
    result = train(config, quiet=True)
    assert result["best_acc"] >= 0.99  # LeCun et al. 1998: 99.05 %


@pytest.mark.slow
def test_lenet5_with_the_scratch_convolution_reaches_98_5_percent(data_dir, tmp_path):
    """Issue 4's end-to-end check: the hand-written backward trains a real network."""
    require_dataset(data_dir, "MNIST")
    config = load_config(REPO / "configs" / "lenet5-mnist.yaml",
                         {"data_dir": str(data_dir), "out": str(tmp_path), "name": "scratch", "conv": "scratch"})
    result = train(config, quiet=True)
    assert result["best_acc"] >= 0.985
