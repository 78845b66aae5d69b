"""convzoo: classic convolutional networks, faithful to their papers, with a training CLI.

The public API is imported lazily so that ``convzoo --help`` does not pay for torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "register_model": "convzoo.registry",
    "create_model": "convzoo.registry",
    "list_models": "convzoo.registry",
    "get_model_info": "convzoo.registry",
    "ConvzooError": "convzoo.errors",
    "TrainConfig": "convzoo.config",
    "load_config": "convzoo.config",
    "train": "convzoo.engine.train",
    "evaluate_checkpoint": "convzoo.engine.evaluate",
    "summarize": "convzoo.summary",
    "probe": "convzoo.probing",
}

__all__ = list(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convzoo' has no attribute {name!r}")
