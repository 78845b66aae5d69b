"""Run a convzoo command and send it SIGTERM during its training step N (1-based, counted
across epochs), as a cluster preempting the job would: the run writes a mid-epoch
``last.pt`` after that step and exits 143. The GPU check resumes such a run; a timer
could not stop a fast GPU run at a chosen step.

    python3 benchmarks/stop_at_step.py 20 train --model resnet20 --dataset synthetic --epochs 2 ...
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    import convzoo.cli
    import convzoo.engine.train as engine

    stop_at, *args = sys.argv[1:]
    training_loss, steps = engine.training_loss, [0]

    def loss_then_signal(*loss_args, **kwargs):
        steps[0] += 1
        if steps[0] == int(stop_at):
            os.kill(os.getpid(), signal.SIGTERM)
        return training_loss(*loss_args, **kwargs)

    engine.training_loss = loss_then_signal
    sys.argv = ["convzoo", *args]
    convzoo.cli.main()


if __name__ == "__main__":
    main()
