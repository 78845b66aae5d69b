"""``probe``: from a checkpoint (or a random network) to accuracy at every exit.

The lecture's question, *how do the layers correspond to semantics?*, answered as
Zhang et al. (2017) did for AlexNet: freeze the network, exit it at several depths, train
only a linear classifier on each exit's features and compare with the same architecture
at random weights. One call here does all of it; ``convzoo probe`` is its command line.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convzoo.config import QUICK_EPOCHS, QUICK_TEST_SIZE, QUICK_TRAIN_SIZE, TrainConfig, config_from_dict, quick_cap
from convzoo.engine.run_dir import claim_run_dir, dataset_label, remove_if_without_results
from convzoo.errors import ConvzooError
from convzoo.inspection.source import ModelSource, build_source_model, resolve_model_source
from convzoo.probing.features import Exit, FeatureTaps, choose_exits
from convzoo.probing.heads import (
    Batches, EpochStats, FeatureCache, LinearProbes, ProbeOutcome, backbone_batches,
    evaluate_probes, train_probes,
)
from convzoo.probing.layers import trace_layers
from convzoo.registry import get_model_info

DEFAULT_FEATURES = 9216
"""About 9,000 numbers per exit, the size Zhang et al. (2017) pooled AlexNet's conv1..conv5 to."""


@dataclass
class ProbeSettings:
    """Everything about a probe run except what is probed."""

    layers: list[str] | None = None
    """Module names or glob patterns; None: the family's declared exits."""
    features: int = DEFAULT_FEATURES
    epochs: int = 5
    batch_size: int = 256
    eval_batch_size: int = 1000
    lr: float = 0.05
    weight_decay: float = 5e-4
    batch_norm: bool = True
    seed: int | None = None
    """Seed of the random network and of the heads; None: the checkpoint's training seed (else 0)."""
    amp: bool = True
    train_size: int | None = None
    test_size: int | None = None
    """Measure the heads on the first N test images only; None: all of them."""
    cache_features: bool = False
    compare_random: bool = False
    num_workers: int | None = None
    """DataLoader workers for ``imagefolder:`` datasets (in-memory datasets need none);
    None: training's default (``convzoo.data.default_num_workers``)."""
    channels_last: bool | None = None
    """Channels-last memory; None: where it measured faster (``convzoo.engine.fast_path``)."""
    compile: bool = False
    """``torch.compile`` the backbone (its first batch compiles)."""
    compile_mode: str | None = None


Backbone = ModelSource
"""A probed network is an inspection ``ModelSource``: the model as its run built it."""


def resolve_backbone(**options: Any) -> ModelSource:
    """The network to probe (see ``convzoo.inspection.resolve_model_source``)."""
    return resolve_model_source(offered=("--checkpoint", "--random-init"), **options)


def build_backbone(backbone: ModelSource, image_size: int, seed: int, trained: bool, device: torch.device) -> nn.Module:
    """The model in eval mode on ``device``: with its weights when ``trained``, else as
    initialised under ``seed`` (the same draw the training run started from)."""
    return build_source_model(backbone, device, trained=trained, seed=seed, image_size=backbone.image_size or image_size)


def input_shape(backbone: Backbone, dataset: str | None = None) -> tuple[tuple[int, int, int], Any, int | None]:
    """(C, H, W) of the images the probe feeds, the data's spec and the padding for fixed-size models."""
    from convzoo.engine.setup import dataset_spec_for

    model_spec, _ = dataset_spec_for(backbone.config)
    data_config = dataclasses.replace(backbone.config, dataset=dataset or backbone.config.dataset)
    spec, pad_to = dataset_spec_for(data_config)
    if spec.channels != model_spec.channels:
        raise ConvzooError(
            f"{backbone.config.model} in {backbone.source} takes {model_spec.channels}-channel images; "
            f"{spec.name} has {spec.channels}. Probe on a dataset with {model_spec.channels} channel(s)."
        )
    side = max(spec.image_size, pad_to or 0)
    return (spec.channels, side, side), spec, pad_to


