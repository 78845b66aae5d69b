"""Stochastic depth (``--drop-path``): linear rates over the residual blocks, whole images
dropped in training, nothing changed in eval mode or in the state dict; refused where a
model has no residual branch."""

import pytest
import torch

from convzoo.data import get_dataset_spec
from convzoo.engine.setup import build_model
from convzoo.errors import ConvzooError

SPEC = get_dataset_spec("synthetic", image_size=16, channels=3)


def rates(model: torch.nn.Module) -> list[float]:
    return [module.drop_path.p for module in model.modules() if getattr(module, "drop_path", None) is not None]


@pytest.mark.parametrize("name, blocks", [("resnet20", 9), ("resnet50", 16), ("bagnet9", 16), ("mobilenet_v2", 10)])
def test_block_l_of_l_drops_with_rate_times_l_over_l(name, blocks):
    torch.manual_seed(0)
    plain = build_model(name, SPEC, 16)
    torch.manual_seed(0)
    dropping = build_model(name, SPEC, 16, drop_path=0.2)
    assert rates(dropping) == pytest.approx([0.2 * depth / blocks for depth in range(1, blocks + 1)])
    assert list(plain.state_dict()) == list(dropping.state_dict())  # torchvision's weights still load
    images = torch.randn(4, 3, 16, 16)
    plain.eval(), dropping.eval()
    with torch.no_grad():
        assert torch.equal(plain(images), dropping(images))  # the identity in eval mode


def test_in_training_whole_images_skip_a_branch_and_kept_ones_are_scaled():
    block = build_model("resnet20", SPEC, 16, drop_path=0.5).layer3[2]  # the last block: p = 0.5
    branch = torch.ones(64, 2, 3, 3)
    torch.manual_seed(0)
    dropped = block.drop_path(branch)
    per_image = dropped.flatten(1)
    assert all(set(row.tolist()) in ({0.0}, {2.0}) for row in per_image)  # "row": one draw per image
    assert 16 < int((per_image[:, 0] == 0).sum()) < 48


@pytest.mark.parametrize("name", ["lenet5", "vgg11", "alexnet", "densenet121", "googlenet", "mobilenet_v1"])
def test_a_model_without_residual_blocks_is_refused_in_one_line(name):
    with pytest.raises(ConvzooError, match=f"--drop-path drops residual branches; {name} has none"):
        build_model(name, get_dataset_spec("synthetic", image_size=32, channels=3), 32, drop_path=0.1)


def test_the_cli_refuses_drop_path_without_residual_blocks(cli, tmp_path):
    code, _, stderr = cli("train", "--model", "lenet5", "--drop-path", "0.1", "--epochs", "1", "--device", "cpu",
                          "--out", tmp_path, "--set", "train_size=64", "--batch-size", "32")
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "lenet5 has none" in stderr
    assert not any(tmp_path.iterdir())  # no run folder left behind


def test_a_run_with_stochastic_depth_resumed_mid_epoch_is_bit_identical(tmp_path, monkeypatch, one_thread):
    from tests.engine.test_mid_epoch_resume import assert_resumed_mid_epoch_run_is_bit_identical

    assert_resumed_mid_epoch_run_is_bit_identical(tmp_path, monkeypatch, model="resnet20", image_size=8, drop_path=0.3)
