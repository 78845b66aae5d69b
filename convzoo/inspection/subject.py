"""The thing an inspection command looks at: one model, on one device, with the way its
images are prepared.

``visualize``, ``explain``, ``attack`` and ``visualize erf`` all start the same way: turn
``--checkpoint`` / ``--model --random-init`` / ``--weights`` into a model source, find the
dataset its images come from, pick the device and build the model there in eval mode.
``load_subject`` is that sequence, once, so the commands cannot drift apart in the order
they check options or in how they build the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from convzoo.data.catalog import DatasetSpec
from convzoo.inspection.images import Preprocessing
from convzoo.inspection.source import ModelSource, build_source_model, resolve_model_source


@dataclass
class Subject:
    """The model as its run built it, on ``device``, and how its images are prepared."""

    source: ModelSource
    spec: DatasetSpec
    preprocessing: Preprocessing
    model: nn.Module
    device: torch.device
    seed: int

    @property
    def model_name(self) -> str:
        return self.source.model_name

    def example(self) -> torch.Tensor:
        """One all-zero input at the model's own size (for tracing layers' output shapes)."""
        side = self.preprocessing.model_side
        return torch.zeros(1, self.preprocessing.channels, side, side, device=self.device)

    def exits(self) -> tuple[str, ...]:
        """The family's spatial exits, in order (the layers ``probe`` taps by default)."""
        from convzoo.registry import get_model_info

        return get_model_info(self.source.model_name).probe_layers

    def class_names(self) -> tuple[str, ...]:
        from convzoo.inspection import class_names_for

        return class_names_for(self.source, self.spec)

    def data_dir(self, given: str | None) -> str | None:
        """Where its dataset's files are: ``--data-dir`` when given, else the run's own folder."""
        return given or self.source.config.data_dir

    def random_init_model(self) -> nn.Module:
        """The same network as it was before training (the seed's initial draw): the
        reference every ``--compare-random`` measures against."""
        return build_source_model(self.source, self.device, trained=False, seed=self.seed)


def load_subject(*, checkpoint: str | None, model: str | None, random_init: bool, weights: str | None,
                 dataset: str | None, data_dir: str | None, conv: str | None, device: str | None,
                 seed: int) -> Subject:
    """Resolve the model options, the dataset and the device, then build the model in eval
    mode with its weights (bad options are one-line errors, raised in that order)."""
    from convzoo.engine.runtime import pick_device
    from convzoo.inspection import input_pipeline

    source = resolve_model_source(checkpoint=checkpoint, model=model, random_init=random_init, weights=weights,
                                  data_dir=data_dir, conv=conv, dataset=dataset)
    spec, preprocessing = input_pipeline(source, dataset)
    torch_device = pick_device(device or "auto")
    network = build_source_model(source, torch_device, seed=seed)
    return Subject(source, spec, preprocessing, network, torch_device, seed)
