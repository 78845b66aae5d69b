"""``--weights torchvision`` and ``--weights PATH``: weights for the same build load exactly,
and everything that can go wrong (offline, wrong model, wrong file) is one ConvzooError
line. Loading into a build for other classes, channels or sizes: test_partial_weights.py."""

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
    state = create_model("resnet20").state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(16, 16, 5, 5)  # not the head, not the stem
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ConvzooError, match=r"layer1.0.conv1.weight is \(16, 16, 5, 5\), model has \(16, 16, 3, 3\)"):
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


def test_torchvision_weights_of_another_architecture_are_refused_before_download(torchvision_download):
    """A small-input VGG's first fully connected layer takes 512 features, not 512x7x7: not
    the head nor the stem, so a real mismatch (``--weights-strict false`` starts it fresh)."""
    with pytest.raises(ConvzooError, match=r"do not fit.*classifier.0.weight.*--weights-strict false"):
        load_pretrained(create_model("vgg11", image_size=32), "vgg11", "torchvision")


def test_model_without_torchvision_counterpart_is_refused():
    with pytest.raises(ConvzooError, match="no torchvision counterpart"):
        load_pretrained(create_model("googlenet", image_size=32, num_classes=10), "googlenet", "torchvision")
