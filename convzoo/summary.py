"""Model summaries: layer tables with receptive fields, the classic torchsummary table, comparisons.

``summarize("resnet50")`` returns a :class:`ModelSummary`, usable from Python; the
``format_*`` functions render it as the CLI prints it. The layer walk (hierarchy, output
shapes, parameters, kernel sizes, multiply-adds) is torchinfo's; this module adds what
torchinfo lacks: receptive field, jump and start of every layer
(:mod:`convzoo.receptive_field`), the longest chain of weight layers, totals that are
PyTorch's own parameter count, and the classic table of the lecture notes.

Models named from the registry are built on the ``meta`` device: shapes without weights,
so summarising VGG-19 or ResNet-152 allocates nothing, computes nothing and touches no
GPU. A model object is summarised where it is, and left exactly as it was.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from convzoo.errors import ConvzooError

MEBIBYTE = 2**20
"""The classic tool's "MB" (and the lecture's): 2^20 bytes."""

FORMATS = ("table", "torchsummary", "markdown", "csv", "json")

COLUMNS = {
    "input_shape": "Input Shape",
    "output_shape": "Output Shape",
    "params": "Param #",
    "params_percent": "Param %",
    "kernel_size": "Kernel",
    "mult_adds": "Mult-Adds",
    "trainable": "Trainable",
    "receptive_field": "Receptive Field",
    "jump": "Jump",
    "start": "Start",
}
DEFAULT_COLUMNS = ("output_shape", "params", "mult_adds", "receptive_field", "jump")


# --------------------------------------------------------------------------- the summary


@dataclass
class LayerRow:
    """One call of one module, in torchinfo's hierarchy (depth 0 is the whole model)."""

    name: str
    """Qualified module name (``layer1.0.conv1``); empty for the model itself."""
    type: str
    depth: int
    is_leaf: bool
    is_recursive: bool
    """A second call of a module already listed (its parameters are not counted again)."""
    input_shape: list[int]
    output_shape: list[int]
    params: int
    """Parameters of the module and everything inside it."""
    own_params: int
    """Parameters not held by a child row (torchinfo's "leftover")."""
    trainable_params: int
    kernel_size: list[int] | None
    mult_adds: int
    """A leaf's multiply-adds, or the sum over the leaves inside a container."""
    field: Any = None
    """The :class:`~convzoo.receptive_field.ReceptiveField` of the output, None if the module never ran."""

    @property
    def label(self) -> str:
        local_name = self.name.rsplit(".", 1)[-1]
        return f"{local_name} ({self.type})" if local_name else self.type

    def shown_params(self, max_depth: int) -> int:
        """Parameters to show at this display depth, so that the shown rows add up to the total."""
        if self.is_recursive:
            return 0
        return self.params if self.is_leaf or self.depth == max_depth else self.own_params

    def shown_mult_adds(self, max_depth: int) -> int | None:
        return self.mult_adds if self.is_leaf or self.depth == max_depth else None


@dataclass
class ClassicRow:
    """A row of the classic torchsummary table: ``Conv2d-1  [-1, 6, 28, 28]  156``."""

    label: str
    output_shape: list[int] | list[list[int]]
    params: int


