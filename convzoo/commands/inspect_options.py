"""The options every inspection command takes the same way (STYLE: "Inspection commands
share one shape"): which model, which images, where the output goes."""

from __future__ import annotations

from typing import Annotated

import typer

CheckpointOption = Annotated[str | None, typer.Option("--checkpoint", help="A run's best.pt or last.pt (or the run folder).")]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Registered model name (with --random-init or --weights).")]
RandomInitOption = Annotated[bool, typer.Option("--random-init", help="Use --model with random weights (seeded by --seed).")]
WeightsOption = Annotated[str | None, typer.Option("--weights", help="'torchvision' (ImageNet weights) or a state-dict file, with --model; a run's best.pt or a convzoo .safetensors file needs no --model (predict also runs .onnx and .torchscript.pt exports).")]
ImageOption = Annotated[list[str] | None, typer.Option("--image", help="Image file(s), any size or mode; converted as the run's dataset was (repeatable).")]
DatasetOption = Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset to take images from (default: the run's).")]
IndexOption = Annotated[list[int] | None, typer.Option("--index", help="Index of an image in the dataset's split (repeatable).")]
SamplesOption = Annotated[int | None, typer.Option("--samples", min=1, help="Draw N random images from the split (seeded by --seed).")]
SplitOption = Annotated[str, typer.Option("--split", help="Dataset split to take images from: test or train.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same pictures.")]
OutOption = Annotated[str, typer.Option("--out", help="Folder for run folders.")]
NameOption = Annotated[str | None, typer.Option("--name", help="Run folder name (default KIND-MODEL-TIME).")]
