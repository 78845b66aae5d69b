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
def quiet_stdout() -> Iterator[None]:
    """torchvision prints download progress on stdout; keep stdout for ``--json``."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
