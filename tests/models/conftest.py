"""Fixtures for the model tests."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Model tests run many small forward passes: with two intra-op threads on a busy
    2-core machine, OpenMP's waiting threads made a DenseNet forward 50x slower (16 s
    against 0.2 s with one thread). One thread keeps these tests fast in any company."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


OutputShapes = Callable[[nn.Module, list[str], torch.Tensor], dict[str, tuple[int, ...]]]


@pytest.fixture
def output_shapes() -> OutputShapes:
    """``output_shapes(model, module_names, images)``: each named module's output shape
    (without the batch dimension) in an evaluation-mode forward pass of ``images``."""

    def measure(model: nn.Module, module_names: list[str], images: torch.Tensor) -> dict[str, tuple[int, ...]]:
        modules = dict(model.named_modules())
        shapes: dict[str, tuple[int, ...]] = {}

        def recorder(name: str):
            def hook(module, args, output) -> None:
                shapes.setdefault(name, tuple(output.shape[1:]))
            return hook

        handles = [modules[name].register_forward_hook(recorder(name)) for name in module_names]
        try:
            with torch.no_grad():
                model.eval()(images)
        finally:
            for handle in handles:
                handle.remove()
        return shapes

    return measure
