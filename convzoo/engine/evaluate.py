"""Evaluation of a checkpoint on its dataset's test split, by its task (convzoo/tasks/), and
the helpers every task's evaluation shares."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def autocast_context(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when asked; nothing elsewhere (on CPU it only slows convs)."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def main_logits(outputs: Any) -> torch.Tensor:
    """The main head's logits, whether the model returned a tensor or (main, *auxiliary)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def evaluate_checkpoint(
    checkpoint_path: str,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    per_class: bool = False,
    device: str = "auto",
    conv: str | None = None,
    batch_size: int | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    compile_mode: str | None = None,
) -> dict[str, Any]:
    """Rebuild a checkpoint's model and evaluate it on its dataset's whole test split (or
    ``dataset``'s), with its task's metrics (accuracy; pixel accuracy and IoU; ...).

    The data folder is ``data_dir``, else ``$CONVZOO_DATA``, else the run's own folder if it
    still exists, else the default (``convzoo.data.files.data_dir_for_saved_run``).
    ``channels_last`` (None: the run's choice, else what measured faster) and ``compile``
    change only the speed (``convzoo.engine.fast_path``).
    """
    import dataclasses

    from convzoo.config import QUICK_TEST_SIZE, config_from_dict, quick_cap
    from convzoo.data.class_names import dataset_class_names
    from convzoo.data.files import data_dir_for_saved_run
    from convzoo.engine.checkpoint import load_checkpoint, load_model_state
    from convzoo.engine.runtime import pick_device
    from convzoo.engine.fast_path import check_compile_mode, check_compile_toolchain, compile_model, to_memory_format
    from convzoo.engine.setup import build_model, channels_last_for, dataset_spec_for, loaders_for
    from convzoo.errors import ConvzooError
    from convzoo.tasks import task_for

    check_compile_mode(compile_mode)
    torch_device = pick_device(device)
    if compile or compile_mode:
        check_compile_toolchain(torch_device)  # before any data is read
    if batch_size is not None and batch_size < 1:
        raise ConvzooError(f"--batch-size must be at least 1, got {batch_size}.")
    checkpoint = load_checkpoint(
        checkpoint_path,
        plain_weights_hint="`convzoo eval` needs a run's best.pt or last.pt, written by `convzoo train`",
    )
    values = dict(checkpoint["config"])
    values.update({k: v for k, v in {"dataset": dataset, "conv": conv, "eval_batch_size": batch_size,
                                     "channels_last": channels_last}.items() if v is not None})
    values["data_dir"] = data_dir_for_saved_run(data_dir, values.get("data_dir"))
    values["weights"] = None
    # A run's quick-check subset is not the test set: report on all of it (but a smoke test's
    # share under $CONVZOO_QUICK=1, as the README test runs every command).
    values["test_size"] = quick_cap(None, QUICK_TEST_SIZE)
    config = config_from_dict(values, source=checkpoint["path"])
    task = task_for(config)
    spec, pad_to = dataset_spec_for(config)
    # Checkpoints from before num_classes was stored: the classifier's bias is the last tensor.
    class_note = None
    trained_classes = checkpoint.get("num_classes") or checkpoint["model"][next(reversed(checkpoint["model"]))].shape[0]
    if dataset is not None:
        if spec.num_classes != trained_classes:
            raise ConvzooError(
                f"{checkpoint['model_name']} in {checkpoint['path']} was trained for {trained_classes} classes; "
                f"{spec.name} has {spec.num_classes}. Pass a --dataset with the same classes."
            )
        trained_spec, _ = dataset_spec_for(dataclasses.replace(config, dataset=checkpoint["config"]["dataset"]))
        if spec.channels != trained_spec.channels:
            raise ConvzooError(
                f"{checkpoint['model_name']} in {checkpoint['path']} takes {trained_spec.channels}-channel images; "
                f"{spec.name} has {spec.channels}. Pass a --dataset with {trained_spec.channels}-channel images."
            )
        class_note = other_classes_note(checkpoint, trained_spec, spec)
    loaders = loaders_for(config, spec, pad_to, torch_device, test_only=True, targets=task.targets)
    model = build_model(config.model, spec, loaders.image_size, model_kwargs=config.model_kwargs, conv=config.conv)
    load_model_state(model, checkpoint["model"], checkpoint["path"], config.model)
    model = to_memory_format(model.to(torch_device), channels_last_for(config, torch_device))
    if compile or compile_mode:
        model = compile_model(model, torch_device, compile_mode)
    result = task.evaluate(model, loaders.test, torch_device, num_classes=spec.num_classes, amp=config.amp,
                           per_class=per_class)
    result.update({"checkpoint": checkpoint["path"], "model": config.model, "dataset": spec.name,
                   "epoch": checkpoint["epoch"], "task": task.name})
    if per_class:
        result["class_names"] = list(dataset_class_names(spec))
    if class_note:
        result["note"] = class_note
    return result


def other_classes_note(checkpoint: dict[str, Any], trained_spec: Any, spec: Any) -> str | None:
    """What accuracy on another dataset with other class names means, or None when the names agree.

    Accuracy counts prediction k as right for label k: a Fashion-MNIST model evaluated on
    MNIST is "right" on a digit 1 when it answers "Trouser", which the user must be told.
    """
    from convzoo.data.class_names import dataset_class_names

    trained = tuple(checkpoint.get("class_names") or dataset_class_names(trained_spec))
    evaluated = dataset_class_names(spec)
    if trained == tuple(evaluated):
        return None
    pairs = ", ".join(f"label {label!r} = {name!r}" for label, name in list(zip(evaluated, trained))[:3])
    return (f"{checkpoint['model_name']} was trained on {trained_spec.name}, whose classes are not {spec.name}'s: "
            f"accuracy scores the model's class k against label k ({pairs}, ...).")
