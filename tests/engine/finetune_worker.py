"""One torchrun worker for the fine-tuning DDP test in tests/engine/test_finetune.py (not a
test module itself).

    torchrun --standalone --nproc-per-node 2 finetune_worker.py RECORDS ARGS

Runs ``convzoo ARGS`` and writes RECORDS/rank<N>.json: its exit code and, at every epoch's
evaluation, the sum of each parameter of the model this rank trains, so the test can see
that the ranks stayed replicas and which parameters moved.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import convzoo.tasks.classification as classification
from distributed_worker import run_convzoo  # beside this file: torchrun puts its folder on sys.path


def main() -> None:
    records_dir, *args = sys.argv[1:]
    sums: list[dict[str, float]] = []
    evaluate = classification.evaluate

    def evaluate_and_record(model, *rest, **options):
        sums.append({name: float(parameter.double().sum()) for name, parameter in model.named_parameters()})
        return evaluate(model, *rest, **options)

    classification.evaluate = evaluate_and_record
    code = run_convzoo(args)
    Path(records_dir, f"rank{os.environ['RANK']}.json").write_text(json.dumps({"exit_code": code, "sums": sums}))
    sys.exit(code)


if __name__ == "__main__":
    main()
