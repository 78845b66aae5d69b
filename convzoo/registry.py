"""The model registry: ``register_model``, ``create_model``, ``list_models``.

Modelled on timm: each variant is a small builder function decorated with
``@register_model(...)``; the decorator records what the CLI needs to show and use the
model (family, paper, default input size, natural probe points) without building it.
This module imports no torch, so that ``convzoo --help`` stays instant; the model
families are imported (and so registered) on first use.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from convzoo.errors import ConvzooError
from convzoo.recipes import DEFAULT_RECIPE, Recipe


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it."""

    name: str
    builder: Callable[..., Any]
    family: str
    paper: str
    input_size: tuple[int, int, int]
    """Default (channels, height, width): the paper's input."""
    fixed_input_size: bool = False
    """True when the architecture only takes ``input_size`` (LeNet-5's 32x32); smaller
    images are then zero-padded by the data pipeline, as LeCun et al. padded MNIST."""
    num_classes: int = 1000
    """Default number of classes: the paper's."""
    probe_layers: tuple[str, ...] = field(default=())
    """Module names of the family's natural exits for linear probing, in depth order."""
    recipe: Recipe = field(default_factory=lambda: DEFAULT_RECIPE)
    """The default training values ``convzoo train --model NAME`` starts from (recipes.py)."""
    head: tuple[str, ...] = ("fc",)
    """Module names of the classifier head: the layers whose outputs are the class scores
    (GoogLeNet: its auxiliary classifiers' too). Re-initialised when weights for another
    class count are loaded; left training by ``--freeze backbone``."""
    stem: str = "conv1"
    """Module name of the first convolution: adapted when weights for another channel count are loaded."""
    task: str = "classification"
    """What the model predicts: ``classification`` (one score per class), ``segmentation``
    (a score map per class, the input's size) or ``detection`` (boxes, labels, scores).
    ``--model`` implies the task (convzoo/tasks/)."""
    backbone: str | None = None
    """Registered name of the classification model whose trunk this model holds as its
    ``backbone`` module (FCN, U-Net-ResNet): that model's weights, torchvision's or a
    checkpoint's, load there (``models/pretrained.py``, ``backbone_weights``)."""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    family: str,
    paper: str,
    input_size: tuple[int, int, int] = (3, 224, 224),
    fixed_input_size: bool = False,
    num_classes: int = 1000,
    probe_layers: tuple[str, ...] = (),
    recipe: Recipe | None = None,
    head: tuple[str, ...] = ("fc",),
    stem: str = "conv1",
    task: str = "classification",
    backbone: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a builder under its function name.

    The builder must accept ``num_classes``, ``in_channels`` and ``image_size`` keyword
    arguments, so that a dataset's shape can flow into any model.
    """

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(
            name=name,
            builder=builder,
            family=family,
            paper=paper,
            input_size=tuple(input_size),  # type: ignore[arg-type]
            fixed_input_size=fixed_input_size,
            num_classes=num_classes,
            probe_layers=tuple(probe_layers),
            recipe=recipe or DEFAULT_RECIPE,
            head=tuple(head),
            stem=stem,
            task=task,
            backbone=backbone,
        )
        return builder

    return decorator


def _ensure_models_imported() -> None:
    import convzoo.models  # noqa: F401  (importing registers every family)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell wildcard (``"resnet*"``, any case), in natural
    order: resnet18 before resnet101, bagnet9 before bagnet33."""
    _ensure_models_imported()
    return sorted((name for name in _REGISTRY if fnmatch.fnmatchcase(name.lower(), pattern.lower())), key=natural_key)


def natural_key(name: str) -> tuple:
    """Sort key reading digit runs as numbers: ``vgg11 < vgg16_c < vgg19 < vgg19_bn``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; an unknown name raises an error naming close matches."""
    _ensure_models_imported()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConvzooError(unknown_name_message("model", name, list(_REGISTRY), "convzoo list")) from None


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
    **kwargs: Any,
):
    """Build a registered model.

    ``num_classes`` defaults to the paper's (1000 for ImageNet models) and ``in_channels`` / ``image_size`` to the
    paper's input; pass a dataset's values to adapt the model to it (small images get
    each family's small-input variant, described in its builder's docstring).
    """
    info = get_model_info(name)
    channels, height, _ = info.input_size
    return info.builder(
        num_classes=info.num_classes if num_classes is None else num_classes,
        in_channels=channels if in_channels is None else in_channels,
        image_size=height if image_size is None else image_size,
        **kwargs,
    )


def closest_names(name: str, known: list[str], most: int = 3) -> list[str]:
    """The known names nearly as close to ``name`` as the closest one: "lenet" means lenet5,
    not also alexnet and googlenet, which share only "net" with it."""
    # Ties in difflib's order (get_close_matches: the later name first), as before.
    scored = sorted(((difflib.SequenceMatcher(None, name, candidate).ratio(), candidate) for candidate in known),
                    reverse=True)
    if not scored or scored[0][0] < 0.6:
        return []
    best = scored[0][0]
    return [candidate for ratio, candidate in scored if ratio >= best - 0.05][:most]


def unknown_name_message(kind: str, name: str, known: list[str], listing_hint: str) -> str:
    """One-line message for an unknown name, with the closest known names."""
    close = closest_names(name, known)
    if not close:
        close = sorted(k for k in known if k.startswith(name[:3]))[:5]
    suggestion = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"unknown {kind} {name!r}.{suggestion} Run `{listing_hint}` to see them all."
