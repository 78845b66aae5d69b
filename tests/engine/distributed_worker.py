"""One torchrun worker for tests/engine/test_distributed.py: convzoo commands with faults
injected and what each rank did recorded (not a test module itself).

    torchrun --standalone --nproc-per-node 2 distributed_worker.py RECORDS -- FAULT ARGS [-- FAULT ARGS ...]

Runs ``convzoo ARGS`` once per ``--``-separated group, in these same processes, with its
FAULT: ``none``, ``nan`` (rank 1's loss at its 4th step is NaN), ``raise`` (rank 1
raises at the start of epoch 2, once epoch 1's last.pt exists), ``sigterm`` (rank 1, and
only rank 1, receives SIGTERM during its 2nd step) or ``kill9`` (rank 1 kills itself with
SIGKILL once rank 0 has written the first mid-epoch last.pt; the job ends). After each command every
rank rewrites RECORDS/rank<N>.json: one entry per command with its exit code, evaluation
counts, times and whether it destroyed the process group.

The first command's ``train`` creates the process group; the later ones find it and use
it (a failed run leaves it standing), as in a script that trains several runs in turn.
With ``$CONVZOO_TEST_MNIST_MIRROR`` set, torchvision downloads MNIST from that URL and
each download is recorded (``downloads``: start and end times).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

import convzoo.cli
import convzoo.engine.train as engine
import convzoo.tasks.classification as classification
from convzoo.data.memory import InMemoryLoader

RANK = int(os.environ["RANK"])
commands: list[dict] = []


def run_convzoo(args: list[str]) -> int:
    """``convzoo ARGS`` in this process, as the console script runs it; its exit code."""
    sys.argv = ["convzoo", *args]
    try:
        convzoo.cli.main()
        return 0
    except SystemExit as exit_:
        return exit_.code or 0
"""What happened in each command so far; the last entry is the running one."""


def now() -> dict:
    return commands[-1]


def save_records(records_dir: str) -> None:
    Path(records_dir, f"rank{RANK}.json").write_text(json.dumps(commands, default=str))


def counting_evaluate(evaluate):
    def evaluate_and_count(model, loader, *args, **kwargs):
        images = sum(len(labels) for _, labels in loader)
        result = evaluate(model, loader, *args, **kwargs)
        now()["evaluations"].append({"images_here": images, "n": result["n"]})
        return result
    return evaluate_and_count


def slow_save(save):
    def save_slowly(state, path):
        time.sleep(1.0)  # rank 0 is still writing while the other ranks finish
        save(state, path)
        now()["last_write_done"] = time.time()
    return save_slowly


def timed_train(train):
    def train_and_time(*args, **kwargs):
        result = train(*args, **kwargs)
        now()["train_returned"] = time.time()
        return result
    return train_and_time


def recorded_destroy(destroy):
    def destroy_and_record(*args, **kwargs):
        now()["destroyed"] = True
        destroy(*args, **kwargs)
    return destroy_and_record


def failing_set_epoch(set_epoch):
    def set_epoch_or_raise(loader, epoch, *args):
        if now()["fault"] == "raise" and RANK == 1 and epoch == 1:
            deadline = time.time() + 60
            while not (now()["run_dir"] / "last.pt").exists() and time.time() < deadline:
                time.sleep(0.1)  # let rank 0 write epoch 1's checkpoint first
            now()["raised_at"] = time.time()
            raise RuntimeError("injected failure on rank 1")
        set_epoch(loader, epoch, *args)
    return set_epoch_or_raise


def killed_after_first_mid_epoch_checkpoint(gather_running_sums):
    """Every rank gathers its running sums just before rank 0 writes a mid-epoch last.pt."""
    def gather_then_die(*args, **kwargs):
        sums = gather_running_sums(*args, **kwargs)
        if now()["fault"] == "kill9" and RANK == 1:
            last, deadline = now()["run_dir"] / "last.pt", time.time() + 60
            while time.time() < deadline:
                if last.exists() and torch.load(last, weights_only=True).get("step"):
                    break
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGKILL)
        return sums
    return gather_then_die


def nan_loss_at_fourth_step_or_sigterm_at_second(training_loss):
    def loss_or_fault(*args, **kwargs):
        loss = training_loss(*args, **kwargs)
        if now()["fault"] in ("nan", "sigterm") and RANK == 1:
            now()["steps"] = now().get("steps", 0) + 1
            if now()["fault"] == "nan" and now()["steps"] == 4:
                return loss * float("nan")
            if now()["fault"] == "sigterm" and now()["steps"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)
        return loss
    return loss_or_fault


def recorded_download(download):
    def download_and_record(*args, **kwargs):
        started = time.time()
        time.sleep(0.2)  # a download takes a while: long enough for two at once to overlap
        download(*args, **kwargs)
        now().setdefault("downloads", []).append([started, time.time()])
    return download_and_record


def main() -> None:
    records_dir, _, *rest = sys.argv[1:]
    groups: list[list[str]] = [[]]
    for arg in rest:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)

    classification.evaluate = counting_evaluate(classification.evaluate)
    engine.train = timed_train(engine.train)
    classification.training_loss = nan_loss_at_fourth_step_or_sigterm_at_second(classification.training_loss)
    if RANK == 0:
        engine.atomic_save = slow_save(engine.atomic_save)
    dist.destroy_process_group = recorded_destroy(dist.destroy_process_group)
    InMemoryLoader.set_epoch = failing_set_epoch(InMemoryLoader.set_epoch)
    engine.gather_running_sums = killed_after_first_mid_epoch_checkpoint(engine.gather_running_sums)
    if os.environ.get("CONVZOO_TEST_MNIST_MIRROR"):
        import torchvision.datasets.mnist as mnist

        mnist.MNIST.mirrors = [os.environ["CONVZOO_TEST_MNIST_MIRROR"]]
        mnist.download_and_extract_archive = recorded_download(mnist.download_and_extract_archive)

    for fault, *args in groups:
        run_dir = Path(args[args.index("--out") + 1]) / args[args.index("--name") + 1] if "--name" in args else None
        commands.append({"fault": fault, "run_dir": run_dir, "evaluations": []})
        now()["exit_code"] = run_convzoo(args)
        save_records(records_dir)
    sys.exit(max(command["exit_code"] for command in commands))


if __name__ == "__main__":
    main()
