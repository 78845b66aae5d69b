"""What ``convzoo predict`` shows and writes: a line per image, a CSV row per image, one JSON object."""

from __future__ import annotations

import csv
from typing import Any, Callable

from convzoo.deploy.predict import ImagePrediction, Predictor, UnreadableImage
from convzoo.errors import ConvzooError


class PredictionReport:
    """Collects predictions as they stream in; ``close`` returns the ``--json`` object."""

    def __init__(self, predictor: Predictor, top_k: int, csv_path: str | None,
                 echo: Callable[[str], Any] | None) -> None:
        self.predictor = predictor
        self.top_k = top_k
        self.echo = echo
        self.predictions: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self._csv_file = self._csv_writer = None
        if csv_path is not None:
            try:
                self._csv_file = open(csv_path, "w", newline="")
            except OSError as error:
                raise ConvzooError(f"cannot write --csv {csv_path}: {error.strerror}.") from None
            self._csv_writer = csv.writer(self._csv_file)
            header = ["image", "label"]
            for rank in range(1, top_k + 1):
                header += [f"class_{rank}", f"name_{rank}", f"probability_{rank}"]
            self._csv_writer.writerow(header + ["error"])

    def add(self, result: ImagePrediction | UnreadableImage) -> None:
        if isinstance(result, UnreadableImage):
            self.failures.append(result.to_dict())
            self._csv_row(result.image, "", [], result.error)
            return
        self.predictions.append(result.to_dict())
        self._csv_row(result.image, "" if result.label is None else result.label, result.to_dict()["top_k"], "")
        if self.echo is not None:
            top = ", ".join(f"{name} {100 * probability:.1f}%" for name, probability in
                            zip(result.names, result.probabilities))
            truth = "" if result.label is None else f"  (label: {self.predictor.class_names[result.label]})"
            self.echo(f"{result.image}: {top}{truth}")

    def _csv_row(self, image: str, label: Any, top: list[dict[str, Any]], error: str) -> None:
        if self._csv_writer is None:
            return
        cells: list[Any] = [image, label]
        for entry in top:
            cells += [entry["class"], entry["name"], entry["probability"]]
        cells += [""] * (2 + 3 * self.top_k - len(cells))  # a failure's empty class columns keep "error" aligned
        self._csv_writer.writerow(cells + [error])

    def close(self) -> dict[str, Any]:
        if self._csv_file is not None:
            self._csv_file.close()
        source = self.predictor.source
        return {
            "model": source.model_name, "source": source.source, "dataset": self.predictor.spec.name,
            "class_names_stored": self.predictor.names_stored, "predicted": len(self.predictions),
            "failed": len(self.failures), "predictions": self.predictions, "failures": self.failures,
        }
