"""One torchrun worker for tests/engine/test_runtime.py (not a test module itself).

    torchrun --standalone --nproc-per-node N runtime_worker.py RECORDS FAULT -- ARGS

Runs ``convzoo ARGS`` and writes RECORDS/rank<N>.json: whether the model was wrapped in
DistributedDataParallel (and the process group's backend and size then), the exit code and
times. FAULT ``hang``: rank 1 stops answering (a peer that hangs: a deadlock, a stuck
file system) once rank 0 has written the first mid-epoch last.pt, and is ended by the
SIGTERM torchrun sends when the job fails.
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

RANK = int(os.environ["RANK"])
record: dict = {"wrapped": []}


class RecordedDistributedDataParallel(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, *args, **kwargs):
        record["wrapped"].append({"backend": dist.get_backend(), "world_size": dist.get_world_size()})
        super().__init__(*args, **kwargs)


def hanging_after_first_mid_epoch_checkpoint(gather_running_sums, run_dir: Path, records_dir: str):
    def gather_then_hang(*args, **kwargs):
        sums = gather_running_sums(*args, **kwargs)
        if RANK == 1:
            deadline = time.time() + 60
            while time.time() < deadline:
                last = run_dir / "last.pt"
                if last.exists() and torch.load(last, weights_only=True).get("step"):
                    break
                time.sleep(0.05)
            record["hang_started"] = time.time()
            Path(records_dir, "rank1.json").write_text(json.dumps(record))
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # torchrun's SIGTERM ends the hang
            time.sleep(600)
        return sums
    return gather_then_hang


def exit_code_of(args: list[str]) -> int:
    """``convzoo ARGS`` in this process, as its console script would run it."""
    sys.argv = ["convzoo", *args]
    try:
        convzoo.cli.main()
    except SystemExit as exit_:
        return exit_.code or 0
    return 0


def main() -> None:
    records_dir, fault, _, *args = sys.argv[1:]
    Path(records_dir, f"pid-rank{RANK}").write_text(str(os.getpid()))  # for the test to end a job that hangs
    torch.nn.parallel.DistributedDataParallel = RecordedDistributedDataParallel
    if fault == "hang":
        run_dir = Path(args[args.index("--out") + 1]) / args[args.index("--name") + 1]
        engine.gather_running_sums = hanging_after_first_mid_epoch_checkpoint(engine.gather_running_sums, run_dir,
                                                                           records_dir)
    code = exit_code_of(args)
    record.update(exit_code=code, ended=time.time())
    Path(records_dir, f"rank{RANK}.json").write_text(json.dumps(record))
    sys.exit(code)


if __name__ == "__main__":
    main()
