"""The report of benchmarks/gpu_check.sh, rewritten after every step so that a run cut short
still leaves one: ``OUT/gpu_check.json``, ``OUT/gpu_check.md`` and ``OUT/gpu_check-logs.tar.gz``
(every step's log, pytest's JUnit XML, the bench CSVs, each run's ``metrics.jsonl``), three
files in all, each replaced whole (written beside, then renamed).

    python3 benchmarks/gpu_check_report.py environment WORK    # once: versions, GPU, commit -> WORK/environment.json
    python3 benchmarks/gpu_check_report.py report OUT WORK     # after every step
    python3 benchmarks/gpu_check_report.py tests-ran JUNIT     # exit 1 when pytest ran no test (all skipped)

Only the ``environment`` step imports torch (seconds); the others read files (milliseconds).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

RECIPES = (("lenet5-mnist", 0.99), ("resnet20-fashion-mnist", 0.94))
"""The shipped recipes the check times, and the test accuracy each is timed to."""


def command_output(*command: str) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes); a copy without ``.git``
    (as a lent GPU machine gets) takes ``$GPU_CHECK_COMMIT``."""
    head = command_output("git", "rev-parse", "HEAD")
    if head is None:
        return os.environ.get("GPU_CHECK_COMMIT") or "unknown"
    return head + ("-dirty" if command_output("git", "status", "--porcelain", "--untracked-files=no") else "")


def environment(work: Path) -> None:
    import platform

    import torch

    def version(module: str) -> str | None:
        try:
            return __import__(module).__version__
        except Exception:  # noqa: BLE001 - absent or broken: the report says so
            return None

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    found = {
        "commit": commit(), "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": version("torchvision"), "timm": version("timm"), "cuda": torch.version.cuda,
        "cudnn": cudnn, "cuda_available": torch.cuda.is_available(),
        "gpu": command_output("nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader") or "unknown",
    }
    (work / "environment.json").write_text(json.dumps(found, indent=2) + "\n")


def junit_counts(junit: Path) -> dict[str, int] | None:
    if not junit.is_file():
        return None
    try:
        suite = ElementTree.parse(junit).getroot()
    except ElementTree.ParseError:
        return None
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}


def tests_ran(junit: Path) -> int:
    counts = junit_counts(junit)
    ran = 0 if counts is None else counts["tests"] - counts["skipped"]
    print(f"pytest: {counts}; {ran} test(s) ran" + ("" if ran else ": every test was skipped (no CUDA GPU?)"))
    return 0 if ran > 0 else 1


def time_to_accuracy(work: Path, run: str, target: float) -> dict | None:
    """Training seconds until the first epoch whose test accuracy reached ``target``."""
    metrics = work / "runs" / run / "metrics.jsonl"
    if not metrics.is_file():
        return None
    elapsed, reached, best = 0.0, None, 0.0
    for line in metrics.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by the step's timeout
        elapsed += record["epoch_time_s"]
        best = max(best, record["test_acc"])
        if reached is None and record["test_acc"] >= target:
            reached = {"epoch": record["epoch"], "train_s": round(elapsed, 2)}
    return {"run": run, "target": target, "reached": reached, "best_acc": best, "train_s_total": round(elapsed, 2)}


def number(text: str, spec: str) -> str:
    return format(float(text), spec) if text else "-"


def read_checks(work: Path) -> list[dict]:
    checks = []
    results = work / "results.tsv"
    for line in (results.read_text().splitlines() if results.is_file() else []):
        name, status, seconds, limit, last = (line.split("\t") + [""] * 5)[:5]
        skipped = status == "skipped"
        checks.append({"name": name, "passed": status == "0", "skipped": skipped,
                       "exit_code": None if skipped else int(status), "timed_out": status in ("124", "137"),
                       "seconds": float(seconds), "limit_s": float(limit), "last_line": last,
                       "log": None if skipped else f"gpu_check-logs/logs/{name}.log"})
    return checks


def status_text(check: dict) -> str:
    if check["skipped"]:
        return "skipped (deadline)"
    if check["passed"]:
        return "pass"
    return f"FAIL ({'timed out' if check['timed_out'] else 'exit %d' % check['exit_code']})"


