"""``convzoo bench``: training and inference speed, beside torchvision and timm; or the data pipeline alone."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from convzoo.commands.common import DataDirOption, DebugOption, DeviceOption, JsonOption, print_json, user_errors


def bench_command(
    models: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model(s) to time (repeatable: one table).")] = None,
    mode: Annotated[str, typer.Option("--mode", help="train, infer or both.")] = "both",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size (halved on out-of-memory).")] = 32,
    input_size: Annotated[tuple[int, int, int] | None, typer.Option("--input-size", help="C H W (default: the model's paper input).")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Timed steps per model and mode (median reported).")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up steps.")] = 3,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast.")] = False,
    channels_last: Annotated[bool | None, typer.Option("--channels-last/--no-channels-last", help="Channels-last memory format (default: train's choice for the model and device).")] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile every contender (compile time reported apart).")] = False,
    compile_mode: Annotated[str | None, typer.Option("--compile-mode", help="torch.compile mode, e.g. max-autotune.")] = None,
    compare: Annotated[str, typer.Option("--compare", help="Peers to run beside convzoo: torchvision, timm, both comma-separated, or none.")] = "none",
    num_classes: Annotated[int, typer.Option("--num-classes", min=1, help="Classifier outputs.")] = 1000,
    data: Annotated[str | None, typer.Option("--data", help="Time the input pipeline of this dataset alone (no model), e.g. mnist or imagefolder:PATH.")] = None,
    num_workers: Annotated[int, typer.Option("--num-workers", help="DataLoader workers for --data (image folders).")] = 2,
    data_dir: DataDirOption = None,
    device: DeviceOption = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads (default: torch's choice).")] = None,
    csv_path: Annotated[str | None, typer.Option("--csv", help="Also write the results to this CSV file.")] = None,
    json_output: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Time training and inference steps (random data on the device), side by side with peers.

    Examples:
      [bold]convzoo bench --model resnet18 --input-size 3 224 224 --batch-size 8 --compare torchvision[/bold]
      [bold]convzoo bench -m resnet20 -m mobilenet_v2 --input-size 3 32 32 --mode train --channels-last[/bold]
      [bold]convzoo bench --data fashion-mnist --data-dir ../shared/data[/bold]
    """
    with user_errors(debug):
        import torch

        from convzoo.engine.runtime import pick_device
        from convzoo.errors import ConvzooError

        for option, value in (("--batch-size", batch_size), ("--steps", steps)):
            if value < 1:
                raise ConvzooError(f"{option} must be at least 1, got {value}.")
        if warmup < 0:
            raise ConvzooError(f"--warmup must not be negative, got {warmup}.")
        from convzoo.config import quick_cap

        # CONVZOO_QUICK=1 (the README test): a smoke test of the same command.
        steps, warmup, batch_size = quick_cap(steps, 2), quick_cap(warmup, 1), quick_cap(batch_size, 4)
        if threads:
            torch.set_num_threads(threads)
        torch_device = pick_device(device or "auto")
        header = {"device": str(torch_device), "torch": torch.__version__, "threads": torch.get_num_threads()}
        if data is not None:
            if models:
                raise ConvzooError("--data times the input pipeline alone; drop --model (or drop --data).")
            if csv_path:
                _check_csv_path(csv_path)
            rows = _data_rows(data, batch_size, num_workers, steps, torch_device, data_dir)
            _finish({**header, "data": data, "results": rows}, rows, csv_path, json_output, _DATA_COLUMNS)
            return
        if not models:
            raise ConvzooError("pass --model NAME (repeatable), or --data DATASET to time a data pipeline.")
        if csv_path:
            _check_csv_path(csv_path)  # before the timing, which may take minutes
        rows, notes = _model_rows(models, mode, compare, batch_size, input_size, steps, warmup, amp, channels_last,
                                  compile_model, compile_mode, num_classes, torch_device, json_output)
        payload = {**header, "settings": {"mode": mode, "batch_size": batch_size, "steps": steps, "warmup": warmup,
                                          "amp": amp, "channels_last": channels_last, "compile": compile_model,
                                          "compile_mode": compile_mode, "compare": compare},
                   "results": rows, "notes": notes}
        _finish(payload, rows, csv_path, json_output, _MODEL_COLUMNS, notes)


_MODEL_COLUMNS = ("model", "implementation", "mode", "input", "batch_size", "channels_last", "ms_per_step", "ms_iqr",
                  "images_per_s", "ratio_vs_convzoo", "peak_memory_mb", "compile_s")
_DATA_COLUMNS = ("dataset", "implementation", "batch_size", "num_workers", "images", "seconds", "images_per_s",
                 "ratio_vs_torchvision")


def _parse_modes(mode: str) -> list[str]:
    from convzoo.errors import ConvzooError

    if mode == "both":
        return ["train", "infer"]
    if mode in ("train", "infer"):
        return [mode]
    raise ConvzooError(f"--mode must be train, infer or both, got {mode!r}.")


