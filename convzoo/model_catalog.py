"""Facts about registered models that need a built model (parameter counts), cheaply.

Models are built on the ``meta`` device: shapes and parameter counts without allocating
or initialising a single weight, so listing VGG-19's 144 M parameters costs nothing.
"""

from __future__ import annotations

from typing import Any

from convzoo.errors import ConvzooError
from convzoo.registry import get_model_info, list_models


def count_parameters(model) -> int:
    """Parameters as PyTorch counts them: each tensor once, shared weights not twice."""
    return sum(p.numel() for p in model.parameters())


def meta_parameter_count(name: str, **kwargs: Any) -> int:
    from convzoo.summary import build_uninitialised

    return count_parameters(build_uninitialised(name, device="meta", **kwargs))


def catalog_rows(pattern: str = "*") -> list[dict[str, Any]]:
    names = list_models(pattern)
    if not names:
        raise ConvzooError(f"no model matches {pattern!r}. Run `convzoo list` to see them all.")
    rows = []
    for name in names:
        info = get_model_info(name)
        rows.append({
            "name": name,
            "family": info.family,
            "task": info.task,
            "paper": info.paper,
            "params": meta_parameter_count(name),
            "input_size": list(info.input_size),
            "num_classes": info.num_classes,
            "recipe": info.recipe.as_dict(),
        })
    return rows
