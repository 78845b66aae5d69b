"""Pictures of attacks: accuracy against epsilon, and image / perturbation / adversarial triplets."""

from __future__ import annotations

from typing import Sequence

import torch


def accuracy_figure(curves: Sequence, title: str):
    """Accuracy against epsilon, one line per attack (FGSM and PGD on one plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for curve in curves:
        axis.plot(curve.epsilons, [100 * accuracy for accuracy in curve.accuracies], marker="o",
                  label=curve.method.upper())
    axis.set_xlabel("epsilon (L-infinity, pixels in [0, 1])")
    axis.set_ylabel("test accuracy (%)")
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    return figure


def _imshow(axis, image: torch.Tensor, **kwargs) -> None:
    image = image.detach().float().cpu()
    if image.shape[0] == 1:
        axis.imshow(image[0], cmap=kwargs.pop("cmap", "gray"), interpolation="nearest", **kwargs)
    else:
        axis.imshow(image.permute(1, 2, 0).clamp(0, 1), interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def triplet_figure(examples: dict[str, torch.Tensor], clean: dict[str, torch.Tensor], eps: float, method: str,
                   class_names: Sequence[str], count: int = 4):
    """Rows of image -> perturbation (magnified to the full grey range) -> adversarial image,
    each labelled with its predicted class and probability, as the lecture's pig -> airliner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(count, examples["clean"].shape[0])
    figure, axes = plt.subplots(count, 3, figsize=(6.0, 2.1 * count), squeeze=False)

    def name(index: int) -> str:
        return class_names[index] if 0 <= index < len(class_names) else str(index)

    for row in range(count):
        delta = examples["adversarial"][row] - examples["clean"][row]
        magnified = (delta / (2 * eps) + 0.5).clamp(0, 1) if eps > 0 else torch.full_like(delta, 0.5)
        _imshow(axes[row][0], examples["clean"][row], vmin=0, vmax=1)
        axes[row][0].set_title(f"{name(int(clean['predicted'][row]))} {float(clean['probability'][row]):.0%}", fontsize=9)
        _imshow(axes[row][1], magnified, vmin=0, vmax=1)
        axes[row][1].set_title(f"+ perturbation (eps={eps:g})", fontsize=9)
        _imshow(axes[row][2], examples["adversarial"][row], vmin=0, vmax=1)
        flipped = int(examples["predicted"][row]) != int(clean["predicted"][row])
        axes[row][2].set_title(f"= {name(int(examples['predicted'][row]))} {float(examples['probability'][row]):.0%}",
                               fontsize=9, color="red" if flipped else "black")
    figure.suptitle(f"{method.upper()}, eps = {eps:g}", fontsize=10)
    figure.tight_layout()
    return figure
