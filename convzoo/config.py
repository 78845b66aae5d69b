"""Training configuration: one dataclass, loaded from YAML and overridden by CLI flags.

Validation happens here, once, so that a typo in a YAML file is a one-line error that
names the key and the file, before any data is loaded or any model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convzoo.errors import ConvzooError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "step", "constant")
DEVICES = ("auto", "cpu", "cuda", "mps")
CONV_IMPLEMENTATIONS = ("torch", "scratch")
TASKS = ("classification", "segmentation", "detection")  # convzoo/tasks/: one module each
FREEZE_CHOICES = ("none", "backbone")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""``torch.compile``'s modes (``torch._inductor.list_mode_options``)."""
_YAML11_EXPONENT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.yaml`` in the run folder."""

    model: str = "lenet5"
    task: str | None = None
    """``classification``, ``segmentation``, ``detection``: states the task, which the model implies
    (``convzoo list`` shows each model's); a model of another task is refused."""
    dataset: str = "synthetic"
    data_dir: str | None = None
    epochs: int = 5
    batch_size: int = 128
    eval_batch_size: int = 1000
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_size: int = 30
    """Epochs between learning-rate drops for the ``step`` schedule."""
    gamma: float = 0.1
    """Factor of each ``step`` drop."""
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    """Clip the global gradient norm to this value; none when unset."""
    augment: bool = True
    """The dataset's standard training augmentation (crop and flip for CIFAR and images)."""
    auto_augment: str | None = None
    """An augmentation policy for training images, after ``augment``'s crop and flip:
    ``trivialaugment`` (TrivialAugment-Wide), ``randaugment`` or ``randaugment:N:M`` (N ops of
    magnitude M of 30; 2 and 9 by default) or ``autoaugment`` (the ImageNet policy); see
    ``parse_auto_augment``. In-memory datasets draw it per image, batched on the device."""
    random_erasing: float = 0.0
    """Random erasing (Zhong et al. 2020): the probability that a training image has a
    rectangle (2-33 % of its area) filled with per-pixel normal noise, after normalisation."""
    repeated_aug: int = 1
    """Repeated augmentation (Hoffer et al. 2020; timm's ``RepeatAugSampler``): each image of
    an epoch's order N times in a row, dealt to consecutive ranks under torchrun (one process:
    N copies in the same batch), each augmented its own way; the epoch keeps its length, so it
    holds 1/N of the images. 1: off."""
    device: str = "auto"
    amp: bool = True
    """bf16 autocast on CUDA; ignored on CPU, where it would only slow training."""
    seed: int = 0
    conv: str = "torch"
    """``scratch`` swaps every Conv2d and ConvTranspose2d for convzoo's hand-written convolution."""
    channels_last: bool | None = None
    """Channels-last memory for the model and its batches; unset: where it measured faster
    (``convzoo.engine.fast_path.use_channels_last``: CUDA, and per family on CPU)."""
    compile: bool = False
    """``torch.compile`` the model (inductor); its first step compiles."""
    compile_mode: str | None = None
    """torch.compile's mode: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs."""
    weights: str | None = None
    """``torchvision`` (its ImageNet weights) or a path to a state-dict file."""
    weights_strict: bool = True
    """Refuse weights that differ from the model beyond its classifier head (another class
    count) and first convolution (another channel count, a small-input stem); false: those
    layers start fresh too, and one line lists them."""
    reset_head: bool = False
    """Re-initialise the classifier head even when the weights' head fits: a new task with as
    many classes as the weights' (their class 3 is not yours). Another class count always does."""
    mean: list[float] | None = None
    """Per-channel mean the images are normalised with; unset: the dataset's, or ImageNet's
    when training from ``--weights torchvision`` on 3-channel images (the weights expect them)."""
    std: list[float] | None = None
    """Per-channel standard deviation, as ``mean``."""
    freeze: str = "none"
    """Fine-tuning: ``backbone`` trains only the classifier head (``ModelInfo.head``); see
    ``convzoo.engine.finetune``."""
    freeze_until: str | None = None
    """Fine-tuning: freeze this layer (a name of ``convzoo probe --list-layers``) and every
    layer before it in forward order."""
    unfreeze_at: int | None = None
    """Fine-tuning: train every parameter from this epoch (1-based) on: the two-stage
    schedule of head first, then everything."""
    head_lr_mult: float = 1.0
    """The classifier head's learning rate is ``lr`` times this."""
    layer_decay: float | None = None
    """Layer-wise learning-rate decay (BEiT, Bao et al. 2021): the block at depth d of N trains
    at ``lr * layer_decay ** (N - d)``; see ``convzoo.engine.finetune.depth_blocks``."""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra arguments for the model's builder, e.g. ``{width_mult: 0.5}``."""
    image_size: int | None = None
    """Image side for the synthetic dataset (default 32, or the model's fixed input)."""
    in_channels: int | None = None
    """Channels for the synthetic dataset (default 3, or the model's fixed input)."""
    train_size: int | None = None
    """Use only the first N training images (synthetic: how many to generate; image folders: a
    fixed random N, since their files are sorted by class)."""
    test_size: int | None = None
    """Evaluate on only N test images, chosen as for ``train_size``: for quick checks, since
    a smaller test set makes the reported accuracy (and the choice of best.pt) noisier."""
    num_workers: int | None = None
    """DataLoader workers for ``imagefolder:`` datasets (in-memory datasets need none); unset:
    up to 4, one fewer than the cores available to each process (``default_num_workers``)."""
    log_interval: int = 50
    """Off a terminal, a progress line every this many steps (and at least every 30 s)."""
    checkpoint_every: int | str | None = None
    """Also write ``last.pt`` within an epoch: every N training steps (``200``) or every N
    minutes (``"10min"``); unset: at epoch ends only. See ``parse_checkpoint_every``."""
    sync_bn: bool = False
    """Under torchrun, SyncBatchNorm: batch statistics over the whole global batch (CUDA only)."""
    ema: float | None = None
    """Keep an exponential moving average of the weights with this decay (e.g. 0.9998) and
    evaluate it beside the model; best.pt keeps the better of the two (engine/ema.py)."""
    ema_every: int = 1
    """Update the average every this many optimiser steps."""
    ema_warmup: bool = True
    """Warm the decay up as ``min(ema, (1 + step) / (10 + step))`` (``engine.ema.ema_decay``)."""
    mixup: float = 0.0
    """MixUp's α (Zhang et al. 2018): mix each training batch with itself reversed, λ ~ Beta(α, α);
    0: off (data/mixing.py)."""
    cutmix: float = 0.0
    """CutMix's α (Yun et al. 2019): paste a box of the reversed batch, of area 1 - λ; 0: off."""
    mix_prob: float = 1.0
    """The chance that a batch is mixed at all (with mixup or cutmix)."""
    mix_switch_prob: float = 0.5
    """With both mixup and cutmix, the chance that a batch gets CutMix rather than MixUp."""
    drop_path: float = 0.0
    """Stochastic depth (Huang et al. 2016): the last residual block's chance of being skipped
    in a training step, block l of L's ``drop_path * l / L``; 0: off (ResNet, BagNet, MobileNet-v2)."""
    out: str = "runs"
    name: str | None = None

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Keys that define what a run computes; ``--resume`` refuses to change them.
RUN_DEFINING_KEYS = (
    "model", "dataset", "epochs", "batch_size", "optimizer", "lr", "schedule",
    "warmup_epochs", "step_size", "gamma", "weight_decay", "momentum", "nesterov",
    "label_smoothing", "seed", "conv", "model_kwargs", "image_size", "in_channels",
    "train_size", "test_size", "augment", "grad_clip", "ema", "ema_every", "ema_warmup",
    "mixup", "cutmix", "mix_prob", "mix_switch_prob", "drop_path", "mean", "std",
    "freeze", "freeze_until", "unfreeze_at", "head_lr_mult", "layer_decay",
    "auto_augment", "random_erasing", "repeated_aug",
)


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _coerce(key: str, value: Any, annotation: str, source: str) -> Any:
    """Check one value against its field's annotation (given as a string by __future__)."""
    optional = "None" in annotation
    base = annotation.replace(" | None", "").strip()
    if value is None:
        if optional:
            return None
        raise ConvzooError(f"{source}: '{key}' must not be empty (expected {base}).")
    wrong = ConvzooError(f"{source}: '{key}' must be {base}, got {value!r} ({type(value).__name__}).")
    if base == "bool":
        if not isinstance(value, bool):
            raise wrong
    elif base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
    elif base == "float":
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 3e-4 (no dot) as a string; every user means a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        value = float(value)
    elif base == "str":
        if not isinstance(value, str):
            raise wrong
    elif base.startswith("dict"):
        if not isinstance(value, dict):
            raise wrong
    elif base == "list[float]":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value or not all(
                isinstance(item, (int, float)) and not isinstance(item, bool) for item in value):
            raise wrong
        value = [float(item) for item in value]
    return value


def _blame(key: str, source: str, key_sources: dict[str, str] | None) -> str:
    """Where ``key``'s value came from, as the start of an error: ``--epochs`` or ``FILE: 'key'``."""
    flag = (key_sources or {}).get(key)
    return flag if flag else f"{source}: '{key}'"


def _check_values(config: TrainConfig, source: str, key_sources: dict[str, str] | None = None) -> None:
    def bad(key: str, why: str) -> ConvzooError:
        return ConvzooError(f"{_blame(key, source, key_sources)} {why}")

    choices = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "device": DEVICES, "conv": CONV_IMPLEMENTATIONS,
               **({"task": TASKS} if config.task is not None else {})}
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            raise bad(key, f"must be one of {', '.join(allowed)}, got {getattr(config, key)!r}.")
    for key in ("epochs", "batch_size", "eval_batch_size", "step_size", "log_interval", "repeated_aug", "ema_every"):
        if getattr(config, key) < 1:
            raise bad(key, f"must be at least 1, got {getattr(config, key)}.")
    for key in ("lr", "weight_decay", "momentum", "warmup_epochs", "num_workers"):
        if getattr(config, key) is not None and getattr(config, key) < 0:
            raise bad(key, f"must not be negative, got {getattr(config, key)}.")
    if config.lr == 0:
        raise bad("lr", "must be positive, got 0.")
    if config.compile_mode is not None:
        if config.compile_mode not in COMPILE_MODES:
            raise bad("compile_mode", f"must be one of {', '.join(COMPILE_MODES)}, got {config.compile_mode!r}.")
    if not 0 <= config.label_smoothing < 1:
        raise bad("label_smoothing", f"must be in [0, 1), got {config.label_smoothing}.")
    if config.warmup_epochs >= config.epochs and config.warmup_epochs > 0:
        epochs_from = (key_sources or {}).get("epochs")
        raise bad("warmup_epochs", f"({config.warmup_epochs}) must be shorter than the run's {config.epochs} epochs"
                                   f"{f' ({epochs_from})' if epochs_from else ''}; "
                                   "shorten it with --set warmup_epochs=N or train for more epochs.")
    if config.ema is not None and not 0 < config.ema < 1:
        raise bad("ema", f"is the average's decay, in (0, 1), e.g. 0.9998; got {config.ema}.")
    if not 0 <= config.drop_path < 1:
        raise bad("drop_path", f"is a probability, in [0, 1), got {config.drop_path}.")
    for key in ("mixup", "cutmix"):
        if getattr(config, key) < 0:
            raise bad(key, f"is a Beta distribution's α, positive (or 0: off), got {getattr(config, key)}.")
    for key in ("mix_prob", "mix_switch_prob"):
        if not 0 <= getattr(config, key) <= 1:
            raise bad(key, f"is a probability, in [0, 1], got {getattr(config, key)}.")
    if config.std is not None and min(config.std) <= 0:
        raise bad("std", f"must be positive, got {config.std}.")
    if config.grad_clip is not None and config.grad_clip <= 0:
        raise bad("grad_clip", f"must be positive, got {config.grad_clip}.")
    for key in ("image_size", "in_channels", "train_size", "test_size"):
        value = getattr(config, key)
        if value is not None and value < 1:
            raise bad(key, f"must be at least 1, got {value}.")
    _check_fine_tuning(config, bad, key_sources)
    if config.auto_augment is not None:
        try:
            parse_auto_augment(config.auto_augment)
        except ValueError as error:
            raise bad("auto_augment", str(error)) from None
    if not 0 <= config.random_erasing <= 1:
        raise bad("random_erasing", f"must be a probability in [0, 1], got {config.random_erasing}.")
    if config.checkpoint_every is not None:
        try:
            parse_checkpoint_every(config.checkpoint_every)
        except ValueError as error:
            raise bad("checkpoint_every", str(error)) from None


