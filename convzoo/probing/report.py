"""A probe's results as files (JSON, CSV, PNG, TensorBoard) and as terminal tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("exit", "dim", "train_acc", "test_acc", "random_test_acc")


def write_outputs(result: dict[str, Any], run_dir: Path, writer: Any = None) -> None:
    """``probe.json``, ``probe.csv`` and ``probe.png`` in ``run_dir``; accuracy-by-depth
    scalars (step = exit index) in TensorBoard when a ``SummaryWriter`` is given."""
    (run_dir / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(run_dir / "probe.csv", "w", newline="") as file:
        table = csv.writer(file)
        table.writerow(CSV_COLUMNS)
        for row in result["layers"]:
            table.writerow([row["name"], row["dim"], f"{row['train_acc']:.6f}", f"{row['test_acc']:.6f}",
                            f"{row['random_test_acc']:.6f}" if "random_test_acc" in row else ""])
    plot_accuracy_by_depth(result, run_dir / "probe.png")
    if writer is not None:
        for depth, row in enumerate(result["layers"]):
            writer.add_scalar("probe/test_acc", row["test_acc"], depth)
            writer.add_scalar("probe/train_acc", row["train_acc"], depth)
            if "random_test_acc" in row:
                writer.add_scalar("probe/random_test_acc", row["random_test_acc"], depth)
        writer.flush()


def plot_accuracy_by_depth(result: dict[str, Any], path: Path) -> None:
    """Test accuracy of each exit's linear probe against depth, trained vs random weights,
    the picture of the lecture's table (Zhang et al. 2017)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["layers"]
    depth = list(range(len(rows)))
    curves = [("test_acc", "o", "-"), ("train_acc", ".", ":")]
    if all("random_test_acc" in row for row in rows):
        curves.append(("random_test_acc", "s", "-"))
    trained = "trained" if result.get("source") != "random-init" else "random weights"
    labels = {"test_acc": f"{trained} (test)", "train_acc": f"{trained} (train)", "random_test_acc": "random weights (test)"}
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.2), dpi=120)
    lowest = 100.0
    for key, marker, style in curves:
        values = [100 * row[key] for row in rows]
        lowest = min(lowest, *values)
        colour = "C0" if key != "random_test_acc" else "C1"
        axes.plot(depth, values, marker=marker, linestyle=style, color=colour, label=labels[key],
                  alpha=0.6 if key == "train_acc" else 1.0)
    chance = 100 / result["num_classes"] if result.get("num_classes") else None
    bottom = y_axis_bottom(lowest, chance)
    if chance is not None and chance > bottom:
        axes.axhline(chance, color="grey", linestyle="--", linewidth=0.8, label="chance")
    axes.set_xticks(depth)
    axes.set_xticklabels([f"{row['name']}\n{row['dim']:,}" for row in rows], rotation=30 if len(rows) > 6 else 0,
                         fontsize=8)
    axes.set_xlabel("exit (feature dimension)")
    axes.set_ylabel("linear probe accuracy (%)")
    axes.set_ylim(bottom, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    axes.set_title(f"Linear probes of {result['model']} on {result['dataset']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def y_axis_bottom(lowest: float, chance: float | None) -> float:
    """The plot's lowest accuracy (%): zoomed in on the curves (MNIST probes all lie above
    85 %), a multiple of 5 at least 3 points below the lowest one, and, when chance is in
    view, at least 2.5 points below it, so its line never lies hidden on the axis."""
    bottom = max(0.0, 5 * ((lowest - 3) // 5))
    if chance is not None and bottom <= chance < bottom + 2.5:
        bottom = max(0.0, bottom - 5)
    return bottom


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def results_table(result: dict[str, Any]):
    """A rich table: one row per exit, in depth order."""
    from rich.table import Table

    with_random = any("random_test_acc" in row for row in result["layers"])
    table = Table(title=f"linear probes: {result['model']} on {result['dataset']} ({result['source']})")
    for header in ("exit", "dim", "train %", "test %", *(("random test %",) if with_random else ())):
        table.add_column(header, justify="left" if header == "exit" else "right")
    for row in result["layers"]:
        cells = [row["name"], f"{row['dim']:,}", _percent(row["train_acc"]), _percent(row["test_acc"])]
        if with_random:
            cells.append(_percent(row.get("random_test_acc")))
        table.add_row(*cells)
    return table


def layers_table(listing: dict[str, Any]):
    """``--list-layers``: every tappable module, its output shape, and the declared exits."""
    from rich.table import Table

    shape = "x".join(map(str, listing["input_shape"]))
    table = Table(title=f"tappable layers of {listing['model']} ({shape} input)", caption="* = a default exit")
    for header in ("", "name", "type", "output shape"):
        table.add_column(header)
    for layer in listing["layers"]:
        calls = f" (last of {layer['calls']} calls)" if layer["calls"] > 1 else ""
        table.add_row("*" if layer["default_exit"] else "", layer["name"], layer["type"],
                      "x".join(map(str, layer["shape"])) + calls)
    return table
