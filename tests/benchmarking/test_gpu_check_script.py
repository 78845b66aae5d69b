"""benchmarks/gpu_check.sh cannot run without a GPU; what can be checked here is that the
script parses and that its report (the Python at its end) turns step results, run metrics
and bench CSVs into the JSON and markdown a GPU session records."""

import json
import re
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_the_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_the_report_gives_time_to_accuracy_and_the_bench_table(tmp_path):
    report = re.search(r"<<'PYTHON'\n(.*?)\nPYTHON\n", SCRIPT.read_text(), re.S).group(1)
    out, work = tmp_path / "out", tmp_path / "work"
    (work / "runs" / "lenet5-mnist").mkdir(parents=True)
    out.mkdir()
    epochs = [(1, 0.982, 1.5), (2, 0.9912, 1.25), (3, 0.9931, 1.0)]
    (work / "runs" / "lenet5-mnist" / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": epoch, "test_acc": accuracy, "epoch_time_s": seconds}) + "\n"
        for epoch, accuracy, seconds in epochs))
    (out / "results.tsv").write_text("lenet5_mnist\t0\t9.5\tbest test accuracy 99.31%\nprobe_cuda\t1\t3.0\terror: boom\n")
    (out / "bench_resnet50.csv").write_text(
        "model,implementation,mode,input,batch_size,ms_per_step,images_per_s,ratio_vs_convzoo,peak_memory_mb,compile_s\n"
        "resnet50,convzoo,train,3x224x224,256,80.0,3200.0,1.0,40000,\n"
        "resnet50,torchvision,train,3x224x224,256,160.0,1600.0,0.5,41000,\n")
    result = subprocess.run([sys.executable, "-c", report, str(out), str(work)], capture_output=True, text=True)
    assert result.returncode == 1  # one step failed
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["passed"] is False
    assert summary["time_to_accuracy"] == [{"run": "lenet5-mnist", "target": 0.99, "reached": {"epoch": 2, "train_s": 2.75},
                                            "best_acc": 0.9931, "train_s_total": 3.75}]
    markdown = (out / "gpu_check.md").read_text()
    assert "| lenet5-mnist | 99 % | epoch 2, 2.8 s | 99.31 % |" in markdown
    assert "| bench_resnet50 | resnet50 | torchvision | train | 256 | 1,600 | 0.50 | 41,000 | - |" in markdown
    assert "FAIL (exit 1)" in markdown
