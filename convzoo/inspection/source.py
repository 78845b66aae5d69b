"""The model as its run built it: from ``--checkpoint``, ``--model --random-init`` or
``--model --weights torchvision|PATH``.

Every inspection command (``probe``, ``visualize``, ``explain``, ``attack``, ``predict``,
``export``) takes a model the same three ways and must rebuild exactly the network a
training run produced: same architecture, same small-input variant, same class count and
channels, same padding of small images. ``resolve_model_source`` turns the options into a
``ModelSource`` (config + weights, no tensors moved yet) and ``build_source_model`` makes
the ``nn.Module`` from it, so the rules live in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from convzoo.config import TrainConfig, config_from_dict
from convzoo.data.catalog import IMAGENET_MEAN, IMAGENET_STD, DatasetSpec
from convzoo.errors import ConvzooError
from convzoo.registry import get_model_info

IMAGENET = "imagenet"
"""Pseudo-dataset of ``--weights torchvision``: 3x224x224 ImageNet images, 1000 classes,
resized to 256 and centre-cropped to 224 as torchvision's weights were evaluated."""


@dataclass
class ModelSource:
    """What is inspected: a model as a run built it, with its weights or none."""

    config: TrainConfig
    """The run's config: model, dataset it was trained on, model_kwargs, conv, data_dir."""
    state: dict[str, Any] | None
    """Trained weights; None for a randomly initialised network (or torchvision's, fetched at build)."""
    source: str
    """The checkpoint's path, ``random-init``, ``torchvision`` or the weights file."""
    image_size: int | None = None
    """The side the checkpoint's model was built for."""
    class_names: tuple[str, ...] | None = None
    """Names of the output classes, when known (stored in the checkpoint, or the dataset's)."""
    weights: str | None = None
    """``torchvision`` when the weights are torchvision's ImageNet ones (loaded at build time)."""
    dataset_known: bool = True
    """False for a bare state dict given without ``--dataset``: ``config.dataset`` is a guess."""
    fills_partly: bool = False
    """True for a bare state dict given with ``--dataset``: the model is built for that
    dataset, and the weights fill it as far as they fit (a checkpoint must fit exactly)."""

    @property
    def is_trained(self) -> bool:
        return self.state is not None or self.weights is not None

    @property
    def model_name(self) -> str:
        return self.config.model


def resolve_model_source(
    *,
    checkpoint: str | None = None,
    model: str | None = None,
    random_init: bool = False,
    weights: str | None = None,
    data_dir: str | None = None,
    conv: str | None = None,
    dataset: str | None = None,
    for_listing: bool = False,
    offered: tuple[str, ...] = ("--checkpoint", "--random-init", "--weights"),
) -> ModelSource:
    """The model from the options every inspection command shares, or a one-line error.

    ``--checkpoint RUN/best.pt`` | ``--model NAME --random-init`` |
    ``--model NAME --weights torchvision|PATH``; ``for_listing`` accepts ``--model`` alone
    (listing layers needs no weights). ``offered``: the options the command has, the only
    ones its messages suggest (``probe`` has no ``--weights``, ``predict`` no ``--random-init``).
    """
    ways = {"--checkpoint": "--checkpoint RUN/best.pt for a trained network",
            "--random-init": "--model NAME --random-init for a randomly initialised one",
            "--weights": "--model NAME --weights torchvision for ImageNet weights"}
    ways = [text for flag, text in ways.items() if flag in offered]
    chosen = [flag for flag, given in (("--checkpoint", checkpoint is not None), ("--random-init", random_init),
                                        ("--weights", weights is not None)) if given]
    if len(chosen) > 1:
        raise ConvzooError(f"pass one of --checkpoint RUN/best.pt, --random-init or --weights, not {' and '.join(chosen)}.")
    if checkpoint is not None:
        return _from_checkpoint(checkpoint, model, data_dir, conv)
    if weights is not None:
        check_weights_file(weights)
    if weights is not None and str(weights).endswith(".safetensors"):
        described = _from_described_weights(weights, model, data_dir, conv)
        if described is not None:
            return described
    if weights is not None and weights != "torchvision" and is_run_checkpoint(weights):
        return _from_checkpoint(weights, model, data_dir, conv)  # a run's best.pt knows its dataset and classes
    if model is None:
        raise ConvzooError(f"no model given: pass {_one_of(ways)}.")
    get_model_info(model)  # an unknown name fails here, naming the close ones
    if weights == "torchvision":
        values = {"model": model, "dataset": "synthetic", "data_dir": data_dir, "conv": conv or "torch"}
        config = config_from_dict(values, source="--weights torchvision")
        return ModelSource(config, None, "torchvision", 224, _imagenet_categories(model), weights="torchvision")
    if weights is not None:
        from convzoo.models.pretrained import read_state_dict

        # Bare weights say nothing of their dataset: --dataset's normalisation and class
        # names, else synthetic's (``dataset_known`` tells commands that must not guess).
        values = {"model": model, "dataset": dataset or "synthetic", "data_dir": data_dir, "conv": conv or "torch"}
        config = config_from_dict(values, source="--weights")
        names = None
        if dataset is not None:
            from convzoo.data import get_dataset_spec
            from convzoo.data.class_names import dataset_class_names

            names = dataset_class_names(get_dataset_spec(dataset))
        return ModelSource(config, read_state_dict(weights), str(weights), class_names=names,
                           dataset_known=dataset is not None, fills_partly=dataset is not None)
    if not (random_init or for_listing):
        raise ConvzooError(f"--model {model} needs its weights: pass {_one_of(ways[1:] + ways[:1])}.")
    values = {"model": model, "dataset": dataset or "synthetic", "data_dir": data_dir, "conv": conv or "torch"}
    return ModelSource(config_from_dict(values, source="model options"), None, "random-init")


