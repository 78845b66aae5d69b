"""Time of linear probing at one exit against all of a model's exits, side by side.

``convzoo probe`` trains every exit's head from a single backbone forward per batch, so
probing five exits should cost little more than probing one (issue 6: at most 1.5x).
For each model this script times one epoch of probe training plus the test pass, on
synthetic data, three ways, alternating within each repeat:

- ``one``:      the deepest declared exit alone (the backbone runs up to it anyway);
- ``all``:      every declared exit, sharing one backbone forward per batch;
- ``separate``: every declared exit probed alone, one after another, i.e. what ``all``
  would cost with one backbone pass per exit (the sum of those runs).

The ``input`` exit (raw pixels) is part of every run, as it is of every probe. The
median over repeats is reported, per image of the training set.

    python benchmarks/bench_probe.py                          # lenet5 and alexnet, CPU
    python benchmarks/bench_probe.py --models resnet20 vgg11 --train-size 4096
    python benchmarks/bench_probe.py --device cuda --train-size 50000
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from convzoo.data import build_loaders, get_dataset_spec
from convzoo.probing.features import choose_exits
from convzoo.probing.run import ProbeSettings, probe_exits
from convzoo.registry import create_model, get_model_info


def model_and_data(name: str, train_size: int, batch_size: int, device: torch.device):
    """A randomly initialised ``name`` and synthetic loaders at its (small) input size."""
    info = get_model_info(name)
    channels, side, _ = info.input_size
    side = side if info.fixed_input_size else 32
    spec = get_dataset_spec("synthetic", image_size=side, channels=channels)
    loaders = build_loaders(spec, batch_size=batch_size, eval_batch_size=1000, device=device, augment=False,
                            train_size=train_size, channels_last=device.type == "cuda")
    torch.manual_seed(0)
    model = create_model(name, num_classes=spec.num_classes, in_channels=channels, image_size=side).to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model, loaders, spec, torch.zeros(1, channels, side, side, device=device)


def time_probe(model, example, names, loaders, spec, settings, device) -> float:
    exits = choose_exits(model, example, names, settings.features)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    probe_exits(model, exits, loaders, spec.num_classes, settings, 0, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["lenet5", "alexnet"])
    parser.add_argument("--train-size", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--features", type=int, default=9216)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    settings = ProbeSettings(epochs=1, batch_size=args.batch_size, features=args.features)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{args.train_size} training + 2000 test images, 1 epoch, median of {args.repeats}")
    print(f"{'model':10} {'exits':>5} {'one ms/img':>11} {'all ms/img':>11} {'all/one':>8} "
          f"{'separate ms/img':>16} {'separate/all':>13}")
    for name in args.models:
        model, loaders, spec, example = model_and_data(name, args.train_size, args.batch_size, device)
        declared = list(get_model_info(name).probe_layers)
        time_probe(model, example, declared[-1:], loaders, spec, settings, device)  # warm-up
        times: dict[str, list[float]] = {"one": [], "all": [], "separate": []}
        for _ in range(args.repeats):
            times["one"].append(time_probe(model, example, declared[-1:], loaders, spec, settings, device))
            times["all"].append(time_probe(model, example, declared, loaders, spec, settings, device))
            times["separate"].append(sum(time_probe(model, example, [exit], loaders, spec, settings, device)
                                         for exit in declared))
        one, everything, separate = (statistics.median(times[key]) for key in ("one", "all", "separate"))
        per_image = 1000 / args.train_size
        print(f"{name:10} {len(declared):>5} {one * per_image:>11.3f} {everything * per_image:>11.3f} "
              f"{everything / one:>8.2f} {separate * per_image:>16.3f} {separate / everything:>13.2f}")


if __name__ == "__main__":
    main()