def _check_fine_tuning(config: TrainConfig, bad: Any, key_sources: dict[str, str] | None) -> None:
    """The fine-tuning keys that can be checked without the model (layer names are checked
    when the run builds it: ``convzoo.engine.finetune``)."""
    if config.freeze not in FREEZE_CHOICES:
        raise bad("freeze", f"must be one of {', '.join(FREEZE_CHOICES)}, got {config.freeze!r} "
                            "(to freeze up to a layer, use --freeze-until LAYER).")
    if config.freeze != "none" and config.freeze_until is not None:
        raise bad("freeze_until", f"and freeze {config.freeze!r} both say what to freeze; give one of them.")
    if config.unfreeze_at is not None:
        if config.freeze == "none" and config.freeze_until is None:
            raise bad("unfreeze_at", "needs something frozen first: add --freeze backbone or --freeze-until LAYER.")
        if not 2 <= config.unfreeze_at <= config.epochs:
            epochs_from = (key_sources or {}).get("epochs")
            raise bad("unfreeze_at", f"must be an epoch from 2 to the run's {config.epochs}"
                                     f"{f' ({epochs_from})' if epochs_from else ''}, got {config.unfreeze_at}.")
    if config.head_lr_mult <= 0:
        raise bad("head_lr_mult", f"must be positive, got {config.head_lr_mult}.")
    if config.layer_decay is not None and not 0 < config.layer_decay <= 1:
        raise bad("layer_decay", f"must be in (0, 1], got {config.layer_decay}.")


