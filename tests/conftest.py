"""Shared fixtures: where the real datasets are, and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    """``$CONVZOO_DATA`` (CI sets it to ../shared/data), else ../shared/data beside the repo."""
    candidate = Path(os.environ.get("CONVZOO_DATA") or REPO.parent / "shared" / "data")
    return candidate if candidate.is_dir() else None


@pytest.fixture
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real datasets not found: set CONVZOO_DATA to the folder holding MNIST/ and FashionMNIST/")
    return found


def require_dataset(data_dir: Path, folder: str) -> None:
    if not (data_dir / folder / "raw").is_dir():
        pytest.skip(f"{folder} files not found under {data_dir}")


@pytest.fixture
def cli():
    """Invoke the Typer app in-process; returns (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from convzoo.cli import app

    try:
        runner = CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always keeps stderr apart
        runner = CliRunner()

    def invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    return invoke
