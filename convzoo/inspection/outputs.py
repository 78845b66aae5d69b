"""What every inspection command writes: a run folder of PNGs, CSV/JSON and TensorBoard images.

``probe``, ``visualize``, ``explain``, ``attack`` and ``predict`` share one layout,
``runs/KIND-MODEL-TIME/``, and one ``--json`` shape: the files written plus the numbers.
Pictures are made with the libraries users know (torchvision's ``make_grid`` and
``save_image``, matplotlib for labelled figures) and every one also goes to TensorBoard.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from convzoo.engine.run_dir import claim_run_dir, remove_if_without_results

DISPLAY_SIDE = 160
"""Small images (a 5x5 kernel, a 28x28 digit) are enlarged, nearest-neighbour, to about
this many pixels a side, so that each input pixel stays visible as a block."""


def enlarge_for_display(images: torch.Tensor, side: int = DISPLAY_SIDE) -> torch.Tensor:
    """(N, C, H, W) images scaled up by the integer factor that brings them nearest ``side``."""
    height = images.shape[-2]
    factor = max(1, round(side / max(height, 1)))
    if factor == 1:
        return images
    return torch.nn.functional.interpolate(images.float(), scale_factor=factor, mode="nearest")


class InspectionRun:
    """A new run folder and its TensorBoard writer; records every file written for ``--json``."""

    def __init__(self, out: str | Path, name: str | None, stem: str, tensorboard: bool = True) -> None:
        self.run_dir = claim_run_dir(out, name, stem)
        self.files: list[str] = []
        self._writer = None
        self._tensorboard = tensorboard

    @property
    def writer(self):
        if self._writer is None and self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir))
        return self._writer

    def path(self, filename: str) -> Path:
        path = self.run_dir / filename
        self.files.append(str(path))
        return path

    def save_grid(self, filename: str, images: torch.Tensor, *, nrow: int = 8, padding: int = 2,
                  normalize: bool = False, pad_value: float = 1.0, tag: str | None = None) -> Path:
        """A grid PNG of (N, C, H, W) images in [0, 1] (or ``normalize``d), also sent to TensorBoard."""
        from torchvision.utils import make_grid, save_image

        grid = make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, normalize=normalize,
                         pad_value=pad_value)
        path = self.path(filename)
        save_image(grid, path)
        if self.writer is not None:
            self.writer.add_image(tag or Path(filename).stem, grid.clamp(0, 1), 0)
        return path

    def save_figure(self, filename: str, figure: Any, tag: str | None = None) -> Path:
        """A matplotlib figure as PNG (and to TensorBoard), then closed."""
        import matplotlib.pyplot as plt

        path = self.path(filename)
        figure.savefig(path, dpi=120, bbox_inches="tight")
        if self.writer is not None:
            self.writer.add_figure(tag or Path(filename).stem, figure, 0, close=False)
        plt.close(figure)
        return path

    def write_json(self, filename: str, payload: dict[str, Any]) -> Path:
        path = self.path(filename)
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        return path

    def write_csv(self, filename: str, rows: Sequence[dict[str, Any]]) -> Path:
        path = self.path(filename)
        with open(path, "w", newline="") as file:
            if rows:
                writer = csv.DictWriter(file, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        return path

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "InspectionRun":
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self.close()
        if exc_type is not None:  # failed or interrupted: no empty folder blocking the retry's --name
            remove_if_without_results(self.run_dir)
