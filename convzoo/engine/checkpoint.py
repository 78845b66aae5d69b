"""Checkpoints that cannot be half-written, and loading that says what is wrong.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced,
then renamed over the old one: a crash at any moment leaves either the old or the new
checkpoint, never a truncated file. Loading uses ``weights_only=True``, so a checkpoint
cannot run code.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

import torch

from convzoo.errors import ConvzooError

CHECKPOINT_FORMAT = "convzoo-checkpoint-v1"
REQUIRED_KEYS = ("format", "model_name", "model", "config", "epoch")


def atomic_save(payload: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (temporary file, fsync, rename, fsync folder).

    The payload is serialised in memory first: torch's own file writer reports a full
    disk as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, which
    names neither the file nor the cause. Any failure leaves the previous checkpoint as it
    was and raises a one-line ``ConvzooError`` naming the file, the cause and what to do.
    """
    import io

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(buffer.getbuffer(), path, checkpoint_write_error)


def atomic_write_bytes(data: bytes | memoryview, path: str | os.PathLike,
                       describe_error: Callable[[Path, OSError], str]) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, written with plain
    ``os.write`` calls, fsynced, renamed over ``path``, then the folder fsynced.

    A crash or a full disk at any moment leaves the old file or the new one, never a
    truncated one, and no temporary file (``remove_unfinished_writes`` clears those a
    ``kill -9`` leaves). The file is created with mode 0666 less the umask, as ``open``
    (and so ``torch.save``) creates files: ``mkstemp``'s 0600 would hide a shared run's
    checkpoints from the rest of the group. A failure raises one line, ``describe_error``'s.
    """
    path = Path(path)
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                handle = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        temporary = candidate
        with os.fdopen(handle, "wb") as file:
            view = memoryview(data).cast("B")
            written = 0
            while written < len(view):
                written += os.write(file.fileno(), view[written:])
            del view
            os.fsync(file.fileno())
        os.replace(temporary, path)
        temporary = None
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        raise ConvzooError(describe_error(path, error)) from error
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def remove_unfinished_writes(run_dir: str | os.PathLike) -> None:
    """Delete the temporary files of checkpoint writes a ``kill -9`` cut short (``atomic_save``
    cleans up after every failure it lives to see, not after its process is killed)."""
    for leftover in Path(run_dir).glob(".*.pt.*.tmp"):
        leftover.unlink(missing_ok=True)


def checkpoint_write_error(path: Path, error: OSError) -> str:
    """What went wrong writing ``path`` and what to do, in one line."""
    cause, advice = write_failure_cause(error)
    kept = " The previous checkpoint there is intact." if path.exists() else ""
    return f"cannot write checkpoint {path}: {cause}.{kept} To continue, {advice}, then resume with --resume {path.parent}."


def write_failure_cause(error: OSError) -> tuple[str, str]:
    """An ``OSError`` of a write as (cause, what to do), in words a user acts on."""
    import errno

    causes = {
        errno.ENOSPC: ("no space left on the device", "free some space (or pass --out on another disk)"),
        errno.EDQUOT: ("the disk quota is exceeded", "free some space (or pass --out on another disk)"),
        errno.EACCES: ("permission denied", "make the run folder writable (or pass --out to a writable folder)"),
        errno.EPERM: ("permission denied", "make the run folder writable (or pass --out to a writable folder)"),
        errno.EROFS: ("the file system is read-only", "pass --out to a writable folder"),
    }
    return causes.get(error.errno, (error.strerror or type(error).__name__, "check the folder"))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *,
                    plain_weights_hint: str = "train a model with `convzoo train` and pass its best.pt",
                    unreadable_hint: str | None = None) -> dict[str, Any]:
    """Load and sanity-check a convzoo checkpoint; anything else is a one-line error.

    ``path`` may be a run folder (its best.pt, else last.pt). Messages name the path as
    the user gave it; ``plain_weights_hint`` says what to do with a plain state dict,
    since only some commands take one (``--weights PATH --model NAME``), and
    ``unreadable_hint`` what to do with a damaged file (default: use the run's other one).
    """
    given = Path(path)
    path = given
    if given.is_dir():
        found = [given / name for name in ("best.pt", "last.pt") if (given / name).is_file()]
        if not found:
            raise ConvzooError(
                f"run folder {given} holds no best.pt or last.pt (its first epoch may not have finished). "
                "Pass a run folder with checkpoints, or a .pt file."
            )
        path = found[0]
    elif not given.is_file():
        raise ConvzooError(f"checkpoint {given} does not exist. Pass a run's best.pt or last.pt (or its folder).")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a bad file
        # torch's own text is pages long and, cut to a line, ends mid-word: --debug shows all of it.
        other = "best.pt" if path.name == "last.pt" else "last.pt"
        hint = unreadable_hint or f"Use another checkpoint, e.g. the run's {other}"
        raise ConvzooError(
            f"cannot read checkpoint {path}: the file is truncated, corrupt or not a PyTorch checkpoint. "
            f"{hint} (--debug shows torch's message)."
        ) from error
    if _is_plain_state_dict(checkpoint):
        raise ConvzooError(f"{path} holds plain weights (a state dict), not a convzoo checkpoint; {plain_weights_hint}.")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ConvzooError(
            f"{path} is not a convzoo checkpoint (no '{CHECKPOINT_FORMAT}' marker). "
            "Pass a best.pt or last.pt written by `convzoo train`."
        )
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ConvzooError(f"checkpoint {path} lacks {', '.join(missing)}; it cannot be used. Use another checkpoint.")
    checkpoint["path"] = str(path)
    return checkpoint


def _is_plain_state_dict(payload: Any) -> bool:
    """A ``torch.save(model.state_dict())`` file: names mapping to tensors, nothing else."""
    return (isinstance(payload, dict) and bool(payload) and "format" not in payload
            and all(isinstance(value, torch.Tensor) for value in payload.values()))


def load_model_state(model: torch.nn.Module, state_dict: dict[str, Any], source: str, model_name: str) -> None:
    """Load weights strictly; a mismatch names the first differences instead of a stack trace."""
    own = model.state_dict()
    missing = [key for key in own if key not in state_dict]
    unexpected = [key for key in state_dict if key not in own]
    wrong_shape = [
        key for key in own if key in state_dict and tuple(own[key].shape) != tuple(state_dict[key].shape)
    ]
    if missing or unexpected or wrong_shape:
        raise weights_mismatch(own, state_dict, source, model_name, missing, unexpected, wrong_shape,
                               "Check --model and the dataset (class count, channels, image size).")
    model.load_state_dict(state_dict, strict=True)


def first_keys(keys: list[str], shown: int = 3) -> str:
    """The first ``shown`` keys, and how many more there are."""
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def weights_mismatch(own: Mapping[str, Any], given: Mapping[str, Any], source: str, model_name: str,
                     missing: list[str], unexpected: list[str], wrong_shape: list[str], advice: str) -> ConvzooError:
    """The one-line error for weights that do not fit a model: its first missing, unexpected
    and reshaped keys, then ``advice``."""
    details = [f"missing {first_keys(missing)}"] if missing else []
    details += [f"unexpected {first_keys(unexpected)}"] if unexpected else []
    if wrong_shape:
        key = wrong_shape[0]
        details.append(f"shape of {key} is {tuple(given[key].shape)}, model has {tuple(own[key].shape)}")
    return ConvzooError(f"weights in {source} do not fit model {model_name!r}: {'; '.join(details)}. {advice}")
