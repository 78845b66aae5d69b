"""From a trained model to its use: ``Predictor`` (top-k classes of images) and
``export_model`` (ONNX, TorchScript, ExportedProgram, safetensors, each checked against
the eager model it came from).

    from convzoo.deploy import Predictor, export_model
    from convzoo.inspection import resolve_model_source

    predictor = Predictor.from_checkpoint("runs/lenet5-mnist/best.pt")
    result = export_model(resolve_model_source(checkpoint="runs/lenet5-mnist/best.pt"), "onnx")
"""

from __future__ import annotations

from convzoo.deploy.export import FORMATS, ExportResult, export_model
from convzoo.deploy.predict import ImagePrediction, Predictor, UnreadableImage
from convzoo.deploy.safetensors_io import WeightsMetadata, read_safetensors, save_safetensors

__all__ = [
    "FORMATS", "ExportResult", "ImagePrediction", "Predictor", "UnreadableImage", "WeightsMetadata", "export_model",
    "read_safetensors", "save_safetensors",
]
