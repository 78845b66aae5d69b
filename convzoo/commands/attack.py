"""``convzoo attack``: FGSM / PGD accuracy against epsilon on the test split, with examples."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from convzoo.commands.common import (
    ConvOption, DataDirOption, DebugOption, DeviceOption, JsonOption, print_json, user_errors,
)
from convzoo.commands.inspect_options import (
    CheckpointOption, DatasetOption, ModelOption, NameOption, OutOption, RandomInitOption, SamplesOption, SeedOption,
    SplitOption, WeightsOption,
)


def attack_command(
    method: Annotated[list[str], typer.Option("--method", help="fgsm and/or pgd (repeatable or comma-separated).")] = ["fgsm"],  # noqa: B006
    eps: Annotated[str, typer.Option("--eps", help="Comma-separated epsilons in pixel units of [0, 1] images.")] = "0,0.05,0.1,0.15,0.2,0.25,0.3",
    steps: Annotated[int | None, typer.Option("--steps", min=1, help="PGD iterations (default 10).")] = None,
    step_size: Annotated[float | None, typer.Option("--step-size", help="PGD step in pixels (default 2.5 eps / steps, Madry et al. 2018).")] = None,
    random_start: Annotated[bool | None, typer.Option("--random-start/--no-random-start", help="PGD starts from a uniform point of the eps-ball, seeded by --seed (Madry et al.; the default), or from the image itself.")] = None,
    checkpoint: CheckpointOption = None,
    model: ModelOption = None,
    random_init: RandomInitOption = False,
    weights: WeightsOption = None,
    dataset: DatasetOption = None,
    samples: SamplesOption = None,
    split: SplitOption = "test",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images attacked at once.")] = 1000,
    example_eps: Annotated[float | None, typer.Option("--example-eps", help="Epsilon of the example triplets (default: the middle non-zero one).")] = None,
    device: DeviceOption = None,
    seed: SeedOption = 0,
    out: OutOption = "runs",
    name: NameOption = None,
    data_dir: DataDirOption = None,
    conv: ConvOption = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Accuracy under FGSM / PGD at each epsilon, over the whole test split (or --samples N).

    Writes attack.csv, attack.json, attack.png (accuracy against epsilon) and
    examples-METHOD.png (image, magnified perturbation, adversarial image) to runs/NAME/.

    Examples:
      [bold]convzoo attack --checkpoint runs/lenet5-mnist/best.pt --method fgsm,pgd[/bold]
      [bold]convzoo attack --checkpoint runs/lenet5-mnist/best.pt --method pgd --eps 0,0.1 --steps 40 --samples 1000[/bold]
    """
    with user_errors(debug):
        from convzoo.errors import ConvzooError

        try:
            epsilons = [float(part) for part in eps.split(",") if part.strip()]
        except ValueError:
            raise ConvzooError(f"--eps {eps!r} is not a comma-separated list of numbers, e.g. 0,0.1,0.2.") from None
        result = run_attack(
            methods=method, epsilons=epsilons, steps=steps, step_size=step_size, random_start=random_start,
            checkpoint=checkpoint, model=model, random_init=random_init, weights=weights, dataset=dataset,
            samples=samples, split=split, batch_size=batch_size, example_eps=example_eps, device=device, seed=seed,
            out=out, name=name, data_dir=data_dir, conv=conv,
        )
        if json_output:
            print_json(result)
            return
        _print_report(result)


