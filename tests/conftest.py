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


def pytest_collection_modifyitems(config, items):
    """GPU-only tests carry the ``cuda`` marker, so ``pytest -m cuda`` selects them (as
    benchmarks/gpu_check.sh does); on a machine without CUDA they are skipped."""
    needing_cuda = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not needing_cuda:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in needing_cuda:
        item.add_marker(skip)


@pytest.fixture
def one_thread():
    """Run torch on one thread: the tensors of these tests are tiny, and on CI's two shared
    cores every parallel op otherwise waits for a descheduled worker (milliseconds per op)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
def image_folder(tmp_path) -> Path:
    """A tiny ``imagefolder:`` dataset as users have them: ``train/`` and ``val/``, two classes,
    JPEGs in colour and in grey, every one of another odd size."""
    from PIL import Image

    root = tmp_path / "images"
    for split, count in (("train", 8), ("val", 3)):
        for label, (name, colour) in enumerate((("cats", (200, 60, 40)), ("dogs", (40, 90, 210)))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                size = (21 + 6 * index + label, 35 - 2 * index)
                image = Image.new("RGB", size, colour)
                image.paste(Image.effect_noise(size, 40).convert("RGB"), (0, 0), Image.new("L", size, 90))
                (image.convert("L") if index % 2 else image).save(folder / f"{name}{index}.jpg", quality=90)
    return root


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


@pytest.fixture(scope="session")
def lenet_checkpoint(tmp_path_factory) -> str:
    """best.pt of LeNet-5 trained for a few seconds on 3,000 synthetic images: 78-84 % test
    accuracy over seeds 0-3 (AdamW; SGD at this budget sometimes stalls near chance).
    Shared by the probing, attribution and attack tests: trained once per session."""
    from convzoo.config import TrainConfig
    from convzoo.engine.train import train

    out = tmp_path_factory.mktemp("lenet-runs")
    config = TrainConfig(
        model="lenet5", dataset="synthetic", epochs=4, batch_size=32, train_size=3000, optimizer="adamw",
        lr=3e-3, weight_decay=0.01, schedule="onecycle", out=str(out), name="lenet", seed=1,
    )
    result = train(config, quiet=True)
    return result["run_dir"] + "/best.pt"


def torchvision_standin(torch_home: Path, name: str) -> Path:
    """torchvision's ImageNet weights file for ``name`` where torch's hub cache under
    ``torch_home`` (``$TORCH_HOME``) looks for it, so ``--weights torchvision`` runs offline
    through torchvision's own loading; the values are ``models.NAME(weights=None)``'s (no
    weights can be downloaded here), seeded."""
    import torch
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    cached = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), cached)
    return cached
