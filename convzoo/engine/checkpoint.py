"""Checkpoints that cannot be half-written, and loading that says what is wrong.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced,
then renamed over the old one: a crash at any moment leaves either the old or the new
checkpoint, never a truncated file. Loading uses ``weights_only=True``, so a checkpoint
cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from convzoo.errors import ConvzooError

CHECKPOINT_FORMAT = "convzoo-checkpoint-v1"
REQUIRED_KEYS = ("format", "model_name", "model", "config", "epoch")


def atomic_save(payload: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (temporary file, fsync, rename, fsync folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load and sanity-check a convzoo checkpoint; anything else is a one-line error."""
    path = Path(path)
    if path.is_dir():
        for candidate in ("best.pt", "last.pt"):
            if (path / candidate).is_file():
                path = path / candidate
                break
    if not path.is_file():
        raise ConvzooError(f"checkpoint {path} does not exist. Pass a run's best.pt or last.pt.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a bad file
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise ConvzooError(
            f"cannot read checkpoint {path}: the file is truncated, corrupt or not a PyTorch checkpoint ({first}). "
            "Use another checkpoint, e.g. the run's last.pt."
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ConvzooError(
            f"{path} is not a convzoo checkpoint (no '{CHECKPOINT_FORMAT}' marker). "
            "For a plain state dict use --weights PATH with --model NAME."
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ConvzooError(f"checkpoint {path} lacks {', '.join(missing)}; it cannot be used. Use another checkpoint.")
    checkpoint["path"] = str(path)
    return checkpoint


def load_model_state(model: torch.nn.Module, state_dict: dict[str, Any], source: str, model_name: str) -> None:
    """Load weights strictly; a mismatch names the first differences instead of a stack trace."""
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    wrong_shape = [
        key for key in own if key in state_dict and tuple(own[key].shape) != tuple(state_dict[key].shape)
    ]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {', '.join(missing[:3])}")
        if unexpected:
            details.append(f"unexpected {', '.join(unexpected[:3])}")
        if wrong_shape:
            key = wrong_shape[0]
            details.append(f"shape of {key} is {tuple(state_dict[key].shape)}, model has {tuple(own[key].shape)}")
        raise ConvzooError(
            f"weights in {source} do not fit model {model_name!r}: {'; '.join(details)}. "
            "Check --model and the dataset (class count, channels, image size)."
        )
    model.load_state_dict(state_dict, strict=True)