@dataclass
class ModelSummary:
    """Everything ``convzoo summary`` prints about one model at one input size."""

    name: str
    input_size: tuple[int, int, int]
    batch_size: int | None
    """As given; None means the classic table's ``-1`` (one sample is measured)."""
    train_mode: bool
    depth: int
    layers: list[LayerRow]
    classic_rows: list[ClassicRow]
    total_params: int
    trainable_params: int
    mult_adds: int
    input_bytes: int
    forward_backward_bytes: int
    """2 x the bytes of every non-container module's outputs: activations and their gradients."""
    param_bytes: int
    final_field: Any
    """The widest field of a feature map before global pooling (None when unknown)."""
    weight_depth: int
    """Weight layers on the longest path from input to output (VGG-16: 16, ResNet-50: 50)."""
    unsupported_ops: list[str] = field(default_factory=list)
    built_for: str | None = None
    """A registered model's build: for which images and classes (None for a model object)."""

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def estimated_total_bytes(self) -> int:
        return self.input_bytes + self.forward_backward_bytes + self.param_bytes

    def visible_layers(self, depth: int | None = None) -> list[LayerRow]:
        limit = self.depth if depth is None else depth
        return [row for row in self.layers if row.depth <= limit]

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        """The JSON object of ``convzoo summary --json``."""
        limit = self.depth if depth is None else depth
        return {
            "model": self.name,
            "built_for": self.built_for,
            "input_size": list(self.input_size),
            "batch_size": self.batch_size or 1,
            "mode": "train" if self.train_mode else "eval",
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "mult_adds": self.mult_adds,
            "weight_layers": self.weight_depth,
            "receptive_field": _field_value(self.final_field, "size"),
            "jump": _field_value(self.final_field, "jump"),
            "input_size_mb": self.input_bytes / MEBIBYTE,
            "forward_backward_size_mb": self.forward_backward_bytes / MEBIBYTE,
            "params_size_mb": self.param_bytes / MEBIBYTE,
            "estimated_total_size_mb": self.estimated_total_bytes / MEBIBYTE,
            "unsupported_ops": self.unsupported_ops,
            "layers": [
                {
                    "name": row.name,
                    "type": row.type,
                    "depth": row.depth,
                    "output_shape": row.output_shape,
                    "params": row.shown_params(limit),
                    "recursive": row.is_recursive,
                    "kernel_size": row.kernel_size,
                    "mult_adds": row.shown_mult_adds(limit) or 0,
                    "receptive_field": _field_value(row.field, "size"),
                    "jump": _field_value(row.field, "jump", local_only=True),
                    "start": _field_value(row.field, "start", local_only=True),
                    "global": bool(row.field is not None and row.field.is_global),
                }
                for row in self.visible_layers(limit)
            ],
        }

    def comparison_row(self) -> dict[str, Any]:
        """One row of the comparison table, as in the lecture's "Size" table."""
        return {
            "model": self.name,
            "input_size": list(self.input_size),
            "total_params": self.total_params,
            "mult_adds": self.mult_adds,
            "weight_layers": self.weight_depth,
            "receptive_field": _field_value(self.final_field, "size"),
            "size_mb": round(self.param_bytes / MEBIBYTE, 2),
        }


def _field_value(receptive_field: Any, attribute: str, local_only: bool = False) -> Any:
    """A field's size, jump or start for JSON: a number, [height, width] when they differ,
    None when unknown (and, with ``local_only``, for a global unit, whose jump means nothing)."""
    if receptive_field is None or not receptive_field.is_known or (local_only and receptive_field.is_global):
        return None
    value = getattr(receptive_field, attribute)
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------- building one


def summarize(
    model_or_name: Any,
    input_size: Sequence[int] | None = None,
    *,
    dataset: str | None = None,
    batch_size: int | None = None,
    depth: int = 3,
    train_mode: bool = False,
    conv: str = "torch",
) -> ModelSummary:
    """Summarise a registered model (by name) or any ``nn.Module`` at ``input_size`` (C, H, W).

    The input size defaults to the model's (``get_model_info(name).input_size``) or to
    ``dataset``'s images, for which the model is then also built (channels, classes,
    small-input variant); an ``input_size`` alone is fed to the model as registered (the
    summary's ``built_for`` says which build it is: VGG-16 at 32x32 with ``--dataset
    cifar10`` is the small-input VGG, with ``--input-size 3 32 32`` the ImageNet one). ``conv="scratch"`` swaps in convzoo's hand-written convolution.
    The model is never changed: device, dtype, parameters, buffers, train/eval flags.
    A detector's rows, multiply-adds and fields are its backbone's (``image_network``: the
    RPN and RoI heads work on boxes); its parameter totals count the whole detector.
    """
    if conv not in ("torch", "scratch"):
        raise ConvzooError(f"unknown convolution {conv!r}: use torch or scratch.")
    if depth < 0:
        raise ConvzooError(f"--depth must be 0 or more, not {depth}.")
    if batch_size is not None and batch_size < 1:
        raise ConvzooError(f"--batch-size must be at least 1, not {batch_size}.")
    dataset_spec = _dataset_shape(dataset) if dataset else None
    if isinstance(model_or_name, str):
        name = model_or_name
        info_input = _default_input(name, dataset_spec)
        size = _checked_input_size(input_size or info_input, name)
        cheap = (batch_size or 1) * size[1] * size[2] <= SHAPE_PASS_PIXELS
        first_failure = None
        built_for = _built_for(name, dataset, dataset_spec)
        for device in ("cpu", "meta") if cheap else ("meta", "cpu"):
            model = _build_registered(name, dataset_spec, conv, device)
            try:
                summary = _summarize_model(model, name, size, batch_size, depth, train_mode,
                                           shape_pass=device == "cpu")
                return dataclasses.replace(summary, built_for=built_for)
            except _ForwardFailed as failure:
                first_failure = first_failure or failure
                # The other pass is a second opinion: torch's meta kernels confirm a failure
                # of the shape pass, and the shape pass stands in for a missing meta kernel.
                if device == "meta" and not failure.maybe_meta_limitation:
                    break
        raise first_failure.as_user_error()

    model = model_or_name
    if conv == "scratch":
        raise ConvzooError("conv='scratch' applies to registered models; call convzoo.ops.use_scratch_conv(model) yourself.")
    if input_size is None and dataset_spec is None:
        raise ConvzooError("a model object needs input_size=(C, H, W) or a dataset.")
    size = _checked_input_size(input_size or dataset_spec[:3], type(model).__name__)
    try:
        return _summarize_model(model, type(model).__name__, size, batch_size, depth, train_mode, shape_pass=False)
    except _ForwardFailed as failure:
        raise failure.as_user_error() from None


