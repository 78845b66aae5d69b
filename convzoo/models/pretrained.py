"""Loading weights into a built model: torchvision's ImageNet weights or a state-dict file.

Behind ``--weights torchvision`` and ``--weights PATH``. The zoo keeps torchvision's
parameter names for the models torchvision has, so its weights load with no renaming.
Weights for the same build load exactly, as ``load_state_dict(strict=True)`` would. A
model built for the user's data differs where the data does, and only there: the
classifier head (another class count) stays at its fresh initialisation, the first
convolution for another channel count is adapted from the RGB filters, and a small-input
stem (another kernel) starts fresh. Anything else that differs is a one-line
``ConvzooError`` naming the first keys, unless ``strict=False`` (``--weights-strict
false``) lets those layers start fresh too; ``WeightsFit.line`` says what happened.
A model built on a zoo backbone (FCN, U-Net on ResNet-18, Faster R-CNN) also takes that
backbone's classification weights (a zoo checkpoint, torchvision's ImageNet weights), which
load into its backbone (``backbone_weights``); its other layers start fresh.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convzoo.engine.checkpoint import first_keys, weights_mismatch
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


@dataclass
class WeightsFit:
    """How a state dict fits a model: which of the model's tensors it fills, and how."""

    source: str
    """Where the weights came from, as the line names it (``torchvision resnet18 (ImageNet)``, a path)."""
    total: int
    """Tensors in the model's state dict."""
    loaded: list[str] = field(default_factory=list)
    """Keys taken as they are."""
    adapted: dict[str, tuple[int, int]] = field(default_factory=dict)
    """First-convolution keys adapted to another channel count: key -> (channels in the weights, in the model)."""
    head: list[str] = field(default_factory=list)
    """Classifier-head keys left at the model's initialisation (another class count)."""
    fresh_stem: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    """First-convolution keys that cannot be adapted (a small-input stem's other kernel), left at
    initialisation: key -> (shape in the weights, in the model)."""
    beside_backbone: list[str] = field(default_factory=list)
    """Keys outside ``backbone.`` left at initialisation when the weights are only a backbone's
    (a U-Net's decoder): new layers, not a mismatch."""
    mismatched: list[str] = field(default_factory=list)
    """Any other key of the model that the weights lack or hold in another shape."""
    unexpected: list[str] = field(default_factory=list)
    """Keys of the weights that the model does not have."""
    num_classes: int | None = None
    reset_head: bool = False
    """The head was re-initialised on request (``--reset-head``), though its shape fitted."""

    @property
    def exact(self) -> bool:
        return len(self.loaded) == self.total and not self.unexpected

    def line(self) -> str | None:
        """What happened, in one line for stderr; None when the weights loaded exactly."""
        if self.exact:
            return None
        parts = [f"loaded {len(self.loaded) + len(self.adapted)}/{self.total} tensors from {self.source}"]
        parts += [f"{key} adapted from {given} to {wanted} channels" for key, (given, wanted) in self.adapted.items()]
        if self.head:
            parts.append(f"re-initialised {', '.join(self.head)} for {self.num_classes} classes"
                         + (" (--reset-head)" if self.reset_head else ""))
        parts += [f"{key} starts fresh (shape {wanted} here, {given} in the weights)"
                  for key, (given, wanted) in self.fresh_stem.items()]
        if self.beside_backbone:
            parts.append(f"{first_keys(self.beside_backbone)} start fresh (beside the backbone)")
        if self.mismatched:
            parts.append(f"re-initialised (--weights-strict false) {first_keys(self.mismatched)}")
        if self.unexpected:
            parts.append(f"ignored {len(self.unexpected)} tensors the model lacks ({first_keys(self.unexpected)})")
        return "; ".join(parts)

    def record(self, weights: str) -> dict[str, Any]:
        """What a checkpoint keeps of it (``weights_source``): the ``--weights`` value and the line."""
        return {"weights": weights, "source": self.source, "loaded": len(self.loaded) + len(self.adapted),
                "tensors": self.total, "note": self.line()}


