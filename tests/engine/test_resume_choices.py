"""``--resume`` continues a run's last.pt or says why it cannot (issue 22, item 9)."""

from __future__ import annotations

import shutil

import pytest

TINY = ["--model", "lenet5", "--epochs", "1", "--batch-size", "32", "--set", "train_size=64", "--set", "test_size=16",
        "--device", "cpu"]


@pytest.fixture
def finished_run(cli, tmp_path):
    code, _, err = cli("train", *TINY, "--out", tmp_path, "--name", "run")
    assert code == 0, err
    return tmp_path / "run"


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_resume_from_best_pt_is_refused_not_replaced_by_last_pt(cli, finished_run):
    code, _, err = cli("train", "--resume", finished_run / "best.pt")
    assert code == 2
    assert "from its last.pt, not best.pt" in _one_error(err)


def test_a_corrupt_last_pt_does_not_advise_using_last_pt(cli, finished_run):
    (finished_run / "last.pt").write_bytes(b"\0" * 100)
    code, _, err = cli("train", "--resume", finished_run)
    line = _one_error(err)
    assert code == 2 and "cannot read checkpoint" in line
    assert "last.pt (--debug" not in line and "cannot continue from it" in line


def test_resume_of_a_folder_without_last_pt_does_not_restart_silently(cli, finished_run):
    (finished_run / "last.pt").unlink()
    (finished_run / "best.pt").unlink()
    before = (finished_run / "metrics.jsonl").read_text()
    code, _, err = cli("train", "--resume", finished_run)
    assert code == 2 and "has no last.pt" in _one_error(err)
    assert (finished_run / "metrics.jsonl").read_text() == before and not (finished_run / "last.pt").exists()
