"""A trained model out of convzoo: ONNX, TorchScript, ExportedProgram or safetensors,
each file checked against the eager model it came from.

``export_model(source, "onnx")`` writes the file, loads it back the way its users will
(onnxruntime, ``torch.jit.load``, ``torch.export.load``, ``safetensors``), runs a sample
batch through both and reports the largest absolute difference; a difference above
``RELATIVE_TOLERANCE`` x the logits' scale is an error. The exported graph is the
evaluation one: GoogLeNet without its auxiliary heads, dropout off, BatchNorm with its
running statistics. It takes *normalised* images, as the eager model does; the mean,
std, class names and input size travel in the file's metadata (ONNX ``metadata_props``,
safetensors header, TorchScript ``extra_files``).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from convzoo.errors import ConvzooError
from convzoo.inspection import ModelSource, Preprocessing, build_source_model, class_names_for, input_pipeline

FORMATS = ("onnx", "torchscript", "exported-program", "safetensors")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2", "safetensors": ".safetensors"}
RELATIVE_TOLERANCE = 1e-4
"""Allowed max |exported - eager|, relative to max(1, max |eager logits|): float32 kernels
differ in summation order (onnxruntime's MLAS against oneDNN), never by more than this."""
DEFAULT_OPSET = 17
INSTALL_EXPORT_EXTRA = 'pip install -e ".[export]"'


@dataclass
class ExportResult:
    """What was written and how closely it reproduces the eager model."""

    format: str
    path: str
    model: str
    input_shape: list[int]
    """(batch, channels, side, side) of the sample batch the file was checked on."""
    dynamic_batch: bool
    max_abs_diff: float
    tolerance: float
    checked_batches: list[int]
    export_time_s: float
    validate_time_s: float
    size_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_export_path(source: ModelSource, fmt: str) -> Path:
    """Beside the checkpoint (``runs/x/best.pt`` -> ``runs/x/best.onnx``), else ``MODEL.onnx`` here."""
    if source.source.endswith(".pt") and Path(source.source).is_file():
        return Path(source.source).with_name(Path(source.source).stem + SUFFIXES[fmt])
    return Path(source.model_name + SUFFIXES[fmt])


def check_output_path(path: Path) -> None:
    """A missing or read-only folder is the user's to fix, said before any work is done."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConvzooError(f"cannot write {path}: folder {folder} does not exist. Create it or pass another --out.")
    if not os.access(folder, os.W_OK):
        raise ConvzooError(f"cannot write {path}: folder {folder} is read-only. Pass --out in a writable folder.")
    if path.is_dir():
        raise ConvzooError(f"--out {path} is a folder; pass a file name, e.g. {path / ('model' + path.suffix)}.")
    if path.exists() and not path.is_file():
        # A device or a pipe: the atomic rename would replace it with a regular file.
        raise ConvzooError(f"--out {path} exists and is not a regular file (a device or a pipe); pass a file name.")


def write_export(data: bytes | memoryview, path: Path) -> None:
    """The exported bytes to ``path`` atomically: a full disk leaves no partial file and
    any previous export there as it was, and is reported in one line."""
    from convzoo.engine.checkpoint import atomic_write_bytes, write_failure_cause

    def describe(path: Path, error: OSError) -> str:
        cause, advice = write_failure_cause(error)
        kept = " The file that was there is unchanged." if path.exists() else ""
        return f"cannot write {path}: {cause}.{kept} To export, {advice.replace('run folder', 'folder')}."

    atomic_write_bytes(data, path, describe)


def export_model(
    source: ModelSource,
    fmt: str,
    out: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    exporter: str = "auto",
    seed: int = 0,
) -> ExportResult:
    """Write ``source``'s model as ``fmt`` and check the file against the eager model.

    ``exporter`` (ONNX only): ``torchscript`` (``torch.onnx.export(dynamo=False)``),
    ``dynamo`` (``torch.export`` then onnxscript) or ``auto``: the TorchScript-based one,
    and dynamo where it cannot express a model. Measured on 2 CPU cores the TorchScript
    exporter is 4-10x faster (LeNet-5 0.15 s against 7 s, MobileNet-v2 1.7 s against
    19 s; BENCHMARKS.md), which keeps CI's registry-wide export test within its budget;
    but it has no ONNX form of an adaptive average pool whose output does not divide its
    input (AlexNet's 6x6 pool of a 7x7 map at 32x32 inputs), which dynamo decomposes.
    """
    if fmt not in FORMATS:
        raise ConvzooError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ConvzooError(f"unknown ONNX exporter {exporter!r}; choose auto, torchscript or dynamo.")
    from convzoo.registry import get_model_info

    if get_model_info(source.config.model).task == "detection":
        # A detector's forward takes a list of images and returns a dict per image, with
        # data-dependent box counts: not the one-tensor-in, one-tensor-out graph the files
        # here hold and are checked as (torchvision exports its detectors to ONNX only under
        # conditions of its own: fixed sizes, opset 11, a separate ONNX check).
        raise ConvzooError(f"{source.config.model} is a detector: its lists of boxes do not fit the {fmt} export's "
                           "tensor-in, tensor-out graph, and convzoo does not export detectors yet. Use its checkpoint "
                           "(best.pt) with convzoo predict, or torchvision's own ONNX export of the model.")
    path = Path(out) if out is not None else default_export_path(source, fmt)
    check_output_path(path)
    if fmt == "onnx":
        require_onnx_extra()
        check_opset(opset, exporter)
    spec, preprocessing = input_pipeline(source)
    model = build_source_model(source, "cpu")
    exported, notes = standard_conv_for_export(model)
    side = preprocessing.model_side
    example_batch = 2 if dynamic_batch else 1
    generator = torch.Generator().manual_seed(seed)
    # Normalised images are roughly standard normal, so random normal inputs exercise the
    # same range of every layer as real ones do.
    example = torch.randn(example_batch, preprocessing.channels, side, side, generator=generator)
    checked_batches = [1, 7] if dynamic_batch else [1]
    batches = [torch.randn(n, preprocessing.channels, side, side, generator=generator) for n in checked_batches]

    started = time.perf_counter()
    if fmt == "safetensors":
        from convzoo.deploy.safetensors_io import safetensors_bytes

        write_export(safetensors_bytes(model.state_dict(), weights_metadata(source, spec, preprocessing)), path)
        load = _safetensors_runner(source.config.conv)
    elif fmt == "onnx":
        notes += export_onnx(exported, example, path, opset=opset, dynamic_batch=dynamic_batch, exporter=exporter,
                             metadata=metadata_strings(source, spec, preprocessing))
        load = _onnx_runner
    elif fmt == "torchscript":
        export_torchscript(exported, example, path, metadata=metadata_strings(source, spec, preprocessing))
        load = _torchscript_runner
    else:
        export_program(exported, example, path, dynamic_batch=dynamic_batch)
        load = _exported_program_runner
    export_time = time.perf_counter() - started

    started = time.perf_counter()
    run = load(path)
    max_diff, tolerance = 0.0, 0.0
    with torch.inference_mode():
        for batch in batches:
            expected = model(batch)
            actual = run(batch)
            if tuple(actual.shape) != tuple(expected.shape):
                raise ConvzooError(f"{path} returned logits of shape {tuple(actual.shape)} for a batch of "
                                   f"{batch.shape[0]}; the eager model returns {tuple(expected.shape)}.")
            max_diff = max(max_diff, (actual.float() - expected).abs().max().item())
            tolerance = max(tolerance, RELATIVE_TOLERANCE * max(1.0, expected.abs().max().item()))
    validate_time = time.perf_counter() - started
    if not max_diff <= tolerance:
        raise ConvzooError(
            f"{path} was written but its outputs differ from the eager model's by up to {max_diff:.3g} "
            f"(tolerance {tolerance:.3g}); do not use it. Try --format torchscript or another --opset.")
    return ExportResult(fmt, str(path), source.model_name, list(example.shape), dynamic_batch, max_diff, tolerance,
                        checked_batches, export_time, validate_time, path.stat().st_size, notes)


def require_onnx_extra() -> None:
    """onnx, onnxscript and onnxruntime are an optional extra; say how to get them."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConvzooError(f"--format onnx needs {' and '.join(missing)}, which are not installed; "
                           f"install them with: {INSTALL_EXPORT_EXTRA}")


def standard_conv_for_export(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """The model to export: a copy with scratch convolutions (``--conv scratch``) as
    ``nn.Conv2d`` and ``nn.ConvTranspose2d``.

    ``convzoo.ops.Conv2d`` is ``nn.Conv2d`` with another forward and no state of its own
    (``ScratchConvTranspose2d`` likewise): the weights are identical, and an exported graph
    should carry the standard Conv operators that every runtime optimises rather than the
    im2col arithmetic. The check against the eager model (which still uses the scratch
    convolution) shows the two agree.
    """
    import copy

    from convzoo.ops.modules import SCRATCH_CLASSES

    standard = {scratch: torch_class for torch_class, scratch in SCRATCH_CLASSES.items()}
    if not any(type(module) in standard for module in model.modules()):
        return model, []
    exported = copy.deepcopy(model)
    swapped = 0
    for module in exported.modules():
        if type(module) in standard:
            module.__class__ = standard[type(module)]
            swapped += 1
    return exported, [f"{swapped} scratch convolution(s) exported as the standard Conv operator (same weights), "
                      "checked against the eager model computing with the scratch convolution"]


DYNAMO_MIN_OPSET = 18
"""The dynamo exporter's operator library (onnxscript) starts at opset 18."""


def opset_ranges() -> dict[str, tuple[int, int]]:
    """The opsets each ONNX exporter of the installed torch writes, as (lowest, highest)."""
    from torch.onnx import _constants

    lowest = getattr(_constants, "ONNX_MIN_OPSET", 7)
    torchscript_highest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17)
    highest = max(getattr(_constants, "ONNX_MAX_OPSET", torchscript_highest), DYNAMO_MIN_OPSET)
    # Below its first opset the dynamo exporter writes DYNAMO_MIN_OPSET, with a note (export_onnx).
    return {"torchscript": (lowest, torchscript_highest), "dynamo": (lowest, highest), "auto": (lowest, highest)}


def check_opset(opset: int, exporter: str) -> None:
    """An opset the exporter cannot write is refused before any work: past the highest,
    torch's exporters fail with an ONNX C++ assertion (or write another opset than asked)."""
    lowest, highest = opset_ranges()[exporter]
    if not lowest <= opset <= highest:
        which = "torch's ONNX exporters" if exporter == "auto" else f"torch's {exporter} ONNX exporter"
        raise ConvzooError(f"--opset {opset} is not an opset {which} can write (torch {torch.__version__}): "
                           f"choose {lowest} to {highest}.")


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, *, opset: int, dynamic_batch: bool,
                exporter: str, metadata: dict[str, str]) -> list[str]:
    """``torch.onnx.export`` with the input named ``input`` and the output ``logits``,
    serialised in memory and written atomically (``write_export``)."""
    notes: list[str] = []
    if exporter == "auto" and opset > opset_ranges()["torchscript"][1]:
        exporter = "dynamo"  # the only one that writes this opset
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        notes.append(f"the dynamo exporter writes opset {DYNAMO_MIN_OPSET} at least: the file has opset "
                     f"{DYNAMO_MIN_OPSET}, not {opset}")
    if exporter in ("auto", "torchscript"):
        try:
            data = _export_onnx_torchscript(model, example, opset, dynamic_batch)
        except Exception as error:  # noqa: BLE001 - the exporter raises many kinds for an unsupported op
            if exporter == "torchscript":
                raise ConvzooError(f"the TorchScript-based ONNX exporter cannot export this model: "
                                   f"{_first_line(error)}. Try --exporter dynamo.") from None
            notes.append(f"TorchScript-based ONNX exporter failed ({_first_line(error)[:120]}); used dynamo, opset "
                         f"{max(opset, DYNAMO_MIN_OPSET)}")
            data = _export_onnx_dynamo(model, example, opset, dynamic_batch)
    else:
        data = _export_onnx_dynamo(model, example, opset, dynamic_batch)
    write_export(data + _onnx_metadata_bytes(metadata), path)
    return notes