def fit_weights(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], model_name: str, source: str,
                strict: bool = True, reset_head: bool = False) -> WeightsFit:
    """How ``given`` fits a state dict ``own`` of ``model_name``, from shapes alone (meta
    tensors will do, so torchvision's weights are checked before they are downloaded).
    The registry names the head and the first convolution (``ModelInfo.head``, ``.stem``).
    ``reset_head`` leaves the head at its initialisation even where it fits: a new task
    with as many classes as the old one (timm's ``reset_classifier``)."""
    from convzoo.registry import get_model_info

    info = get_model_info(model_name)
    head = tuple(f"{module}." for module in info.head)
    fit = WeightsFit(source, len(own), reset_head=reset_head)
    prefix = backbone_prefix(model_name)
    backbone_only = prefix is not None and all(key.startswith(prefix) for key in given)
    for key, tensor in own.items():
        theirs = given.get(key)
        if reset_head and key.startswith(head):
            fit.head.append(key)
            fit.num_classes = fit.num_classes or tensor.shape[0]  # the first: a box head's next has 4 per class
        elif theirs is not None and theirs.shape == tensor.shape:
            fit.loaded.append(key)
        elif key.startswith(head):
            fit.head.append(key)
            fit.num_classes = fit.num_classes or tensor.shape[0]  # the first: a box head's next has 4 per class
        elif key == f"{info.stem}.weight" and theirs is not None and _adaptable(theirs.shape, tensor.shape):
            fit.adapted[key] = (theirs.shape[1], tensor.shape[1])
        elif key.startswith(f"{info.stem}.") and theirs is not None and theirs.dim() == tensor.dim() == 4:
            fit.fresh_stem[key] = (tuple(theirs.shape), tuple(tensor.shape))
        elif backbone_only and not key.startswith(prefix):
            fit.beside_backbone.append(key)
        else:
            fit.mismatched.append(key)
    fit.unexpected = [key for key in given if key not in own]
    if strict and (fit.mismatched or fit.unexpected):
        raise weights_mismatch(own, given, source, model_name, [key for key in fit.mismatched if key not in given],
                               fit.unexpected, [key for key in fit.mismatched if key in given],
                               "Check --model, or pass --weights-strict false (train) to start those layers fresh.")
    return fit


