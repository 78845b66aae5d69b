"""``convzoo train``: train a model from flags and/or a YAML config."""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import (
    ChannelsLastOption, CompileModeOption, CompileOption, ConvOption, DataDirOption, DebugOption, DeviceOption,
    JsonOption, is_main_process, print_json, user_errors,
)


def train_command(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Registered model name (see `convzoo list`).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="synthetic, mnist, fashion-mnist, cifar10, cifar100 or imagefolder:PATH.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="YAML experiment file; flags override its values.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Number of epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Training batch size.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    optimizer: Annotated[str | None, typer.Option("--optimizer", help="sgd or adamw.")] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", help="cosine, onecycle, step or constant.")] = None,
    device: DeviceOption = None,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA (default on).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed; seeded CPU runs are reproducible.")] = None,
    data_dir: DataDirOption = None,
    out: Annotated[str | None, typer.Option("--out", help="Folder for run folders (default runs/).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run folder name (default MODEL-DATASET-TIME).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue a run from its last.pt: the run folder, or its last.pt; 'auto': the run --name in --out if it has a last.pt, else start it.")] = None,
    checkpoint_every: Annotated[str | None, typer.Option("--checkpoint-every", help="Also write last.pt within epochs: every N steps (200) or minutes (10min).")] = None,
    sync_bn: Annotated[bool | None, typer.Option("--sync-bn", help="Under torchrun on GPUs, SyncBatchNorm: batch statistics of the global batch.")] = None,
    nproc_per_node: Annotated[int | None, typer.Option("--nproc-per-node", help="Start torchrun with N processes on this machine, each training a replica.")] = None,
    ema: Annotated[float | None, typer.Option("--ema", metavar="DECAY", help="Also keep and evaluate an exponential moving average of the weights with this decay, e.g. 0.9998; best.pt keeps the better.")] = None,
    ema_every: Annotated[int | None, typer.Option("--ema-every", metavar="N", help="Update the --ema average every N optimiser steps (default 1).")] = None,
    ema_warmup: Annotated[bool | None, typer.Option("--ema-warmup/--no-ema-warmup", help="Warm the --ema decay up as min(DECAY, (1+step)/(10+step)) (default on).")] = None,
    mixup: Annotated[float | None, typer.Option("--mixup", metavar="ALPHA", help="MixUp with λ ~ Beta(ALPHA, ALPHA), e.g. 0.2 (default 0: off).")] = None,
    cutmix: Annotated[float | None, typer.Option("--cutmix", metavar="ALPHA", help="CutMix with λ ~ Beta(ALPHA, ALPHA), e.g. 1.0 (default 0: off).")] = None,
    mix_prob: Annotated[float | None, typer.Option("--mix-prob", metavar="P", help="Mix a batch (--mixup/--cutmix) with probability P (default 1).")] = None,
    mix_switch_prob: Annotated[float | None, typer.Option("--mix-switch-prob", metavar="P", help="With --mixup and --cutmix, CutMix a mixed batch with probability P, else MixUp (default 0.5).")] = None,
    drop_path: Annotated[float | None, typer.Option("--drop-path", metavar="RATE", help="Stochastic depth: skip residual block l of L with probability RATE*l/L in training, e.g. 0.1 (default 0: off).")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="Start from 'torchvision' ImageNet weights or a state-dict file; a head for other classes, a first convolution for other channels or a small-input stem start fresh or are adapted.")] = None,
    reset_head: Annotated[bool | None, typer.Option("--reset-head", help="Re-initialise the --weights' classifier head even when it fits: a new task with as many classes (another class count always does).")] = None,
    weights_strict: Annotated[str | None, typer.Option("--weights-strict", metavar="true|false", help="false: layers of --weights that do not fit beyond the head and stem start fresh instead of stopping the run (default true).")] = None,
    freeze: Annotated[str | None, typer.Option("--freeze", help="Fine-tuning: 'backbone' trains the classifier head only; 'none' (default) trains everything.")] = None,
    freeze_until: Annotated[str | None, typer.Option("--freeze-until", metavar="LAYER", help="Fine-tuning: freeze LAYER and every layer before it (names of `convzoo probe --list-layers`).")] = None,
    unfreeze_at: Annotated[int | None, typer.Option("--unfreeze-at", metavar="EPOCH", help="Fine-tuning: train every layer from this epoch (1-based) on.")] = None,
    head_lr_mult: Annotated[float | None, typer.Option("--head-lr-mult", help="The classifier head's learning rate is --lr times this.")] = None,
    layer_decay: Annotated[float | None, typer.Option("--layer-decay", help="Layer-wise rate decay D in (0, 1]: the block at depth d of N trains at lr x D^(N-d).")] = None,
    conv: ConvOption = None,
    task: Annotated[str | None, typer.Option("--task", help="classification | segmentation | detection: the task (the model implies it; a model of another task is refused).")] = None,
    channels_last: ChannelsLastOption = None,
    compile_model: CompileOption = None,
    compile_mode: CompileModeOption = None,
    auto_augment: Annotated[str | None, typer.Option("--auto-augment", help="Per-image augmentation policy: trivialaugment, randaugment[:N:M] or autoaugment (ImageNet policy).")] = None,
    random_erasing: Annotated[float | None, typer.Option("--random-erasing", help="Probability that a training image gets a rectangle of noise (random erasing), e.g. 0.25.")] = None,
    repeated_aug: Annotated[int | None, typer.Option("--repeated-aug", help="Repeated augmentation: each image N times per epoch, on N ranks under torchrun, augmented apart; epoch length kept.")] = None,
    set_values: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Set any config key, e.g. --set warmup_epochs=0 --set train_size=5000 (repeatable; "
             "values are YAML; named flags win).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Off a terminal, print only the per-epoch lines (no step lines).")] = False,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Train a model; checkpoints, metrics and TensorBoard logs go to runs/NAME/.

    Examples:
      [bold]convzoo train --model lenet5[/bold]  (built-in synthetic data, no download)
      [bold]convzoo train --config configs/lenet5-mnist.yaml --data-dir ../shared/data[/bold]
      [bold]convzoo train --config configs/resnet20-fashion-mnist.yaml --epochs 2 --set train_size=10000[/bold]
      [bold]convzoo train --model resnet18 --weights torchvision --dataset imagefolder:photos --epochs 3[/bold]  (fine-tune: a fresh head for its classes)
      [bold]convzoo train --model resnet20 --dataset cifar10 --auto-augment trivialaugment --random-erasing 0.25[/bold]
      [bold]convzoo train --resume runs/lenet5-mnist[/bold]
      [bold]convzoo train --model resnet18 --dataset mnist --weights W.pt --freeze backbone --unfreeze-at 3 --layer-decay 0.7[/bold]
      [bold]convzoo train --nproc-per-node 2 --name long --resume auto --checkpoint-every 10min[/bold]
    """
    with user_errors(debug, interrupted="checkpoints already written are kept"):
        from convzoo.config import load_config, parse_set_options
        from convzoo.engine.train import train

        overrides = parse_set_options(set_values)
        flag_names = {key: f"--set {key}" for key in overrides}
        named_flags = {
            "model": model, "dataset": dataset, "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "optimizer": optimizer, "schedule": schedule, "device": device, "amp": amp, "seed": seed,
            "data_dir": data_dir, "out": out, "name": name, "weights": weights, "conv": conv, "task": task,
            "channels_last": channels_last, "compile": compile_model, "compile_mode": compile_mode,
            "checkpoint_every": int(checkpoint_every) if checkpoint_every and checkpoint_every.isdigit() else checkpoint_every,
            "sync_bn": sync_bn, "ema": ema, "ema_every": ema_every, "ema_warmup": ema_warmup,
            "mixup": mixup, "cutmix": cutmix, "mix_prob": mix_prob, "mix_switch_prob": mix_switch_prob,
            "drop_path": drop_path,
            "weights_strict": _true_or_false("--weights-strict", weights_strict), "reset_head": reset_head,
            "freeze": freeze, "freeze_until": freeze_until, "unfreeze_at": unfreeze_at,
            "head_lr_mult": head_lr_mult, "layer_decay": layer_decay,
            "auto_augment": auto_augment, "random_erasing": random_erasing,
            "repeated_aug": repeated_aug,
        }
        overrides.update({key: value for key, value in named_flags.items() if value is not None})
        flag_names.update({key: "--" + key.replace("_", "-") for key, value in named_flags.items() if value is not None})
        if weights is not None and config is None and "dataset" not in overrides:
            overrides = _weights_file_run(weights, overrides)
        if resume not in (None, "auto") and config is not None:
            from convzoo.errors import ConvzooError

            raise ConvzooError("--resume continues a run from its own saved config; drop --config.")
        if nproc_per_node is not None:
            from convzoo.commands.launch import command_line_of, run_under_torchrun

            _check_before_launching(config, overrides, flag_names, resume, nproc_per_node)
            run_under_torchrun("train", command_line_of(ctx, leave_out={"nproc_per_node"}), nproc_per_node)
        if resume == "auto":
            result = train(load_config(config, overrides, flag_names), resume="auto", progress_bars=not json_output,
                           step_lines=not quiet)
        elif resume is not None:
            result = train(None, resume=resume, overrides=overrides, progress_bars=not json_output,
                           step_lines=not quiet)
        else:
            result = train(load_config(config, overrides, flag_names), progress_bars=not json_output,
                           step_lines=not quiet)
        if not is_main_process():
            return
        if json_output:
            print_json(result)
        else:
            from convzoo.tasks import get_task

            typer.echo(get_task(result.get("task", "classification")).summary_line(result)
                       + f", {result['train_time_s']:.1f}s training -> {result['run_dir']}")


def _true_or_false(flag: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.strip().lower() not in ("true", "false"):
        from convzoo.errors import ConvzooError

        raise ConvzooError(f"{flag} takes true or false, got {value!r}.")
    return value.strip().lower() == "true"


def _weights_file_run(weights: str, overrides: dict) -> dict:
    """``overrides`` with the dataset (and model, input shape) of the run that wrote
    ``weights``, when the file says: a model fine-tuned from MNIST weights trains on MNIST
    unless --dataset says otherwise, not on synthetic shapes with MNIST's first layer."""
    from convzoo.inspection.source import check_weights_file, weights_run_values

    check_weights_file(weights)
    described = weights_run_values(weights, overrides.get("model"))
    if described is None:
        return overrides
    typer.echo(f"note: {weights} was trained on {described['dataset']}: training on it (--dataset to change).",
               err=True)
    return {**described, **overrides}


def _check_before_launching(config_path: str | None, overrides: dict, flag_names: dict, resume: str | None,
                            nproc_per_node: int) -> None:
    """What a one-process run would refuse, refused before torchrun starts: otherwise each
    rank prints the error and torchrun adds its traceback. The workers print the config's
    notes themselves, so they are silenced here."""
    import contextlib
    import io

    from convzoo.config import load_config
    from convzoo.engine.runtime import pick_device
    from convzoo.engine.finetune import check_freezing
    from convzoo.engine.train import auto_resume_folder, check_sync_bn, resume_config

    with contextlib.redirect_stderr(io.StringIO()):
        if resume is not None and resume != "auto":
            config, _ = resume_config(resume, overrides)
        else:
            config = load_config(config_path, overrides, flag_names)
            if resume == "auto":
                auto_resume_folder(config)
    check_sync_bn(config, True, pick_device(config.device))
    check_freezing(config)
