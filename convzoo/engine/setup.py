"""Building what a run needs from its config: dataset spec, loaders and the model.

Shared by ``train``, ``eval`` and ``probe`` so that a checkpoint is always rebuilt with
the same shape of model and data that produced it.
"""

from __future__ import annotations

from typing import Any

import torch

from convzoo.data import DatasetSpec, build_loaders, get_dataset_spec
from convzoo.errors import ConvzooError
from convzoo.registry import create_model, get_model_info


def dataset_spec_for(config: Any) -> tuple[DatasetSpec, int | None]:
    """The dataset spec and the padded image size a fixed-input model needs (else None).

    Synthetic data is drawn at the model's own input for fixed-size models (LeNet-5:
    1x32x32), else at ``image_size``/``in_channels`` (default 3x32x32).
    """
    info = get_model_info(config.model)
    channels, model_size, _ = info.input_size
    image_size, in_channels = config.image_size, config.in_channels
    if config.dataset == "synthetic" and info.fixed_input_size:
        image_size, in_channels = image_size or model_size, in_channels or channels
    spec = with_normalisation(get_dataset_spec(config.dataset, image_size=image_size, channels=in_channels),
                              config.mean, config.std)
    if not info.fixed_input_size:
        return spec, None
    if spec.image_size > model_size:
        raise ConvzooError(
            f"{config.model} takes {model_size}x{model_size} images but {config.dataset} has "
            f"{spec.image_size}x{spec.image_size}. Choose a model that adapts to its input, e.g. resnet20."
        )
    return spec, model_size


def with_normalisation(spec: DatasetSpec, mean: list[float] | None, std: list[float] | None) -> DatasetSpec:
    """``spec`` normalised with the config's ``mean``/``std`` where set (one value serves every channel)."""
    import dataclasses

    chosen = {}
    for key, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        if len(values) not in (1, spec.channels):
            raise ConvzooError(f"{key} has {len(values)} values but {spec.name} has {spec.channels} channel(s); "
                               f"give {spec.channels} (or one for all).")
        chosen[key] = tuple(values) * (spec.channels if len(values) == 1 else 1)
    return dataclasses.replace(spec, **chosen) if chosen else spec


def build_model(
    name: str,
    spec: DatasetSpec,
    image_size: int,
    *,
    model_kwargs: dict[str, Any] | None = None,
    conv: str = "torch",
    drop_path: float = 0.0,
) -> torch.nn.Module:
    """The registered model sized for the dataset, with its convolution and stochastic depth
    (``drop_path``: the last block's rate) as asked. Weights are loaded by the caller
    (``models.pretrained.load_pretrained``), which reports how they fitted."""
    try:
        model = create_model(
            name, num_classes=spec.num_classes, in_channels=spec.channels, image_size=image_size, **(model_kwargs or {})
        )
    except TypeError as error:
        raise ConvzooError(f"model {name!r} does not accept model_kwargs {model_kwargs}: {error}") from None
    if drop_path > 0:
        from convzoo.models._common import add_stochastic_depth

        if add_stochastic_depth(model, drop_path) == 0:
            raise ConvzooError(f"--drop-path drops residual branches; {name} has none. Use it with a ResNet, "
                               "a BagNet or mobilenet_v2.")
    if conv == "scratch":
        from convzoo.ops import use_scratch_conv

        use_scratch_conv(model)
    return model


def loaders_for(config: Any, spec: DatasetSpec, pad_to: int | None, device: torch.device, rank: int = 0,
                world_size: int = 1, test_only: bool = False, targets: str = "labels"):
    return build_loaders(
        spec,
        batch_size=config.batch_size,
        eval_batch_size=config.eval_batch_size,
        device=device,
        data_dir=config.data_dir,
        seed=config.seed,
        augment=config.augment,
        train_size=config.train_size,
        test_size=config.test_size,
        pad_to=pad_to,
        rank=rank,
        world_size=world_size,
        num_workers=config.num_workers,
        channels_last=channels_last_for(config, device),
        test_only=test_only,
        auto_augment=config.auto_augment,
        random_erasing=config.random_erasing,
        repeated_aug=config.repeated_aug,
        targets=targets,
    )


def channels_last_for(config: Any, device: torch.device) -> bool:
    """Whether the run's model and batches use channels-last memory: the config's
    ``channels_last`` if set, else what measured faster (``engine.fast_path``)."""
    from convzoo.engine.fast_path import use_channels_last

    return use_channels_last(config.model, device, conv=config.conv, requested=getattr(config, "channels_last", None))