def _adaptable(given: torch.Size, wanted: torch.Size) -> bool:
    """Same filters and kernel, other input channels: 1 from any, more only from RGB (timm's rule)."""
    same_filters = len(given) == len(wanted) == 4 and given[0] == wanted[0] and given[2:] == wanted[2:]
    return same_filters and (wanted[1] == 1 or given[1] == 3)


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB filters for ``in_channels`` inputs, as timm's ``adapt_input_conv``: one channel
    sums them (a grey image's response equals that of the RGB image with the grey value in
    every channel); other counts repeat R, G, B cyclically and scale by 3/C, which keeps
    the response to an image of equal channels."""
    float_weight = weight.float()
    if in_channels == 1:
        adapted = float_weight.sum(dim=1, keepdim=True)
    else:
        repeats = -(-in_channels // float_weight.shape[1])
        adapted = float_weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (3 / in_channels)
    return adapted.to(weight.dtype)


def backbone_weights(state: Mapping[str, torch.Tensor], model_name: str,
                     own: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """A classification model's weights as keys of ``model_name``, a model that holds that
    model's trunk as its ``backbone`` (``ModelInfo.backbone``: an FCN, a U-Net on ResNet-18).

    Each key moves under the model's ``backbone_prefix`` (``backbone.``, a detector's
    ``backbone.body.``); the classification head's keys (that model's
    ``ModelInfo.head``) are left out, the dense model's own head replacing them; a fully
    connected weight that the model holds as a convolution of as many weights is reshaped
    (VGG's fc6 as FCN's 7x7 convolution, Long et al. 2015 section 3.1). ``state`` is returned
    as it is when the model has no backbone or the weights are already the model's own
    (keys under ``backbone.``: a checkpoint of the dense model itself).
    """
    from convzoo.registry import get_model_info

    backbone, prefix = get_model_info(model_name).backbone, backbone_prefix(model_name)
    if backbone is None or any(key.startswith("backbone.") for key in state):
        return state
    head = tuple(f"{module}." for module in get_model_info(backbone).head)
    mapped = {}
    for key, tensor in state.items():
        if key.startswith(head):
            continue
        wanted = own.get(f"{prefix}{key}")
        if wanted is None:
            continue  # a layer the model does not keep of its backbone (VGG's fully connected ones in a detector)
        if tensor.dim() == 2 and wanted.dim() == 4 and tensor.numel() == wanted.numel():
            tensor = tensor.reshape(wanted.shape)
        mapped[f"{prefix}{key}"] = tensor
    return mapped


def backbone_prefix(model_name: str) -> str | None:
    """Where the backbone's own keys sit in ``model_name`` (``backbone.`` in an FCN,
    ``backbone.body.`` in a detector with an FPN): its stem's name less the backbone's;
    None for a model with no backbone."""
    from convzoo.registry import get_model_info

    info = get_model_info(model_name)
    if info.backbone is None:
        return None
    return info.stem.removesuffix(get_model_info(info.backbone).stem)


def load_weights(model: nn.Module, name: str, state: Mapping[str, torch.Tensor], source: str,
                 strict: bool = True, reset_head: bool = False) -> WeightsFit:
    """Load ``state`` into ``model`` (registered as ``name``) as far as it fits (``fit_weights``);
    what does not fit keeps the model's own initialisation. Returns how it went. Weights of
    the classification model whose trunk ``model`` holds load into its ``backbone``."""
    own = model.state_dict()
    state = backbone_weights(state, name, own)
    fit = fit_weights(own, state, name, source, strict, reset_head)
    if fit.exact:
        model.load_state_dict(state, strict=True)
        return fit
    merged = dict(own)
    merged.update({key: state[key] for key in fit.loaded})
    merged.update({key: adapt_input_conv(state[key], wanted) for key, (_, wanted) in fit.adapted.items()})
    model.load_state_dict(merged, strict=True)
    return fit


def load_pretrained(model: nn.Module, name: str, weights: str, strict: bool = True,
                    reset_head: bool = False) -> WeightsFit:
    """Load ``weights`` into ``model`` (registered as ``name``), as far as they fit (``load_weights``).

    ``weights`` is ``"torchvision"`` (torchvision's DEFAULT ImageNet weights, downloaded once
    into torch's hub cache) or the path of a file saved with ``torch.save``: a state dict,
    or a convzoo checkpoint holding one under ``"model"``.
    """
    if weights == "torchvision":
        return load_weights(model, name, torchvision_state_dict(model, name, strict),
                            torchvision_source(_torchvision_name(name)), strict, reset_head)
    return load_weights(model, name, read_state_dict(weights), str(weights), strict, reset_head)


def say_fit(fit: WeightsFit) -> None:
    """The fit's line on stderr (none for an exact load)."""
    if fit.line():
        print(fit.line(), file=sys.stderr)


def _torchvision_name(name: str) -> str:
    """Whose torchvision weights ``--weights torchvision`` means: the backbone's, for a model built on one."""
    from convzoo.registry import get_model_info

    return get_model_info(name).backbone or name


def torchvision_source(name: str) -> str:
    return f"torchvision {name} (ImageNet)"


def torchvision_state_dict(model: nn.Module, name: str, strict: bool = True) -> Mapping[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``name`` (for a model built on a backbone, the
    backbone's: ``load_weights`` moves them under ``backbone.``), after checking on the meta device (no
    download) that they fit as ``load_weights`` would load them: a head for other classes,
    another channel count or a small-input stem do; other layers only when not ``strict``."""
    model_name, name = name, _torchvision_name(name)
    if name not in TORCHVISION_COUNTERPARTS:
        raise ConvzooError(
            f"{name!r} has no torchvision counterpart with the same layers (those that do: "
            f"{', '.join(sorted(TORCHVISION_COUNTERPARTS))}); pass --weights PATH to a state-dict file instead.")
    import torchvision

    own = model.state_dict()
    with torch.device("meta"):
        reference = torchvision.models.get_model(name, weights=None).state_dict()
    fit_weights(own, backbone_weights(reference, model_name, own), model_name, torchvision_source(name), strict)
    import contextlib
    import io

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
