"""The command line as a user meets it: help, --json outputs, one-line errors."""

import json
import subprocess
import sys
import time

import pytest
import yaml


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convzoo", *args], capture_output=True, text=True, timeout=timeout)


def test_help_is_instant_and_does_not_import_torch():
    script = "import sys, convzoo.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout.strip() == "False"
    started = time.perf_counter()
    completed = run_cli("--help")
    elapsed = time.perf_counter() - started
    assert completed.returncode == 0
    for command in ("train", "eval", "list"):
        assert command in completed.stdout
    assert elapsed < 3  # generous for a loaded CI machine; BENCHMARKS.md records the real figure


@pytest.mark.parametrize("command", ["train", "eval", "list", "summary", "probe"])
def test_each_command_has_help_with_an_example(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0 and "convzoo " + command in out.replace("\n", " ")


def test_list_json(cli):
    code, out, _ = cli("list", "lenet*", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["models"][0]["name"] == "lenet5" and payload["models"][0]["params"] == 61_706


def test_train_then_eval_json(cli, tmp_path):
    code, out, err = cli("train", "--model", "lenet5", "--epochs", "1", "--batch-size", "64", "--out", tmp_path,
                         "--name", "r", "--json")
    assert code == 0, err
    result = json.loads(out)  # exactly one JSON object on stdout
    for key in ("run_dir", "epochs", "best_acc", "final_acc", "train_time_s"):
        assert key in result
    assert 0 <= result["best_acc"] <= 1 and result["epochs"] == 1
    assert "epoch 1/1" in err  # one plain line per epoch on stderr when not on a terminal

    code, out, err = cli("eval", "--checkpoint", f"{tmp_path}/r/best.pt", "--per-class", "--json")
    assert code == 0, err
    evaluation = json.loads(out)
    assert set(evaluation) >= {"acc1", "acc5", "loss", "n", "per_class"}
    assert evaluation["n"] == 2000 and len(evaluation["per_class"]) == 10
    assert evaluation["acc1"] == pytest.approx(result["best_acc"])
    assert evaluation["acc1"] <= evaluation["acc5"] <= 1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--model", "resnet5000"], "unknown model 'resnet5000'"),
        (["train", "--model", "lenet5", "--dataset", "mnsit"], "unknown dataset 'mnsit'"),
        (["train", "--config", "absent.yaml"], "cannot read config file"),
        (["train", "--model", "lenet5", "--optimizer", "adam"], "--optimizer must be one of"),
        (["train", "--model", "lenet5", "--device", "cuda"] if not __import__("torch").cuda.is_available() else
         ["train", "--model", "lenet5", "--device", "tpu"], "device"),
        (["eval", "--checkpoint", "absent.pt"], "does not exist"),
        (["train", "--resume", "not-a-run"], "not a convzoo run folder"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_a_nonzero_exit(cli, args, fragment, tmp_path):
    code, out, err = cli(*args, "--out", tmp_path) if args[0] == "train" and "--resume" not in args else cli(*args)
    assert code != 0
    assert fragment in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""


def test_missing_data_is_a_one_line_error_in_a_real_process(tmp_path):
    completed = run_cli("train", "--model", "lenet5", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                        "--out", str(tmp_path))
    assert completed.returncode != 0
    lines = completed.stderr.strip().splitlines()
    assert lines[-1].startswith("error: cifar10 files not found in") and "--data-dir" in lines[-1]
    assert "Traceback" not in completed.stderr


def test_debug_shows_the_traceback(cli):
    completed = run_cli("train", "--model", "resnet5000", "--debug")
    assert completed.returncode != 0 and "Traceback" in completed.stderr


def test_a_foreign_checkpoint_is_refused_and_left_intact(cli, tmp_path):
    import torch

    path = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    before = path.read_bytes()
    code, _, err = cli("eval", "--checkpoint", path)
    assert code != 0 and "not a convzoo checkpoint" in err
    assert path.read_bytes() == before


def test_resume_refuses_changed_flags_on_the_command_line(cli, tmp_path):
    code, _, err = cli("train", "--model", "lenet5", "--epochs", "1", "--out", tmp_path, "--name", "r", "--json")
    assert code == 0, err
    code, out, err = cli("train", "--resume", f"{tmp_path}/r", "--epochs", "3")
    assert code != 0 and "Start a new run instead" in err
    code, out, err = cli("train", "--resume", f"{tmp_path}/r", "--json")
    assert code == 0 and json.loads(out)["already_complete"] is True


def test_set_reaches_any_config_key_and_named_flags_win(cli, tmp_path):
    code, out, err = cli("train", "--model", "lenet5", "--epochs", "1", "--out", tmp_path, "--name", "r",
                         "--set", "train_size=256", "--set", "test_size=100", "--set", "label_smoothing=0.1",
                         "--set", "epochs=7", "--json")
    assert code == 0, err
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert (saved["train_size"], saved["test_size"], saved["label_smoothing"], saved["epochs"]) == (256, 100, 0.1, 1)
    record = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert (record["train_images"], record["test_images"]) == (256, 100)
    code, out, err = cli("eval", "--checkpoint", f"{tmp_path}/r/best.pt", "--json")
    assert code == 0, err
    assert json.loads(out)["n"] == 2000  # eval reports on the whole test split, not the run's quick subset


@pytest.mark.parametrize(
    ("assignment", "fragment"),
    [("warmup_epoch=0", "unknown key 'warmup_epoch'"), ("lr=fast", "'lr' must be float"), ("lr", "KEY=VALUE")],
)
def test_bad_set_is_one_line_error(cli, tmp_path, assignment, fragment):
    code, out, err = cli("train", "--model", "lenet5", "--out", tmp_path, "--set", assignment)
    assert code != 0 and fragment in err
    assert len(err.strip().splitlines()) == 1 and out == ""


def test_eval_on_a_dataset_with_other_classes_is_refused(cli, tmp_path):
    code, _, err = cli("train", "--model", "lenet5", "--epochs", "1", "--set", "train_size=256", "--out", tmp_path,
                       "--name", "r", "--json")
    assert code == 0, err
    code, out, err = cli("eval", "--checkpoint", f"{tmp_path}/r/best.pt", "--dataset", "cifar100",
                         "--data-dir", tmp_path)
    assert code != 0 and "was trained for 10 classes; cifar100 has 100" in err
    assert len(err.strip().splitlines()) == 1 and out == ""