AUTO_AUGMENT_POLICIES = ("trivialaugment", "randaugment[:N:M]", "autoaugment")
RANDAUGMENT_DEFAULT = (2, 9)
"""torchvision's RandAugment defaults: 2 ops of magnitude 9 (of 30 bins)."""


def parse_auto_augment(value: str) -> tuple[str, int, int]:
    """``auto_augment`` as ``(policy, num_ops, magnitude)``: ``randaugment:N:M`` gives N ops
    of magnitude bin M (0-30); the other policies fix their own (``(name, 1, 0)``)."""
    name, _, arguments = value.strip().lower().partition(":")
    if name in ("trivialaugment", "autoaugment") and not arguments:
        return name, 1, 0
    if name == "randaugment":
        if not arguments:
            return (name, *RANDAUGMENT_DEFAULT)
        parts = arguments.split(":")
        if len(parts) == 2 and all(part.isdigit() for part in parts) and int(parts[0]) >= 1 and int(parts[1]) <= 30:
            return name, int(parts[0]), int(parts[1])
        raise ValueError(f"randaugment takes :N:M, N >= 1 ops of magnitude M in 0-30 (randaugment:2:9), got {value!r}.")
    raise ValueError(f"must be one of {', '.join(AUTO_AUGMENT_POLICIES)}, got {value!r}.")