def run_attack(*, methods: list[str], epsilons: list[float], steps: int | None, step_size: float | None, random_start: bool | None,
               checkpoint: str | None, model: str | None, random_init: bool, weights: str | None,
               dataset: str | None, samples: int | None, split: str, batch_size: int, example_eps: float | None,
               device: str | None, seed: int, out: str, name: str | None, data_dir: str | None,
               conv: str | None) -> dict[str, Any]:
    """The command's work, returning what ``--json`` prints."""
    from convzoo.adversarial import Attack, check_epsilons, robust_accuracy
    from convzoo.adversarial.attacks import check_attack
    from convzoo.adversarial.figures import accuracy_figure, triplet_figure
    from convzoo.config import quick_cap
    from convzoo.errors import ConvzooError
    from convzoo.inspection import InspectionRun
    from convzoo.inspection.subject import load_subject
    from convzoo.inspection.images import dataset_split, load_dataset_images, sample_indices

    chosen = list(dict.fromkeys(check_attack(part.strip()) for entry in methods for part in entry.split(",")
                                if part.strip()))
    epsilons = check_epsilons(epsilons)
    if "pgd" not in chosen:  # FGSM is one step of eps: PGD's options would be silently ignored
        given = [flag for flag, value in (("--steps", steps), ("--step-size", step_size),
                                          ("--random-start" if random_start else "--no-random-start", random_start))
                 if value is not None]
        if given:
            raise ConvzooError(f"{' and '.join(given)} set PGD's iterations; FGSM takes one step of eps. "
                               "Add --method pgd, or drop them.")
    steps = 10 if steps is None else steps
    random_start = True if random_start is None else random_start  # Madry et al.'s PGD starts at random
    if example_eps is not None and example_eps not in epsilons:
        raise ConvzooError(f"--example-eps {example_eps} is not among --eps {', '.join(f'{e:g}' for e in epsilons)}.")
    nonzero = [value for value in epsilons if value > 0]
    shown_eps = example_eps if example_eps is not None else (nonzero[len(nonzero) // 2] if nonzero else epsilons[0])
    subject = load_subject(checkpoint=checkpoint, model=model, random_init=random_init, weights=weights,
                           dataset=dataset, data_dir=data_dir, conv=conv, device=device, seed=seed)
    source, spec, preprocessing, network = subject.source, subject.spec, subject.preprocessing, subject.model
    torch_device = subject.device
    folder = subject.data_dir(data_dir)
    _, labels = dataset_split(spec, split, folder)
    samples = quick_cap(samples, 500)  # CONVZOO_QUICK=1 (the README test): a few hundred images
    indices = sample_indices(samples, len(labels), seed) if samples else list(range(len(labels)))
    images = load_dataset_images(spec, preprocessing, indices, split=split, data_dir=folder)
    names = subject.class_names()
    curves = []
    with InspectionRun(out, name, f"attack-{source.model_name}") as run:
        for attack_name in chosen:
            attack = Attack(network, attack_name, preprocessing, steps=steps, step_size=step_size,
                            random_start=random_start, seed=seed)
            curves.append(robust_accuracy(attack, images.pixels, images.labels, epsilons, batch_size=batch_size,
                                          keep=64, device=torch_device))
        rows = [row for curve in curves for row in curve.rows()]
        run.write_csv("attack.csv", rows)
        run.save_figure("attack.png", accuracy_figure(curves, f"{source.model_name} on {spec.name} ({split}, "
                                                              f"{len(indices):,} images)"), tag="attack/accuracy")
        for curve in curves:
            shown = _flipped_first(curve.examples[shown_eps], curve.examples[epsilons[0]])
            run.save_figure(f"examples-{curve.method}.png",
                            triplet_figure(shown[0], shown[1], shown_eps, curve.method, names), tag=f"attack/{curve.method}")
        result: dict[str, Any] = {
            "model": source.model_name, "source": source.source, "dataset": spec.name, "split": split,
            "images": len(indices), "epsilons": epsilons, "steps": steps if "pgd" in chosen else None,
            "step_size": step_size, "random_start": random_start if "pgd" in chosen else None, "seed": seed,
            "example_eps": shown_eps,
            "device": str(torch_device), "seconds": {curve.method: round(curve.seconds, 2) for curve in curves},
            "cpu_seconds": {curve.method: round(curve.cpu_seconds, 2) for curve in curves},
            "results": rows,
        }
        result["run_dir"] = str(run.run_dir)
        result["files"] = run.files
        run.write_json("attack.json", result)
    return result


def _flipped_first(attacked: dict, clean: dict, count: int = 4) -> tuple[dict, dict]:
    """The examples to show: images the attack turned from right to wrong first, then the rest."""
    import torch

    right = clean["predicted"] == clean["labels"]
    flipped = right & (attacked["predicted"] != attacked["labels"])
    order = torch.cat([torch.nonzero(flipped).flatten(), torch.nonzero(~flipped).flatten()])[:count]
    return ({key: value[order] for key, value in attacked.items()}, {key: value[order] for key, value in clean.items()})


def _print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    attacks = list(dict.fromkeys(row["attack"] for row in result["results"]))
    table = Table(title=f"{result['model']} on {result['dataset']} ({result['images']:,} {result['split']} images)")
    table.add_column("eps", justify="right")
    for attack in attacks:
        table.add_column(f"{attack.upper()} accuracy", justify="right")
    values = {(row["attack"], row["eps"]): row["accuracy"] for row in result["results"]}
    for eps in result["epsilons"]:
        table.add_row(f"{eps:g}", *(f"{100 * values[(attack, eps)]:.2f} %" for attack in attacks))
    console.print(table)
    if result["random_start"] is not None:
        console.print(f"PGD started at a random point of the ε-ball (seed {result['seed']})" if result["random_start"]
                      else "PGD started at the clean image (--no-random-start)")
    seconds = ", ".join(f"{attack.upper()} {value:.1f}s" for attack, value in result["seconds"].items())
    console.print(f"{seconds} -> {result['run_dir']}")
