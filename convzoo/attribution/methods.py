"""Attribution maps by captum, for every zoo model: ``Explainer(model, method).attribute(x, target=...)``.

The methods are captum's (Kokhlikyan et al. 2020); this module only fixes the settings
the papers recommend and makes every zoo model acceptable to them (``GradientReadyModel``):

- ``saliency``: the gradient of the class score with respect to the pixels, in absolute
  value (Simonyan, Vedaldi & Zisserman 2014, eq. 2-3);
- ``smoothgrad``: the gradient averaged over ``samples`` copies of the image with Gaussian
  noise of standard deviation ``noise`` x (x_max - x_min) of *that image* (Smilkov et al.
  2017, section 3: "noise level" sigma / (x_max - x_min), best at 10-20 %, 50 samples).
  Scaling the noise by anything else (the normalised range, 255, a fixed sigma) is the
  common bug: the same number then means a different amount of noise on every dataset;
- ``integrated-gradients``: Sundararajan, Taly & Yan (2017), black pixels as the baseline,
  ``steps`` points of the path (Gauss-Legendre, captum's default); the attributions sum
  to f(x) - f(baseline), which ``convergence_delta`` reports;
- ``gradcam``: Selvaraju et al. (2017) at ``layer`` (default: the family's last spatial
  exit), ReLU of the gradient-weighted channel sum, bilinearly upsampled to the input;
- ``occlusion``: Zeiler & Fergus (2014), the score's drop when a ``window`` square of
  pixels is set to black, slid by half a window.

The class score is the one the papers define: the main head's output before a final
softmax or log-softmax (``convzoo.inspection.scores``; LeNet-5 ends in ``LogSoftmax``).
Inputs are pixels in [0, 1] when a ``Preprocessing`` is given (the dataset's
normalisation runs inside the model), else whatever ``model`` takes. ``target`` defaults
to each image's predicted class. Attributions come back shaped like the inputs
(Grad-CAM: one channel), detached, on the inputs' device.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from convzoo.attribution.layers import choose_spatial_layer
from convzoo.attribution.wrapping import GradientReadyModel
from convzoo.errors import ConvzooError
from convzoo.inspection import Preprocessing
from convzoo.seeding import seeded

METHODS = ("saliency", "smoothgrad", "integrated-gradients", "gradcam", "occlusion")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ConvzooError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    return method


class Explainer:
    """An attribution method bound to a model, captum-style: build once, ``attribute`` many times."""

    def __init__(
        self,
        model: nn.Module,
        method: str = "saliency",
        preprocessing: Preprocessing | None = None,
        *,
        layer: str | None = None,
        model_name: str | None = None,
        noise: float = 0.15,
        samples: int = 50,
        steps: int = 50,
        window: int | None = None,
        batch_size: int = 64,
        seed: int = 0,
        region: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.method = check_method(method)
        if not 0 < noise <= 1 and method == "smoothgrad":
            raise ConvzooError(f"--noise is a fraction of the input range, in (0, 1]; got {noise}.")
        if min(samples, steps) < 1:
            raise ConvzooError("--noise-samples and --steps must be at least 1.")
        self.model = GradientReadyModel(model, preprocessing, region)  # region: segmentation models' pixels explained
        self.model_name = model_name
        self.layer = layer
        self._resolved_layer: str | None = None
        self.noise, self.samples, self.steps, self.window, self.batch_size = noise, samples, steps, window, batch_size
        self.seed = seed
        """SmoothGrad's noise is drawn from this seed at every call: the same image gets the
        same noise, so maps repeat and the sanity check compares models, not noise draws."""

    @property
    def device(self) -> torch.device:
        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def layer_name(self, example: torch.Tensor) -> str:
        """The layer Grad-CAM uses for inputs like ``example`` (resolved once, then kept)."""
        if self._resolved_layer is None:
            example = self._network_input(example[:1].detach().to(self.device))
            self._resolved_layer = choose_spatial_layer(self.model.network, example, self.layer, self.model_name)
        return self._resolved_layer

    def _network_input(self, pixels: torch.Tensor) -> torch.Tensor:
        inner = self.model.model
        return (pixels - inner.mean) / inner.std if hasattr(inner, "mean") else pixels

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes): softmax of the main logits."""
        return torch.softmax(self.model(inputs.to(self.device)).float(), dim=1)

    def check_target(self, target: int | Sequence[int] | torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
        """(N,) target classes: the predicted ones for None (a segmentation model's: the class
        it gives most of the region, background aside), else ``target`` checked against the classes."""
        probabilities = self.predict(inputs)
        classes = probabilities.shape[1]
        if target is None:
            in_region = self.model.region_classes(inputs.to(self.device))
            return probabilities.argmax(1) if in_region is None else in_region
        chosen = torch.as_tensor(target, dtype=torch.long, device=probabilities.device).reshape(-1)
        bad = chosen[(chosen < 0) | (chosen >= classes)]
        if bad.numel():
            raise ConvzooError(f"--target {int(bad[0])} is out of range: the model has {classes} classes (0..{classes - 1}).")
        return chosen.expand(inputs.shape[0]) if chosen.numel() == 1 else chosen

    def attribute(self, inputs: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Attributions for ``target`` (default: the predicted class), shaped like ``inputs``."""
        inputs = inputs.to(self.device)
        targets = self.check_target(target, inputs)
        # captum differentiates with respect to the inputs; asking for it here saves its warning.
        inputs = inputs.detach().requires_grad_(True)
        method = self.method.replace("-", "_")
        parts = [getattr(self, f"_{method}")(inputs[start:start + self.batch_size],
                                             targets[start:start + self.batch_size])
                 for start in range(0, inputs.shape[0], self.batch_size)]
        return torch.cat(parts).detach()

    # -- the methods, one captum object each

    def _saliency(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from captum.attr import Saliency

        return Saliency(self.model).attribute(inputs, target=targets, abs=True)

    def _smoothgrad(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from captum.attr import NoiseTunnel, Saliency

        tunnel = NoiseTunnel(Saliency(self.model))
        maps = []
        with seeded(self.seed, inputs.device):
            # captum's stdevs is one number per input tensor, and sigma is per image: one call each.
            for image, target in zip(inputs, targets):
                value_range = float(image.detach().max() - image.detach().min()) or 1.0
                maps.append(tunnel.attribute(image[None], nt_type="smoothgrad", nt_samples=self.samples,
                                             nt_samples_batch_size=self.batch_size, stdevs=self.noise * value_range,
                                             target=int(target), abs=False))
        return torch.cat(maps)

    def _integrated_gradients(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.integrated_gradients(inputs, targets)[0]

    def integrated_gradients(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attributions and captum's convergence delta: sum(attributions) - (f(x) - f(black))."""
        from captum.attr import IntegratedGradients

        attributions, delta = IntegratedGradients(self.model).attribute(
            inputs, baselines=torch.zeros_like(inputs), target=targets, n_steps=self.steps,
            internal_batch_size=max(self.batch_size, inputs.shape[0]), return_convergence_delta=True)
        return attributions, delta

    def _gradcam(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from captum.attr import LayerAttribution, LayerGradCam

        layer = self.model.layer(self.layer_name(inputs))
        cam = LayerGradCam(self.model, layer).attribute(inputs, target=targets, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(inputs.shape[-2:]), "bilinear").detach()

    def _occlusion(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from captum.attr import Occlusion

        side = inputs.shape[-1]
        window = self.window or max(2, side // 8)
        stride = max(1, window // 2)
        return Occlusion(self.model).attribute(
            inputs, sliding_window_shapes=(inputs.shape[1], window, window), strides=(inputs.shape[1], stride, stride),
            baselines=0.0, target=targets, perturbations_per_eval=self.batch_size)


def attribution_magnitude(attributions: torch.Tensor) -> torch.Tensor:
    """(N, H, W): absolute value, the largest over channels (Simonyan et al. 2014, section 3.1).
    What the pictures show and what the sanity check's rank correlations compare."""
    return attributions.detach().float().abs().amax(dim=1)


def display_maps(attributions: torch.Tensor) -> torch.Tensor:
    """(N, H, W) magnitudes in [0, 1] for pictures: divided by each map's 99th percentile
    and clipped, so that a few extreme pixels do not leave the rest black (Smilkov et al.
    2017 cap outliers the same way)."""
    maps = attribution_magnitude(attributions)
    flat = maps.flatten(1)
    scale = torch.quantile(flat, 0.99, dim=1).clamp_min(1e-12)
    fallback = flat.amax(dim=1).clamp_min(1e-12)
    scale = torch.where(scale > 1e-12, scale, fallback)
    return (maps / scale.view(-1, 1, 1)).clamp(0, 1).cpu()