def parse_checkpoint_every(value: int | str) -> tuple[int | None, float | None]:
    """``checkpoint_every`` as ``(steps, None)`` or ``(None, minutes)``.

    A bare integer counts training steps (``200``, or ``"200"`` from a flag); a number
    followed by ``min`` counts minutes of wall time (``"10min"``, ``"0.5min"``). Steps
    suit a run whose pace is known; minutes bound the work a preemption can cost.
    """
    if isinstance(value, bool):
        raise ValueError(f"must be a number of steps (200) or minutes ('10min'), got {value!r}.")
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+", text):
        if int(text) < 1:
            raise ValueError(f"must be at least 1 step, got {value!r}.")
        return int(text), None
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)min", text)
    if match is None:
        raise ValueError(f"must be a number of steps (200) or minutes ('10min'), got {value!r}.")
    if float(match.group(1)) <= 0:
        raise ValueError(f"must be a positive number of minutes, got {value!r}.")
    return None, float(match.group(1))


def config_from_dict(values: dict[str, Any], source: str = "config",
                     key_sources: dict[str, str] | None = None) -> TrainConfig:
    """Build a validated config; ``source`` names where the values came from in errors, and
    ``key_sources`` the flag that set a key (``{"epochs": "--epochs"}``), blamed instead."""
    if not isinstance(values, dict):
        raise ConvzooError(f"{source}: expected a mapping of keys to values at the top level.")
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConvzooError(f"{source}: unknown key '{key}'.{hint} Valid keys: {', '.join(known)}.")
        flag = (key_sources or {}).get(key)
        checked[key] = _coerce(key, value, _type_name(known[key].type), flag or source)
    config = TrainConfig(**checked)
    _check_values(config, source, key_sources)
    return config


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; a missing or broken file is a one-line error."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConvzooError(f"cannot read config file {path}: {error.strerror}. Check the path.") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConvzooError(f"{path}: not valid YAML{where}. Fix the syntax.") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConvzooError(f"{path}: expected a mapping of keys to values at the top level.")
    return values


