"""Default training recipes: what ``convzoo train --model M`` trains with when nothing else is said.

Each model family declares its recipe beside its model (``models/resnet.py`` and so on) and
registers it with the model, as timm keeps a ``pretrained_cfg`` per model and torchvision's
references a recipe per family. The values sit between the config's built-in defaults and
everything the user writes: a YAML file, ``--set`` and named flags override any of them, and
``config.yaml`` records what was used. ``convzoo list --json`` shows every model's recipe.

Two rules come from Goyal et al. 2017 ("Accurate, Large Minibatch SGD"):
- the learning rate is stated for a reference batch and scales linearly with the batch
  (section 2.1: 0.1 x batch/256 for SGD on ResNets) when the batch is changed but the rate
  is not;
- a gradual warm-up (section 2.2) for the deep networks; here it takes at most a quarter of
  the run (``MAX_WARMUP_SHARE``), so a one- or two-epoch run still trains at the full rate.

This module imports no torch (``convzoo --help`` stays instant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from convzoo.config import TrainConfig

MAX_WARMUP_SHARE = 0.25
"""The largest share of a run a recipe's warm-up takes (a user-set warm-up is taken as given)."""

ADAMW_LR = 1e-3
"""The rate for ``--optimizer adamw`` over an SGD recipe when no rate is given (Loshchilov &
Hutter 2019; PyTorch's default): an SGD rate of 0.05 would make AdamW diverge at once."""


@dataclass(frozen=True)
class Recipe:
    """A model's default training values, and where they come from (``source``).

    ``lr`` is the peak rate for a batch of ``batch_size``; ``model_kwargs`` go to the
    model's builder (``zero_init_residual``, ``init``).
    """

    # Unset fields take TrainConfig's defaults: one place holds the general values.
    lr: float
    batch_size: int = TrainConfig.batch_size
    optimizer: str = TrainConfig.optimizer
    momentum: float = TrainConfig.momentum
    nesterov: bool = TrainConfig.nesterov
    weight_decay: float = TrainConfig.weight_decay
    schedule: str = TrainConfig.schedule
    warmup_epochs: float = TrainConfig.warmup_epochs
    label_smoothing: float = TrainConfig.label_smoothing
    grad_clip: float | None = TrainConfig.grad_clip
    model_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The recipe as config keys (plus ``source``), as ``convzoo list --json`` shows it."""
        values = {key: getattr(self, key) for key in RECIPE_KEYS}
        values["model_kwargs"] = dict(self.model_kwargs)
        values["source"] = self.source
        return values


RECIPE_KEYS = ("lr", "batch_size", "optimizer", "momentum", "nesterov", "weight_decay", "schedule",
               "warmup_epochs", "label_smoothing", "grad_clip", "model_kwargs")
"""The config keys a recipe sets."""


DEFAULT_RECIPE = Recipe(lr=TrainConfig.lr, source="convzoo's general default: SGD with Nesterov momentum, cosine decay "
                                         "(the values of TrainConfig)")
"""For a model that declares no recipe of its own: the config's built-in values."""


def recipe(lr: float, *, model_kwargs: Mapping[str, Any] | None = None, **values: Any) -> Recipe:
    """A ``Recipe``; ``model_kwargs`` frozen so that no caller can change a registered recipe."""
    return Recipe(lr=lr, model_kwargs=MappingProxyType(dict(model_kwargs or {})), **values)


def apply_recipe(values: dict[str, Any], model_recipe: Recipe, epochs: int) -> None:
    """Fill ``values`` (the user's config keys: file, ``--set``, flags) with the recipe's
    defaults for the keys the user did not give: the rate scaled to the batch (or AdamW's
    rate over an SGD recipe), the warm-up capped for a short run.

    ``epochs`` is the run's length after the user's values, for the warm-up's cap.
    """
    given = set(values)
    for key in RECIPE_KEYS:
        if key not in given:
            # A key the user gives replaces the recipe's value whole, model_kwargs included:
            # a config's ``model_kwargs: {}`` means no builder arguments.
            value = getattr(model_recipe, key)
            values[key] = dict(value) if key == "model_kwargs" else value
    if "lr" not in given:
        optimizer, batch_size = values["optimizer"], values["batch_size"]
        if optimizer != model_recipe.optimizer and optimizer == "adamw":
            values["lr"] = ADAMW_LR
        elif isinstance(batch_size, int) and batch_size != model_recipe.batch_size and optimizer == "sgd":
            values["lr"] = scaled_lr(model_recipe.lr, model_recipe.batch_size, batch_size)
    if "warmup_epochs" not in given and isinstance(epochs, int) and epochs > 0:
        cap = round(MAX_WARMUP_SHARE * epochs, 3)
        values["warmup_epochs"] = min(values["warmup_epochs"], cap)


def scaled_lr(lr: float, reference_batch: int, batch_size: int) -> float:
    """Goyal et al.'s linear scaling rule, rounded to 4 significant digits for config.yaml."""
    value = lr * batch_size / reference_batch
    return float(f"{value:.4g}") if math.isfinite(value) else value


def recipe_summary(config: Any, model_recipe: Recipe) -> str | None:
    """One line naming the values a run shares with its model's recipe where they differ
    from the general defaults (a batch-scaled rate and a shortened warm-up count as the
    recipe's): what ``convzoo train`` prints as it starts. None when there are none."""
    shown = []
    for key in RECIPE_KEYS:
        value = getattr(config, key)
        recipe_value = getattr(model_recipe, key)
        general = getattr(DEFAULT_RECIPE, key)
        if key == "model_kwargs":
            shown += [f"{name}={value[name]}" for name in model_recipe.model_kwargs
                      if name in value and value[name] == model_recipe.model_kwargs[name]]
        elif key == "lr":
            if value != general and value in (recipe_value, scaled_lr(recipe_value, model_recipe.batch_size,
                                                                      config.batch_size)):
                shown.append(f"lr={value:g}" + (f" (for batch {config.batch_size})" if value != recipe_value else ""))
        elif key == "warmup_epochs":
            if value and value <= recipe_value:
                shown.append(f"warmup_epochs={value:g}")
        elif value == recipe_value and value != general:
            shown.append(f"{key}={value}")
    if not shown:
        return None
    return f"{config.model}'s default recipe: {', '.join(shown)} (`convzoo list {config.model}` says why; " \
           "flags, --set and --config override it)"
