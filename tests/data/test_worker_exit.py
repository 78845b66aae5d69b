"""A process that still holds live DataLoader workers must be able to exit: multiprocessing
ends leftover daemonic workers with SIGTERM at exit and waits for them, so convzoo's worker
initialiser may ignore SIGINT (Ctrl-C reaches the whole terminal group) but not SIGTERM."""

import subprocess
import sys

PROGRAM = """
import torch
from torch.utils.data import DataLoader, TensorDataset
from convzoo.engine.interrupts import ignore_stop_signals

loader = DataLoader(TensorDataset(torch.arange(64.0)), batch_size=8, num_workers=2, persistent_workers=True,
                    worker_init_fn=ignore_stop_signals)
iterator = iter(loader)
next(iterator)
KEEP = (loader, iterator)  # alive until the interpreter exits, as after a failed run
print("ready", flush=True)
"""


def test_a_process_holding_live_workers_still_exits():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ready" in result.stdout