QUICK_VARIABLE = "CONVZOO_QUICK"
"""``CONVZOO_QUICK=1`` shortens every run to a smoke test (the README test sets it): at most
``QUICK_EPOCHS`` epochs on ``QUICK_TRAIN_SIZE`` training and ``QUICK_TEST_SIZE`` test images,
and short probes. Commands, files and outputs are those of a full run."""
QUICK_EPOCHS, QUICK_TRAIN_SIZE, QUICK_TEST_SIZE, QUICK_BATCH_SIZE = 1, 64, 64, 32


def quick_mode() -> bool:
    """Whether ``$CONVZOO_QUICK`` asks for smoke-test-sized runs."""
    import os

    return os.environ.get(QUICK_VARIABLE, "") not in ("", "0")


def quick_cap(value: int | None, cap: int) -> int:
    """``value`` capped at ``cap`` under ``CONVZOO_QUICK=1`` (None means "all": the cap)."""
    if not quick_mode():
        return value  # type: ignore[return-value]
    return cap if value is None else min(value, cap)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                flag_names: dict[str, str] | None = None) -> TrainConfig:
    """The model's default recipe, the YAML file's values (if any), then non-None
    ``overrides`` (CLI flags) on top.

    ``flag_names`` maps an override's key to the flag that set it (``--epochs``,
    ``--set warmup_epochs``), so errors name what the user typed. When the flags shorten
    the file's ``epochs`` below its warm-up and leave the warm-up alone, the warm-up keeps
    its share of the run (one line on stderr says so); a warm-up set by a flag is the
    user's and stays an error when too long.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_yaml(path))
        config_from_dict(values, source=str(path))  # blame the file for the file's own errors
    flags = {key: value for key, value in (overrides or {}).items() if value is not None}
    key_sources = {key: (flag_names or {}).get(key, f"override {key!r}") for key in flags}
    file_epochs = values.get("epochs", TrainConfig.epochs)
    values.update(flags)
    if quick_mode():
        _apply_quick_caps(values, key_sources)
    _apply_model_recipe(values)
    _apply_task_dataset(values)
    _apply_weights_normalisation(values)
    epochs = values.get("epochs", TrainConfig.epochs)
    warmup = values.get("warmup_epochs", TrainConfig.warmup_epochs)
    shortened_by = key_sources.get("epochs")
    if (shortened_by and "warmup_epochs" not in flags and isinstance(warmup, (int, float)) and isinstance(epochs, int)
            and 0 < epochs < file_epochs and warmup >= epochs > 0):
        values["warmup_epochs"] = round(warmup * epochs / file_epochs, 3)
        _note(f"{path or 'config'}: warmup_epochs {warmup} scaled to {values['warmup_epochs']} for {shortened_by} "
              f"{epochs} (its share of the {file_epochs}-epoch recipe); choose it with --set warmup_epochs=N.")
    return config_from_dict(values, source=str(path) if path is not None else "config", key_sources=key_sources)


def _apply_model_recipe(values: dict[str, Any]) -> None:
    """Fill the keys the file and flags left unset from the model's default recipe
    (``convzoo/recipes.py``; each family's recipe is declared beside its model)."""
    from convzoo.recipes import apply_recipe
    from convzoo.registry import get_model_info

    model = values.get("model", TrainConfig.model)
    if not isinstance(model, str):
        return  # config_from_dict reports the wrong type
    epochs = values.get("epochs", TrainConfig.epochs)
    apply_recipe(values, get_model_info(model).recipe, epochs if isinstance(epochs, int) else TrainConfig.epochs)


TASK_DATASETS = {"segmentation": "mnist-scenes", "detection": "mnist-scenes"}
"""The dataset a model of each task trains on when the file and flags name none (the
built-in synthetic data has labels only: no masks, no boxes)."""


def _apply_task_dataset(values: dict[str, Any]) -> None:
    """A segmentation or detection model's default dataset, where none is given."""
    from convzoo.registry import get_model_info

    model = values.get("model", TrainConfig.model)
    if "dataset" in values or not isinstance(model, str):
        return
    task = get_model_info(model).task
    if task in TASK_DATASETS:
        values["dataset"] = TASK_DATASETS[task]


def _apply_weights_normalisation(values: dict[str, Any]) -> None:
    """ImageNet's mean and std for a run from torchvision's ImageNet weights on 3-channel
    images, where the file and flags left them unset: the first layer's filters were
    learnt on images normalised so (an image folder uses them anyway; CIFAR would not)."""
    if values.get("weights") != "torchvision" or ("mean" in values and "std" in values):
        return
    from convzoo.data.catalog import IMAGENET_MEAN, IMAGENET_STD, get_dataset_spec

    try:
        spec = get_dataset_spec(values.get("dataset", TrainConfig.dataset), image_size=values.get("image_size"),
                                channels=values.get("in_channels"))
    except (ConvzooError, TypeError):
        return  # the run reports a bad dataset where it builds it
    if spec.channels == 3:
        values.setdefault("mean", list(IMAGENET_MEAN))
        values.setdefault("std", list(IMAGENET_STD))


def _apply_quick_caps(values: dict[str, Any], key_sources: dict[str, str]) -> None:
    """Cap epochs and dataset sizes for ``CONVZOO_QUICK=1``, as if a flag had shortened them."""
    caps = {"epochs": QUICK_EPOCHS, "train_size": QUICK_TRAIN_SIZE, "test_size": QUICK_TEST_SIZE,
            "batch_size": QUICK_BATCH_SIZE}
    for key, cap in caps.items():
        current = values.get(key, getattr(TrainConfig, key, None))
        if current is None or (isinstance(current, int) and current > cap):
            values[key] = cap
            key_sources.setdefault(key, f"${QUICK_VARIABLE}")


def _note(message: str) -> None:
    """One line on stderr from the main process (under torchrun every rank loads the config)."""
    import os
    import sys

    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr)


def parse_set_options(assignments: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` flags as a dict, each value read as YAML (``0.1``, ``true``, ``null``).

    Named flags cover the common keys; ``--set`` reaches every key of the config, as a
    YAML file would, so that no recipe needs editing for a one-off change.
    """
    import yaml

    values: dict[str, Any] = {}
    for assignment in assignments or []:
        key, equals, text = assignment.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ConvzooError(f"--set expects KEY=VALUE (e.g. --set warmup_epochs=0), got {assignment!r}.")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConvzooError(f"--set {key}: {text!r} is not a valid YAML value. Quote it or fix the syntax.") from None
        if value is None:
            # None means "flag not given" everywhere else; unsetting belongs in the YAML file.
            raise ConvzooError(f"--set {key} needs a value; to unset a key, remove it from the config file.")
        values[key] = value
    return values


def save_config(config: TrainConfig, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
