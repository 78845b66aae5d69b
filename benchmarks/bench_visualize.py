"""Cost of ``convzoo visualize patches`` and ``maximize`` on ResNet-20 / Fashion-MNIST
(issue 11, acceptance 2).

- **patches**: the top-9 patches of every channel of one ResNet-20 stage over the
  10,000 test images, against a plain ``convzoo eval`` pass over the same split (the
  engine's ``evaluate`` on the run's test loader, what ``convzoo eval`` times). The two
  alternate within each repeat; the best of the repeats is reported. Target: patches
  <= 1.5x eval.
- **maximize**: 16 channels of a stage at the default recipe (512 steps, one batch).
  Target: <= 90 s on 2 cores. Process CPU time is printed beside wall time: on a
  machine shared with other jobs, wall time also counts the waits for a core.

    python benchmarks/bench_visualize.py --checkpoint runs/resnet20-fashion-mnist/best.pt --data-dir ../shared/data
    python benchmarks/bench_visualize.py --checkpoint ... --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="A ResNet-20 Fashion-MNIST run's best.pt.")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--stage", default="layer3", help="The stage whose every channel is searched.")
    parser.add_argument("--maximize-layers", nargs="*", default=["layer3"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=500, help="Batch of both passes.")
    parser.add_argument("--skip-maximize", action="store_true")
    parser.add_argument("--skip-patches", action="store_true")
    args = parser.parse_args()

    from convzoo.engine.evaluate import evaluate
    from convzoo.engine.runtime import pick_device
    from convzoo.engine.setup import dataset_spec_for, loaders_for
    from convzoo.inspection import build_source_model, input_pipeline, resolve_model_source
    from convzoo.inspection.images import dataset_split, pad_to_side
    from convzoo.visualize import maximize, resolve_layers, top_activating_patches
    from convzoo.visualize.patches import input_batches

    device = pick_device(args.device)
    source = resolve_model_source(checkpoint=args.checkpoint, data_dir=args.data_dir)
    spec, preprocessing = input_pipeline(source)
    model = build_source_model(source, device)
    side = preprocessing.model_side
    example = torch.zeros(1, preprocessing.channels, side, side, device=device)
    (stage,) = resolve_layers(model, example, [args.stage])

    config = dataclasses.replace(source.config, eval_batch_size=args.batch_size, test_size=None)
    _, pad_to = dataset_spec_for(config)
    loaders = loaders_for(config, spec, pad_to, device)
    images, _ = dataset_split(spec, "test", args.data_dir or source.config.data_dir)
    images = images.to(device)

    def to_inputs(batch: torch.Tensor) -> torch.Tensor:
        return preprocessing.normalize(pad_to_side(batch, side).float() / 255)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(run) -> float:
        sync()
        started = time.perf_counter()
        run()
        sync()
        return time.perf_counter() - started

    channels = list(range(stage.shape[0]))

    def eval_pass():
        with torch.inference_mode():
            evaluate(model, loaders.test, device, num_classes=spec.num_classes, amp=source.config.amp)

    def patches_pass():
        top_activating_patches(model, stage, input_batches(images, to_inputs, args.batch_size), channels, 9)

    result = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads()}
    if not args.skip_patches:
        eval_pass(), patches_pass()  # warm-up: kernels, caches
        eval_times, patch_times = [], []
        for _ in range(args.repeats):
            eval_times.append(timed(eval_pass))
            patch_times.append(timed(patches_pass))
        result.update({"images": len(images), "stage": stage.name, "channels": len(channels),
                       "eval_s": round(min(eval_times), 3), "patches_s": round(min(patch_times), 3),
                       "ratio": round(min(patch_times) / min(eval_times), 3)})
    if not args.skip_maximize:
        for name in args.maximize_layers:
            (layer,) = resolve_layers(model, example, [name])
            maximize(model, preprocessing.normalize, (preprocessing.channels, side), layer=layer,
                     channels=list(range(16)), steps=2)  # warm-up
            outcome = {}

            def run_maximize():
                outcome["result"] = maximize(model, preprocessing.normalize, (preprocessing.channels, side),
                                             layer=layer, channels=list(range(16)), seed=0)

            cpu_started = time.process_time()
            seconds = timed(run_maximize)
            rise = outcome["result"].after / outcome["result"].before.clamp_min(1e-6)
            result[f"maximize_{name}_s"] = round(seconds, 2)
            # On a shared machine wall time includes waiting for a core; CPU time does not.
            result[f"maximize_{name}_cpu_s"] = round(time.process_time() - cpu_started, 2)
            result[f"maximize_{name}_mean_rise"] = round(float(outcome["result"].after.mean()
                                                               / outcome["result"].before.mean()), 1)
            result[f"maximize_{name}_min_rise"] = round(float(rise.min()), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
