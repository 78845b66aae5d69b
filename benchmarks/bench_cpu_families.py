"""Every family's CPU training speed: NCHW eager, channels-last, convzoo's default, torchvision.

Issue 10's acceptance table. For each model a training step (zero_grad, forward, loss,
backward, SGD step) is timed on random data with ``convzoo.benchmarking.harness``: the
contenders of one row step in turn, interleaved, in this one process, so that load from
other processes hits them alike and their ratios hold on a shared machine (the absolute
images/s do not). The columns:

- NCHW eager: the model as PyTorch builds it, standard memory layout, no compile;
- channels-last eager: the same model and batch in channels-last memory;
- convzoo default: what ``convzoo train`` runs on this CPU (``engine.fast_path``: one
  of the two columns before it, per family) — the same timing, named again;
- torchvision: torchvision's build of the same network, as its users run it (NCHW eager);
- with ``--compiled``, convzoo's default layout under ``torch.compile`` (inductor), which
  ``convzoo train --compile`` runs: its steady-state speed and its first step's time,
  compilation included (set ``TORCHINDUCTOR_CACHE_DIR`` to an empty folder to time a cold
  compile).

At small inputs (32x32: the CIFAR/MNIST regime) convzoo builds its small-input variants
(3x3 stems, no max-pool), which torchvision does not have; so families with a torchvision
counterpart get a second row at ``--peer-size`` pixels, where the two networks are equal
layer for layer (see ``convzoo.benchmarking.peers``).

    python benchmarks/bench_cpu_families.py                                 # the full table
    python benchmarks/bench_cpu_families.py --steps 2 --warmup 1 --models lenet5,resnet20   # smoke run
    python benchmarks/bench_cpu_families.py --conv scratch --models resnet20,mobilenet_v2 --peer-size 0
    python benchmarks/bench_cpu_families.py --compiled --models lenet5,resnet20 --peer-size 0 --batch-size 128
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys

import torch

from convzoo.benchmarking import BenchSettings, Contender, run_benchmark
from convzoo.benchmarking.peers import peer_contenders
from convzoo.engine.fast_path import use_channels_last
from convzoo.registry import create_model, get_model_info

FAMILIES = ("lenet5", "alexnet", "vgg11_bn", "googlenet", "resnet20", "resnet18", "densenet121", "mobilenet_v2",
            "bagnet17")
"""One model per family (``convzoo list``)."""


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def builder(name: str, num_classes: int, channels: int, side: int, conv: str):
    def build() -> torch.nn.Module:
        model = create_model(name, num_classes=num_classes, in_channels=channels, image_size=side)
        if conv == "scratch":
            from convzoo.ops import use_scratch_conv

            use_scratch_conv(model)
        return model

    return build


def measure_row(name: str, side: int, peers: bool, args: argparse.Namespace) -> dict:
    info = get_model_info(name)
    channels = info.input_size[0]
    if info.fixed_input_size:
        side = info.input_size[1]
    build = builder(name, args.num_classes, channels, side, args.conv)
    default = "channels_last" if use_channels_last(name, "cpu", conv=args.conv) else "nchw"
    contenders = [Contender("nchw", build, channels_last=False), Contender("channels_last", build, channels_last=True)]
    if args.compiled:
        contenders.append(Contender("compiled", build, channels_last=default == "channels_last", compile=True))
    notes: list[str] = []
    if peers:
        found, notes = peer_contenders(name, ["torchvision"], args.num_classes, channels, side)
        contenders += [Contender(peer.label, peer.build, channels_last=False) for peer in found]
    settings = BenchSettings(batch_size=args.batch_size, input_size=(channels, side, side), steps=args.steps,
                             warmup=args.warmup, num_classes=args.num_classes)
    results = {result.implementation: result for result in run_benchmark(name, contenders, ["train"], settings)}
    row = {"model": name, "input": f"{channels}x{side}x{side}", "batch": results["nchw"].batch_size,
           "nchw": results["nchw"].images_per_s, "channels_last": results["channels_last"].images_per_s,
           "default_layout": default, "default": results[default].images_per_s,
           "torchvision": results["torchvision"].images_per_s if "torchvision" in results else None, "notes": notes}
    if "compiled" in results:
        row["compiled"], row["compile_s"] = results["compiled"].images_per_s, results["compiled"].compile_s
    peer = f", torchvision {row['torchvision']:,.1f} img/s" if row["torchvision"] else ""
    if "compiled" in row:
        peer += f", compiled {row['compiled']:,.1f} img/s (first step {row['compile_s']:.1f} s)"
    print(f"  {name} {row['input']}: NCHW {row['nchw']:,.1f} img/s, channels-last {row['channels_last']:,.1f} img/s "
          f"({row['channels_last'] / row['nchw']:.2f}x){peer}", file=sys.stderr, flush=True)
    return row


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    lines = [
        f"torch {torch.__version__}, {cpu_name()}, {torch.get_num_threads()} threads, {datetime.date.today()}; "
        f"training step, batch {args.batch_size}, median of {args.steps} interleaved steps, conv={args.conv}",
        f"command: python {' '.join(sys.argv)}",
        "",
        "| model | input | NCHW eager img/s | channels-last img/s | convzoo default | default / NCHW "
        "| torchvision img/s | default / torchvision |" + (" compiled img/s | compiled / default | first compiled step (s) |"
                                                           if args.compiled else ""),
        "|---|---|---:|---:|---|---:|---:|---:|" + ("---:|---:|---:|" if args.compiled else ""),
    ]
    for row in rows:
        versus = "-" if row["torchvision"] is None else f"{row['default'] / row['torchvision']:.2f}"
        lines.append(
            f"| {row['model']} | {row['input']} | {rate(row['nchw'])} | {rate(row['channels_last'])} "
            f"| {row['default_layout'].replace('_', '-')} {rate(row['default'])} | {row['default'] / row['nchw']:.2f} "
            f"| {rate(row['torchvision'])} | {versus} |"
            + (f" {rate(row['compiled'])} | {row['compiled'] / row['default']:.2f} | {row['compile_s']:.1f} |"
               if "compiled" in row else "")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(FAMILIES), help="Comma-separated model names.")
    parser.add_argument("--image-size", type=int, default=32, help="Input side of the small-input rows.")
    parser.add_argument("--peer-size", type=int, default=72,
                        help="Input side of the rows beside torchvision (above 64 px); 0 skips them.")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per contender (median reported).")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--conv", choices=("torch", "scratch"), default="torch")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--compiled", action="store_true",
                        help="Also time convzoo's default layout under torch.compile (slow: it compiles each model).")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in [part.strip() for part in args.models.split(",") if part.strip()]:
        rows.append(measure_row(name, args.image_size, False, args))
        info = get_model_info(name)
        if args.peer_size and not info.fixed_input_size and peer_contenders(
                name, ["torchvision"], args.num_classes, info.input_size[0], args.peer_size)[0]:
            rows.append(measure_row(name, args.peer_size, True, args))
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