EXPORT_SUFFIXES = {".onnx": "onnxruntime", ".torchscript.pt": "torch.jit.load", ".pt2": "torch.export.load"}
"""``convzoo export``'s files for other runtimes, which ``--weights`` does not read back."""

WEIGHTS_FILES = ("'torchvision', a run's best.pt or last.pt, a state-dict file (.pt, .pth, .bin) "
                 "or a .safetensors file")


def check_weights_file(weights: str) -> None:
    """A one-line error for the files ``--weights`` does not take, saying which it does."""
    for suffix, runtime in EXPORT_SUFFIXES.items():
        if str(weights).lower().endswith(suffix):
            raise ConvzooError(
                f"{weights} is an export for {runtime}, which --weights does not read: it takes {WEIGHTS_FILES} "
                "(e.g. the run's best.pt, or its `convzoo export --format safetensors` file).")


def is_run_checkpoint(path: str) -> bool:
    """Whether ``path`` is a checkpoint ``convzoo train`` wrote (config, class names and all)."""
    from convzoo.engine.checkpoint import CHECKPOINT_FORMAT

    try:
        loaded = torch.load(path, map_location="meta", weights_only=True)
    except Exception:  # noqa: BLE001 - not a torch file (or not one): read_state_dict says so in its words
        return False
    return isinstance(loaded, dict) and loaded.get("format") == CHECKPOINT_FORMAT


def weights_run_values(weights: str, model: str | None = None) -> dict[str, Any] | None:
    """What a weights file says of the run that made it (model, dataset, input shape), for
    ``train --weights``: None for torchvision's and for bare state dicts."""
    if weights == "torchvision" or not (str(weights).endswith(".safetensors") or is_run_checkpoint(weights)):
        return None
    source = resolve_model_source(weights=weights, model=model)
    if not source.dataset_known:  # a .safetensors file without convzoo's header
        return None
    keys = ("model", "dataset", "model_kwargs", "image_size", "in_channels", "mean", "std")
    return {key: getattr(source.config, key) for key in keys if getattr(source.config, key) is not None}


def _one_of(ways: list[str]) -> str:
    return ways[0] if len(ways) == 1 else f"{', '.join(ways[:-1])}, or {ways[-1]}"


def _from_checkpoint(checkpoint: str, model: str | None, data_dir: str | None, conv: str | None) -> ModelSource:
    from convzoo.data.files import data_dir_for_saved_run
    from convzoo.engine.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint, plain_weights_hint="pass it with --weights PATH --model NAME instead")
    if model is not None and model != loaded["model_name"]:
        raise ConvzooError(
            f"--model {model} does not match the checkpoint {loaded['path']}, which holds a "
            f"{loaded['model_name']}. Drop --model or pass a {model} checkpoint."
        )
    values = dict(loaded["config"])
    values.update({key: value for key, value in {"conv": conv}.items() if value is not None})
    values["data_dir"] = data_dir_for_saved_run(data_dir, values.get("data_dir"))
    values["weights"] = None
    config = config_from_dict(values, source=loaded["path"])
    names = loaded.get("class_names")
    return ModelSource(config, loaded["model"], loaded["path"], loaded.get("image_size"),
                       tuple(names) if names else None)


def _from_described_weights(path: str, model: str | None, data_dir: str | None, conv: str | None) -> ModelSource | None:
    """A model rebuilt from a safetensors file's convzoo metadata (``convzoo export``):
    name, classes, channels, image size, dataset and class names; None for a file
    without it (timm's, the hub's), which then needs ``--model``."""
    from convzoo.deploy.safetensors_io import read_safetensors

    state, metadata = read_safetensors(path)
    if metadata is None:
        if model is None:
            raise ConvzooError(f"{path} carries no convzoo metadata (model name, classes); pass --model NAME with it.")
        return None
    return source_from_metadata(metadata, state, path, model, data_dir, conv)


