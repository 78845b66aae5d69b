"""benchmarks/gpu_check.sh needs a GPU for its steps; what is checked here is everything a
lent GPU machine depends on besides them: the script ends by its deadline, its output
folder holds three files (the report and one archive of the logs) rewritten after every
step, so a run cut short still leaves them, and its report (benchmarks/gpu_check_report.py)
turns step results, run metrics and bench CSVs into the JSON and markdown a session records."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
REPORT = REPO / "benchmarks" / "gpu_check_report.py"
OUTPUTS = {"gpu_check.json", "gpu_check.md", "gpu_check-logs.tar.gz"}


def test_the_script_parses_and_calls_python3_under_timeout_k():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    text = SCRIPT.read_text()
    assert "timeout -k" in text
    assert not [line for line in text.splitlines() if "python " in line or "python -" in line]


def dry_run(out, deadline: int, step_seconds: float) -> subprocess.Popen:
    env = {**os.environ, "GPU_CHECK_DRY_STEP_S": str(step_seconds), "GPU_CHECK_RESERVE_S": "2"}
    return subprocess.Popen(["bash", str(SCRIPT), "--dry-run", "--deadline", str(deadline), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def archived(out) -> dict[str, bytes]:
    with tarfile.open(out / "gpu_check-logs.tar.gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def test_a_dry_run_ends_by_its_deadline_with_three_files(tmp_path):
    """A step longer than the time left is cut at the deadline (less the kill grace and the
    time kept for the last report); the steps after it are recorded as skipped, not run."""
    started = time.monotonic()
    with dry_run(tmp_path, deadline=40, step_seconds=60) as script:
        output, _ = script.communicate(timeout=120)
    assert time.monotonic() - started < 40 + 5, output
    assert script.returncode == 1, output
    assert {path.name for path in tmp_path.iterdir()} == OUTPUTS
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["finished"] is True and summary["passed"] is False and summary["deadline_s"] == 40
    assert summary["dry_run"] is True
    assert {"commit", "python", "torch", "torchvision", "timm", "cudnn", "gpu"} <= summary.keys()
    first, *rest = summary["checks"]
    assert first["name"] == "pytest_cuda" and first["timed_out"] and first["limit_s"] <= 40 - 2 - 10
    assert rest and all(check["skipped"] for check in rest)
    assert "bench_resnet50_bf16_cl_compiled" in [check["name"] for check in rest]
    files = archived(tmp_path)
    assert b"dry run: bash -c" in files["gpu_check-logs/logs/pytest_cuda.log"]
    assert "gpu_check-logs/results.tsv" in files and "gpu_check-logs/environment.json" in files
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| pytest_cuda | FAIL (timed out) |" in markdown and "| erf_cuda | skipped (deadline) |" in markdown


def test_a_dry_run_cut_short_leaves_the_report_of_the_steps_done(tmp_path):
    """Killed outright (a machine's own limit), the script leaves the report and the archive
    as they were after its last finished step."""
    with dry_run(tmp_path, deadline=300, step_seconds=0.5) as script:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if len(json.loads((tmp_path / "gpu_check.json").read_text())["checks"]) >= 3:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        os.killpg(script.pid, signal.SIGKILL)
        script.communicate()
    assert OUTPUTS <= {path.name for path in tmp_path.iterdir()}
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["finished"] is False
    done = [check["name"] for check in summary["checks"]]
    assert done[:3] == ["pytest_cuda", "train_scratch_conv_bf16", "train_float32_stopped_then_resumed"]
    assert all(check["passed"] for check in summary["checks"])
    assert "GPU check: RUNNING (or cut short) (dry run" in (tmp_path / "gpu_check.md").read_text()
    assert {f"gpu_check-logs/logs/{name}.log" for name in done} <= archived(tmp_path).keys()


def report(out, work, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPORT), "report", str(out), str(work), *extra],
                          capture_output=True, text=True)


def test_the_report_gives_time_to_accuracy_and_the_bench_table_and_archives_metrics(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    (work / "runs" / "lenet5-mnist").mkdir(parents=True)
    (work / "logs").mkdir()
    out.mkdir()
    epochs = [(1, 0.982, 1.5), (2, 0.9912, 1.25), (3, 0.9931, 1.0)]
    (work / "runs" / "lenet5-mnist" / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": epoch, "test_acc": accuracy, "epoch_time_s": seconds}) + "\n"
        for epoch, accuracy, seconds in epochs))
    (work / "results.tsv").write_text("lenet5_mnist\t0\t9.5\t90\tbest test accuracy 99.31%\n"
                                      "probe_cuda\t1\t3.0\t60\terror: boom\n")
    (work / "logs" / "bench_resnet50.csv").write_text(
        "model,implementation,mode,input,batch_size,ms_per_step,images_per_s,ratio_vs_convzoo,peak_memory_mb,compile_s\n"
        "resnet50,convzoo,train,3x224x224,256,80.0,3200.0,1.0,40000,\n"
        "resnet50,torchvision,train,3x224x224,256,160.0,1600.0,0.5,41000,\n")
    result = report(out, work, "--final")
    assert result.returncode == 1  # one step failed
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["passed"] is False
    assert summary["time_to_accuracy"] == [{"run": "lenet5-mnist", "target": 0.99, "reached": {"epoch": 2, "train_s": 2.75},
                                            "best_acc": 0.9931, "train_s_total": 3.75}]
    markdown = (out / "gpu_check.md").read_text()
    assert "| lenet5-mnist | 99 % | epoch 2, 2.8 s | 99.31 % |" in markdown
    assert "| bench_resnet50 | resnet50 | torchvision | train | 256 | 1,600 | 0.50 | 41,000 | - |" in markdown
    assert "| probe_cuda | FAIL (exit 1) | 3.0 | 60 | error: boom |" in markdown
    assert "gpu_check-logs/runs/lenet5-mnist/metrics.jsonl" in archived(out)


@pytest.mark.parametrize(("counts", "status"), [((4, 0, 0, 4), 1), ((4, 0, 0, 1), 0), ((2, 1, 0, 1), 0)])
def test_the_cuda_pytest_step_fails_when_every_test_was_skipped(tmp_path, counts, status):
    """pytest exits 0 when it skipped every test (no GPU seen): the step must not pass then.
    (Failures fail it through pytest's own exit status.)"""
    tests, failures, errors, skipped = counts
    junit = tmp_path / "pytest-cuda.xml"
    junit.write_text(f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" '
                     f'errors="{errors}" skipped="{skipped}"/></testsuites>')
    result = subprocess.run([sys.executable, str(REPORT), "tests-ran", str(junit)], capture_output=True, text=True)
    assert result.returncode == status, result.stdout
    assert (status == 1) == ("every test was skipped" in result.stdout)
