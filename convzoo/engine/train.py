"""The training loop: one readable pass from data to checkpoints.

``train(config)`` is what ``convzoo train`` runs. Each epoch: train on every batch,
evaluate on the test split, log, and write ``last.pt`` (and ``best.pt`` when the test
accuracy improved) atomically; with ``checkpoint_every``, ``last.pt`` also within an epoch
(engine/mid_epoch.py). Everything that makes the next step's numbers is in the checkpoint
(model, optimiser, epoch, step, running sums) or follows from the config, the epoch and
the step (schedule, data order, random draws), so ``--resume`` continues bit-identically
on CPU, and with another number of torchrun processes continues the same schedule.
SIGINT and SIGTERM stop the run after the step in progress, with a last.pt to resume from
(engine/interrupts.py); at an epoch's end, before its evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from convzoo.config import RUN_DEFINING_KEYS, TrainConfig, config_from_dict, read_yaml, save_config
from convzoo.data.class_names import dataset_class_names
from convzoo.data.files import absolute_data_dir, data_dir_for_saved_run
from convzoo.data.mixing import build_mixer
from convzoo.engine.checkpoint import (
    CHECKPOINT_FORMAT, atomic_save, load_checkpoint, load_model_state, remove_unfinished_writes,
)
from convzoo.engine.divergence import DivergenceGuard
from convzoo.engine.ema import best_state, better_of, build_weight_average, ema_record
from convzoo.engine.evaluate import autocast_context
from convzoo.engine.logging import RunLogger
from convzoo.engine.finetune import Freezing, rates_line
from convzoo.engine.optim import (
    block_rates, build_optimizer, build_scheduler, load_optimizer_state, scheduled_rate, warmup_steps_of,
)
from convzoo.engine.run_dir import (
    claim_run_dir, dataset_label, hold_run_dir, release_run_dir, run_folder_path, timestamped_name,
)
from convzoo.engine.runtime import (
    Runtime, StoppedAfterAnotherRank, barrier, failure_to_raise, max_over_ranks, restore_float32_math, setup_runtime,
    sum_over_ranks, teardown_runtime,
)
from convzoo.engine.interrupts import StopSignals, StoppedBySignal
from convzoo.engine.mid_epoch import CheckpointSchedule, gather_running_sums, restored_running_sums, resume_position
from convzoo.engine.fast_path import compile_model, to_memory_format
from convzoo.engine.setup import build_model, channels_last_for, dataset_spec_for, loaders_for
from convzoo.errors import ConvzooError
from convzoo.recipes import recipe_summary
from convzoo.registry import get_model_info
from convzoo.seeding import derived_seed, seed_generators
from convzoo.tasks import check_task_options, task_for


def default_run_name(config: TrainConfig) -> str:
    """``MODEL-DATASET-TIME``, e.g. ``lenet5-mnist-20260101-120000``."""
    return timestamped_name(f"{config.model}-{dataset_label(config.dataset)}")


def new_run_dir(config: TrainConfig, *, reuse_unstarted: bool = False) -> Path:
    """Claim a fresh run folder (created here, atomically); an existing run is never reused.

    Two commands started in the same second get ``NAME`` and ``NAME-2``. Under torchrun
    rank 0 claims the folder and the other ranks receive its name, so all of them write
    to one run (call this after the process group exists). ``reuse_unstarted`` (``--resume
    auto``) takes over the folder ``--name`` names if it holds no last.pt: the previous
    attempt of the job died before its first checkpoint.
    """
    return Path(decided_on_rank_0(lambda: str(_claim(config, reuse_unstarted))))


def decided_on_rank_0(decide: Callable[[], Any]) -> Any:
    """``decide()`` run by rank 0 alone, its result (or its ``ConvzooError``) on every rank.

    What ranks read from their own disks can differ (node-local folders, a network file
    system whose cache has not yet seen a file): ranks that decided apart would go on into
    different collectives and wait for each other forever.
    """
    import torch.distributed as dist

    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    decided: list[Any] = [None]
    if not distributed or dist.get_rank() == 0:
        try:
            decided[0] = ("value", decide())
        except ConvzooError as error:
            decided[0] = ("error", str(error))
    if distributed:
        dist.broadcast_object_list(decided, src=0)
    kind, value = decided[0]
    if kind == "error":
        raise ConvzooError(value)
    return value


def _claim(config: TrainConfig, reuse_unstarted: bool = False) -> Path:
    if config.name:
        run_dir = run_folder_path(config.out, config.name)
        if reuse_unstarted and run_dir.is_dir() and not (run_dir / "last.pt").exists():
            hold_run_dir(run_dir)  # a run started a moment ago may be in it, not yet at its first last.pt
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # an epoch logged just before the kill
            return run_dir
        if (run_dir / "last.pt").exists() or (run_dir / "config.yaml").exists():
            raise ConvzooError(
                f"run folder {run_dir} already holds a run. Continue it with --resume {run_dir}, "
                "or start a new one with another --name."
            )
    run_dir = claim_run_dir(config.out, config.name, f"{config.model}-{dataset_label(config.dataset)}")
    hold_run_dir(run_dir)
    return run_dir


def run_folder_of(resume: str | Path) -> Path:
    """The run folder ``--resume`` names: the folder itself, or the folder of its ``last.pt``
    (a run is its folder)."""
    path = Path(resume)
    return path.parent if path.suffix == ".pt" and path.is_file() else path


def resume_config(run_dir: str | Path, overrides: dict[str, Any]) -> tuple[TrainConfig, Path]:
    """The saved config of ``run_dir``, with harmless overrides (device, data folder) applied.

    Flags that would change what the run computes are refused: a resumed run must be the
    run it continues. The data folder follows ``eval``'s rule: ``--data-dir`` >
    ``$CONVZOO_DATA`` > the run's own folder if it still exists > the default.
    """
    given = run_dir
    run_dir = run_folder_of(run_dir)
    if Path(given).is_file() and Path(given).name != "last.pt":
        # Resuming continues the newest state; any other file (best.pt: an earlier epoch)
        # would either be ignored or rewind the run and overwrite its later checkpoints.
        raise ConvzooError(
            f"--resume continues a run from its last.pt, not {Path(given).name}. Pass the run folder {run_dir}; "
            f"to start a new run from those weights, use --weights {given}."
        )
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConvzooError(
            f"--resume {given}: {run_dir} is not a convzoo run folder (no config.yaml). "
            "Pass the folder a run was written to, or its last.pt."
        )
    if not (run_dir / "last.pt").is_file():
        raise ConvzooError(
            f"--resume {given}: {run_dir} has no last.pt to continue from (the run stopped before its first "
            f"checkpoint). Start it again: --resume auto --out {run_dir.parent} --name {run_dir.name} takes over "
            "the folder."
        )
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
    values["data_dir"] = data_dir_for_saved_run(overrides.get("data_dir"), saved.data_dir)
    return config_from_dict(values, source=str(config_path)), run_dir


def _resumed(resume: str | Path, overrides: dict[str, Any]) -> tuple[TrainConfig, Path, dict]:
    """The config, folder and last.pt of the run ``resume`` names, for ``--resume`` and
    ``--resume auto`` alike; the folder is held first (a run still writing its last.pt
    refuses this one; holding again in the process that holds it is a no-op)."""
    config, run_dir = resume_config(resume, overrides)
    hold_run_dir(run_dir)
    checkpoint = load_checkpoint(run_dir / "last.pt", unreadable_hint=(
        f"The run cannot continue from it: start a new run (another --name), e.g. from the weights of "
        f"{run_dir / 'best.pt'} if that one reads"))
    return config, run_dir, checkpoint


def require_name_for_auto(config: TrainConfig) -> None:
    if not config.name:
        raise ConvzooError("--resume auto needs --name: it continues the run of that name in --out, or starts it.")


def _continue_and_hold(config: TrainConfig) -> Path | None:
    """``auto_resume_folder``, and the run folder held (rank 0 decides both, so a refusal
    because another run is in it reaches every rank as one line)."""
    folder = auto_resume_folder(config)
    if folder is not None:
        hold_run_dir(folder)
    return folder


def auto_resume_folder(config: TrainConfig) -> Path | None:
    """``--resume auto``: the run folder ``--out/--name`` when it holds a last.pt to continue,
    else None (start the run there). A job that torchrun restarts (``--max-restarts``) runs
    the same command again, so it continues from its newest checkpoint by itself. Under
    torchrun rank 0 decides (``decided_on_rank_0``) and every rank checks that it sees the
    same last.pt (``_check_every_rank_sees``).
    """
    require_name_for_auto(config)
    run_dir = run_folder_path(config.out, config.name)
    if not (run_dir / "last.pt").is_file():
        return None
    saved = config_from_dict(read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    changed = [key for key in RUN_DEFINING_KEYS if getattr(saved, key) != getattr(config, key)]
    if changed:
        raise ConvzooError(
            f"--resume auto: {run_dir} holds a run with other {', '.join(changed)}; it is not this run. "
            "Choose another --name, or resume that run with --resume and no other flags."
        )
    return run_dir


def _check_every_rank_sees(last: Path, runtime: Runtime) -> None:
    """Under torchrun, every rank must read the ``last.pt`` rank 0 chose to continue: one
    that cannot (a node-local ``--out``, a cache not yet showing the file) stops the job
    with one line rather than train from something else."""
    if not runtime.distributed:
        return
    import torch.distributed as dist

    sees: list[bool | None] = [None] * runtime.world_size
    dist.all_gather_object(sees, last.is_file())
    blind = [str(rank) for rank, sees_it in enumerate(sees) if not sees_it]
    if blind:
        raise ConvzooError(
            f"--resume auto: rank 0 continues {last.parent}, but rank{'s' if len(blind) > 1 else ''} "
            f"{', '.join(blind)} cannot see its last.pt. Every process of the job needs the same run folder: "
            "put --out on a file system all nodes share."
        )


def check_sync_bn(config: TrainConfig, distributed: bool, device: torch.device) -> None:
    """``--sync-bn`` in a torchrun job needs CUDA, even with one process: SyncBatchNorm
    refuses CPU tensors whenever a process group exists (``train --nproc-per-node`` asks
    before it starts torchrun, so the refusal is one line, not one per rank)."""
    if config.sync_bn and distributed and device.type != "cuda":
        raise ConvzooError(
            f"--sync-bn needs GPUs: PyTorch's SyncBatchNorm has no {device.type.upper()} implementation (this job "
            "runs on gloo). Drop --sync-bn, or train with --device cuda."
        )


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def train(config: TrainConfig | None, *, resume: str | Path | None = None, overrides: dict[str, Any] | None = None,
          quiet: bool = False, progress_bars: bool = True, step_lines: bool = True) -> dict[str, Any]:
    """Train ``config`` (or continue the run in ``resume``) and return the run's summary.

    ``quiet`` silences stderr entirely (notebooks, tests); ``progress_bars=False`` keeps
    the one plain line per epoch but never draws bars (``--json``).
    """
    checkpoint, claimed = None, None
    auto = resume == "auto"
    if auto:
        require_name_for_auto(config)
        resume, overrides = None, {**config.to_dict(), **(overrides or {})}
    if resume is not None:
        config, run_dir, checkpoint = _resumed(resume, overrides or {})
    else:
        # The stored folder must still lead to the data when a later command runs elsewhere.
        config = dataclasses.replace(config, data_dir=absolute_data_dir(config.data_dir))
    runtime = setup_runtime(config.device)
    try:
        if auto:
            resume = decided_on_rank_0(lambda: _continue_and_hold(config))
            if resume is not None:
                _check_every_rank_sees(resume / "last.pt", runtime)
                config, run_dir, checkpoint = _resumed(resume, overrides)
        if resume is None:
            run_dir = claimed = new_run_dir(config, reuse_unstarted=auto)
        result = _train(config, run_dir, checkpoint, runtime, quiet, progress_bars, step_lines)
    except StoppedBySignal as stopped:
        # Every rank stopped at the same step and rank 0 has written last.pt: a clean end, one line.
        teardown_runtime(runtime)
        if runtime.is_main:
            raise
        quiet_stop = StoppedAfterAnotherRank(f"rank {runtime.rank} stopped with the job")
        quiet_stop.exit_code = stopped.exit_code
        raise quiet_stop from stopped
    except BaseException as error:
        if claimed is not None and runtime.is_main:
            with contextlib.suppress(OSError):
                claimed.rmdir()  # a run that failed before writing anything leaves no empty folder
        # No collective teardown here: a peer may be waiting in an all-reduce this rank will never join.
        folder = Path(resume) if resume is not None else claimed
        hint = f"resume with --resume {run_folder_of(folder)}" if folder and (run_folder_of(folder) / "last.pt").exists() else ""
        stop = failure_to_raise(runtime, error, resume_hint=hint)
        if stop is error:
            raise
        raise stop from error
    finally:
        restore_float32_math(runtime)
        held = claimed if resume is None else run_folder_of(resume)
        if held is not None:
            release_run_dir(held)
    teardown_runtime(runtime)
    return result


def _train(config: TrainConfig, run_dir: Path, checkpoint: dict | None, runtime: Runtime, quiet: bool,
           progress_bars: bool, step_lines: bool = True) -> dict[str, Any]:
    device = runtime.device
    if checkpoint is not None and checkpoint["epoch"] >= config.epochs:
        return _already_complete(config, run_dir, checkpoint, runtime, quiet)
    check_sync_bn(config, runtime.distributed, device)

    torch.manual_seed(config.seed)
    task = task_for(config)  # what the batches' targets are, the loss, the metrics (convzoo/tasks/)
    check_task_options(config, task)
    spec, pad_to = dataset_spec_for(config)
    loaders = loaders_for(config, spec, pad_to, device, runtime.rank, runtime.world_size, targets=task.targets)
    if len(loaders.train) == 0:
        raise ConvzooError(
            f"batch size {config.batch_size} is larger than the training set ({loaders.train.num_samples} images). Lower --batch-size."
        )
    mixer = build_mixer(config, spec.num_classes, loaders.image_size)
    model = build_model(config.model, spec, loaders.image_size, model_kwargs=config.model_kwargs, conv=config.conv,
                        drop_path=config.drop_path)
    # A resumed run continues from its last.pt and never reads the weights file again (it may
    # be gone); its checkpoints keep saying where the run started from.
    weights_source, weights_note = (checkpoint or {}).get("weights_source"), None
    if checkpoint is None and config.weights:
        from convzoo.models.pretrained import load_pretrained

        fit = load_pretrained(model, config.model, config.weights, config.weights_strict, config.reset_head)
        weights_source, weights_note = fit.record(config.weights), fit.line()
    model = model.to(device)
    model = to_memory_format(model, channels_last_for(config, device))
    aux_weight = float(getattr(model, "aux_loss_weight", 0.0))
    optimizer = build_optimizer(model, config)
    # After the optimiser, whose groups hold every parameter, frozen or not (engine/finetune.py).
    freezing = Freezing(model, config)
    start_epoch, best_acc, best_epoch = 0, -1.0, 0
    if checkpoint is not None:
        load_model_state(model, checkpoint["model"], checkpoint["path"], config.model)
        load_optimizer_state(optimizer, checkpoint["optimizer"])
        start_epoch, best_acc, best_epoch = checkpoint["epoch"], checkpoint["best_acc"], checkpoint["best_epoch"]
    ema = build_weight_average(config, model, checkpoint)  # of the unwrapped model, before DDP and compile
    freezing.set_epoch(model, start_epoch)  # a run resumed past --unfreeze-at starts unfrozen
    # Rebuilt, not loaded: with another number of processes an epoch has another number of
    # steps, and the schedule must still end with the last one (see engine/optim.py).
    steps_per_epoch = len(loaders.train)
    resume_step, restart_note = resume_position(checkpoint, runtime, steps_per_epoch)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch, start_step=start_epoch * steps_per_epoch + resume_step)
    if runtime.distributed and config.sync_bn:
        # Same parameter objects in new modules: the optimiser built above still holds them.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def wrapped_for_training(model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in DDP and compiled, as asked; built again when ``--unfreeze-at`` comes,
        since DDP hooks only the parameters that require grad when it is built."""
        wrapped = model
        if runtime.distributed:
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if config.compile or config.compile_mode:
            # After DDP, as PyTorch's DDP notes advise; checkpoints keep saving ``model``. The
            # first step's time is logged through ``logger``, which exists by then.
            wrapped = compile_model(wrapped, device, config.compile_mode, lambda seconds: logger.message(
                f"torch.compile: first step took {seconds:.1f}s, compilation included"))
        return wrapped

    train_model = wrapped_for_training(model)

    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
    logger = RunLogger(run_dir, enabled=runtime.is_main, quiet=quiet, progress_bars=progress_bars,
                       step_lines=step_lines, log_interval=config.log_interval, task=task)
    logger.message(
        f"{'resuming' if checkpoint else 'training'} {config.model} on {spec.name} "
        f"({loaders.train.num_samples * runtime.world_size:,} images, {loaders.image_size}x{loaders.image_size}) on {device}"
        + (f" x{runtime.world_size}" if runtime.distributed else "") + f" -> {run_dir}"
    )
    if checkpoint is not None and checkpoint.get("world_size", runtime.world_size) != runtime.world_size:
        logger.message(
            f"the run trained with {checkpoint['world_size']} process(es) and continues with {runtime.world_size}: "
            f"{steps_per_epoch} steps of {config.batch_size} x{runtime.world_size} images per epoch instead of "
            f"{checkpoint['steps_per_epoch']}; the schedule continues from epoch {start_epoch}."
        )
    if weights_note:
        logger.message(weights_note)
    if checkpoint is None and (summary := recipe_summary(config, get_model_info(config.model).recipe)):
        logger.message(summary)
    if mixer is not None:
        logger.message(f"{mixer.describe()}: training loss against the mixed targets, training accuracy against "
                       "each image's dominant label")
    for line in (freezing.describe(model), rates_line(optimizer)):
        if line:
            logger.message(line)
    if restart_note:
        logger.message(restart_note)
    elif resume_step:
        logger.message(f"continuing epoch {start_epoch + 1} at step {resume_step}/{steps_per_epoch} (a mid-epoch last.pt)")
    if config.sync_bn and not runtime.distributed:
        logger.message("--sync-bn: one process, so batch statistics are already the whole batch's; nothing to sync.")
    guard = DivergenceGuard(spec.num_classes, warmup_steps_of(config, steps_per_epoch), config.lr, logger.message)
    if checkpoint is not None and runtime.is_main:
        dropped_note = _forget_epochs_after(run_dir, start_epoch)
        if dropped_note:
            logger.message(dropped_note)
        remove_unfinished_writes(run_dir)
    train_time = float(checkpoint.get("train_time_s", 0.0)) if checkpoint else 0.0
    record: dict[str, Any] = {}
    # The last evaluation's numbers (a mid-epoch checkpoint keeps those of the epoch before).
    # (``test_acc``, ``best_acc``: the score of the task's metric, accuracy for classification.)
    test: dict[str, Any] = {task.metric: checkpoint["test_acc"], "loss": checkpoint.get("test_loss")} \
        if checkpoint and checkpoint.get("test_acc") is not None else {}
    ema_test: dict[str, Any] | None = {task.metric: checkpoint["ema_test_acc"], "loss": checkpoint["ema_test_loss"]} \
        if checkpoint and checkpoint.get("ema_test_acc") is not None else None

    def state_at(epochs_done: int, step: int = 0, running: dict[str, Any] | None = None) -> dict[str, Any]:
        """What last.pt holds after ``epochs_done`` epochs and ``step`` steps of the next."""
        return {
            "format": CHECKPOINT_FORMAT, "model_name": config.model, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": epochs_done, "step": step, "running": running, "best_acc": best_acc, "best_epoch": best_epoch,
            "test_acc": test.get(task.metric), "test_loss": test.get("loss"), "config": config.to_dict(),
            "task": task.name, "metric": task.metric,
            "ema": None if ema is None else ema.state_dict(),
            "ema_test_acc": None if ema_test is None else ema_test[task.metric],
            "ema_test_loss": None if ema_test is None else ema_test["loss"],
            "world_size": runtime.world_size, "steps_per_epoch": steps_per_epoch,
            "image_size": loaders.image_size, "num_classes": spec.num_classes, "train_time_s": train_time,
            "class_names": list(dataset_class_names(spec)), "weights_source": weights_source,
        }

    def save_within_epoch(epoch: int, steps_done: int, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int,
                          epoch_time: float) -> None:
        """last.pt after ``steps_done`` steps of ``epoch``, with every rank's running sums
        (collective: every rank calls it at the same step)."""
        sums = gather_running_sums(loss_sum, correct, runtime)
        _check_finite(float(sums["loss_sum"].double().sum()), epoch, run_dir, model)  # never save NaN weights
        if runtime.is_main:
            running = {**sums, "seen": seen, "epoch_time_s": epoch_time}
            atomic_save(state_at(epoch, steps_done, running), run_dir / "last.pt")
        schedule.written()

    # Workers are ended inside StopSignals: they ignore SIGTERM only while the trainer catches it.
    with StopSignals() as signals, contextlib.closing(loaders):
        schedule = CheckpointSchedule(config.checkpoint_every, runtime, signals)
        for epoch in range(start_epoch, config.epochs):
            first_step = resume_step if epoch == start_epoch else 0
            loaders.train.set_epoch(epoch, first_step)
            if freezing.set_epoch(model, epoch):
                logger.message(f"epoch {epoch + 1}: every parameter trains from now on (--unfreeze-at {epoch + 1})")
                train_model = wrapped_for_training(model)
            freezing.train_mode(train_model, model)  # train(), with frozen BatchNorm statistics kept
            loss_sum, correct, seen, epoch_time_before = restored_running_sums(checkpoint, first_step, runtime,
                                                                               task.hits_dtype)
            seen_before = seen
            progress = logger.progress(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", start=first_step)
            started = time.perf_counter()
            for step, (images, labels) in enumerate(loaders.train, start=first_step):
                # Dropout and any other draw of a step come from (seed, epoch, step, rank): reseeded
                # every step, a run resumed mid-epoch draws what an uninterrupted one would without
                # restoring generator states (which differ with the machine and its GPUs), and
                # ranks draw differently (after the initialisation every rank drew alike).
                seed_generators(derived_seed(config.seed, "step", epoch, step, runtime.rank), device)
                targets = labels
                if mixer is not None:  # soft targets; accuracy counts each image's dominant label
                    mix_seed = derived_seed(config.seed, "mix", epoch, step, runtime.rank)
                    images, targets, labels = mixer(images, labels, mix_seed)
                with autocast_context(device, config.amp):
                    loss, outputs = task.loss(train_model, images, targets, label_smoothing=config.label_smoothing,
                                              aux_weight=aux_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(model, epoch * steps_per_epoch + step + 1)
                # Accumulate on the device: no host sync per step.
                batch = len(labels)
                loss_sum += loss.detach() * batch
                correct += task.hits(outputs, labels)
                seen += batch
                guard.after_step(epoch * steps_per_epoch + step + 1, loss, batch)
                if progress.due(step):  # reading the running numbers syncs with the device: only when shown
                    rate = (seen - seen_before) / max(time.perf_counter() - started, 1e-9)
                    accuracy = f"acc {100 * correct.item() / seen:.2f}%  " if task.train_accuracy else ""
                    progress.update(step + 1, f"loss {loss_sum.item() / seen:.4f}  {accuracy}"
                                              f"lr {scheduled_rate(optimizer):.3g}  {rate:,.0f} img/s")
                if step + 1 == steps_per_epoch:
                    continue  # the epoch's own checkpoint follows
                write, stop = schedule.after_step(epoch * steps_per_epoch + step + 1)
                if write:
                    save_within_epoch(epoch, step + 1, loss_sum, correct, seen,
                                      epoch_time_before + time.perf_counter() - started)
                    progress.note(f"step {step + 1}/{steps_per_epoch}  checkpoint written: last.pt")
                if stop:
                    raise _stopped(signals, runtime, f"at epoch {epoch + 1} step {step + 1}", run_dir)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            epoch_time = epoch_time_before + time.perf_counter() - started
            progress.close()
            # The job's loss, accuracy and pace, summed over every rank's shard before they are
            # checked or logged: a NaN on any rank stops every rank, before a checkpoint. The
            # last number counts the ranks a signal asked to stop, so all stop after this epoch.
            totals = torch.stack([loss_sum.double(), correct.double(), torch.tensor(float(seen), device=device),
                                  torch.tensor(float(signals.received is not None), device=device)])
            if runtime.distributed:
                sum_over_ranks(totals)
                epoch_time = max_over_ranks(epoch_time, device)
            loss_total, correct_total, seen_total, stop_votes = totals.tolist()
            train_loss = loss_total / seen_total
            _check_finite(train_loss, epoch, run_dir, model)
            if stop_votes > 0:
                # last.pt first: evaluating a large test set outlasts the ~30 s torchrun and Slurm
                # wait before SIGKILL. It holds the trained epoch; the resumed run evaluates it.
                save_within_epoch(epoch, steps_per_epoch, loss_sum, correct, seen, epoch_time)
                raise _stopped(signals, runtime, f"at the end of epoch {epoch + 1}, before its evaluation", run_dir)
            train_time += epoch_time
            test = task.evaluate(model, loaders.test, device, num_classes=spec.num_classes, amp=config.amp)
            ema_test = None if ema is None else task.evaluate(ema.module, loaders.test, device,
                                                              num_classes=spec.num_classes, amp=config.amp)
            # best.pt: the model or its average, whichever scored higher by the task's metric
            better, scores = better_of(test, ema_test, task.metric)
            is_best = scores[task.metric] > best_acc
            if is_best:
                best_acc, best_epoch = scores[task.metric], epoch + 1
            record = {
                "epoch": epoch + 1, "epochs": config.epochs,
                "train_loss": train_loss,
                **({"train_acc": correct_total / seen_total} if task.train_accuracy else {}),
                **({"train_acc_of": "dominant label"} if mixer is not None else {}),
                **task.record(test),
                "lr": scheduled_rate(optimizer),
                "train_images": int(seen_total), "test_images": test["n"],
                "images_per_s": seen_total / epoch_time, "epoch_time_s": epoch_time,
                **ema_record(ema_test, better, task),
            }
            if rates := block_rates(optimizer):  # --layer-decay, --head-lr-mult
                record["lr_blocks"] = rates
            logger.log_epoch(record)
            guard.after_evaluation(test["loss"], epoch + 1)
            if runtime.is_main:
                state = state_at(epoch + 1)
                atomic_save(state, run_dir / "last.pt")
                if is_best:
                    atomic_save(best_state(state, ema, better, scores, task.metric), run_dir / "best.pt")
            schedule.written()
    result = {
        "run_dir": str(run_dir), "model": config.model, "dataset": spec.name, "device": str(device),
        "task": task.name, "metric": task.metric,
        "epochs": config.epochs, "best_acc": best_acc, "best_epoch": best_epoch,
        "final_acc": test.get(task.metric, best_acc), "final_loss": test.get("loss"),
        **({"final_ema_acc": ema_test[task.metric]} if ema_test else {}),
        "train_time_s": train_time, "complete": True,
        "warnings": [guard.warning] if guard.warning else [],
    }
    logger.close(hparams=config.to_dict(), metrics={"best_acc": best_acc, "final_acc": result["final_acc"]})
    return result


def _already_complete(config: TrainConfig, run_dir: Path, checkpoint: dict, runtime: Runtime, quiet: bool) -> dict[str, Any]:
    if runtime.is_main and not quiet:
        import sys

        print(f"{run_dir} already completed its {config.epochs} epochs; nothing to do.", file=sys.stderr)
    return {
        "run_dir": str(run_dir), "model": config.model, "dataset": config.dataset, "device": str(runtime.device),
        "task": checkpoint.get("task", "classification"), "metric": checkpoint.get("metric", "acc1"),
        "epochs": config.epochs, "best_acc": checkpoint["best_acc"], "best_epoch": checkpoint["best_epoch"],
        "final_acc": checkpoint["test_acc"], "final_loss": _final_test_loss(run_dir, checkpoint),
        **({"final_ema_acc": checkpoint["ema_test_acc"]} if checkpoint.get("ema_test_acc") is not None else {}),
        "train_time_s": checkpoint.get("train_time_s", 0.0), "complete": True, "already_complete": True,
    }


def _final_test_loss(run_dir: Path, checkpoint: dict) -> float | None:
    """The last epoch's test loss: from the checkpoint, else from its line of ``metrics.jsonl``
    (checkpoints written before the loss was stored), so a finished run reports what a
    running one does."""
    if checkpoint.get("test_loss") is not None:
        return float(checkpoint["test_loss"])
    import json

    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("epoch") == checkpoint["epoch"]:
                return record.get("test_loss")
    return None


def _check_finite(train_loss: float, epoch: int, run_dir: Path, model: torch.nn.Module) -> None:
    """A NaN or infinite loss, or weights an update made so, stop the run before any
    checkpoint holds them (the loss of a step is computed before its update)."""
    problem = None
    if not math.isfinite(train_loss):
        problem = f"the training loss became {train_loss}"
    elif not torch.isfinite(torch.stack([parameter.detach().abs().amax() for parameter in model.parameters()]).max()):
        problem = "the weights became infinite or NaN"
    if problem is not None:
        raise ConvzooError(
            f"{problem} in epoch {epoch + 1}; the run stopped and its last good "
            f"checkpoint in {run_dir} (if any) is kept. Lower --lr, or set grad_clip in the config."
        )


def _stopped(signals: StopSignals, runtime: Runtime, where: str, run_dir: Path) -> StoppedBySignal:
    """The error that ends a run a signal stopped, once every rank has stopped at the same
    step and rank 0 has written last.pt (the barrier: no rank leaves before that file exists)."""
    import signal

    if runtime.distributed:
        barrier()
    received = signals.received or signal.SIGTERM
    by = received.name if signals.received else "a signal to another rank"
    return StoppedBySignal(f"stopped by {by} {where}; resume with --resume {run_dir}", received.value)


def _forget_epochs_after(run_dir: Path, epoch: int) -> str | None:
    """Drop ``metrics.jsonl`` lines past the checkpoint's ``epoch``: a run killed after logging
    an epoch but before its last.pt was written trains that epoch again, and logs it again.
    A last line cut short (a crash or a power cut mid-write) is dropped too, and the line
    returned says so; any other line that is not JSON is a one-line error."""
    import json

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    last = max((number for number, line in enumerate(lines, start=1) if line.strip()), default=0)
    kept, note = [], None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number < last:
                raise ConvzooError(
                    f"{path} line {number} is not a JSON record ({line[:40]!r}...); repair or delete that line, "
                    f"then resume again with --resume {run_dir}."
                ) from None
            note = f"dropped the last line of {path}: it was cut short (a crash or a full disk while it was written)"
            continue
        if record.get("epoch", 0) <= epoch:
            kept.append(line)
    if len(kept) != len(lines):
        rewritten = path.with_name(f".{path.name}.tmp")
        rewritten.write_text("".join(line + "\n" for line in kept))
        rewritten.replace(path)  # a crash now leaves the old file or the new one, never half of one
    return note
