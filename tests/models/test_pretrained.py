"""``--weights torchvision`` and ``--weights PATH``: weights load strictly, and everything
that can go wrong (offline, wrong model, wrong file) is one ConvzooError line."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from convzoo.errors import ConvzooError
from convzoo.models.pretrained import load_pretrained
from convzoo.registry import create_model


def small_resnet(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet20").eval()


def same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


@pytest.mark.parametrize("wrap", [
    lambda state: state,
    lambda state: {"model": state, "epoch": 3},  # a convzoo checkpoint
    lambda state: {f"module.{key}": value for key, value in state.items()},  # saved from DataParallel
], ids=["state-dict", "checkpoint", "dataparallel"])
def test_state_dict_file_loads(tmp_path, wrap):
    source, target = small_resnet(seed=1), small_resnet(seed=2)
    assert not same_weights(source, target)
    path = tmp_path / "weights.pt"
    torch.save(wrap(source.state_dict()), path)
    load_pretrained(target, "resnet20", str(path))
    assert same_weights(source, target)


def test_state_dict_file_of_another_model_names_the_mismatches(tmp_path):
    path = tmp_path / "resnet32.pt"
    torch.save(create_model("resnet32").state_dict(), path)
    with pytest.raises(ConvzooError) as raised:
        load_pretrained(create_model("resnet20"), "resnet20", str(path))
    assert "unexpected layer1.3" in str(raised.value) and "\n" not in str(raised.value)


def test_state_dict_file_with_other_shapes_names_the_shape(tmp_path):
    path = tmp_path / "cifar100.pt"
    torch.save(create_model("resnet20", num_classes=100).state_dict(), path)
    with pytest.raises(ConvzooError, match=r"fc.weight is \(100, 64\)"):
        load_pretrained(create_model("resnet20"), "resnet20", str(path))


def test_missing_or_unreadable_weights_file(tmp_path):
    with pytest.raises(ConvzooError, match="not found"):
        load_pretrained(small_resnet(0), "resnet20", str(tmp_path / "absent.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a tensor file")
    with pytest.raises(ConvzooError, match="not a PyTorch state-dict file"):
        load_pretrained(small_resnet(0), "resnet20", str(garbage))


@pytest.fixture
def torchvision_download(monkeypatch):
    """Replace torchvision's download: ``weights=None`` builds as usual, "DEFAULT" does what
    the test sets (an offline failure unless given a model to return)."""
    real_get_model = torchvision.models.get_model
    downloaded = {}

    def get_model(name, weights=None, **kwargs):
        if weights is None:
            return real_get_model(name, weights=None, **kwargs)
        if "model" not in downloaded:
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
        return downloaded["model"]

    monkeypatch.setattr(torchvision.models, "get_model", get_model)
    return downloaded


def test_torchvision_weights_load_into_the_paper_model(torchvision_download):
    torch.manual_seed(0)
    torchvision_download["model"] = torchvision.models.resnet18().eval()
    ours = create_model("resnet18").eval()
    load_pretrained(ours, "resnet18", "torchvision")
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), torchvision_download["model"](images))


def test_offline_torchvision_download_is_one_line_advising_a_path(torchvision_download):
    with pytest.raises(ConvzooError) as raised:
        load_pretrained(create_model("resnet18"), "resnet18", "torchvision")
    message = str(raised.value)
    assert "download" in message and "failed" in message and "--weights PATH" in message and "\n" not in message


@pytest.mark.parametrize("build, reason", [
    (dict(image_size=32), "conv1.weight"),  # small-input stem: 3x3 instead of 7x7
    (dict(num_classes=10), "fc.weight"),
])
def test_torchvision_weights_refused_before_download_when_shapes_differ(torchvision_download, build, reason):
    with pytest.raises(ConvzooError, match=f"do not fit.*{reason}"):
        load_pretrained(create_model("resnet18", **build), "resnet18", "torchvision")


def test_model_without_torchvision_counterpart_is_refused():
    with pytest.raises(ConvzooError, match="no torchvision counterpart"):
        load_pretrained(create_model("googlenet", image_size=32, num_classes=10), "googlenet", "torchvision")