def list_layers(backbone: Backbone, dataset: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Every tappable module with its output shape, marking the family's declared exits."""
    from convzoo.engine.runtime import pick_device

    torch_device = pick_device(device)
    shape, spec, _ = input_shape(backbone, dataset)
    model = build_backbone(backbone, shape[1], 0, trained=False, device=torch_device)
    layers = trace_layers(model, torch.zeros(1, *shape, device=torch_device))
    declared = set(get_model_info(backbone.config.model).probe_layers)
    return {
        "model": backbone.config.model,
        "dataset": spec.name,
        "input_shape": list(shape),
        "layers": [
            {"name": layer.name, "type": layer.type_name, "shape": list(layer.shape), "calls": layer.calls,
             "default_exit": layer.name in declared}
            for layer in layers
        ],
    }


def probe_exits(
    model: nn.Module,
    exits: list[Exit],
    loaders: Any,
    num_classes: int,
    settings: ProbeSettings,
    seed: int,
    device: torch.device,
    logger: Any = None,
    label: str = "trained",
) -> ProbeOutcome:
    """Train one linear head per exit on ``model``'s frozen features and test them.

    ``model`` is put in eval mode: its BatchNorm layers normalise with their running
    statistics and never update them, and dropout is off, so the features are those of
    the network as trained.
    """
    started = time.perf_counter()
    model.eval()
    torch.manual_seed(seed)  # the same head initialisation for the trained and the random network
    probes = LinearProbes([exit.dim for exit in exits], num_classes, settings.batch_norm).to(device)
    steps = len(loaders.train)
    cache = FeatureCache(steps * settings.batch_size, seed) if settings.cache_features else None
    with FeatureTaps(model, exits) as taps:
        if settings.compile or settings.compile_mode:
            from convzoo.engine.fast_path import compile_model

            # Compiled after the taps' hooks are on, so that dynamo traces them in.
            taps.model = compile_model(model, device, settings.compile_mode)

        def epoch_batches(epoch: int) -> Batches:
            if cache is not None and epoch > 0:
                batches = cache.replay(epoch)
            else:
                batches = backbone_batches(taps, loaders.train, device, settings.amp, epoch)
                if cache is not None:
                    batches = cache.recording(batches)
            return _with_progress(batches, logger, steps, f"{label} epoch {epoch + 1}/{settings.epochs}")

        def on_epoch(stats: EpochStats) -> None:
            if logger is not None:
                log_epoch(logger, label, exits, stats, settings.epochs)

        history = train_probes(
            probes, epoch_batches, epochs=settings.epochs, steps_per_epoch=steps, lr=settings.lr,
            weight_decay=settings.weight_decay, amp=settings.amp, device=device, on_epoch=on_epoch,
        )
        test_acc = evaluate_probes(probes, taps, loaders.test, device, settings.amp)
    return ProbeOutcome(history[-1].accuracies, test_acc, history, time.perf_counter() - started)


def _with_progress(batches: Batches, logger: Any, total: int, description: str) -> Batches:
    if logger is None:
        yield from batches
        return
    progress = logger.progress(total, description)
    try:
        for step, batch in enumerate(batches):
            yield batch
            if progress.due(step):
                progress.update(step + 1, "")
    finally:
        progress.close()


def log_epoch(logger: Any, label: str, exits: list[Exit], stats: EpochStats, epochs: int) -> None:
    """One stderr line per epoch and per-exit TensorBoard scalars."""
    for exit, loss, accuracy in zip(exits, stats.losses, stats.accuracies):
        logger.writer.add_scalar(f"{label}/train_loss/{exit.name}", loss, stats.epoch)
        logger.writer.add_scalar(f"{label}/train_acc/{exit.name}", accuracy, stats.epoch)
    logger.writer.flush()
    accuracies = "  ".join(f"{exit.name} {100 * accuracy:.1f}%" for exit, accuracy in zip(exits, stats.accuracies))
    logger.message(
        f"{label} epoch {stats.epoch}/{epochs}  train acc  {accuracies}  "
        f"{stats.images / max(stats.seconds, 1e-9):,.0f} img/s  {stats.seconds:.1f}s"
    )


def new_probe_dir(out: str, name: str | None, model: str, dataset: str) -> Path:
    """Claim ``out/name``, or a fresh ``out/probe-MODEL-DATASET-TIME[-N]``, atomically: an
    earlier probe (or one started in the same second) is never overwritten."""
    return claim_run_dir(out, name, f"probe-{model}-{dataset_label(dataset)}")


def probe(
    backbone: Backbone,
    settings: ProbeSettings,
    *,
    dataset: str | None = None,
    device: str = "auto",
    out: str = "runs",
    name: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Probe ``backbone`` at every exit (and its random twin with ``compare_random``).

    Writes ``probe.json``, ``probe.csv``, ``probe.png`` and TensorBoard scalars to a new
    run folder and returns the results object that ``--json`` prints.
    """
    from convzoo.data import build_loaders
    from convzoo.engine.fast_path import (
        check_compile_mode, check_compile_toolchain, to_memory_format, use_channels_last,
    )
    from convzoo.engine.logging import RunLogger
    from convzoo.engine.runtime import pick_device
    from convzoo.probing.report import write_outputs

    if settings.compare_random and backbone.state is None:
        raise ConvzooError("--compare-random compares a trained network with its random twin; it needs --checkpoint.")
    for option, value in (("--features", settings.features), ("--epochs", settings.epochs),
                          ("--batch-size", settings.batch_size), ("--train-size", settings.train_size),
                          ("--test-size", settings.test_size)):
        if value is not None and value < 1:
            every = " (leave it out to use every image)" if option.endswith("-size") else ""
            raise ConvzooError(f"{option} must be at least 1, got {value}{every}.")
    if settings.num_workers is not None and settings.num_workers < 0:  # None: default_num_workers()
        raise ConvzooError(f"--num-workers must not be negative, got {settings.num_workers}.")
    # $CONVZOO_QUICK=1 (the README test): a smoke-test-sized probe with the same outputs.
    settings = dataclasses.replace(settings, epochs=quick_cap(settings.epochs, QUICK_EPOCHS),
                                   train_size=quick_cap(settings.train_size, QUICK_TRAIN_SIZE),
                                   batch_size=quick_cap(settings.batch_size, QUICK_TRAIN_SIZE))
    if settings.lr <= 0:
        raise ConvzooError(f"--lr must be positive, got {settings.lr}.")
    check_compile_mode(settings.compile_mode)
    torch_device = pick_device(device)
    if settings.compile or settings.compile_mode:
        check_compile_toolchain(torch_device)  # before a run folder exists
    seed = backbone.config.seed if settings.seed is None else settings.seed
    shape, spec, pad_to = input_shape(backbone, dataset)
    channels_last = use_channels_last(backbone.config.model, torch_device, conv=backbone.config.conv,
                                      requested=settings.channels_last)
    model = to_memory_format(build_backbone(backbone, shape[1], seed, trained=True, device=torch_device), channels_last)
    exits = choose_exits(
        model, torch.zeros(1, *shape, device=torch_device), settings.layers, settings.features,
        get_model_info(backbone.config.model).probe_layers,
        f"convzoo probe --model {backbone.config.model} --list-layers",
    )
    loaders = build_loaders(
        spec, batch_size=settings.batch_size, eval_batch_size=settings.eval_batch_size, device=torch_device,
        data_dir=backbone.config.data_dir, seed=seed, augment=False, train_size=settings.train_size,
        test_size=quick_cap(settings.test_size, QUICK_TEST_SIZE),
        pad_to=pad_to, channels_last=channels_last, num_workers=settings.num_workers,
    )
    if len(loaders.train) == 0:
        raise ConvzooError(
            f"batch size {settings.batch_size} is larger than the training set ({loaders.train.num_samples} images). "
            "Lower --batch-size."
        )
    run_dir = new_probe_dir(out, name, backbone.config.model, spec.name)
    logger = RunLogger(run_dir, enabled=True, quiet=quiet)
    logger.message(
        f"probing {backbone.config.model} ({backbone.source}) at {len(exits)} exits on {spec.name} "
        f"({loaders.train.num_samples:,} training images, {loaders.test.num_samples:,} test images) on {torch_device} "
        f"-> {run_dir}"
    )
    try:
        trained = probe_exits(model, exits, loaders, spec.num_classes, settings, seed, torch_device, logger,
                              "trained" if backbone.state is not None else "random")
        random = None
        if settings.compare_random:
            twin = to_memory_format(build_backbone(backbone, shape[1], seed, trained=False, device=torch_device),
                                    channels_last)
            random = probe_exits(twin, exits, loaders, spec.num_classes, settings, seed, torch_device, logger, "random")
        result = results_object(backbone, spec, exits, trained, random, settings, seed, torch_device, run_dir)
        write_outputs(result, run_dir, logger.writer)
    except BaseException:
        logger.close()
        remove_if_without_results(run_dir)  # failed or interrupted: the retry may use the same --name
        raise
    logger.close()
    return result


def results_object(backbone: Backbone, spec: Any, exits: list[Exit], trained: ProbeOutcome,
                   random: ProbeOutcome | None, settings: ProbeSettings, seed: int, device: torch.device,
                   run_dir: Path) -> dict[str, Any]:
    """What ``--json`` prints and ``probe.json`` holds; accuracies are fractions."""
    rows = []
    for index, exit in enumerate(exits):
        row: dict[str, Any] = {"name": exit.name, "dim": exit.dim, "train_acc": trained.train_acc[index],
                               "test_acc": trained.test_acc[index]}
        if random is not None:
            row["random_test_acc"] = random.test_acc[index]
        rows.append(row)
    result: dict[str, Any] = {
        "model": backbone.config.model,
        "dataset": spec.name,
        "layers": rows,
        "source": backbone.source,
        "num_classes": spec.num_classes,
        "features": settings.features,
        "epochs": settings.epochs,
        "seed": seed,
        "device": str(device),
        "probe_time_s": trained.seconds,
        "run_dir": str(run_dir),
    }
    if random is not None:
        result["random_probe_time_s"] = random.seconds
    return result