def _export_onnx_torchscript(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    import io
    import warnings

    options: dict[str, Any] = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        options["dynamo"] = False
    with warnings.catch_warnings(), native_stdout_silenced():
        warnings.simplefilter("ignore")  # its deprecation notice is for users of the old API, not ours
        buffer = io.BytesIO()
        torch.onnx.export(
            model, (example,), buffer, input_names=["input"], output_names=["logits"], opset_version=opset,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None,
            do_constant_folding=True, **options,
        )
    return buffer.getvalue()


@contextlib.contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """File descriptor 1 to /dev/null: on an unsupported operator the TorchScript-based
    exporter's C++ logger dumps the whole graph to stdout, which would break ``--json``'s
    one object (the error itself is still raised, and reported in one line)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _export_onnx_dynamo(model: nn.Module, example: torch.Tensor, opset: int, dynamic_batch: bool) -> bytes:
    import importlib.util
    import warnings

    if importlib.util.find_spec("onnxscript") is None:
        raise ConvzooError(f"this model needs the dynamo ONNX exporter, which needs onnxscript; install it with: "
                           f"{INSTALL_EXPORT_EXTRA}")
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Its operator library starts at opset 18; asking for less only adds a failing down-conversion.
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    opset_version=max(opset, DYNAMO_MIN_OPSET), dynamic_shapes=dynamic_shapes,
                                    verbose=False)
    return program.model_proto.SerializeToString()


def _onnx_metadata_bytes(metadata: dict[str, str]) -> bytes:
    """``metadata_props`` to append to a serialised model without parsing it again.

    Protobuf parses concatenated messages as one merged message, repeated fields
    appended, so the serialised ``ModelProto(metadata_props=...)`` can follow the model's
    bytes: loading and re-saving a ResNet-152's 240 MB instead took 3 s.
    """
    import onnx

    entries = [onnx.StringStringEntryProto(key=key, value=value) for key, value in metadata.items()]
    return onnx.ModelProto(metadata_props=entries).SerializeToString()


@contextlib.contextmanager
def jit_without_deprecation_warnings() -> Iterator[None]:
    """Recent torch deprecates ``torch.jit`` with a FutureWarning from each of trace,
    trace_method, save and load: eight lines on stderr for a format users asked for by
    name, whose deprecation the README states once ("convzoo export")."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit.* is deprecated", FutureWarning)
        yield


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, *, metadata: dict[str, str]) -> None:
    """``torch.jit.trace``: the zoo's forwards have no data-dependent control flow in eval mode.
    Saved to memory first: ``torch.jit.save`` to a full disk aborts the process (C++ stack,
    exit 134) and leaves a 0-byte file."""
    import io

    with torch.inference_mode(False), torch.no_grad(), jit_without_deprecation_warnings():
        traced = torch.jit.trace(model, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={"convzoo.json": json.dumps(metadata)})
    write_export(buffer.getbuffer(), path)


