"""The fast path of a device: memory format, ``torch.compile`` and fused optimiser steps.

Each choice here is made per device and per model, on CPU from measurements (CUDA's
follow NVIDIA's and PyTorch's guidance until a GPU check times them):

- **Channels-last** (NHWC) memory lets oneDNN on CPU and cuDNN on CUDA run convolutions
  without reordering their inputs. On CUDA it is the layout tensor cores want, for every
  convolutional network. On CPU it is chosen per model from ``CPU_CHANNELS_LAST_SPEEDUP``,
  measured with ``benchmarks/bench_cpu_families.py`` (NCHW and channels-last training steps
  interleaved in one process). It changes only where numbers sit in memory: the weights,
  their ``state_dict`` keys and values are those of the NCHW model.
- **torch.compile** is opt-in (``--compile``): on a quiet 2-core CPU its first step
  compiled for 28-124 s, and later steps ran at 0.70x (LeNet-5), 1.02-1.04x (ResNet-20)
  and 1.00x (MobileNet-v2) the eager default's speed (README "Speed"). Following the DDP
  notes of PyTorch, a distributed model is wrapped in DDP first and compiled afterwards, so that dynamo's
  DDPOptimizer can split the graph at DDP's gradient buckets.
- **Fused optimiser steps** (one kernel for every parameter's update) on CUDA; CPU keeps
  torch's default (foreach) implementation, whose results the CPU resume tests pin.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from typing import Any, Callable

import torch
from torch import nn

from convzoo.config import COMPILE_MODES
from convzoo.errors import ConvzooError

CPU_CHANNELS_LAST_SPEEDUP: dict[str, float] = {
    "lenet5": 1.23, "alexnet": 1.13, "vgg11_bn": 1.10, "vgg16": 0.99, "googlenet": 1.24, "resnet20": 1.09,
    "resnet56": 1.11, "resnet18": 0.95, "resnet50": 1.15, "densenet121": 1.11, "mobilenet_v2": 1.17, "bagnet17": 1.08,
}
"""Training-step speed of channels-last over NCHW on CPU, per model (>1: channels-last is
faster), both layouts' steps interleaved in one process on a quiet machine
(``benchmarks/bench_cpu_families.py``: 32x32 input, 2 cores, torch 2.14.1, 2026-11-29;
BENCHMARKS.md). Each value is the lowest of the runs at batch 32 and batch 128 (the
configs' batch), so a model takes channels-last only where it was faster at both: at
batch 128 every model measured here was (1.05-1.48), at batch 32 ResNet-18 (0.95) and
VGG-16 (0.99) were not. A model not measured takes the lowest ratio measured in its
family: the unmeasured ResNets and VGGs keep NCHW."""

CPU_CHANNELS_LAST_SCRATCH_SPEEDUP: dict[str, float] = {
    "lenet5": 0.82, "resnet20": 1.02, "mobilenet_v2": 1.29, "vgg11_bn": 1.08,
}
"""The same ratio with ``conv: scratch`` (convzoo's own convolution, whose kernels choose
their loops by layout), measured alike (``--conv scratch``, batches 32 and 128, the lower
of the two); families with no measurement keep NCHW."""


def measured_speedup(model_name: str, table: dict[str, float]) -> float:
    """``model_name``'s channels-last ratio in ``table``; else the lowest of its family's;
    else 1.0 (no measurement: keep NCHW)."""
    from convzoo.registry import get_model_info

    if model_name in table:
        return table[model_name]
    family = get_model_info(model_name).family
    return min((ratio for name, ratio in table.items() if get_model_info(name).family == family), default=1.0)


CHANNELS_LAST_THRESHOLD = 1.02
"""Channels-last is the default on CPU where it measured at least this much faster: a
smaller gain is within the noise of a shared machine and not worth a second layout."""


def use_channels_last(model_name: str, device: torch.device | str, *, conv: str = "torch",
                      requested: bool | None = None) -> bool:
    """Whether ``model_name`` should train and infer in channels-last memory on ``device``.

    ``requested`` (the config's ``channels_last``, ``--channels-last/--no-channels-last``)
    wins when set; None lets the measurements decide: always on CUDA, per model on CPU
    (``CPU_CHANNELS_LAST_SPEEDUP``), never elsewhere (MPS is unmeasured).
    """
    if requested is not None:
        return requested
    device_type = torch.device(device).type
    if device_type == "cuda":
        return True
    if device_type != "cpu":
        return False
    table = CPU_CHANNELS_LAST_SCRATCH_SPEEDUP if conv == "scratch" else CPU_CHANNELS_LAST_SPEEDUP
    return measured_speedup(model_name, table) >= CHANNELS_LAST_THRESHOLD


def to_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """``model`` with its 4-d weights in channels-last (or standard) memory, in place."""
    return model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def check_compile_mode(mode: str | None, source: str = "--compile-mode") -> str | None:
    """``mode`` if torch.compile knows it; a one-line error naming the valid ones otherwise."""
    if mode is not None and mode not in COMPILE_MODES:
        raise ConvzooError(f"{source} must be one of {', '.join(COMPILE_MODES)}, got {mode!r}.")
    return mode


def check_compile_toolchain(device: torch.device | str) -> None:
    """Fail before any work when inductor cannot build kernels for ``device``.

    Inductor writes C++ (CPU) or Triton (CUDA) kernels and builds them on the first step;
    without the toolchain that step would die deep in a compile traceback.
    """
    device_type = torch.device(device).type
    if device_type == "cpu":
        candidates = [os.environ.get("CXX"), "g++", "clang++", "c++"]
        if not any(name and shutil.which(name) for name in candidates):
            raise ConvzooError(
                "--compile on CPU needs a C++ compiler for inductor's kernels, and none was found "
                "(g++, clang++, c++ or $CXX). Install one (e.g. apt-get install g++), or drop --compile."
            )
    elif device_type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise ConvzooError(
                "--compile on CUDA needs Triton for inductor's kernels, and it is not installed "
                "(pip install triton, matching your torch). Or drop --compile."
            )


class FirstStepTimer:
    """Reports how long the first call of a compiled module took, compilation included.

    The first training step compiles (forward, then backward on its first backward pass),
    so its time is the compile time a user waits for: it is measured from the first call's
    start to the second call's start, and handed to ``report`` once, as soon as known.
    """

    def __init__(self, report: Callable[[float], None]) -> None:
        self.report = report
        self.started: float | None = None
        self.seconds: float | None = None

    def __call__(self, module: nn.Module, args: Any) -> None:
        if self.seconds is not None:
            return
        now = time.perf_counter()
        if self.started is None:
            self.started = now
            return
        if any(isinstance(arg, torch.Tensor) and arg.is_cuda for arg in args):
            torch.cuda.synchronize()  # the first step's kernels, queued, belong to it
        self.seconds = time.perf_counter() - self.started
        self.report(self.seconds)


def compile_model(model: nn.Module, device: torch.device | str, mode: str | None = None,
                  report_first_step: Callable[[float], None] | None = None) -> nn.Module:
    """``torch.compile(model)`` once inductor's toolchain is checked.

    The compiled wrapper is only for running: checkpoints keep saving ``model`` itself
    (the wrapper's ``state_dict`` keys would carry an ``_orig_mod.`` prefix).
    ``report_first_step`` receives the first step's seconds (see ``FirstStepTimer``).
    """
    check_compile_mode(mode)
    check_compile_toolchain(device)
    if torch.device(device).type != "cuda":
        # Inductor imports torch.utils.cpp_extension, which warns "No CUDA runtime is found"
        # wherever a CUDA toolkit is installed without a GPU: true, and no concern of a CPU run.
        import logging

        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    compiled = torch.compile(model, mode=mode)
    if report_first_step is not None:
        compiled.register_forward_pre_hook(FirstStepTimer(report_first_step))
    return compiled


def fused_optimizer_kwargs(parameters: list[torch.Tensor],
                           optimizer_class: type[torch.optim.Optimizer] = torch.optim.SGD) -> dict[str, Any]:
    """``{"fused": True}`` when every parameter is a CUDA floating-point tensor and
    ``optimizer_class`` has a fused implementation (then one kernel updates them all);
    ``{}`` elsewhere: CPU keeps torch's default implementation, so CPU results (and their
    bit-identical resume) are unchanged."""
    import inspect

    supported = "fused" in inspect.signature(optimizer_class).parameters
    if supported and parameters and all(p.is_cuda and p.is_floating_point() for p in parameters):
        return {"fused": True}
    return {}