def replace(path: Path, write) -> None:
    """``write(partial)`` then rename over ``path``: a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def archive(out: Path, work: Path) -> None:
    def write(partial: Path) -> None:
        with tarfile.open(partial, "w:gz") as tar:
            for name in ("results.tsv", "environment.json"):
                if (work / name).is_file():
                    tar.add(work / name, arcname=f"gpu_check-logs/{name}")
            if (work / "logs").is_dir():
                tar.add(work / "logs", arcname="gpu_check-logs/logs")
            for metrics in sorted((work / "runs").glob("*/metrics.jsonl")):
                tar.add(metrics, arcname=f"gpu_check-logs/runs/{metrics.parent.name}/metrics.jsonl")

    replace(out / "gpu_check-logs.tar.gz", write)


def report(out: Path, work: Path, final: bool) -> int:
    checks = read_checks(work)
    found = json.loads((work / "environment.json").read_text()) if (work / "environment.json").is_file() else {}
    pytest_counts = junit_counts(work / "logs" / "pytest-cuda.xml")
    recipes = [timed for run, target in RECIPES if (timed := time_to_accuracy(work, run, target))]
    benches = {}
    for table in sorted((work / "logs").glob("bench_*.csv")):
        with table.open() as file:
            benches[table.stem] = list(csv.DictReader(file))
    passed = bool(checks) and all(check["passed"] for check in checks)
    summary = {
        "passed": passed, "finished": final, "dry_run": os.environ.get("GPU_CHECK_DRY_RUN") == "1",
        "deadline_s": float(os.environ["GPU_CHECK_DEADLINE_S"]) if os.environ.get("GPU_CHECK_DEADLINE_S") else None,
        **found, "pytest_cuda": pytest_counts, "checks": checks, "time_to_accuracy": recipes, "bench": benches,
    }
    replace(out / "gpu_check.json", lambda path: path.write_text(json.dumps(summary, indent=2) + "\n"))
    state = (("passed" if passed else "FAILED") if final else "RUNNING (or cut short)") \
        + (" (dry run: every step an echo)" if summary["dry_run"] else "")
    rows = [f"| {c['name']} | {status_text(c)} | {c['seconds']:.1f} | {c['limit_s']:.0f} | "
            f"{c['last_line'].replace('|', '/')[:120]} |" for c in checks]
    markdown = "\n".join([
        f"# GPU check: {state}", "",
        f"{found.get('gpu', 'unknown')}; commit {found.get('commit')}; Python {found.get('python')}, torch "
        f"{found.get('torch')} (CUDA {found.get('cuda')}, cuDNN {found.get('cudnn')}), torchvision "
        f"{found.get('torchvision')}, timm {found.get('timm')}; pytest -m cuda: {pytest_counts}", "",
        "Logs, bench CSVs, JUnit XML and each run's metrics.jsonl: gpu_check-logs.tar.gz.", "",
        "| check | result | seconds | limit s | last line of output |", "|---|---|---|---|---|", *rows, "",
        "## Time to accuracy (training seconds, evaluation excluded)", "",
        "| recipe | target | reached at | best |", "|---|---:|---|---:|",
        *[f"| {r['run']} | {100 * r['target']:.0f} % | "
          + (f"epoch {r['reached']['epoch']}, {r['reached']['train_s']:.1f} s" if r["reached"] else "not reached")
          + f" | {100 * r['best_acc']:.2f} % |" for r in recipes], "",
        "## convzoo bench (images/s; ratio = implementation / convzoo)", "",
        "| run | model | implementation | mode | batch | img/s | ratio | peak MB | compile s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
        *[f"| {name} | {row['model']} | {row['implementation']} | {row['mode']} | {row['batch_size']} | "
          f"{number(row['images_per_s'], ',.0f')} | {number(row['ratio_vs_convzoo'], '.2f')} | "
          f"{number(row['peak_memory_mb'], ',.0f')} | "
          f"{row['compile_s'] or '-'} |" for name, rows in benches.items() for row in rows], "",
    ])
    replace(out / "gpu_check.md", lambda path: path.write_text(markdown))
    archive(out, work)
    if final:
        print(markdown)
    return 0 if passed else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("environment").add_argument("work", type=Path)
    reporting = commands.add_parser("report")
    reporting.add_argument("out", type=Path)
    reporting.add_argument("work", type=Path)
    reporting.add_argument("--final", action="store_true", help="the last report: print it, exit 1 if a check failed")
    commands.add_parser("tests-ran").add_argument("junit", type=Path)
    args = parser.parse_args()
    if args.command == "environment":
        environment(args.work)
        return 0
    if args.command == "tests-ran":
        return tests_ran(args.junit)
    status = report(args.out, args.work, args.final)
    return status if args.final else 0


if __name__ == "__main__":
    sys.exit(main())