def _parse_compare(compare: str) -> list[str]:
    from convzoo.benchmarking.peers import PEER_LIBRARIES
    from convzoo.errors import ConvzooError

    libraries = [part.strip() for part in compare.split(",") if part.strip() and part.strip() != "none"]
    unknown = [library for library in libraries if library not in PEER_LIBRARIES]
    if unknown:
        raise ConvzooError(f"--compare {unknown[0]!r} is not a peer library; use torchvision, timm or none.")
    return libraries


def _model_rows(models, mode, compare, batch_size, input_size, steps, warmup, amp, channels_last, compile_model,
                compile_mode, num_classes, device, quiet) -> tuple[list[dict[str, Any]], list[str]]:
    import sys

    from convzoo.benchmarking import BenchSettings, run_benchmark
    from convzoo.benchmarking.peers import convzoo_contender, peer_contenders
    from convzoo.engine.fast_path import use_channels_last
    from convzoo.errors import ConvzooError
    from convzoo.registry import get_model_info

    modes, libraries = _parse_modes(mode), _parse_compare(compare)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for name in models:
        info = get_model_info(name)
        shape = tuple(input_size) if input_size else tuple(info.input_size)
        if info.fixed_input_size and shape != tuple(info.input_size):
            raise ConvzooError(f"{name} takes only {'x'.join(map(str, info.input_size))} input; drop --input-size.")
        if shape[1] != shape[2] or min(shape) < 1:
            raise ConvzooError(f"--input-size must be C H W with H == W, got {' '.join(map(str, shape))}.")
        contenders = [convzoo_contender(name, num_classes, shape[0], shape[1])]
        peers, peer_notes = peer_contenders(name, libraries, num_classes, shape[0], shape[1])
        contenders += peers
        notes += [f"{name}: {note}" for note in peer_notes]
        # The layout training would use for this model on this device, unless the flag says otherwise.
        layout = use_channels_last(name, device, requested=channels_last)
        settings = BenchSettings(batch_size=batch_size, input_size=shape, steps=steps, warmup=warmup, amp=amp,
                                 channels_last=layout, compile=compile_model, compile_mode=compile_mode,
                                 device=device, num_classes=num_classes)
        log = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
        log(f"timing {name} ({', '.join(c.label for c in contenders)}) at {batch_size}x{'x'.join(map(str, shape))} "
            f"on {device}: {', '.join(modes)}")
        results = run_benchmark(name, contenders, modes, settings, log)
        for result in results:
            notes += [f"{name}: {note}" for note in result.notes]
            baseline = next((r for r in results if r.implementation == "convzoo" and r.mode == result.mode), None)
            row = result.as_dict()
            row.pop("notes")
            row["input"] = "x".join(map(str, shape))
            row["ratio_vs_convzoo"] = (result.images_per_s / baseline.images_per_s) if baseline else None
            rows.append(row)
    return rows, notes


def _data_rows(dataset, batch_size, num_workers, steps, device, data_dir) -> list[dict[str, Any]]:
    from convzoo.benchmarking.data_pipeline import benchmark_pipelines

    results = benchmark_pipelines(dataset, batch_size=batch_size, num_workers=num_workers, max_batches=steps,
                                  device=device, data_dir=data_dir)
    rows = [result.as_dict() for result in results]
    canonical = next((row for row in rows if row["implementation"] == "torchvision"), None)
    for row in rows:
        row["ratio_vs_torchvision"] = row["images_per_s"] / canonical["images_per_s"] if canonical else None
    return rows


def _finish(payload: dict[str, Any], rows: list[dict[str, Any]], csv_path: str | None, json_output: bool,
            columns: tuple[str, ...], notes: list[str] | None = None) -> None:
    if csv_path:
        _write_csv(csv_path, rows, columns)
    if json_output:
        print_json(payload)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"convzoo bench on {payload['device']} (torch {payload['torch']}, {payload['threads']} threads)")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "implementation", "mode", "dataset", "input") else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # a log file or pipe: keep every column whole
    console.print(table)
    for note in notes or []:
        console.print(f"note: {note}", highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _check_csv_path(path: str) -> None:
    from pathlib import Path

    from convzoo.errors import ConvzooError

    folder = Path(path).parent
    if not folder.is_dir():
        raise ConvzooError(f"cannot write --csv {path}: folder {folder} does not exist. Create it or choose another path.")
    if Path(path).is_dir():
        raise ConvzooError(f"--csv {path} is a folder; pass a file name.")


def _write_csv(path: str, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    import csv
    from pathlib import Path

    from convzoo.errors import ConvzooError

    try:
        with open(Path(path), "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    except OSError as error:
        raise ConvzooError(f"cannot write --csv {path}: {error.strerror}. Choose a writable path.") from None
