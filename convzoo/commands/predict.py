"""``convzoo predict``: top-k classes of image files, folders or dataset images."""

from __future__ import annotations

from typing import Annotated

import typer

from convzoo.commands.common import DataDirOption, DebugOption, DeviceOption, JsonOption, print_json, user_errors
from convzoo.commands.inspect_options import (
    CheckpointOption, DatasetOption, IndexOption, ModelOption, SamplesOption, SeedOption, SplitOption, WeightsOption,
)


def predict_command(
    images: Annotated[list[str] | None, typer.Argument(help="Image files and/or folders (searched recursively), any size or mode.", show_default=False)] = None,
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    weights: WeightsOption = None,
    dataset: DatasetOption = None,
    samples: SamplesOption = None,
    index: IndexOption = None,
    split: SplitOption = "test",
    seed: SeedOption = 0,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Classes to show per image, most probable first (default: 5, or all of a model's fewer classes).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 64,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes decoding image files (default: cores - 1, at most 4).")] = None,
    csv_file: Annotated[str | None, typer.Option("--csv", help="Also write one row per image to this CSV file.")] = None,
    out: Annotated[str, typer.Option("--out", help="Segmentation and detection models: the folder for each image's NAME.mask.png (class indices, VOC palette) and NAME.overlay.png, or NAME.boxes.png and detections.json (COCO results format).")] = "predictions",
    score_threshold: Annotated[float, typer.Option("--score-threshold", help="Detectors: keep boxes scoring at least this.")] = 0.5,
    nms_iou: Annotated[float, typer.Option("--nms-iou", help="Detectors: per-class non-maximum suppression at this IoU.")] = 0.5,
    data_dir: DataDirOption = None,
    device: DeviceOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Predict the classes of images with a trained model, preprocessed as its run evaluated;
    a segmentation model's masks are written as PNGs (mask and colour overlay) into --out.

    Files that cannot be decoded are reported and skipped; the exit code is then 1.

    Examples:
      [bold]convzoo predict --checkpoint runs/lenet5-mnist/best.pt digit.png photos/[/bold]
      [bold]convzoo predict --checkpoint runs/lenet5-mnist/best.pt --dataset mnist --samples 5 --top-k 3[/bold]
      [bold]convzoo predict --model resnet18 --weights torchvision cat.jpg --json[/bold]
      [bold]convzoo predict --weights runs/lenet5-mnist/best.onnx digit.png[/bold]  (also .torchscript.pt, .safetensors)
      [bold]convzoo predict --checkpoint runs/fcn8s/best.pt scene.png --out masks/[/bold]  (segmentation)
      [bold]convzoo predict --checkpoint runs/frcnn/best.pt scene.png --out boxes/ --score-threshold 0.7[/bold]  (detection)
    """
    with user_errors(debug):
        from convzoo.deploy.predict import Predictor, UnreadableImage, is_predictable_export
        from convzoo.deploy.report import PredictionReport
        from convzoo.errors import ConvzooError
        from convzoo.inspection import resolve_model_source, select_images

        if batch_size < 1:
            raise ConvzooError(f"--batch-size must be at least 1, got {batch_size}.")
        if images and (samples or index):
            raise ConvzooError("pass images one way: files/folders or --dataset with --samples/--index, not both.")
        if is_predictable_export(weights) and checkpoint is None:
            if model is not None:
                raise ConvzooError(f"{weights} names its own model; drop --model.")
            predictor = Predictor.from_export(weights, data_dir=data_dir, dataset=dataset)
            source = predictor.source
        else:
            if str(weights).lower().endswith(".pt2"):
                raise ConvzooError(
                    f"{weights} (torch.export) carries no normalisation or class names; predict --weights takes a "
                    "run's best.pt, a .safetensors, .onnx or .torchscript.pt export, or bare weights with --dataset.")
            source = resolve_model_source(checkpoint=checkpoint, model=model, weights=weights, data_dir=data_dir,
                                          dataset=dataset, offered=("--checkpoint", "--weights"))
            if not source.dataset_known:  # its normalisation would be a guess, and every prediction with it
                raise ConvzooError(
                    f"{weights} holds weights only, without the dataset they were trained on (normalisation, class "
                    "names): pass --dataset NAME, or a run's best.pt or .safetensors export, which carry them.")
            predictor = Predictor(source, device=device or "auto", dataset=dataset)
        from convzoo.registry import get_model_info

        task = get_model_info(source.config.model).task
        if task != "classification":
            from convzoo.deploy.detect import BoxWriter
            from convzoo.deploy.segment import MaskWriter

            writer = MaskWriter(predictor, out) if task == "segmentation" else BoxWriter(
                predictor, out, score_threshold=score_threshold, nms_iou=nms_iou)
            _predict_into_folder(writer, images, out, json_output, batch_size=batch_size, workers=workers,
                                 dataset=dataset, samples=samples, index=index, split=split,
                                 data_dir=data_dir or source.config.data_dir, seed=seed)
            return
        top_k = predictor.check_top_k(top_k)
        if not predictor.names_stored and not json_output:
            typer.echo(f"note: {source.source} stores no class names (trained before convzoo stored them); "
                       "showing class indices.", err=True)
        report = PredictionReport(predictor, top_k, csv_file, echo=None if json_output else typer.echo)
        if images:
            results = predictor.predict_files(images, top_k=top_k, batch_size=batch_size, num_workers=workers)
        else:
            if dataset is None and not (samples or index):
                raise ConvzooError("no images given: pass image files or folders, or --dataset NAME --samples N.")
            chosen = select_images(predictor.spec, predictor.preprocessing, indices=index, samples=samples,
                                   split=split, data_dir=data_dir or source.config.data_dir, seed=seed)
            results = predictor.predict_images(chosen, top_k=top_k, batch_size=batch_size)
        for result in results:
            report.add(result)
            if isinstance(result, UnreadableImage) and not json_output:
                typer.echo(f"error: {result.error}", err=True)
        summary = report.close()
        if json_output:
            print_json(summary)
        if summary["failed"]:
            typer.echo(f"error: {summary['failed']} of {summary['failed'] + summary['predicted']} images could not "
                       "be read (listed above); the others were predicted.", err=True)
            raise typer.Exit(1)


def _predict_into_folder(writer, images, out: str, json_output: bool, *, batch_size: int, workers: int | None,
                         dataset: str | None, samples: int | None, index: list[int] | None, split: str,
                         data_dir: str | None, seed: int) -> None:
    """``predict`` for a segmentation model or a detector: a line per image (the classes it
    holds and their share of the pixels; the boxes found), its pictures in ``out``."""
    import torch

    from convzoo.deploy.predict import UnreadableImage
    from convzoo.deploy.segment import files_through
    from convzoo.errors import ConvzooError
    from convzoo.inspection import select_images

    if images:
        results = files_through(writer, images, batch_size=batch_size, num_workers=workers)
    else:
        if dataset is None and not (samples or index):
            raise ConvzooError("no images given: pass image files or folders, or --dataset NAME --samples N.")
        chosen = select_images(writer.predictor.spec, writer.predictor.preprocessing, indices=index, samples=samples,
                               split=split, data_dir=data_dir, seed=seed)
        stored = chosen.pixels.mul(255).round_().to(torch.uint8)  # as stored: the loader's normalisation
        results = writer.predictions(stored, chosen.names)
    predicted, failed = [], []
    for result in results:
        if isinstance(result, UnreadableImage):
            failed.append(result.to_dict())
            if not json_output:
                typer.echo(f"error: {result.error}", err=True)
            continue
        predicted.append(result.to_dict())
        if not json_output:
            typer.echo(_line(result))
    summary = {"model": writer.predictor.source.model_name, "source": writer.predictor.source.source,
               "dataset": writer.predictor.spec.name, "out": out, "predicted": len(predicted), "failed": len(failed),
               "predictions": predicted, "failures": failed}
    if hasattr(writer, "close"):
        summary["detections"] = writer.close()
        if not json_output:
            typer.echo(f"boxes in COCO results format -> {summary['detections']}")
    if json_output:
        print_json(summary)
    if failed:
        typer.echo(f"error: {len(failed)} of {len(failed) + len(predicted)} images could not be read (listed above); "
                   "the others were predicted.", err=True)
        raise typer.Exit(1)


def _line(result) -> str:
    if hasattr(result, "shares"):
        shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in result.shares.items())
        return f"{result.image}: {shares}  -> {result.files['overlay']}"
    boxes = ", ".join(f"{box['name']} {box['score']:.2f} at {[round(v) for v in box['box']]}" for box in result.boxes)
    return f"{result.image}: {boxes or 'no boxes'}  -> {result.files['picture']}"
