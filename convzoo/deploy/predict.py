"""Top-k classes of images for a trained model, preprocessed exactly as its run evaluated.

``Predictor`` is built on a model source (captum's shape: an object on a model, then a
call on inputs)::

    predictor = Predictor.from_checkpoint("runs/lenet5-mnist/best.pt")
    probabilities, classes = predictor.predict(pixels, top_k=3)         # tensors
    for result in predictor.predict_files(["shoe.jpg", "photos/"]):   # streamed, batched
        print(result.image, result.names[0], result.probabilities[0])

A photo of any size and mode goes through the run's own preprocessing: grey or RGB,
resized and centre-cropped (image folders) or brought to the dataset's side, zero-padded
for LeNet-5, normalised with the dataset's mean and std by the same fused multiply-add
as the evaluation loader, so a test image gets the very logits ``convzoo eval`` gave it.
Files are decoded by a multi-worker DataLoader; a file that cannot be decoded is yielded
as an ``UnreadableImage`` and the rest are still predicted.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from convzoo.data.image_decoding import IMAGE_SUFFIXES
from convzoo.errors import ConvzooError
from convzoo.inspection import (
    InputImages, ModelSource, Preprocessing, build_source_model, input_pipeline, read_image_file,
    resolve_model_source,
)


DEFAULT_TOP_K = 5


@dataclass
class ImagePrediction:
    """One image's top-k classes, most probable first."""

    image: str
    classes: list[int]
    names: list[str]
    probabilities: list[float]
    label: int | None = None
    """The true class, when the image came from a dataset."""

    def to_dict(self) -> dict[str, Any]:
        top = [{"class": index, "name": name, "probability": probability}
               for index, name, probability in zip(self.classes, self.names, self.probabilities)]
        record: dict[str, Any] = {"image": self.image, "top_k": top}
        if self.label is not None:
            record["label"] = self.label
        return record


@dataclass
class UnreadableImage:
    """A file that could not be decoded; reported, skipped, counted."""

    image: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "error": self.error}


