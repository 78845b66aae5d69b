"""Loading weights into a built model: torchvision's ImageNet weights or a state-dict file.

Behind ``--weights torchvision`` and ``--weights PATH``. The zoo keeps torchvision's
parameter names for the models torchvision has, so its weights load with ``strict=True``
and no renaming; every mismatch is a one-line ``ConvzooError`` naming the first keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from convzoo.errors import ConvzooError

TORCHVISION_COUNTERPARTS = frozenset({
    "alexnet",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "mobilenet_v2",
})
"""Models whose state dict is torchvision's, key for key and shape for shape. (torchvision's
GoogLeNet differs from the paper's: BatchNorm and a 3x3 "5x5" branch.)"""

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel and torch.compile wrap the names


def load_pretrained(model: nn.Module, name: str, weights: str) -> None:
    """Load ``weights`` into ``model`` (registered as ``name``), strictly.

    ``weights`` is ``"torchvision"`` (torchvision's DEFAULT ImageNet weights, downloaded once
    into torch's hub cache) or the path of a file saved with ``torch.save``: a state dict,
    or a convzoo checkpoint holding one under ``"model"``.
    """
    from convzoo.engine.checkpoint import load_model_state

    if weights == "torchvision":
        load_model_state(model, torchvision_state_dict(model, name), f"torchvision's {name} checkpoint", name)
    else:
        load_model_state(model, read_state_dict(weights), str(weights), name)


def torchvision_state_dict(model: nn.Module, name: str) -> Mapping[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name``, after checking on the meta device (no
    download) that they can fit: small-input stems and other class counts cannot."""
    if name not in TORCHVISION_COUNTERPARTS:
        raise ConvzooError(
            f"{name!r} has no torchvision counterpart with the same layers (those that do: "
            f"{', '.join(sorted(TORCHVISION_COUNTERPARTS))}); pass --weights PATH to a state-dict file instead.")
    import torchvision

    with torch.device("meta"):
        reference = torchvision.models.get_model(name, weights=None).state_dict()
    ours = model.state_dict()
    differing = [key for key, value in reference.items() if key not in ours or ours[key].shape != value.shape]
    differing += [key for key in ours if key not in reference]
    if differing:
        more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
        raise ConvzooError(
            f"torchvision's ImageNet weights do not fit this {name} ({', '.join(differing[:3])}{more} differ): "
            "they need the model built for 1000 classes from 3-channel images larger than 64 pixels.")
    import contextlib
    import io
    import sys

    hub_messages = io.StringIO()
    try:
        # torch.hub writes "Downloading: URL to FILE" on stdout (where --json promises one
        # object) and a progress bar on stderr: offline, both came before convzoo's one-line
        # error. They are held back; where the file went is said once it is there.
        with contextlib.redirect_stdout(hub_messages), contextlib.redirect_stderr(hub_messages):
            pretrained = torchvision.models.get_model(name, weights="DEFAULT")
        said = hub_messages.getvalue().strip().splitlines()
        if said:
            print(said[0], file=sys.stderr)
    except (OSError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConvzooError(
            f"downloading torchvision's {name} weights failed ({reason}); "
            "pass --weights PATH to a state-dict file instead.") from None
    return pretrained.state_dict()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors only (``weights_only=True``: a weights file cannot run code when loaded);
    ``.safetensors`` files (timm's, the hub's, ``convzoo export``'s) through safetensors."""
    path = Path(path)
    if not path.is_file():
        raise ConvzooError(
            f"weights file {path} not found; pass --weights torchvision or a path to a state-dict file.")
    if path.suffix == ".safetensors":
        from convzoo.deploy.safetensors_io import read_safetensors

        return _without_wrapper_prefixes(read_safetensors(path)[0])
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unpickling raises many types; all mean "not a weights file"
        raise ConvzooError(f"{path} is not a PyTorch state-dict file ({type(error).__name__}).") from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ConvzooError(f"{path} holds no state dict (a mapping of names to tensors, or one under 'model').")
    return _without_wrapper_prefixes(dict(loaded))


def _without_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    return state
