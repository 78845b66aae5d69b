"""Timing training and inference steps the way timm's ``benchmark.py`` does, side by side.

Every contender (convzoo's model, torchvision's, timm's) gets the same random batch,
already on the device, the same optimiser and the same settings. Warm-up steps (where
``torch.compile`` compiles and cuDNN picks its algorithms) are not timed; compile time is
reported on its own. Timed steps of the contenders are *interleaved* — one step of each
in turn — so that a noisy neighbour or a clock change hits all of them alike and their
ratio stays meaningful on a shared machine. Each step is timed on its own (with
``torch.cuda.synchronize`` on CUDA) and the median is reported.

A training step is zero_grad -> forward -> loss -> backward -> optimizer step; an
inference step is a forward pass under ``torch.inference_mode``.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("train", "infer")


@dataclass
class BenchSettings:
    """What every contender is measured under."""

    batch_size: int = 32
    input_size: tuple[int, int, int] = (3, 224, 224)
    steps: int = 20
    """Timed steps per contender and mode (the median is reported)."""
    warmup: int = 3
    """Untimed steps first (compilation, allocator and autotuning warm-up)."""
    amp: bool = False
    """bf16 autocast (CUDA and CPU)."""
    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    num_classes: int = 1000


@dataclass
class Contender:
    """One model to time: ``label`` (convzoo, torchvision, timm) and how to build it."""

    label: str
    build: Callable[[], nn.Module]
    channels_last: bool | None = None
    """This contender's memory format; None: the settings' (so one run can time NCHW and
    channels-last side by side, interleaved)."""
    compile: bool | None = None
    """Whether to ``torch.compile`` this contender; None: the settings'."""


@dataclass
class BenchResult:
    model: str
    implementation: str
    mode: str
    batch_size: int
    ms_per_step: float
    images_per_s: float
    compile_s: float | None
    peak_memory_mb: float
    memory_kind: str
    """``cuda_allocator_peak``, or on CPU ``process_peak_rss`` (the process's resident
    memory at its highest while this contender was built and warmed up: its high-water
    mark is reset before each; ``process_peak_rss_since_start`` where it cannot be)."""
    notes: list[str] = field(default_factory=list)
    ms_iqr: float = 0.0
    """Spread of the timed steps: their interquartile range, in milliseconds."""
    channels_last: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Runner:
    """A contender ready to step: model, batch and (for training) its optimiser."""

    def __init__(self, contender: Contender, mode: str, settings: BenchSettings, batch_size: int) -> None:
        self.contender, self.mode, self.settings, self.batch_size = contender, mode, settings, batch_size
        device = settings.device
        torch.manual_seed(0)
        model = contender.build().to(device)
        channels_last = settings.channels_last if contender.channels_last is None else contender.channels_last
        self.channels_last = bool(channels_last)
        self.compiled = settings.compile if contender.compile is None else contender.compile
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model = model.to(memory_format=memory_format)
        model.train(mode == "train")
        self.model = model
        self.forward = torch.compile(model, mode=settings.compile_mode) if self.compiled else model
        self.images = torch.randn(batch_size, *settings.input_size, device=device).contiguous(memory_format=memory_format)
        self.labels = torch.randint(0, settings.num_classes, (batch_size,), device=device)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if mode == "train" else None
        self.times: list[float] = []
        self.compile_s: float | None = None

    def _autocast(self):
        if not self.settings.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.settings.device.type, dtype=torch.bfloat16)

    def step(self) -> None:
        if self.mode == "train":
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                outputs = self.forward(self.images)
                logits = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
                loss = F.cross_entropy(logits.float(), self.labels)
            loss.backward()
            self.optimizer.step()
        else:
            with torch.inference_mode(), self._autocast():
                self.forward(self.images)

    def timed_step(self) -> float:
        synchronize(self.settings.device)
        started = time.perf_counter()
        self.step()
        synchronize(self.settings.device)
        return time.perf_counter() - started


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's allocator error (``torch.OutOfMemoryError`` on torch >= 2.5) or the CPU's:
    ``DefaultCPUAllocator: can't allocate memory`` (a RuntimeError), or Python's MemoryError."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    text = str(error).lower()
    return isinstance(error, (oom_type, MemoryError)) or (
        isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))