def export_program(model: nn.Module, example: torch.Tensor, path: Path, *, dynamic_batch: bool) -> None:
    """``torch.export`` with a symbolic batch dimension (min 1) when ``dynamic_batch``."""
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    import io

    program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)  # in memory first, as export_torchscript
    write_export(buffer.getbuffer(), path)


def _onnx_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outputs = [output.name for output in session.get_outputs()]
    if len(outputs) != 1:  # e.g. GoogLeNet's auxiliary heads, which only training uses
        raise ConvzooError(f"{path} has {len(outputs)} outputs ({', '.join(outputs)}); an exported classifier "
                           "returns its logits only.")
    name = session.get_inputs()[0].name
    return lambda batch: torch.from_numpy(session.run(None, {name: batch.numpy()})[0])


def _torchscript_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    with jit_without_deprecation_warnings():
        return torch.jit.load(str(path), map_location="cpu")


def _exported_program_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.export.load(str(path)).module()


def _safetensors_runner(conv: str) -> Callable[[Path], Callable[[torch.Tensor], torch.Tensor]]:
    """The model rebuilt from the file alone, as ``--weights FILE.safetensors`` does."""
    from convzoo.inspection import resolve_model_source

    return lambda path: build_source_model(resolve_model_source(weights=str(path), conv=conv), "cpu")


def weights_metadata(source: ModelSource, spec: Any, preprocessing: Preprocessing):
    from convzoo.deploy.safetensors_io import WeightsMetadata

    return WeightsMetadata(
        model_name=source.model_name, num_classes=spec.num_classes, in_channels=preprocessing.channels,
        image_size=preprocessing.model_side, dataset=spec.name, mean=preprocessing.mean, std=preprocessing.std,
        class_names=tuple(class_names_for(source, spec)), model_kwargs=dict(source.config.model_kwargs or {}),
    )


def metadata_strings(source: ModelSource, spec: Any, preprocessing: Preprocessing) -> dict[str, str]:
    """The safetensors header's fields, for ONNX ``metadata_props`` and TorchScript extra files."""
    header = weights_metadata(source, spec, preprocessing).to_header()
    header["input"] = "normalised images (x / 255 - mean) / std, NCHW float32"
    return header


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
