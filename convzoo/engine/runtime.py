"""The one place that decides the device and the process's rank.

Under ``torchrun`` (``WORLD_SIZE`` > 1) each process joins the process group, takes the
GPU of its ``LOCAL_RANK`` and trains a DistributedDataParallel replica on its shard of
the data; only rank 0 logs and writes checkpoints. Alone, it is rank 0 of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from convzoo.errors import ConvzooError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process logs, prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes cuda, then mps, then cpu; an unavailable choice is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConvzooError("--device cuda was asked for but no CUDA GPU is available. Use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConvzooError("--device mps was asked for but MPS is not available. Use --device cpu or auto.")
    if name not in ("cpu", "cuda", "mps"):
        raise ConvzooError(f"unknown device {name!r}. Use auto, cpu, cuda or mps.")
    return torch.device(name)


def setup_runtime(device_name: str = "auto") -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Runtime(pick_device(device_name))
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank=rank, world_size=world_size, local_rank=local_rank)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