SHAPE_PASS_PIXELS = 16 * 224 * 224
"""Up to this many input pixels (batch x height x width), a registered model is summarised
by a CPU *shape pass* (:func:`shape_pass_mode`), where only poolings, concatenations and the
like compute: ResNet-152 at 224x224 takes a few tenths of a second. Beyond, their memory
would grow with the batch, and the model goes to the meta device: shapes only, no memory,
but torch's meta kernels are partly Python and import TorchDynamo and sympy on first use,
over a second of start-up that would dominate a small summary."""


def _dataset_shape(dataset: str) -> tuple[int, int, int, int]:
    try:
        from convzoo.data import dataset_shape
    except ImportError:
        raise ConvzooError("--dataset needs convzoo.data, which this installation lacks; use --input-size C H W.") from None
    return dataset_shape(dataset)


def _default_input(name: str, dataset_spec: tuple[int, int, int, int] | None) -> tuple[int, ...]:
    from convzoo.registry import get_model_info

    info = get_model_info(name)
    if dataset_spec is None:
        return tuple(info.input_size)
    channels, height, width, _ = dataset_spec
    # Fixed-size models (LeNet-5) see the dataset's images padded to their size.
    return (channels, *info.input_size[1:]) if info.fixed_input_size else (channels, height, width)


def _built_for(name: str, dataset: str | None, dataset_spec: tuple[int, int, int, int] | None) -> str:
    """Which build of a registered model a summary shows, in words: the same name is
    another network for another image size (VGG-16's small-input variant at 32x32)."""
    from convzoo.registry import get_model_info

    if dataset_spec is not None:
        channels, height, width, num_classes = dataset_spec
        return f"{dataset}: {channels}x{height}x{width} images, {num_classes} classes"
    channels, height, width = get_model_info(name).input_size
    return f"its default {channels}x{height}x{width} images (--dataset builds it for a dataset's)"


def _build_registered(name: str, dataset_spec: tuple[int, int, int, int] | None, conv: str, device: str):
    """A registered model, uninitialised, on ``device``; built for the dataset if one is given."""
    kwargs: dict[str, int] = {}
    if dataset_spec is not None:
        channels, height, _, num_classes = dataset_spec
        kwargs = {"num_classes": num_classes, "in_channels": channels, "image_size": height}
    model = build_uninitialised(name, device, **kwargs)
    if conv == "scratch":
        try:
            from convzoo.ops import use_scratch_conv
        except ImportError:
            raise ConvzooError("--conv scratch needs convzoo.ops, which this installation lacks.") from None
        use_scratch_conv(model)
    return model