class Predictor:
    """A model as its run built it, on ``device``, with its class names and preprocessing."""

    def __init__(self, source: ModelSource, *, device: str | torch.device = "cpu", dataset: str | None = None,
                 model: Callable[[torch.Tensor], Any] | None = None) -> None:
        """``model``: a runner of an exported file (``from_export``), on the CPU; else the
        source's model is built on ``device``."""
        from convzoo.engine.runtime import pick_device

        self.source = source
        self.device = torch.device("cpu") if model is not None else (
            pick_device(device) if isinstance(device, str) else device)
        self.spec, self.preprocessing = input_pipeline(source, dataset)
        self.model = model if model is not None else build_source_model(source, self.device)
        self.num_classes = self.spec.num_classes
        self.names_stored = bool(source.class_names)
        """False for checkpoints from before convzoo stored class names: indices stand in."""
        self.class_names = (tuple(source.class_names) if source.class_names
                            else tuple(str(index) for index in range(self.num_classes)))
        std = torch.tensor(self.preprocessing.std, device=self.device).view(1, -1, 1, 1)
        # The evaluation loader's (x / 255 - mean) / std as one multiply-add, operand for operand.
        self._scale = 1.0 / (255.0 * std)
        self._shift = -torch.tensor(self.preprocessing.mean, device=self.device).view(1, -1, 1, 1) / std

    @classmethod
    def from_checkpoint(cls, checkpoint: str, **options: Any) -> "Predictor":
        return cls(resolve_model_source(checkpoint=checkpoint), **options)

    @classmethod
    def from_export(cls, path: str, *, data_dir: str | None = None, **options: Any) -> "Predictor":
        """A ``convzoo export`` ONNX or TorchScript file, run by onnxruntime or ``torch.jit``
        on the CPU, preprocessed as its metadata says (dataset, mean, std, class names)."""
        source, runner = read_export(path, data_dir)
        return cls(source, model=runner, **options)

    def check_top_k(self, top_k: int | None) -> int:
        """``top_k``, checked; None: 5, or every class of a model with fewer."""
        if top_k is None:
            return min(DEFAULT_TOP_K, self.num_classes)
        if not 1 <= top_k <= self.num_classes:
            raise ConvzooError(f"--top-k must be between 1 and the model's {self.num_classes} classes, got {top_k}.")
        return top_k

    @torch.inference_mode()
    def outputs(self, images: torch.Tensor) -> Any:
        """What the model returns for (N, C, S, S) images: uint8 as stored, or float pixels in
        [0, 1], normalised as its run's evaluation loader did (a detector: a dict per image)."""
        images = images.to(self.device)
        if images.dtype == torch.uint8:
            inputs = images.float().mul_(self._scale).add_(self._shift)
        else:
            inputs = self.preprocessing.normalize(images.float())
        return self.model(inputs)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """The main head's outputs: class scores (a segmentation model's score maps)."""
        from convzoo.engine.evaluate import main_logits

        return main_logits(self.outputs(images)).float()

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax over classes of (N, C, S, S) images: uint8 as stored, or float pixels in [0, 1]."""
        return torch.softmax(self.scores(images), dim=1)

    def predict(self, images: torch.Tensor, top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, classes) of each image's ``top_k`` classes, each (N, top_k)."""
        return self.probabilities(images).topk(self.check_top_k(top_k), dim=1)

    def predict_images(self, images: InputImages, *, top_k: int | None = None, batch_size: int = 256) -> Iterator[ImagePrediction]:
        """Predictions for images from ``select_images`` (dataset indices or samples)."""
        # Their pixels were uint8 / 255: back to uint8 so the normalisation is the evaluation loader's.
        stored = images.pixels.mul(255).round_().to(torch.uint8)
        for start in range(0, len(stored), batch_size):
            probabilities, classes = self.predict(stored[start:start + batch_size], top_k)
            for offset in range(len(classes)):
                index = start + offset
                label = int(images.labels[index])
                yield self._prediction(images.names[index], probabilities[offset], classes[offset],
                                       label if label >= 0 else None)

    def predict_files(
        self, paths: Sequence[str | Path], *, top_k: int | None = None, batch_size: int = 64, num_workers: int | None = None,
    ) -> Iterator[ImagePrediction | UnreadableImage]:
        """Stream image files and folders (searched recursively) through a DataLoader, in order."""
        self.check_top_k(top_k)
        for images, decoded, failures in self.file_batches(paths, batch_size=batch_size, num_workers=num_workers):
            by_index: dict[int, ImagePrediction | UnreadableImage] = {
                index: UnreadableImage(name, error) for index, name, error in failures}
            if decoded:
                probabilities, classes = self.predict(images, top_k)
                for (index, name), probability, chosen in zip(decoded, probabilities, classes):
                    by_index[index] = self._prediction(name, probability, chosen, None)
            for index in sorted(by_index):
                yield by_index[index]

    def file_batches(self, paths: Sequence[str | Path], *, batch_size: int = 64, num_workers: int | None = None
                     ) -> Iterator[tuple[torch.Tensor, list[tuple[int, str]], list[tuple[int, str, str]]]]:
        """Image files and folders (searched recursively) decoded by a DataLoader and brought to
        the model's input as uint8, in batches: ``(images, (position, file) of each,
        (position, file, error) of those that could not be decoded)``, positions in file order."""
        files = image_files_in(paths)
        workers = default_workers() if num_workers is None else num_workers
        workers = min(workers, math.ceil(len(files) / batch_size) - 1)  # a single batch decodes faster in-process
        loader = DataLoader(ImageFiles(files, self.preprocessing), batch_size=batch_size, num_workers=max(workers, 0),
                            collate_fn=collate_readable, pin_memory=self.device.type == "cuda")
        for images, indices, failures in loader:
            yield (images, [(index, str(files[index])) for index in indices],
                   [(index, str(files[index]), error) for index, error in failures])

    def _prediction(self, image: str, probabilities: torch.Tensor, classes: torch.Tensor,
                    label: int | None) -> ImagePrediction:
        chosen = classes.tolist()
        return ImagePrediction(image, chosen, [self.class_names[c] for c in chosen],
                               [round(p, 6) for p in probabilities.tolist()], label)


