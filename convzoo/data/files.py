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


def missing_data_error(dataset: str, root: Path, cause: BaseException | None = None) -> ConvzooError:
    reason = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:120]})" if cause and str(cause) else ""
    return ConvzooError(
        f"{dataset} files not found in {root} and could not be downloaded{reason}. "
        f"Put the dataset there in torchvision's layout, or point --data-dir "
        f"(or ${DATA_DIR_VARIABLE}) at the folder that holds it."
    )


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """torchvision prints download progress on stdout; keep stdout for ``--json``."""
    with contextlib.redirect_stdout(sys.stderr):
        yield