def build_uninitialised(name: str, device: str = "meta", **kwargs: Any):
    """A registered model whose weights are allocated (on ``device``) but never initialised.

    Every in-place operation during construction is skipped: that is what weight
    initialisation is made of, and a summary needs shapes, not values. On the CPU it
    saves drawing ResNet-152's 60 M random numbers; on the meta device it avoids meta
    kernels that import TorchDynamo.
    """
    import torch
    from torch.overrides import TorchFunctionMode

    from convzoo.registry import create_model

    class SkipInPlace(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            # nn.init's functions pass their tensor by keyword to handle_torch_function.
            target = args[0] if args else next(iter(kwargs.values()), None)
            if name.endswith("_") and not name.endswith("__") and isinstance(target, torch.Tensor):
                return target
            return func(*args, **kwargs)

    with torch.device(device), SkipInPlace():
        return create_model(name, **kwargs)


def _checked_input_size(input_size: Sequence[int], name: str) -> tuple[int, int, int]:
    size = tuple(int(value) for value in input_size)
    if len(size) != 3 or min(size) < 1:
        raise ConvzooError(f"input size for {name} must be three positive numbers C H W, not {list(input_size)}.")
    return size  # type: ignore[return-value]


class _ForwardFailed(Exception):
    """The forward pass failed; carries what the user needs to know."""

    def __init__(self, name: str, input_size: tuple[int, ...], where: Any, error: BaseException) -> None:
        super().__init__(str(error))
        self.name, self.input_size, self.where, self.error = name, input_size, where, error

    @property
    def maybe_meta_limitation(self) -> bool:
        text = str(self.error)
        return isinstance(self.error, NotImplementedError) or "meta" in text.lower() or ".item()" in text

    def as_user_error(self) -> ConvzooError:
        shape = "x".join(str(v) for v in self.input_size)
        message = (str(self.error).strip().splitlines() or [type(self.error).__name__])[0]
        location = ""
        if self.where is not None:
            module_name, module, module_input = self.where
            location = f" at {module_name or 'the model'} ({type(module).__name__})"
            expected = getattr(module, "in_channels", None)
            if module_input is not None and expected is not None and len(module_input) > 1 and module_input[1] != expected:
                message = f"it takes {expected} input channels, the input has {module_input[1]}"
            elif module_input is not None:
                message = f"on a {list(module_input)} tensor: {message}"
        if "too small" in message:
            message += " (the feature map shrinks to nothing: use a larger --input-size)"
        return ConvzooError(f"{self.name} cannot take a {shape} input{location}: {message}")


def _summarize_model(model, name: str, input_size: tuple[int, int, int], batch_size: int | None,
                     depth: int, train_mode: bool, shape_pass: bool) -> ModelSummary:
    from contextlib import nullcontext

    import torch
    import torchinfo

    from convzoo.receptive_field import FieldTracer, image_network, model_left_unchanged

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    image = torch.zeros(batch_size or 1, *input_size, device=device, dtype=dtype)
    # A detector's rows are its backbone's (receptive_field.image_network); its totals count it all.
    network = image_network(model)
    tracer = FieldTracer(network, names_from=model)
    with model_left_unchanged(model), torch.no_grad():
        try:
            with shape_pass_mode() if shape_pass else nullcontext(), tracer:
                statistics = torchinfo.summary(
                    network, input_data=[tracer.trace_input(image)], mode="train" if train_mode else "eval",
                    depth=depth, verbose=0,
                )
        except Exception as error:  # noqa: BLE001 - reported to the user as one line
            cause = error.__cause__ if isinstance(error, RuntimeError) and "torchinfo" in str(error) and error.__cause__ else error
            raise _ForwardFailed(name, input_size, tracer.running[-1] if tracer.running else None, cause) from error
        finally:
            # torchinfo keeps every summary's layers (and so the model) in a module-level cache.
            getattr(torchinfo.torchinfo, "_cached_forward_pass", {}).pop(type(model).__name__, None)

    _count_transposed_convolutions(statistics)
    parameters = list(model.parameters())
    classic_calls = [call for call in tracer.calls if _is_classic_row(call, network)]
    return ModelSummary(
        name=name,
        input_size=input_size,
        batch_size=batch_size,
        train_mode=train_mode,
        depth=depth,
        layers=_layer_rows(statistics.summary_list, tracer.calls, _module_name(model, network)),
        classic_rows=[_classic_row(index, call, batch_size) for index, call in enumerate(classic_calls, 1)],
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        mult_adds=int(statistics.total_mult_adds),
        input_bytes=image.numel() * image.element_size(),
        forward_backward_bytes=2 * sum(call.output_bytes for call in classic_calls),
        param_bytes=sum(p.numel() * p.element_size() for p in parameters),
        final_field=tracer.final_field,
        weight_depth=tracer.weight_depth,
        unsupported_ops=sorted(tracer.unsupported),
    )


def shape_pass_mode():
    """A forward pass that computes shapes, not values, wherever the shape is known without them.

    Convolutions and linear layers, elementwise functions (ReLU, BatchNorm, dropout, LRN,
    ...) and broadcasting arithmetic return uninitialised tensors of the shape torch would
    give: a convolution's from the output-size formula, M = floor((N + 2p - d(k-1) - 1)/s) + 1
    (Dumoulin & Visin 2016), after the checks torch makes, with torch's messages; in-place
    operations return their input. Every other operation (pooling, concatenation,
    reshaping, ...) runs for real, on those values: the lists make the pass fast, never
    wrong. Used on freshly built, uninitialised models only.
    """
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    from convzoo.receptive_field import Window

    def conv2d_shape(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        channels = weight.shape[1] * groups
        if input.dim() not in (3, 4) or input.shape[-3] != channels:
            raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                               f"{list(input.shape)} to have {channels} channels, but got {input.shape[-3]} channels instead")
        window = Window.from_arguments(tuple(weight.shape[-2:]), stride, padding, dilation)
        if padding == "same":
            out = tuple(input.shape[-2:])
        else:
            out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                        zip(input.shape[-2:], window.kernel, window.stride, window.padding, window.dilation))
        if min(out) < 1:
            raise RuntimeError(f"Calculated output size: ({weight.shape[0]}x{out[0]}x{out[1]}). Output size is too small")
        return (*input.shape[:-3], weight.shape[0], *out)

    def linear_shape(input, weight, bias=None):
        if input.shape[-1] != weight.shape[1]:
            rows = input.numel() // max(input.shape[-1], 1)
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({rows}x{input.shape[-1]} and "
                               f"{weight.shape[1]}x{weight.shape[0]})")
        return (*input.shape[:-1], weight.shape[0])

    def broadcast_shape(first, second):
        # torch.broadcast_shapes would import sympy (a second of start-up) for the same rule.
        length = max(len(first), len(second))
        first, second = (1,) * (length - len(first)) + tuple(first), (1,) * (length - len(second)) + tuple(second)
        if any(a != b and 1 not in (a, b) for a, b in zip(first, second)):
            raise RuntimeError(f"The size of tensor a {list(first)} must match the size of tensor b {list(second)}")
        return torch.Size(max(a, b) if 1 in (a, b) else a for a, b in zip(first, second))

    layers = {torch.conv2d: conv2d_shape, F.linear: linear_shape}
    tensor = torch.Tensor
    elementwise = {
        F.relu, torch.relu, torch.relu_, tensor.relu, tensor.relu_, F.relu6, F.hardtanh, F.hardtanh_, F.leaky_relu,
        F.gelu, F.silu, F.hardswish, torch.sigmoid, tensor.sigmoid, torch.tanh, F.batch_norm, F.dropout,
        F.local_response_norm, F.log_softmax, F.softmax,
    }
    broadcasting = {torch.add, tensor.add, tensor.add_, tensor.__add__, tensor.__radd__, tensor.__iadd__,
                    torch.mul, tensor.mul, tensor.mul_, tensor.__mul__, tensor.__rmul__, tensor.__imul__}

    class _ShapePass(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            source = args[0] if args else next(iter(kwargs.values()), None)
            in_place = getattr(func, "__name__", "").endswith("_") or kwargs.get("inplace") is True
            if func in layers:
                return torch.empty(layers[func](*args, **kwargs), dtype=source.dtype, device=source.device)
            if func in elementwise and isinstance(source, torch.Tensor):
                return source if in_place else torch.empty_like(source)
            if func in broadcasting and len(args) >= 2 and isinstance(source, torch.Tensor):
                other = args[1]
                shape = broadcast_shape(source.shape, other.shape if isinstance(other, torch.Tensor) else ())
                if in_place or func is tensor.__iadd__ or func is tensor.__imul__:
                    if shape != source.shape:
                        raise RuntimeError(f"output with shape {list(source.shape)} doesn't match the broadcast shape "
                                           f"{list(shape)}")
                    return source
                return torch.empty(shape, dtype=torch.result_type(source, other), device=source.device)
            return func(*args, **kwargs)

    return _ShapePass()


def _module_name(model: Any, part: Any) -> str:
    return next(name for name, module in model.named_modules() if module is part)


def _layer_rows(summary_list: list, calls: list, prefix: str = "") -> list[LayerRow]:
    """torchinfo's rows, each with the receptive field of its own call of its module;
    ``prefix`` names the summarised part in its model (a detector's ``backbone``)."""
    fields_by_module: dict[int, list] = {}
    for call in calls:
        fields_by_module.setdefault(id(call.module), []).append(call.field)
    calls_seen: dict[int, int] = {}
    rows = []
    for info in summary_list:
        receptive_field = None
        if info.executed:
            index = calls_seen.get(info.layer_id, 0)
            calls_seen[info.layer_id] = index + 1
            fields = fields_by_module.get(info.layer_id, [])
            receptive_field = fields[index] if index < len(fields) else None
        kernel = info.kernel_size
        rows.append(LayerRow(
            name=".".join(part for part in (prefix, _qualified_name(info)) if part),
            type=info.class_name,
            depth=info.depth,
            is_leaf=info.is_leaf_layer,
            is_recursive=info.is_recursive,
            input_shape=list(info.input_size),
            output_shape=list(info.output_size),
            params=info.num_params,
            own_params=info.num_params if info.is_leaf_layer else max(info.leftover_params(), 0),
            trainable_params=info.trainable_params,
            kernel_size=[kernel, kernel] if isinstance(kernel, int) else kernel,
            mult_adds=info.macs if info.is_leaf_layer else sum(child.macs for child in info.children if child.is_leaf_layer),
            field=receptive_field,
        ))
    return rows


def _count_transposed_convolutions(statistics: Any) -> None:
    """torchinfo counts a transposed convolution as a convolution, every weight once per
    *output* position: ``stride**2`` times too many. Each *input* position multiplies the
    whole kernel once (FCN's 32x upsampling at 224 px: 88 M mult-adds, not 5.7 G)."""
    import math

    from torch import nn

    transposed = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    for info in statistics.summary_list:
        module = info.module
        if not info.is_leaf_layer or not isinstance(module, transposed) or not info.executed:
            continue
        batch, input_positions = info.input_size[0], math.prod(info.input_size[2:])
        output_positions = math.prod(info.output_size[2:])
        bias = 0 if module.bias is None else module.bias.numel() * output_positions
        counted = batch * (module.weight.numel() * input_positions + bias)
        statistics.total_mult_adds += counted - info.macs
        info.macs = counted


def _qualified_name(info: Any) -> str:
    parts = []
    while info is not None and info.depth > 0:
        parts.append(info.var_name)
        info = info.parent_info
    return ".".join(reversed(parts))


def _is_classic_row(call: Any, model: Any) -> bool:
    """The classic tool hooks every module but the model itself, Sequential and ModuleList.

    An adaptive pooling whose output equals its input is the identity: the lecture's
    tables predate the ``AdaptiveAvgPool2d`` torchvision put before AlexNet's and VGG's
    classifiers, and at 224x224 it changes nothing, so it is not a layer there.
    """
    from torch import nn

    if call.module is model or isinstance(call.module, (nn.Sequential, nn.ModuleList)):
        return False
    is_adaptive_pool = isinstance(call.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
    return not (is_adaptive_pool and call.output_shapes and call.output_shapes[0] == call.input_shape)


def _classic_row(index: int, call: Any, batch_size: int | None) -> ClassicRow:
    batch = batch_size if batch_size is not None else -1
    shapes = [[batch, *shape[1:]] for shape in call.output_shapes]
    params = 0
    for attribute in ("weight", "bias"):
        tensor = getattr(call.module, attribute, None)
        if hasattr(tensor, "size"):
            params += tensor.numel()
    return ClassicRow(
        label=f"{type(call.module).__name__}-{index}",
        output_shape=shapes[0] if len(shapes) == 1 else shapes,
        params=params,
    )


# --------------------------------------------------------------------------- formatting one


def format_summary(summary: ModelSummary, output_format: str = "table", columns: Sequence[str] | None = None) -> str:
    """Render one summary: table, torchsummary, markdown, csv or json."""
    if output_format == "torchsummary":
        return format_torchsummary(summary)
    if output_format == "json":
        return json.dumps(summary.to_dict())
    chosen = check_columns(columns)
    layers = summary.visible_layers()
    if output_format == "csv":
        return _csv(["name", *chosen], [[row.name] + [_cell(row, column, summary, raw=True) for column in chosen]
                                        for row in layers])
    header = ["Layer"] + [COLUMNS[column] for column in chosen]
    rows = [[_indent(row, output_format)] + [_cell(row, column, summary, raw=False) for column in chosen]
            for row in layers]
    if output_format == "markdown":
        totals = "\n".join(f"- {line}" for line in _totals_lines(summary))
        return f"{_markdown_table(header, rows, right=range(1, len(header)))}\n\n{totals}"
    if output_format == "table":
        built = f" built for {summary.built_for}" if summary.built_for else ""
        title = f"{summary.name}{built}, input {_shape_text(summary)}, {'train' if summary.train_mode else 'eval'} mode"
        return "\n".join([title, _text_table(header, rows), *_totals_lines(summary)])
    raise ConvzooError(f"unknown format {output_format!r}: use one of {', '.join(FORMATS)}.")


def check_columns(columns: Sequence[str] | None) -> list[str]:
    """Column names from ``--columns`` (repeatable, each possibly comma-separated)."""
    if not columns:
        return list(DEFAULT_COLUMNS)
    chosen = [name.strip() for item in columns for name in item.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in COLUMNS]
    if unknown:
        raise ConvzooError(f"unknown column {unknown[0]!r}: choose from {', '.join(COLUMNS)}.")
    return chosen


def _shape_text(summary: ModelSummary) -> str:
    return "x".join(str(v) for v in ((summary.batch_size or 1), *summary.input_size))


def _indent(row: LayerRow, output_format: str) -> str:
    # Markdown renderers trim leading spaces (even no-break ones) from table cells: an entity survives.
    pad = "&nbsp;&nbsp;" if output_format == "markdown" else "  "
    return pad * max(row.depth - 1, 0) + row.label


def _cell(row: LayerRow, column: str, summary: ModelSummary, raw: bool) -> Any:
    """One table cell: display text, or the raw value for CSV (empty when not applicable)."""
    receptive_field = row.field
    value: Any
    if column == "input_shape":
        value = row.input_shape
    elif column == "output_shape":
        value = row.output_shape
    elif column == "params":
        if row.is_recursive:
            return "" if raw else "(recursive)"
        if raw:  # CSV: each module's own count, everything inside it included (not the table's share)
            return row.params
        value = row.shown_params(summary.depth)
        if not raw:
            return f"{value:,}" if value else "--"
    elif column == "params_percent":
        shown = row.shown_params(summary.depth)
        value = shown / summary.total_params * 100 if summary.total_params else 0.0
        if not raw:
            return f"{value:.2f}%" if shown else "--"
    elif column == "kernel_size":
        value = row.kernel_size
        if not raw:
            return "x".join(str(v) for v in value) if value else "--"
    elif column == "mult_adds":
        value = row.shown_mult_adds(summary.depth)
        if not raw:
            return f"{value:,}" if value else "--"
    elif column == "trainable":
        value = row.trainable_params == row.params if row.params else None
        if not raw:
            return "--" if not row.params else ("True" if value else ("False" if not row.trainable_params else "Partial"))
    else:
        return _field_cell(receptive_field, column, raw)
    if raw:
        return "" if value is None else (json.dumps(value) if isinstance(value, list) else value)
    return "--" if value in (None, []) else str(value)


def _field_cell(receptive_field: Any, column: str, raw: bool) -> Any:
    if receptive_field is None:
        return "" if raw else "--"
    if not receptive_field.is_known:
        return "" if raw else "?"
    if receptive_field.is_global and column != "receptive_field":
        return "" if raw else "--"
    value = getattr(receptive_field, {"receptive_field": "size"}.get(column, column))
    if raw:
        return "x".join(str(v) for v in value) if isinstance(value, tuple) else value
    text = "x".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
    return f"{text} (global)" if receptive_field.is_global and column == "receptive_field" else text


def _totals_lines(summary: ModelSummary) -> list[str]:
    final = summary.final_field
    lines = [
        f"Total params: {summary.total_params:,}",
        f"Trainable params: {summary.trainable_params:,}",
        f"Non-trainable params: {summary.non_trainable_params:,}",
        f"Total mult-adds: {summary.mult_adds:,} ({_giga(summary.mult_adds)})",
        f"Weight layers on the longest path: {summary.weight_depth}",
    ]
    if final is not None:
        lines.append(f"Receptive field before global pooling: {_size_text(final.size)} pixels "
                     f"(jump {_size_text(final.jump)}, start {_size_text(final.start)})")
    if summary.unsupported_ops:
        lines.append(f"Receptive field unknown after: {', '.join(summary.unsupported_ops)}")
    lines += _memory_lines(summary)
    return lines


def _memory_lines(summary: ModelSummary) -> list[str]:
    return [
        f"Input size (MB): {summary.input_bytes / MEBIBYTE:0.2f}",
        f"Forward/backward pass size (MB): {summary.forward_backward_bytes / MEBIBYTE:0.2f}",
        f"Params size (MB): {summary.param_bytes / MEBIBYTE:0.2f}",
        f"Estimated Total Size (MB): {summary.estimated_total_bytes / MEBIBYTE:0.2f}",
    ]


def _size_text(value: Any) -> str:
    return "x".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def _giga(count: int) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return str(count)


def format_torchsummary(summary: ModelSummary) -> str:
    """The classic table, byte for byte as torchsummary printed it (and the lecture notes show).

    Parameter totals are PyTorch's count (shared weights once) rather than the classic
    sum over rows; the two agree for every model without shared weights.
    """
    rule, double_rule = "-" * 64, "=" * 64
    lines = [rule, "{:>20}  {:>25} {:>15}".format("Layer (type)", "Output Shape", "Param #"), double_rule]
    lines += ["{:>20}  {:>25} {:>15}".format(row.label, str(row.output_shape), f"{row.params:,}")
              for row in summary.classic_rows]
    lines += [
        double_rule,
        f"Total params: {summary.total_params:,}",
        f"Trainable params: {summary.trainable_params:,}",
        f"Non-trainable params: {summary.non_trainable_params:,}",
        rule,
        *_memory_lines(summary),
        rule,
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- comparing several


COMPARISON_HEADER = ["Model", "Input", "Params", "Mult-Adds", "Weight layers", "Receptive field", "Size (MB)"]


def format_comparison(summaries: Sequence[ModelSummary], output_format: str = "table") -> str:
    """One row per model: parameters, multiply-adds, depth, final receptive field, size."""
    if output_format == "json":
        return json.dumps({"models": [summary.comparison_row() for summary in summaries]})
    if output_format == "torchsummary":
        return "\n\n".join(f"{summary.name}\n{format_torchsummary(summary)}" for summary in summaries)
    records = [summary.comparison_row() for summary in summaries]
    if output_format == "csv":
        keys = list(records[0])
        return _csv(keys, [[json.dumps(r[k]) if isinstance(r[k], list) else r[k] for k in keys] for r in records])
    rows = [[
        record["model"],
        "x".join(str(v) for v in record["input_size"]),
        f"{record['total_params']:,}",
        _giga(record["mult_adds"]),
        str(record["weight_layers"]),
        "?" if record["receptive_field"] is None else _size_text(tuple(record["receptive_field"])
                                                                  if isinstance(record["receptive_field"], list)
                                                                  else record["receptive_field"]),
        f"{record['size_mb']:.2f}",
    ] for record in records]
    if output_format == "markdown":
        return _markdown_table(COMPARISON_HEADER, rows, right=range(2, len(COMPARISON_HEADER)))
    if output_format == "table":
        return _text_table(COMPARISON_HEADER, rows)
    raise ConvzooError(f"unknown format {output_format!r}: use one of {', '.join(FORMATS)}.")


# --------------------------------------------------------------------------- table helpers


def _text_table(header: list[str], rows: list[list[Any]]) -> str:
    """Plain fixed-width text: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cells[i])) for cells in [header, *rows]) for i in range(len(header))]

    def line(cells: list[Any]) -> str:
        return "  ".join(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
                         for i, cell in enumerate(cells)).rstrip()

    rule = "=" * len(line(header))
    return "\n".join([rule, line(header), rule, *(line(row) for row in rows), rule])


def _markdown_table(header: list[str], rows: list[list[Any]], right: range) -> str:
    align = ["---:" if i in right else ":---" for i in range(len(header))]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
                     for cells in [header, align, *rows])


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().rstrip("\n")