def source_from_metadata(metadata: Any, state: dict[str, Any] | None, path: str, model: str | None,
                         data_dir: str | None, conv: str | None) -> ModelSource:
    """The model a file's convzoo metadata (``WeightsMetadata``) describes: in a .safetensors
    header, an ONNX file's ``metadata_props``, a TorchScript file's extra file."""
    if model is not None and model != metadata.model_name:
        raise ConvzooError(f"--model {model} does not match {path}, which holds a {metadata.model_name}. "
                           f"Drop --model or pass a {model} weights file.")
    from convzoo.data.catalog import IMAGEFOLDER_PREFIX

    values: dict[str, Any] = {"model": metadata.model_name, "dataset": metadata.dataset, "data_dir": data_dir,
                              "conv": conv or "torch", "model_kwargs": metadata.model_kwargs}
    # Synthetic images and image folders take the size the model was built for (and
    # synthetic its channels); the named datasets have a shape of their own.
    if metadata.mean and metadata.std:  # what the run normalised with (files before these keys had none)
        values.update(mean=list(metadata.mean), std=list(metadata.std))
    if metadata.dataset == "synthetic":
        values.update(image_size=metadata.image_size, in_channels=metadata.in_channels)
    elif metadata.dataset.startswith(IMAGEFOLDER_PREFIX):
        values["image_size"] = metadata.image_size
    config = config_from_dict(values, source=str(path))
    return ModelSource(config, state, str(path), metadata.image_size, metadata.class_names or None)


def _imagenet_categories(model: str) -> tuple[str, ...] | None:
    """torchvision's ImageNet category names for ``model`` (from its weights' metadata, no download)."""
    try:
        import torchvision

        return tuple(torchvision.models.get_model_weights(model).DEFAULT.meta["categories"])
    except (ValueError, KeyError, AttributeError):
        return None


def source_spec(source: ModelSource, dataset: str | None = None) -> tuple[DatasetSpec, int | None]:
    """The dataset spec the model's inputs come from and the padded side of fixed-size models.

    ``dataset`` (another dataset of the same shape) overrides the run's; its channels must
    match the model's, since the first convolution was built for them.
    """
    from convzoo.engine.setup import dataset_spec_for

    if source.weights == "torchvision":
        if dataset is not None:
            raise ConvzooError(
                "--weights torchvision takes ImageNet images; pass image files, not --dataset "
                "(or train a model on that dataset and pass --checkpoint)."
            )
        return DatasetSpec(IMAGENET, 3, 224, 1000, IMAGENET_MEAN, IMAGENET_STD, "resized_crop_flip", in_memory=False), None
    model_spec, _ = dataset_spec_for(source.config)
    if dataset is None or dataset == source.config.dataset:
        return dataset_spec_for(source.config)
    spec, pad_to = dataset_spec_for(dataclasses.replace(source.config, dataset=dataset))
    if spec.channels != model_spec.channels:
        raise ConvzooError(
            f"{source.config.model} in {source.source} takes {model_spec.channels}-channel images; "
            f"{spec.name} has {spec.channels}. Use a dataset with {model_spec.channels} channel(s)."
        )
    return spec, pad_to


def model_input_side(source: ModelSource, spec: DatasetSpec, pad_to: int | None) -> int:
    """The side of the square images the model is fed."""
    return source.image_size or max(spec.image_size, pad_to or 0)


def build_source_model(
    source: ModelSource, device: torch.device | str = "cpu", *, trained: bool = True, seed: int | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """The model in eval mode on ``device``: with its weights when ``trained``, else as
    initialised under ``seed`` (the same draw the training run started from)."""
    from convzoo.engine.checkpoint import load_model_state
    from convzoo.engine.setup import build_model, dataset_spec_for
    from convzoo.models.pretrained import load_weights, say_fit

    device = torch.device(device)
    torch.manual_seed(source.config.seed if seed is None else seed)
    if source.weights == "torchvision":
        from convzoo.models.pretrained import load_pretrained
        from convzoo.registry import create_model

        model = create_model(source.config.model)
        if trained:
            load_pretrained(model, source.config.model, "torchvision")
        if source.config.conv == "scratch":
            from convzoo.ops import use_scratch_conv

            use_scratch_conv(model)
    else:
        spec, pad_to = dataset_spec_for(source.config)
        side = image_size or model_input_side(source, spec, pad_to)
        model = build_model(source.config.model, spec, side, model_kwargs=source.config.model_kwargs,
                            conv=source.config.conv)
        if trained and source.state is not None and source.fills_partly:
            say_fit(load_weights(model, source.config.model, source.state, source.source))
        elif trained and source.state is not None:
            load_model_state(model, source.state, source.source, source.config.model)
    model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
