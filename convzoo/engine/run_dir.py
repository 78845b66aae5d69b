"""Run folders claimed atomically: two commands started in the same second never share one.

Checking that a folder does not exist and creating it later leaves a window in which a
second process can pass the same check. ``claim_run_dir`` creates the folder itself with
``exist_ok=False`` (one ``mkdir`` system call, atomic on every local file system) and
takes the next ``-2``, ``-3`` ... suffix when another process won the name.

A training run also holds its folder for its whole life (``hold_run_dir``): ``--resume``
and ``--resume auto`` take over an existing folder by design, so two of them started
together would otherwise both write its ``last.pt`` and ``metrics.jsonl``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from convzoo.errors import ConvzooError


def timestamped_name(stem: str) -> str:
    """``STEM-YYYYmmdd-HHMMSS``: a default run name that sorts by start time."""
    return f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def dataset_label(dataset: str) -> str:
    """A dataset's name as it appears in run names (an image folder's last path part)."""
    return dataset.replace("imagefolder:", "").rstrip("/").split("/")[-1] or "images"


def remove_if_without_results(run_dir: str | Path) -> None:
    """After a failed or interrupted command: remove ``run_dir`` if it holds no results
    (nothing, or only TensorBoard event files and empty files), so that the same ``--name``
    works on the retry. A folder with anything else in it is kept as it is."""
    run_dir = Path(run_dir)
    try:
        entries = list(run_dir.iterdir())
        if any(not entry.is_file() or (entry.stat().st_size and not entry.name.startswith("events.out.tfevents."))
               for entry in entries):
            return
        for entry in entries:
            entry.unlink()
        run_dir.rmdir()
    except OSError:
        pass  # a folder that cannot be cleaned up is left as it is


def run_folder_path(out: str | Path, name: str) -> Path:
    """``out/name``, refusing a ``--name`` that would lead out of ``--out`` (``../x``, ``/abs``,
    ``a/b``): a run's name is one folder name, and ``--out`` says where runs go."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise ConvzooError(f"--name {name!r} is not a folder name: give one name without '/' (e.g. --name my-run); "
                           "--out chooses where run folders go.")
    return Path(out) / name


def claim_run_dir(out: str | Path, name: str | None, default_stem: str) -> Path:
    """Create and return a new run folder: ``out/name``, or ``out/default_stem-TIME[-N]``.

    A ``name`` that already exists is refused (never reused); a default name takes the
    first free suffix.
    """
    out = Path(out)
    if name:
        run_folder_path(out, name)  # before creating --out: a refused name leaves nothing behind
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConvzooError(f"cannot create the output folder {out}: {error.strerror}. Choose another --out.") from None
    if name:
        run_dir = out / name
        try:
            run_dir.mkdir(exist_ok=False)
        except FileExistsError:
            raise ConvzooError(f"{run_dir} already exists; choose another --name (a run folder is never reused).") from None
        except OSError as error:
            raise _unwritable(out, error) from None
        return run_dir
    base = out / timestamped_name(default_stem)
    for suffix in range(1, 10_000):
        run_dir = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
        try:
            run_dir.mkdir(exist_ok=False)
            return run_dir
        except FileExistsError:
            continue
        except OSError as error:
            raise _unwritable(out, error) from None
    raise ConvzooError(f"could not find a free run folder name under {out}; choose one with --name.")


def _unwritable(out: Path, error: OSError) -> ConvzooError:
    """A read-only or full ``--out`` as the one line ``export`` gives, not an ``OSError``."""
    from convzoo.engine.checkpoint import write_failure_cause

    cause, _ = write_failure_cause(error)
    return ConvzooError(f"cannot create a run folder in {out}: {cause}. Pass --out in a writable folder.")


_held: dict[Path, int] = {}
"""Run folders this process holds, each with the open descriptor its lock is on."""


def hold_run_dir(run_dir: str | Path) -> None:
    """Lock ``run_dir`` for this process until ``release_run_dir`` (or the process's end,
    whatever ends it: the kernel drops a dead process's ``flock``, so a killed run never
    leaves a stale lock). Another live run holding it is a one-line refusal.

    The lock is on the folder itself, so it leaves no file behind. Under torchrun only
    rank 0 takes it (the other ranks write to the same run by design).
    """
    if os.environ.get("RANK", "0") != "0":
        return
    try:
        import fcntl
    except ImportError:  # Windows: no flock; runs there are not guarded
        return
    run_dir = Path(run_dir)
    if run_dir.resolve() in _held:
        return  # this process holds it already (a call that failed before releasing it)
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise ConvzooError(
            f"{run_dir} is in use: another convzoo train is running in it. Wait for that run to end "
            "(then --resume continues it), or choose another --name."
        ) from None
    _held[run_dir.resolve()] = descriptor
    _tell_the_launcher(run_dir)


RUN_DIR_FILE = "CONVZOO_RUN_DIR_FILE"
"""Set by ``train --nproc-per-node`` (commands/launch.py): the file where rank 0 writes its
run folder, into which the launcher then moves torchrun's log."""


def _tell_the_launcher(run_dir: Path) -> None:
    path = os.environ.get(RUN_DIR_FILE)
    if path:
        try:
            Path(path).write_text(str(run_dir))
        except OSError:
            pass  # the log then stays in the temporary folder, as the launcher says


def release_run_dir(run_dir: str | Path) -> None:
    """Let go of a folder ``hold_run_dir`` locked (nothing if it holds none)."""
    descriptor = _held.pop(Path(run_dir).resolve(), None)
    if descriptor is not None:
        os.close(descriptor)


def _not_in_forked_children() -> None:
    """A forked child (a DataLoader worker) shares the lock through its copy of the
    descriptor, which would keep the folder locked after the run released it, for as long
    as the worker lives; closing the child's copy leaves the parent's lock as it is."""
    for descriptor in _held.values():
        os.close(descriptor)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_not_in_forked_children)
