"""Where a command finds its data (issue 16, item 2): runs store absolute folders; at eval
and probe time --data-dir > $CONVZOO_DATA > the run's folder if it still exists > the
default; a failed look-up leaves no folders behind."""

from __future__ import annotations

import json
from urllib.error import URLError

import pytest
import yaml

from tests.conftest import require_dataset
from convzoo.config import TrainConfig
from convzoo.data.files import DATA_DIR_VARIABLE, data_dir_for_saved_run
from convzoo.engine.train import train


@pytest.fixture
def offline(monkeypatch):
    """torchvision's downloads fail at once, as on a machine without network."""
    import torchvision.datasets.mnist

    def refuse(*args, **kwargs):
        raise URLError("offline")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", refuse)


def test_a_run_stores_its_data_folder_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train(TrainConfig(model="lenet5", epochs=1, train_size=64, test_size=64, batch_size=32,
                               data_dir="../somewhere/data", out="runs", name="r"), quiet=True)
    saved = yaml.safe_load((tmp_path / "runs" / "r" / "config.yaml").read_text())
    assert saved["data_dir"] == str((tmp_path / "../somewhere/data").resolve())
    assert result["run_dir"].endswith("r")


def test_precedence_data_dir_then_environment_then_the_runs_folder_then_default(tmp_path, monkeypatch):
    saved, gone = tmp_path / "saved", tmp_path / "gone"
    saved.mkdir()
    monkeypatch.delenv(DATA_DIR_VARIABLE, raising=False)
    assert data_dir_for_saved_run(None, str(saved)) == str(saved)
    assert data_dir_for_saved_run(None, str(gone)) is None  # gone: the default, not an error
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path / "env"))
    assert data_dir_for_saved_run(None, str(saved)) == str(tmp_path / "env")
    monkeypatch.chdir(tmp_path)
    assert data_dir_for_saved_run("flag", str(saved)) == str(tmp_path / "flag")  # absolute


@pytest.fixture(scope="module")
def run_with_a_stale_data_folder(tmp_path_factory) -> str:
    """LeNet-5 trained on synthetic 1x32x32 images, its config naming a folder that is gone."""
    out = tmp_path_factory.mktemp("stale")
    train(TrainConfig(model="lenet5", epochs=1, train_size=64, test_size=64, batch_size=32,
                      data_dir=str(out / "moved-away"), out=str(out), name="r"), quiet=True)
    return str(out / "r" / "best.pt")


def test_eval_takes_convzoo_data_over_the_checkpoints_folder(cli, data_dir, tmp_path, monkeypatch,
                                                             run_with_a_stale_data_folder, offline):
    require_dataset(data_dir, "MNIST")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(data_dir))
    code, out, err = cli("eval", "--checkpoint", run_with_a_stale_data_folder, "--dataset", "mnist", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 10_000
    monkeypatch.setenv(DATA_DIR_VARIABLE, str(tmp_path / "empty"))
    code, out, err = cli("eval", "--checkpoint", run_with_a_stale_data_folder, "--dataset", "mnist",
                         "--data-dir", data_dir, "--json")
    assert code == 0, err  # --data-dir beats $CONVZOO_DATA
    assert list(tmp_path.iterdir()) == []  # and nothing was created while looking


def test_a_failed_look_up_creates_no_folders(cli, tmp_path, monkeypatch, run_with_a_stale_data_folder, offline):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_VARIABLE, "relative/data")
    code, _, err = cli("eval", "--checkpoint", run_with_a_stale_data_folder, "--dataset", "mnist")
    assert code != 0 and f"mnist files not found in {tmp_path / 'relative' / 'data'}" in err
    assert list(tmp_path.iterdir()) == []  # no relative/data/MNIST/raw left behind
