"""What the inspection commands share: the model as its run built it, images as its
dataset preprocessed them, and one run-folder layout for what they write.

Every command that looks inside a model (``probe``, ``visualize``, ``explain``,
``attack``, ``predict``, ``export``) goes through these, in this order::

    source = resolve_model_source(checkpoint="runs/x/best.pt")      # or model=..., random_init=True
    spec, preprocessing = input_pipeline(source)                     # or input_pipeline(source, "mnist")
    model = build_source_model(source, device)                       # eval mode, weights loaded
    images = select_images(spec, preprocessing, indices=[0, 1])     # pixels in [0, 1]
    logits = model(preprocessing.normalize(images.pixels))

``load_subject`` runs the first three steps at once for the commands that look at one
model on one device (``visualize``, ``explain``, ``attack``, ``visualize erf``).
"""

from __future__ import annotations

from convzoo.data.catalog import DatasetSpec
from convzoo.inspection.images import (
    InputImages, PixelInputModel, Preprocessing, load_dataset_images, load_image_files, read_image_file,
    sample_indices, select_images,
)
from convzoo.inspection.outputs import InspectionRun, enlarge_for_display
from convzoo.inspection.source import (
    ModelSource, build_source_model, model_input_side, resolve_model_source, source_spec,
)


def input_pipeline(source: ModelSource, dataset: str | None = None) -> tuple[DatasetSpec, Preprocessing]:
    """The dataset spec images come from and how they become the model's inputs."""
    spec, pad_to = source_spec(source, dataset)
    return spec, Preprocessing.for_spec(spec, model_input_side(source, spec, pad_to))


def class_names_for(source: ModelSource, spec: DatasetSpec) -> tuple[str, ...]:
    """The model's class names: stored in its checkpoint, else its dataset's, else indices."""
    if source.class_names:
        return tuple(source.class_names)
    from convzoo.data.class_names import dataset_class_names

    return dataset_class_names(spec)


__all__ = [
    "InputImages", "InspectionRun", "ModelSource", "PixelInputModel", "Preprocessing", "build_source_model",
    "class_names_for", "enlarge_for_display", "input_pipeline", "load_dataset_images", "load_image_files",
    "Subject", "load_subject", "model_input_side", "read_image_file", "resolve_model_source", "sample_indices",
    "select_images", "source_spec",
]


from convzoo.inspection.subject import Subject, load_subject  # noqa: E402 - it uses input_pipeline above
