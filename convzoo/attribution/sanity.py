"""Adebayo et al.'s (2018) cascading model-randomisation test: does the map depend on the weights?

"Sanity Checks for Saliency Maps" (NeurIPS 2018, section 3.1): re-initialise the layers
from the top (logits) down, one more each time, recompute the map, and compare it with
the trained model's by Spearman rank correlation of the absolute values. A method whose
maps survive the destruction of the weights (edge detectors in disguise, as Guided
Backprop was found to be) is explaining the input, not the model.

A *layer* here is a weight layer (convolution or linear) together with the normalisation
layers that follow it before the next weight layer, re-initialised by their own
``reset_parameters`` (PyTorch's default initialisation, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from convzoo.attribution.methods import Explainer, attribution_magnitude

_NORMALISATIONS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties sharing their average rank (as Spearman needs:
    Grad-CAM and occlusion maps hold many equal zeros)."""
    _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    return ((ends - counts.double() + ends - 1) / 2)[inverse]


def spearman(first: torch.Tensor, second: torch.Tensor) -> float:
    """Spearman's rank correlation of two maps: Pearson's of their average ranks."""
    ranks = [average_ranks(tensor.flatten().double().cpu()) for tensor in (first, second)]
    centred = [rank - rank.mean() for rank in ranks]
    denominator = (centred[0].norm() * centred[1].norm()).item()
    return float((centred[0] @ centred[1]).item() / denominator) if denominator > 0 else 0.0


def weight_layer_groups(model: nn.Module, example: torch.Tensor) -> list[list[str]]:
    """Weight layers in the order a forward runs them, each with the normalisations after it."""
    order: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()

    def record(name: str):
        def hook(module: nn.Module, _inputs: object, _output: object) -> None:
            if id(module) not in seen:
                seen.add(id(module))
                order.append((name, module))
        return hook

    leaves = [(name, module) for name, module in model.named_modules()
              if name and not list(module.children()) and any(True for _ in module.parameters(recurse=False))]
    handles = [module.register_forward_hook(record(name)) for name, module in leaves]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    groups: list[list[str]] = []
    for name, module in order:
        if isinstance(module, _NORMALISATIONS) and groups:
            groups[-1].append(name)
        elif hasattr(module, "reset_parameters"):
            groups.append([name])
    return groups


@dataclass
class SanityResult:
    """Rank correlations with the trained model's maps after each cascading step."""

    method: str
    steps: list[str] = field(default_factory=list)
    """``original``, then the top layer re-initialised, then one more each time."""
    correlations: list[float] = field(default_factory=list)
    """Mean over images of Spearman's rho between the original and the step's map."""
    per_image: list[list[float]] = field(default_factory=list)
    maps: list[torch.Tensor] = field(default_factory=list)
    """Each step's magnitude maps (N, H, W), for the picture."""

    def rows(self) -> list[dict[str, object]]:
        return [{"method": self.method, "step": index, "randomised_down_to": step, "spearman": round(rho, 4)}
                for index, (step, rho) in enumerate(zip(self.steps, self.correlations))]


def cascading_randomisation(explainer: Explainer, inputs: torch.Tensor, targets: torch.Tensor | None = None,
                            *, seed: int = 0, max_steps: int | None = None) -> SanityResult:
    """Adebayo et al.'s cascade on ``explainer``'s model (a copy; the explainer is untouched).

    ``targets`` default to the trained model's predictions and stay fixed through the
    cascade, as in the paper: the same class is explained by every randomised model.
    ``max_steps`` stops early on deep networks (resnet110 has 110 layers to destroy).
    """
    import copy

    inputs = inputs.to(explainer.device)
    targets = explainer.check_target(targets, inputs)
    original = attribution_magnitude(explainer.attribute(inputs, targets))
    result = SanityResult(explainer.method, ["original"], [1.0], [[1.0] * len(inputs)], [original])
    randomised = copy.copy(explainer)
    randomised.model = copy.deepcopy(explainer.model)
    network = randomised.model.network
    groups = weight_layer_groups(network, randomised._network_input(inputs[:1]))
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for group in list(reversed(groups))[:max_steps]:
            with torch.no_grad():
                for name in group:
                    network.get_submodule(name).reset_parameters()
            maps = attribution_magnitude(randomised.attribute(inputs, targets))
            rhos = [spearman(before, after) for before, after in zip(original, maps)]
            result.steps.append(group[0])
            result.per_image.append(rhos)
            result.correlations.append(sum(rhos) / len(rhos))
            result.maps.append(maps)
    finally:
        torch.random.set_rng_state(generator_state)
    return result
