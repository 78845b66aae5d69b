"""What differs between tasks, beside the one training loop (engine/train.py).

A task says how a batch's targets are loaded (``targets``: what ``data.load_tensors``
reads), how a step's loss is computed from the model and the batch, what is counted on the
device during training, how a model is evaluated (the metrics, accumulated on the device and
summed over torchrun ranks), which of them chooses ``best.pt`` (``metric``: higher is
better), and how an epoch's numbers are printed and logged. The loop calls these and
nothing else differs: classification.py is the reference, segmentation.py the second.

``--model`` implies the task (``ModelInfo.task``); ``--task`` (config key ``task``) only
states it, and is refused when the model predicts something else.
"""

from __future__ import annotations

from typing import Any

from convzoo.config import TASKS
from convzoo.errors import ConvzooError


def get_task(name: str) -> Any:
    """The task object for ``name``."""
    if name == "classification":
        from convzoo.tasks.classification import Classification

        return Classification()
    if name == "segmentation":
        from convzoo.tasks.segmentation import Segmentation

        return Segmentation()
    if name == "detection":
        from convzoo.tasks.detection import Detection

        return Detection()
    raise ConvzooError(f"unknown task {name!r}; convzoo knows {', '.join(TASKS)}.")


def task_name_for(model: str, asked: str | None = None) -> str:
    """The task ``model`` predicts; ``asked`` (``--task``) must agree with it."""
    from convzoo.registry import get_model_info

    task = get_model_info(model).task
    if asked is not None and asked != task:
        raise ConvzooError(
            f"--task {asked}: {model} is a {task} model. Drop --task (the model implies it), or pick a {asked} "
            f"model (`convzoo list` shows each model's task)."
        )
    return task


def task_for(config: Any) -> Any:
    """The task object of a run's config (its model's task)."""
    return get_task(task_name_for(config.model, getattr(config, "task", None)))


def check_task_options(config: Any, task: Any) -> None:
    """Refuse, in one line, the options a task cannot use: mixing images mixes their labels
    (MixUp/CutMix are defined for one label per image), and the batched automatic augmentation
    and random erasing move or erase pixels without moving their masks."""
    if task.accepts_mixing:
        return
    asked = [flag for flag, value in (("--mixup", config.mixup), ("--cutmix", config.cutmix),
                                      ("--auto-augment", config.auto_augment),
                                      ("--random-erasing", config.random_erasing)) if value]
    if asked:
        raise ConvzooError(
            f"{', '.join(asked)} augment{'s' if len(asked) == 1 else ''} images for classification; {config.model} is "
            f"a {task.name} model, whose targets would not follow. Drop {' and '.join(asked)}."
        )