EXPORTS_PREDICTED = (".onnx", ".torchscript.pt")
"""Exports that carry convzoo's metadata, so ``predict --weights`` runs them as they are."""


def is_predictable_export(path: str | None) -> bool:
    return path is not None and str(path).lower().endswith(EXPORTS_PREDICTED)


def read_export(path: str, data_dir: str | None = None) -> tuple[ModelSource, Callable[[torch.Tensor], torch.Tensor]]:
    """(the model its metadata describes, a function from normalised images to logits)."""
    from convzoo.deploy.safetensors_io import FORMAT_MARKER, WeightsMetadata
    from convzoo.inspection.source import source_from_metadata

    file = Path(path)
    if not file.is_file():
        raise ConvzooError(f"weights file {path} not found.")
    try:
        header, runner = _load_export(file)
    except ConvzooError:
        raise
    except Exception as error:  # noqa: BLE001 - protobuf, onnxruntime and torch.jit each raise their own
        raise ConvzooError(f"cannot read {path} as a `convzoo export` file ({type(error).__name__}); "
                           "export the run again, or pass its best.pt.") from error
    if header.get("format") != FORMAT_MARKER:
        raise ConvzooError(f"{path} carries no convzoo metadata (dataset, normalisation, class names); predict with "
                           "the run's best.pt, or export it again with `convzoo export`.")
    metadata = WeightsMetadata.from_header(header, file)
    return source_from_metadata(metadata, None, str(path), None, data_dir, None), runner


def _load_export(file: Path) -> tuple[dict[str, str], Callable[[torch.Tensor], torch.Tensor]]:
    """An ONNX or TorchScript export's metadata and runner."""
    import json

    from convzoo.deploy.export import _onnx_runner, jit_without_deprecation_warnings

    if file.name.lower().endswith(".onnx"):
        from convzoo.deploy.export import require_onnx_extra

        require_onnx_extra()
        import onnx
        import onnxruntime

        header = {entry.key: entry.value for entry in onnx.load(str(file), load_external_data=False).metadata_props}
        runner = _onnx_runner(file)
        batch = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[0]
        if batch == 1:  # exported with --static-batch: one image at a time
            runner = _one_at_a_time(runner)
    else:
        extra = {"convzoo.json": ""}
        with jit_without_deprecation_warnings():
            runner = torch.jit.load(str(file), map_location="cpu", _extra_files=extra)
        header = json.loads(extra["convzoo.json"] or "{}")
    return header, runner


def _one_at_a_time(runner: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda images: torch.cat([runner(image[None]) for image in images])


def default_workers() -> int:
    """Decoding workers: the cores left beside the main process, at most 4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def image_files_in(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, and each folder's image files (recursively, sorted)."""
    if not paths:
        raise ConvzooError("no images given: pass image files or folders, or --dataset NAME --samples N.")
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found = sorted(path for path in given.rglob("*")
                           if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
            if not found:
                raise ConvzooError(f"folder {given} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
            files.extend(found)
        elif given.is_file():
            files.append(given)
        else:
            raise ConvzooError(f"{given} does not exist. Pass image files or folders.")
    return files


class ImageFiles(Dataset):
    """Decoded, preprocessed uint8 images; a file that fails yields its error instead."""

    def __init__(self, files: Sequence[Path], preprocessing: Preprocessing) -> None:
        self.files = list(files)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            image = read_image_file(self.files[index], self.preprocessing.channels)
            return index, self.preprocessing.fit(image), None
        except ConvzooError as error:
            return index, None, str(error)
        except Exception as error:  # noqa: BLE001 - a decoder's crash on one file must not stop the others
            return index, None, f"cannot read image {self.files[index]}: {type(error).__name__}: {error}"


def collate_readable(items: list[tuple[int, torch.Tensor | None, str | None]]):
    """(stacked images, their indices, [(index, error)] of the files that failed)."""
    readable = [(index, image) for index, image, _ in items if image is not None]
    failures = [(index, error) for index, image, error in items if image is None]
    images = torch.stack([image for _, image in readable]) if readable else torch.empty(0, dtype=torch.uint8)
    return images, [index for index, _ in readable], failures
