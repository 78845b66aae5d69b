"""``convzoo bench``: how fast a model trains and infers here, beside torchvision and timm.

- ``harness``:       timing contenders interleaved (timm's benchmark.py method), OOM retry;
- ``peers``:         the same architecture from torchvision and timm, where one exists;
- ``data_pipeline``: the input pipeline alone against torchvision's canonical one.
"""

from convzoo.benchmarking.harness import BenchResult, BenchSettings, Contender, run_benchmark

__all__ = ["BenchResult", "BenchSettings", "Contender", "run_benchmark"]
