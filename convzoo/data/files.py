"""Where dataset files live, and the one-line error when they are not there."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

from convzoo.errors import ConvzooError

DATA_DIR_VARIABLE = "CONVZOO_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/convzoo/data")


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``--data-dir``, else ``$CONVZOO_DATA``, else ``~/.cache/convzoo/data``."""
    chosen = data_dir or os.environ.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


def absolute_data_dir(data_dir: str | os.PathLike | None) -> str | None:
    """``data_dir`` as an absolute path, as a run stores it: a relative ``--data-dir`` means
    "relative to where I am now", which a later command run elsewhere cannot know."""
    return None if data_dir is None else str(Path(data_dir).expanduser().resolve())


def data_dir_for_saved_run(data_dir: str | os.PathLike | None, saved_data_dir: str | None) -> str | None:
    """The data folder of a command that rebuilds a run (``eval``, ``probe``, ``--resume`` ...).

    ``--data-dir`` > ``$CONVZOO_DATA`` > the folder the run was trained from, if it still
    exists > the default (None). The user's choice today beats the one baked into the
    checkpoint, and a folder that is gone is not worth an error when another one is at hand.
    """
    if data_dir:
        return absolute_data_dir(data_dir)
    if os.environ.get(DATA_DIR_VARIABLE):
        return absolute_data_dir(os.environ[DATA_DIR_VARIABLE])
    if saved_data_dir and Path(saved_data_dir).expanduser().is_dir():
        return saved_data_dir
    return None


@contextlib.contextmanager
def no_new_empty_folders(folder: Path) -> Iterator[None]:
    """Remove the folders a failed look-up created on the way to ``folder``.

    torchvision creates ``ROOT/MNIST/raw`` before it tries to download; when that fails
    (offline, a mistyped ``--data-dir``) the empty folders would stay behind wherever the
    command ran. Folders that held anything, or existed before, are left alone.
    """
    new = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    try:
        yield
    except BaseException:
        for parent in new:  # deepest first
            with contextlib.suppress(OSError):
                parent.rmdir()  # fails, and keeps the folder, when it is not empty
        raise


def missing_data_error(dataset: str, root: Path, cause: BaseException | None = None,
                       wanted: str | None = None) -> ConvzooError:
    """``wanted`` names the files the command needs: torchvision downloads a dataset's every
    file, so its error names the first one (the training images) even when only the test
    split was asked for; then its cause is reported by type alone."""
    if wanted:
        reason = f" ({type(cause).__name__})" if cause else ""
    else:
        reason = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:120]})" if cause and str(cause) else ""
    root = root.expanduser().absolute()
    return ConvzooError(
        f"{dataset} files not found in {root}{f' ({wanted})' if wanted else ''} and could not be downloaded{reason}. "
        f"Put the dataset there in torchvision's layout, or point --data-dir "
        f"(or ${DATA_DIR_VARIABLE}) at the folder that holds it."
    )


@contextlib.contextmanager
def one_writer_at_a_time(folder: Path) -> Iterator[None]:
    """While entered, no other process holds this lock on the data folder ``folder``, on
    this machine or, over a shared file system, on any other: downloads take it, so that
    the processes of a job (one or many per node, a shared folder or one per node) never
    write one dataset's files at once, and each finds what the one before it wrote.

    A POSIX lock (``fcntl.lockf``), which NFS carries to every client, on a file that is
    removed on the way out (and so leaves no trace after a failed download). No
    collective: every rank goes through the same ones, whatever its own disk holds. Where
    no lock can be taken (a read-only folder, a file system without locks, Windows) there
    is nothing to guard, or nothing better to do, and the download goes ahead unlocked.
    """
    path = folder / ".convzoo-download.lock"
    handle = _locked(path)
    try:
        yield
    finally:
        if handle is not None:
            with contextlib.suppress(OSError):
                path.unlink()  # before unlocking: whoever gets the lock next sees it is gone, and starts anew
            os.close(handle)


def _locked(path: Path) -> int | None:
    """An open file holding an exclusive lock on ``path`` (created if need be), or None."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.lockf(handle, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino == os.fstat(handle).st_ino:
                    return handle  # still the file on disk, not one its last holder removed
            os.close(handle)
            handle = None
    except OSError:
        if handle is not None:
            with contextlib.suppress(OSError):
                os.close(handle)
        return None


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """torchvision prints download progress on stdout; keep stdout for ``--json``."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
