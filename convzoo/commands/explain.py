"""``convzoo explain``: attribution maps (saliency, SmoothGrad, Integrated Gradients,
Grad-CAM, occlusion) for images, and Adebayo et al.'s sanity check of them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from convzoo.commands.common import (
    ConvOption, DataDirOption, DebugOption, DeviceOption, JsonOption, print_json, user_errors,
)
from convzoo.commands.inspect_options import (
    CheckpointOption, DatasetOption, ImageOption, IndexOption, ModelOption, NameOption, OutOption, RandomInitOption,
    SamplesOption, SeedOption, SplitOption, WeightsOption,
)

MethodOption = Annotated[list[str], typer.Option(
    "--method", help="saliency, smoothgrad, integrated-gradients, gradcam or occlusion (repeatable or comma-separated).")]


def explain_command(
    method: MethodOption = ["saliency"],  # noqa: B006 - Typer reads the default, never mutates it
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    image: ImageOption = None,
    dataset: DatasetOption = None,
    index: IndexOption = None,
    samples: SamplesOption = None,
    split: SplitOption = "test",
    target: Annotated[int | None, typer.Option("--target", help="Explain this class (default: each image's predicted class).")] = None,
    layer: Annotated[str | None, typer.Option("--layer", help="Grad-CAM's layer (default: the family's last spatial exit).")] = None,
    noise: Annotated[float, typer.Option("--noise", help="SmoothGrad's sigma as a fraction of each image's range (Smilkov et al.: 0.1-0.2).")] = 0.15,
    noise_samples: Annotated[int, typer.Option("--noise-samples", min=1, help="SmoothGrad's noisy copies per image.")] = 50,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Integrated Gradients' steps from the black baseline.")] = 50,
    window: Annotated[int | None, typer.Option("--window", min=1, help="Occlusion's square side in pixels (default: side/8).")] = None,
    region: Annotated[str | None, typer.Option("--region", metavar="X1,Y1,X2,Y2", help="Segmentation models: explain the class's scores over this box of the model's input (ends excluded; default: the whole image).")] = None,
    sanity: Annotated[bool, typer.Option("--sanity", help="Adebayo et al.'s cascading randomisation: rank correlation as layers are re-initialised.")] = False,
    sanity_layers: Annotated[int | None, typer.Option("--sanity-layers", min=1, help="Stop the cascade after this many layers (default: all).")] = None,
    device: DeviceOption = None,
    seed: SeedOption = 0,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Attribution maps for the predicted class (or --target): input, map and overlay per image.

    Writes explain-METHOD.png, predictions.csv, explain.json (and with --sanity: sanity.csv,
    sanity.png, sanity-METHOD.png) and TensorBoard images to runs/NAME/.

    Examples:
      [bold]convzoo explain --checkpoint runs/lenet5-mnist/best.pt --samples 8 --method saliency,smoothgrad,gradcam[/bold]
      [bold]convzoo explain --checkpoint runs/lenet5-mnist/best.pt --index 0 --index 1 --method gradcam --sanity[/bold]
      [bold]convzoo explain --model resnet20 --random-init --dataset fashion-mnist --samples 4 --method integrated-gradients[/bold]
    """
    with user_errors(debug):
        result = run_explain(
            methods=method, checkpoint=checkpoint, model=model, random_init=random_init, weights=weights,
            image=image, dataset=dataset, index=index, samples=samples, split=split, target=target, layer=layer, region=region,
            noise=noise, noise_samples=noise_samples, steps=steps, window=window, sanity=sanity,
            sanity_layers=sanity_layers, device=device, seed=seed, out=out, name=name, data_dir=data_dir, conv=conv,
        )
        if json_output:
            print_json(result)
            return
        _print_report(result)