def _release(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif sys.platform.startswith("linux"):
        # glibc keeps freed heap memory resident; without handing it back the next
        # contender's peak resident memory would start from this one's.
        import ctypes

        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _prepare(contender: Contender, mode: str, settings: BenchSettings, notes: list[str],
             log: Callable[[str], None]) -> _Runner | None:
    """Build and warm up ``contender``, halving the batch on out-of-memory until it fits."""
    batch_size = settings.batch_size
    while batch_size >= 1:
        try:
            runner = _Runner(contender, mode, settings, batch_size)
            started = time.perf_counter()
            for index in range(max(settings.warmup, 1 if runner.compiled else 0)):
                runner.step()
                if index == 0 and runner.compiled:
                    synchronize(settings.device)
                    runner.compile_s = time.perf_counter() - started
            synchronize(settings.device)
            return runner
        except Exception as error:  # noqa: BLE001 - only out-of-memory is retried
            if not is_out_of_memory(error):
                raise
            _release(settings.device)
            message = f"{contender.label} {mode}: out of memory at batch {batch_size}; retrying at {batch_size // 2}"
            notes.append(message)
            log(message)
            batch_size //= 2
    notes.append(f"{contender.label} {mode}: out of memory even at batch 1; skipped")
    return None


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new high-water mark, so each contender's peak is its own: CUDA's allocator
    statistics, or on Linux the process's resident peak (``VmHWM``, reset by writing 5 to
    ``/proc/self/clear_refs``). False where the CPU peak cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device, since_reset: bool = True) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_allocator_peak"
    if since_reset:
        try:
            with open("/proc/self/status") as file:
                for line in file:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 2**10, "process_peak_rss"  # kB
        except OSError:
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 2**10), "process_peak_rss_since_start"


def run_benchmark(model_name: str, contenders: list[Contender], modes: list[str], settings: BenchSettings,
                  log: Callable[[str], None] = lambda text: None) -> list[BenchResult]:
    """Time every contender in every mode, interleaved, and return one result per pair."""
    results: list[BenchResult] = []
    for mode in modes:
        notes: list[str] = []
        runners: list[_Runner] = []
        memory: dict[str, tuple[float, str]] = {}
        for contender in contenders:
            _release(settings.device)  # what earlier contenders freed is not counted again
            was_reset = reset_peak_memory(settings.device)
            runner = _prepare(contender, mode, settings, notes, log)
            if runner is not None:
                runners.append(runner)
                memory[contender.label] = peak_memory_mb(settings.device, since_reset=was_reset)
        for _ in range(settings.steps):
            for runner in runners:
                # Each step's peak is the contender's own: the mark is reset before it (outside the timing).
                was_reset = reset_peak_memory(settings.device)
                runner.times.append(runner.timed_step())
                peak, kind = peak_memory_mb(settings.device, since_reset=was_reset)
                memory[runner.contender.label] = max(memory[runner.contender.label], (peak, kind))
        for runner in runners:
            seconds = statistics.median(runner.times) if runner.times else float("nan")
            quartiles = statistics.quantiles(runner.times, n=4) if len(runner.times) > 1 else [0.0, 0.0, 0.0]
            peak, kind = memory[runner.contender.label]
            results.append(BenchResult(
                model_name, runner.contender.label, mode, runner.batch_size, 1e3 * seconds,
                runner.batch_size / seconds if seconds > 0 else float("nan"), runner.compile_s, peak, kind,
                [note for note in notes if note.startswith(runner.contender.label)],
                ms_iqr=1e3 * (quartiles[2] - quartiles[0]), channels_last=runner.channels_last,
            ))
        del runners
        _release(settings.device)
    return results
