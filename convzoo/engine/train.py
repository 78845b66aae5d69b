"""The training loop: one readable pass from data to checkpoints.

``train(config)`` is what ``convzoo train`` runs. Each epoch: train on every batch,
evaluate on the test split, log, and write ``last.pt`` (and ``best.pt`` when the test
accuracy improved) atomically. Everything that makes the next epoch's numbers (model,
optimiser, schedule, epoch, RNG states) is in the checkpoint, so ``--resume`` continues
bit-identically on CPU.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from convzoo.config import RUN_DEFINING_KEYS, TrainConfig, config_from_dict, read_yaml, save_config
from convzoo.engine.checkpoint import (
    CHECKPOINT_FORMAT, atomic_save, load_checkpoint, load_model_state, restore_rng_states, rng_states,
)
from convzoo.engine.evaluate import autocast_context, evaluate, main_logits
from convzoo.engine.logging import RunLogger
from convzoo.engine.optim import build_optimizer, build_scheduler
from convzoo.engine.runtime import Runtime, setup_runtime, teardown_runtime
from convzoo.engine.setup import build_model, dataset_spec_for, loaders_for
from convzoo.errors import ConvzooError


def training_loss(outputs: Any, labels: torch.Tensor, label_smoothing: float, aux_weight: float) -> torch.Tensor:
    """Cross-entropy of the main head, plus ``aux_weight`` x each auxiliary head's
    (GoogLeNet's training loss, Szegedy et al. 2014, section 5)."""
    if isinstance(outputs, (tuple, list)):
        main, *auxiliary = outputs
        loss = F.cross_entropy(main.float(), labels, label_smoothing=label_smoothing)
        for aux_logits in auxiliary:
            loss = loss + aux_weight * F.cross_entropy(aux_logits.float(), labels, label_smoothing=label_smoothing)
        return loss
    return F.cross_entropy(outputs.float(), labels, label_smoothing=label_smoothing)


def default_run_name(config: TrainConfig) -> str:
    dataset = config.dataset.replace("imagefolder:", "").rstrip("/").split("/")[-1] or "images"
    return f"{config.model}-{dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def new_run_dir(config: TrainConfig) -> Path:
    """A fresh run folder; an existing run is never overwritten."""
    out = Path(config.out)
    if config.name:
        run_dir = out / config.name
        if (run_dir / "last.pt").exists() or (run_dir / "config.yaml").exists():
            raise ConvzooError(
                f"run folder {run_dir} already holds a run. Continue it with --resume {run_dir}, "
                "or start a new one with another --name."
            )
        return run_dir
    base = out / default_run_name(config)
    run_dir, suffix = base, 1
    while run_dir.exists():
        suffix += 1
        run_dir = base.with_name(f"{base.name}-{suffix}")
    return run_dir


def resume_config(run_dir: str | Path, overrides: dict[str, Any]) -> tuple[TrainConfig, Path]:
    """The saved config of ``run_dir``, with harmless overrides (device, data folder) applied.

    Flags that would change what the run computes are refused: a resumed run must be the
    run it continues.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConvzooError(f"{run_dir} is not a convzoo run folder (no config.yaml). Pass the folder a run was written to.")
    saved = config_from_dict(read_yaml(config_path), source=str(config_path))
    changed = [
        key for key, value in overrides.items()
        if value is not None and key in RUN_DEFINING_KEYS and getattr(saved, key) != value
    ]
    if changed:
        raise ConvzooError(
            f"--resume continues the run as it was configured; {', '.join(changed)} would change it. "
            "Start a new run instead (drop --resume)."
        )
    values = saved.to_dict()
    values.update({k: v for k, v in overrides.items() if v is not None and k not in ("out", "name")})
    return config_from_dict(values, source=str(config_path)), run_dir


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def train(config: TrainConfig | None, *, resume: str | Path | None = None, overrides: dict[str, Any] | None = None,
          quiet: bool = False, progress_bars: bool = True) -> dict[str, Any]:
    """Train ``config`` (or continue the run in ``resume``) and return the run's summary.

    ``quiet`` silences stderr entirely (notebooks, tests); ``progress_bars=False`` keeps
    the one plain line per epoch but never draws bars (``--json``).
    """
    if resume is not None:
        config, run_dir = resume_config(resume, overrides or {})
        checkpoint = load_checkpoint(run_dir / "last.pt") if (run_dir / "last.pt").exists() else None
    else:
        run_dir, checkpoint = new_run_dir(config), None
    runtime = setup_runtime(config.device)
    try:
        return _train(config, run_dir, checkpoint, runtime, quiet, progress_bars)
    finally:
        teardown_runtime(runtime)


def _train(config: TrainConfig, run_dir: Path, checkpoint: dict | None, runtime: Runtime, quiet: bool,
           progress_bars: bool) -> dict[str, Any]:
    device = runtime.device
    if checkpoint is not None and checkpoint["epoch"] >= config.epochs:
        return _already_complete(config, run_dir, checkpoint, runtime, quiet)

    torch.manual_seed(config.seed)
    spec, pad_to = dataset_spec_for(config)
    loaders = loaders_for(config, spec, pad_to, device, runtime.rank, runtime.world_size)
    if len(loaders.train) == 0:
        raise ConvzooError(
            f"batch size {config.batch_size} is larger than the training set ({loaders.train.num_samples} images). Lower --batch-size."
        )
    model = build_model(
        config.model, spec, loaders.image_size, model_kwargs=config.model_kwargs,
        weights=config.weights if checkpoint is None else None, conv=config.conv,
    ).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    aux_weight = float(getattr(model, "aux_loss_weight", 0.0))
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, len(loaders.train))
    start_epoch, best_acc, best_epoch = 0, -1.0, 0
    if checkpoint is not None:
        load_model_state(model, checkpoint["model"], checkpoint["path"], config.model)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        restore_rng_states(checkpoint["rng"])
        start_epoch, best_acc, best_epoch = checkpoint["epoch"], checkpoint["best_acc"], checkpoint["best_epoch"]
    train_model = model
    if runtime.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    logger = RunLogger(run_dir, enabled=runtime.is_main, quiet=quiet, progress_bars=progress_bars)
    logger.message(
        f"{'resuming' if checkpoint else 'training'} {config.model} on {spec.name} "
        f"({loaders.train.num_samples * runtime.world_size:,} images, {loaders.image_size}x{loaders.image_size}) on {device}"
        + (f" x{runtime.world_size}" if runtime.distributed else "") + f" -> {run_dir}"
    )
    train_time = float(checkpoint.get("train_time_s", 0.0)) if checkpoint else 0.0
    record: dict[str, Any] = {}
    test: dict[str, Any] = {}
    for epoch in range(start_epoch, config.epochs):
        loaders.train.set_epoch(epoch)
        train_model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        progress = logger.progress(len(loaders.train), f"epoch {epoch + 1}/{config.epochs}")
        started = time.perf_counter()
        for step, (images, labels) in enumerate(loaders.train):
            with autocast_context(device, config.amp):
                outputs = train_model(images)
                loss = training_loss(outputs, labels, config.label_smoothing, aux_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            # Accumulate on the device: no host sync per step.
            loss_sum += loss.detach() * labels.numel()
            correct += (main_logits(outputs).detach().argmax(1) == labels).sum()
            seen += labels.numel()
            if progress.progress is not None and (step % 10 == 0 or step + 1 == len(loaders.train)):
                rate = seen / max(time.perf_counter() - started, 1e-9)
                progress.update(step + 1, f"loss {loss_sum.item() / seen:.4f}  acc {100 * correct.item() / seen:.2f}%  "
                                          f"lr {scheduler.get_last_lr()[0]:.3g}  {rate:,.0f} img/s")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_time = time.perf_counter() - started
        progress.close()
        train_time += epoch_time
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss):
            raise ConvzooError(
                f"the training loss became {train_loss} in epoch {epoch + 1}; the run stopped and its last good "
                f"checkpoint in {run_dir} is kept. Lower --lr, or set grad_clip in the config."
            )
        test = evaluate(model, loaders.test, device, num_classes=spec.num_classes, amp=config.amp)
        is_best = test["acc1"] > best_acc
        if is_best:
            best_acc, best_epoch = test["acc1"], epoch + 1
        record = {
            "epoch": epoch + 1, "epochs": config.epochs,
            "train_loss": train_loss, "train_acc": correct.item() / seen,
            "test_loss": test["loss"], "test_acc": test["acc1"], "test_acc5": test["acc5"],
            "lr": scheduler.get_last_lr()[0],
            "train_images": seen * runtime.world_size, "test_images": test["n"],
            "images_per_s": seen * runtime.world_size / epoch_time, "epoch_time_s": epoch_time,
        }
        logger.log_epoch(record)
        if runtime.is_main:
            state = {
                "format": CHECKPOINT_FORMAT, "model_name": config.model, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1, "best_acc": best_acc, "best_epoch": best_epoch,
                "test_acc": test["acc1"], "rng": rng_states(), "config": config.to_dict(),
                "image_size": loaders.image_size, "num_classes": spec.num_classes, "train_time_s": train_time,
            }
            atomic_save(state, run_dir / "last.pt")
            if is_best:
                atomic_save(state, run_dir / "best.pt")
    result = {
        "run_dir": str(run_dir), "model": config.model, "dataset": spec.name, "device": str(device),
        "epochs": config.epochs, "best_acc": best_acc, "best_epoch": best_epoch,
        "final_acc": test.get("acc1", best_acc), "final_loss": test.get("loss"),
        "train_time_s": train_time, "complete": True,
    }
    logger.close(hparams=config.to_dict(), metrics={"best_acc": best_acc, "final_acc": result["final_acc"]})
    return result


def _already_complete(config: TrainConfig, run_dir: Path, checkpoint: dict, runtime: Runtime, quiet: bool) -> dict[str, Any]:
    if runtime.is_main and not quiet:
        import sys

        print(f"{run_dir} already completed its {config.epochs} epochs; nothing to do.", file=sys.stderr)
    return {
        "run_dir": str(run_dir), "model": config.model, "dataset": config.dataset, "device": str(runtime.device),
        "epochs": config.epochs, "best_acc": checkpoint["best_acc"], "best_epoch": checkpoint["best_epoch"],
        "final_acc": checkpoint["test_acc"], "final_loss": None,
        "train_time_s": checkpoint.get("train_time_s", 0.0), "complete": True, "already_complete": True,
    }
