"""Weights as safetensors: the state dict plus what rebuilds the model, loadable without pickle.

safetensors is the format timm and the Hugging Face hub use: a JSON header and raw
tensors, so loading a file can never run code (a pickled ``.pt`` can). Its header holds
string metadata, where convzoo writes what a consumer needs to rebuild and feed the
network: the model's name and shape (classes, channels, image size), the dataset it was
trained on, its normalisation and class names. ``--weights PATH.safetensors`` reads those
back, so ``--model`` can be left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from convzoo.errors import ConvzooError

SAFETENSORS_SUFFIX = ".safetensors"
FORMAT_MARKER = "convzoo-model-v1"


@dataclass(frozen=True)
class WeightsMetadata:
    """What a convzoo safetensors file says about its model, beside the tensors."""

    model_name: str
    num_classes: int
    in_channels: int
    image_size: int
    """The side the model was built for and is fed (after LeNet-5's padding)."""
    dataset: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    model_kwargs: dict[str, Any]

    def to_header(self) -> dict[str, str]:
        """safetensors metadata is ``str -> str``: numbers as text, lists as JSON."""
        return {
            "format": FORMAT_MARKER, "model_name": self.model_name, "num_classes": str(self.num_classes),
            "in_channels": str(self.in_channels), "image_size": str(self.image_size), "dataset": self.dataset,
            "mean": json.dumps(list(self.mean)), "std": json.dumps(list(self.std)),
            "class_names": json.dumps(list(self.class_names)), "model_kwargs": json.dumps(self.model_kwargs),
        }

    @classmethod
    def from_header(cls, header: Mapping[str, str], path: Path) -> "WeightsMetadata":
        try:
            return cls(
                header["model_name"], int(header["num_classes"]), int(header["in_channels"]),
                int(header["image_size"]), header.get("dataset", "synthetic"),
                tuple(json.loads(header.get("mean", "[]"))), tuple(json.loads(header.get("std", "[]"))),
                tuple(json.loads(header.get("class_names", "[]"))), dict(json.loads(header.get("model_kwargs", "{}"))),
            )
        except (KeyError, ValueError, TypeError) as error:
            raise ConvzooError(f"{path}'s convzoo metadata is damaged ({type(error).__name__}: {error}); "
                               "export the checkpoint again.") from None


def is_safetensors(path: str | Path) -> bool:
    return str(path).endswith(SAFETENSORS_SUFFIX)


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: WeightsMetadata) -> Path:
    """Write ``state_dict`` with ``metadata`` in the header, atomically (as every export is)."""
    from convzoo.deploy.export import write_export

    path = Path(path)
    write_export(safetensors_bytes(state_dict, metadata), path)
    return path


def safetensors_bytes(state_dict: Mapping[str, torch.Tensor], metadata: WeightsMetadata) -> bytes:
    """The file's bytes: tensors made contiguous (safetensors stores raw buffers) and
    shared ones cloned (it refuses aliases)."""
    from safetensors.torch import save

    tensors, seen = {}, set()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    return save(tensors, metadata=metadata.to_header())


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], WeightsMetadata | None]:
    """The tensors of a safetensors file and its convzoo metadata (None for other files,
    e.g. timm's or the hub's, which carry tensors only)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ConvzooError(f"weights file {path} not found; pass the path of a .safetensors file.")
    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConvzooError(f"{path} is not a readable safetensors file ({reason}).") from None
    metadata = WeightsMetadata.from_header(header, path) if header.get("format") == FORMAT_MARKER else None
    return tensors, metadata