def run_explain(*, methods: list[str], checkpoint: str | None, model: str | None, random_init: bool,
                weights: str | None, image: list[str] | None, dataset: str | None, index: list[int] | None,
                samples: int | None, split: str, target: int | None, layer: str | None, noise: float,
                noise_samples: int, steps: int, window: int | None, sanity: bool, sanity_layers: int | None,
                device: str | None, seed: int, out: str, name: str | None, data_dir: str | None,
                conv: str | None, region: str | None = None) -> dict[str, Any]:
    """The command's work, returning what ``--json`` prints."""
    from convzoo.attribution import Explainer, cascading_randomisation, display_maps
    from convzoo.attribution.figures import attribution_figure, cascade_strip, sanity_figure
    from convzoo.attribution.methods import check_method
    from convzoo.inspection import InspectionRun, select_images
    from convzoo.inspection.subject import load_subject

    from convzoo.errors import ConvzooError

    chosen = list(dict.fromkeys(check_method(part.strip()) for entry in methods for part in entry.split(",")
                                if part.strip()))
    if layer is not None and "gradcam" not in chosen:  # the other methods attribute to the input pixels
        raise ConvzooError(f"--layer chooses Grad-CAM's layer; {', '.join(chosen)} attribute(s) to the input pixels. "
                           "Add --method gradcam, or drop --layer.")
    subject = load_subject(checkpoint=checkpoint, model=model, random_init=random_init, weights=weights,
                           dataset=dataset, data_dir=data_dir, conv=conv, device=device, seed=seed)
    source, spec, preprocessing, network = subject.source, subject.spec, subject.preprocessing, subject.model
    images = select_images(spec, preprocessing, image_paths=image, indices=index, samples=samples, split=split,
                           data_dir=subject.data_dir(data_dir), seed=seed)
    names = subject.class_names()
    side = images.pixels.shape[-1]
    if window is not None and "occlusion" in chosen and window > side:
        raise ConvzooError(f"--window {window} is larger than the {side}x{side} images; occlusion slides a square "
                           f"inside the image: choose 1 to {side}.")
    box = _region(region, side, source.config.model)
    stem = f"explain-{source.model_name}"
    with InspectionRun(out, name, stem) as run:
        explainers = {method: Explainer(network, method, preprocessing, layer=layer, model_name=source.model_name,
                                        noise=noise, samples=noise_samples, steps=steps, window=window, seed=seed,
                                        region=box)
                      for method in chosen}
        first = next(iter(explainers.values()))
        targets = first.check_target(target, images.pixels)
        probabilities = first.predict(images.pixels).cpu()
        in_region = first.model.region_classes(images.pixels.to(first.device))  # segmentation: the region's class
        predicted = probabilities.argmax(1) if in_region is None else in_region.cpu()
        rows = []
        for position, image_name in enumerate(images.names):
            label = int(images.labels[position])
            rows.append({
                "image": image_name, "label": label, "label_name": _class_name(names, label) if label >= 0 else "",
                "predicted": int(predicted[position]), "predicted_name": _class_name(names, int(predicted[position])),
                "probability": round(float(probabilities[position, predicted[position]]), 4),
                "target": int(targets[position]), "target_probability": round(float(probabilities[position, targets[position]]), 4),
            })
        captions = [f"{row['predicted_name']} {row['probability']:.0%}"
                    + (f"\n(target {row['target']})" if row["target"] != row["predicted"] else "")
                    + (f"\ntrue: {row['label_name']}" if row["label"] >= 0 and row["label"] != row["predicted"] else "")
                    for row in rows]
        for method, explainer in explainers.items():
            attributions = explainer.attribute(images.pixels, targets)
            run.save_figure(f"explain-{method}.png", attribution_figure(images.pixels, display_maps(attributions),
                                                                          captions, method), tag=f"explain/{method}")
        run.write_csv("predictions.csv", rows)
        result: dict[str, Any] = {
            "model": source.model_name, "source": source.source, "dataset": spec.name, "methods": chosen,
            "layer": explainers["gradcam"].layer_name(images.pixels) if "gradcam" in explainers else None,
            "noise": noise if "smoothgrad" in explainers else None, "images": rows,
        }
        if sanity:
            sanity_results = [cascading_randomisation(explainer, images.pixels, targets, seed=seed,
                                                      max_steps=sanity_layers)
                              for explainer in explainers.values()]
            table = [row for outcome in sanity_results for row in outcome.rows()]
            run.write_csv("sanity.csv", table)
            run.save_figure("sanity.png", sanity_figure(sanity_results, f"cascading randomisation: {source.model_name}"),
                            tag="sanity/correlations")
            for outcome in sanity_results:
                run.save_figure(f"sanity-{outcome.method}.png", cascade_strip(outcome, images.pixels),
                                tag=f"sanity/{outcome.method}")
            result["sanity"] = table
        result["run_dir"] = str(run.run_dir)
        result["files"] = run.files
        run.write_json("explain.json", result)
    return result


def _region(region: str | None, side: int, model: str) -> tuple[int, int, int, int] | None:
    """``--region X1,Y1,X2,Y2`` read and checked against the model's task and the input's side."""
    from convzoo.errors import ConvzooError
    from convzoo.registry import get_model_info

    if region is None:
        return None
    if get_model_info(model).task != "segmentation":
        raise ConvzooError(f"--region chooses the pixels of a segmentation model's output; {model} gives one score per "
                           "class for the whole image. Drop --region.")
    try:
        x1, y1, x2, y2 = (int(part) for part in region.split(","))
    except ValueError:
        raise ConvzooError(f"--region takes four integers X1,Y1,X2,Y2, got {region!r}.") from None
    if not (0 <= x1 < x2 <= side and 0 <= y1 < y2 <= side):
        raise ConvzooError(f"--region {region} is not a box inside the {side}x{side} input: need 0 <= X1 < X2 <= {side} "
                           f"and 0 <= Y1 < Y2 <= {side}.")
    return x1, y1, x2, y2


def _class_name(names: tuple[str, ...], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def _print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result['model']}: {', '.join(result['methods'])}")
    for column in ("image", "label", "predicted", "probability", "target"):
        table.add_column(column)
    for row in result["images"]:
        table.add_row(row["image"], row["label_name"] or "-", row["predicted_name"], f"{row['probability']:.1%}",
                      str(row["target"]))
    console.print(table)
    if "sanity" in result:
        sanity = Table(title="cascading randomisation (Adebayo et al. 2018): Spearman rho with the trained map")
        methods = list(dict.fromkeys(row["method"] for row in result["sanity"]))
        sanity.add_column("re-initialised down to")
        for method in methods:
            sanity.add_column(method, justify="right")
        steps = list(dict.fromkeys(row["randomised_down_to"] for row in result["sanity"]))
        values = {(row["method"], row["randomised_down_to"]): row["spearman"] for row in result["sanity"]}
        for step in steps:
            sanity.add_row(step, *(f"{values[(method, step)]:.3f}" if (method, step) in values else "-" for method in methods))
        console.print(sanity)
    console.print(f"-> {result['run_dir']}")
