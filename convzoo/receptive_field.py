"""Receptive fields of every layer of any network, computed and measured.

For one spatial axis, a unit of a feature map sees an interval of input pixels. Three
numbers describe that interval for every unit of the map (Araujo, Norris & Sim,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019, section 2;
Dumoulin & Visin 2016 for the arithmetic of one layer):

- ``size``: how many input pixels one unit sees (its receptive field);
- ``jump``: how far apart, in input pixels, two neighbouring units' fields are (the
  product of the strides so far, Araujo's "effective stride");
- ``start``: the first input pixel seen by unit 0; negative when the field reaches into
  the zero padding (minus Araujo's "effective padding").

Unit ``i`` then sees pixels ``start + i * jump`` to ``start + i * jump + size - 1``.

**Computed** (:class:`FieldTracer`): a real forward pass (on the ``meta`` device it costs
nothing) during which every tensor carries its field. Convolutions and poolings grow it
by their kernel, stride, padding and dilation (a transposed convolution divides the jump
by its stride); an operation that keeps the spatial grid
(ReLU, BatchNorm, addition, channel concatenation, LRN, ...) gives each unit the union of
what its inputs see: where paths merge, as in ResNet's additions or GoogLeNet's and
DenseNet's concatenations, the field is the union of the paths' fields, which with equal
jumps is the largest field (Araujo section 3, "multi-path networks"); global pooling and
flattening make the field global. Because the propagation follows tensors rather than
module names, it needs no per-architecture code.

**Measured** (:func:`measure_receptive_field`): the input pixels whose gradient is non-zero
for one output unit, with every weight positive so that no two paths can cancel. Tests
check one against the other.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

_TAG = "_convzoo_receptive_field"
"""Attribute under which a tensor carries its field during a trace."""


# --------------------------------------------------------------------------- the arithmetic


@dataclass(frozen=True)
class AxisField:
    """The field along one spatial axis, in input pixels (see the module docstring)."""

    size: int
    jump: Fraction
    start: Fraction

    def through_kernel(self, kernel: int, stride: int, padding: int, dilation: int) -> AxisField:
        """After a convolution or pooling window (Araujo eq. 2 and 3, Dumoulin & Visin 2016)."""
        return AxisField(
            size=self.size + math.ceil(dilation * (kernel - 1) * self.jump),
            jump=self.jump * stride,
            start=self.start - padding * self.jump,
        )

    def through_transposed_kernel(self, kernel: int, stride: int, padding: int, dilation: int) -> AxisField:
        """After a transposed convolution (Dumoulin & Visin 2016, section 4): output unit ``o``
        adds tap ``t`` of input unit ``i`` where ``i * stride - padding + t * dilation = o``, so
        it reads input units ``ceil((o + p - d(k-1)) / s)`` to ``floor((o + p) / s)``.

        The stride *divides* the jump: ``s`` output units share the span of one input unit.
        How many input units one output unit reads depends on ``o mod s`` (FCN's kernel 2s
        reads two for every unit; kernel 3, stride 2 reads one or two): the size is the
        largest unit's, as for the adaptive pools, and the start is unit 0's, exactly.
        Unit ``o``'s interval is then ``start + o * jump`` only on average, within a jump of
        the true one: the field is marked not ``uniform`` (``ReceptiveField.uniform``).
        """
        reach = dilation * (kernel - 1)

        def first(o: int) -> int:
            return -((reach - o - padding) // stride)  # ceil((o + padding - reach) / stride)

        widest = max((o + padding) // stride - first(o) for o in range(stride))
        return AxisField(
            size=self.size + math.ceil(max(widest, 0) * self.jump),
            jump=self.jump / stride,
            start=self.start + first(0) * self.jump,
        )

    def padded(self, before: int) -> AxisField:
        """After explicit zero padding of ``before`` pixels at the start of the axis."""
        return replace(self, start=self.start - before * self.jump)

    def sliced(self, first: int, step: int) -> AxisField:
        """After keeping every ``step``-th unit from unit ``first`` (a slice of the tensor)."""
        return AxisField(size=self.size, jump=self.jump * step, start=self.start + first * self.jump)

    def through_adaptive_pool(self, in_length: int, out_length: int) -> AxisField:
        """Adaptive pooling: bin ``i`` covers units floor(i n/m) to ceil((i+1) n/m) - 1.

        When ``m`` divides ``n`` this is a window of ``n/m`` with stride ``n/m``; otherwise
        the bins differ in width, and the widest one sets the field (Araujo's
        "largest field" convention), with a fractional jump ``n/m``. Sizes grown by a
        fractional jump later on are rounded up: upper bounds, not exact.
        """
        widest = max(
            math.ceil((i + 1) * in_length / out_length) - (i * in_length) // out_length
            for i in range(out_length)
        )
        return AxisField(
            size=self.size + math.ceil((widest - 1) * self.jump),
            jump=self.jump * Fraction(in_length, out_length),
            start=self.start,
        )

    def through_nearest_resize(self, in_length: int, out_length: int) -> AxisField:
        """Nearest resizing of ``n`` units to ``m``: unit ``j`` repeats unit ``floor(j n/m)``,
        so its field has the same size. The jump ``n/m`` places it exactly where ``j n/m``
        is whole (every k-th unit of an upsampling by k, as in an FPN's top-down path, which
        then meets a map of that jump), elsewhere less than one input jump late."""
        return AxisField(size=self.size, jump=self.jump * Fraction(in_length, out_length), start=self.start)

    def spanning(self, length: int) -> AxisField:
        """What a unit depending on all ``length`` units of this axis sees: their union."""
        return AxisField(size=self.size + math.ceil((length - 1) * self.jump), jump=self.jump, start=self.start)

    def union(self, other: AxisField) -> AxisField:
        """Unit ``i`` of a map whose inputs are two aligned maps sees both fields.

        Paths that meet in an addition or concatenation have the same grid, hence the same
        jump; the union then runs from the lower start to the higher end. Were the jumps
        to differ (no network here does that), the larger one is kept, which is exact for
        unit 0 and an approximation beyond.
        """
        start = min(self.start, other.start)
        end = max(self.start + self.size, other.start + other.size)
        return AxisField(size=int(end - start), jump=max(self.jump, other.jump), start=start)

    def interval(self, index: int) -> tuple[int, int]:
        """First and last input pixel seen by unit ``index`` (inclusive; may lie outside the image)."""
        first = self.start + index * self.jump
        return math.floor(first), math.floor(first) + self.size - 1


@dataclass(frozen=True)
class ReceptiveField:
    """A unit's field along both axes, and the longest chain of weight layers behind it.

    ``is_global`` marks units that depend on every position of a feature map (after
    global pooling or flattening): their field is then the span of all positions. A field
    is unknown (``height is None``) after an operation the tracer cannot interpret; it is
    reported as such rather than guessed.
    """

    height: AxisField | None
    width: AxisField | None
    is_global: bool = False
    weight_depth: int = 0
    """Weight layers (convolutions, linear layers) on the longest path from the input:
    the depth papers quote (VGG-16: 16, ResNet-50: 50, GoogLeNet: 22)."""
    uniform: bool = True
    """Unit ``i`` sees pixels ``start + i * jump`` onwards, exactly, for every ``i``. False
    after a transposed convolution (FCN's and U-Net's upsampling), whose output units see
    fields in steps of ``stride`` units: there ``box`` is within a jump of the truth, and
    ``size`` is the largest unit's."""

    @classmethod
    def of_input(cls) -> ReceptiveField:
        pixel = AxisField(size=1, jump=Fraction(1), start=Fraction(0))
        return cls(height=pixel, width=pixel)

    @property
    def is_known(self) -> bool:
        return self.height is not None and self.width is not None

    @property
    def size(self) -> int | tuple[int, int] | None:
        """Field size in pixels: one number when square, (height, width) otherwise."""
        return _square_or_pair(self, lambda axis: axis.size)

    @property
    def jump(self) -> int | float | tuple[int | float, int | float] | None:
        return _square_or_pair(self, lambda axis: _number(axis.jump))

    @property
    def start(self) -> int | float | tuple[int | float, int | float] | None:
        return _square_or_pair(self, lambda axis: _number(axis.start))

    @property
    def largest_size(self) -> int:
        return max(self.height.size, self.width.size) if self.is_known else 0

    def box(self, row: int, column: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Input rows and columns (first, last; inclusive) seen by output unit (row, column)."""
        assert self.height is not None and self.width is not None, "unknown receptive field"
        return self.height.interval(row), self.width.interval(column)

    def map_axes(self, rule: Callable[[AxisField, int], AxisField], lengths: Sequence[int]) -> ReceptiveField:
        if not self.is_known:
            return self
        return replace(self, height=rule(self.height, lengths[0]), width=rule(self.width, lengths[1]))

    def made_global(self, spatial_shape: Sequence[int]) -> ReceptiveField:
        if self.is_global:
            return self
        return replace(self.map_axes(AxisField.spanning, spatial_shape), is_global=True)

    def deeper(self, weight_layers: int = 1) -> ReceptiveField:
        return replace(self, weight_depth=self.weight_depth + weight_layers)

    def unknown(self) -> ReceptiveField:
        return replace(self, height=None, width=None)


def _number(value: Fraction) -> int | float:
    return value.numerator if value.denominator == 1 else round(float(value), 4)


def _square_or_pair(field: ReceptiveField, read: Callable[[AxisField], Any]) -> Any:
    if not field.is_known:
        return None
    height, width = read(field.height), read(field.width)
    return height if height == width else (height, width)


def merge(fields: Sequence[ReceptiveField]) -> ReceptiveField:
    """The field of a unit computed from aligned units of several maps: the union."""
    merged = fields[0]
    for field in fields[1:]:
        depth = max(merged.weight_depth, field.weight_depth)
        is_global = merged.is_global or field.is_global
        uniform = merged.uniform and field.uniform
        if merged.is_known and field.is_known:
            merged = ReceptiveField(merged.height.union(field.height), merged.width.union(field.width), is_global, depth,
                                    uniform)
        else:
            merged = ReceptiveField(None, None, is_global, depth, uniform)
    return merged


# --------------------------------------------------------------------------- window geometry


@dataclass(frozen=True)
class Window:
    """A sliding window's geometry along (height, width): kernel, stride, padding, dilation."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)

    @classmethod
    def from_arguments(cls, kernel: Any, stride: Any, padding: Any, dilation: Any = 1) -> Window:
        kernel_pair = _pair(kernel)
        dilation_pair = _pair(dilation)
        stride_pair = kernel_pair if stride is None or stride == () or stride == [] else _pair(stride)
        if isinstance(padding, str):
            # "same" pads d(k-1) in all, the odd pixel going after (torch's convention).
            total = [d * (k - 1) for k, d in zip(kernel_pair, dilation_pair)]
            padding_pair = (total[0] // 2, total[1] // 2) if padding == "same" else (0, 0)
        else:
            padding_pair = _pair(padding)
        return cls(kernel_pair, stride_pair, padding_pair, dilation_pair)

    @classmethod
    def of_module(cls, module: nn.Module) -> Window | None:
        """The window of a convolution or pooling module, read from its attributes.

        Duck-typed, so that a hand-written convolution (``convzoo.ops.Conv2d``) is traced
        by what it is, whatever operations it computes with.
        """
        if any(True for _ in module.children()) or getattr(module, "transposed", False):
            return None
        if not all(hasattr(module, name) for name in ("kernel_size", "stride", "padding")):
            return None
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() != 4:
            return None
        if len(_as_tuple(module.kernel_size)) > 2:
            return None
        return cls.from_arguments(module.kernel_size, module.stride, module.padding, getattr(module, "dilation", 1))

    def apply(self, field: ReceptiveField) -> ReceptiveField:
        return field.map_axes(
            lambda axis, i: axis.through_kernel(self.kernel[i], self.stride[i], self.padding[i], self.dilation[i]),
            (0, 1),
        )


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list, torch.Size)) else (value,)


def _pair(value: Any) -> tuple[int, int]:
    values = _as_tuple(value)
    return (int(values[0]), int(values[-1]))


# --------------------------------------------------------------------------- propagation rules


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def field_of(tensor: Any) -> ReceptiveField | None:
    """The field a traced tensor carries (None for untraced tensors such as weights)."""
    return getattr(tensor, _TAG, None) if isinstance(tensor, torch.Tensor) else None


def _bind(names: Sequence[str], args: Sequence[Any], kwargs: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV_TRANSPOSE = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVG_POOL = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
_LP_POOL = ("input", "norm_type", "kernel_size", "stride", "ceil_mode")
_INTERPOLATE = ("input", "size", "scale_factor", "mode")


def _window_rules() -> dict[Callable[..., Any], Callable[[tuple, dict], Window]]:
    """Functional convolutions and poolings, with how to read their window from the call."""

    def conv(args: tuple, kwargs: dict) -> Window:
        call = _bind(_CONV, args, kwargs, {"stride": 1, "padding": 0, "dilation": 1})
        return Window.from_arguments(tuple(call["weight"].shape[-2:]), call["stride"], call["padding"], call["dilation"])

    def max_pool(args: tuple, kwargs: dict) -> Window:
        call = _bind(_MAX_POOL, args, kwargs, {"stride": None, "padding": 0, "dilation": 1})
        return Window.from_arguments(call["kernel_size"], call["stride"], call["padding"], call["dilation"])

    def avg_pool(args: tuple, kwargs: dict) -> Window:
        call = _bind(_AVG_POOL, args, kwargs, {"stride": None, "padding": 0})
        return Window.from_arguments(call["kernel_size"], call["stride"], call["padding"])

    def lp_pool(args: tuple, kwargs: dict) -> Window:
        call = _bind(_LP_POOL, args, kwargs, {"stride": None})
        return Window.from_arguments(call["kernel_size"], call["stride"], 0)

    return {
        torch.conv2d: conv,
        F.max_pool2d: max_pool,
        F.max_pool2d_with_indices: max_pool,
        torch.max_pool2d: max_pool,
        F.avg_pool2d: avg_pool,
        F.lp_pool2d: lp_pool,
    }


_WINDOW_RULES = _window_rules()
_WEIGHT_LAYERS = {torch.conv2d, torch.conv_transpose2d, F.linear}
_ADAPTIVE_POOLS = {F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.adaptive_max_pool2d_with_indices, torch._C._nn.adaptive_avg_pool2d}
_PADS = {F.pad, torch.constant_pad_nd}


def _spatial_slices(index: Any, dims: int, spatial_shape: tuple[int, int]) -> list[tuple[int, int]] | None:
    """(first, step) along height and width of ``tensor[index]``, when the index slices them.

    Cropping and subsampling by slices are how BagNet aligns its unpadded shortcuts
    (``identity[:, :, :h, :w]``) and how the CIFAR ResNets' option-A shortcut subsamples
    (``x[:, :, ::2, ::2]``). None when the index does anything else to those axes.
    """
    entries = list(index) if isinstance(index, tuple) else [index]
    if any(entry is None for entry in entries) or sum(entry is Ellipsis for entry in entries) > 1:
        return None
    if Ellipsis in entries:
        at = entries.index(Ellipsis)
        entries[at:at + 1] = [slice(None)] * (dims - len(entries) + 1)
    entries += [slice(None)] * (dims - len(entries))
    slices = []
    for entry, length in zip(entries[dims - 2:dims], spatial_shape):
        if not isinstance(entry, slice):
            return None
        first, _, step = entry.indices(length)
        slices.append((first, step))
    return slices


def _spatial(tensor: torch.Tensor) -> tuple[int, int] | None:
    return tuple(tensor.shape[-2:]) if tensor.dim() >= 3 else None  # type: ignore[return-value]


def _output_field(func: Callable[..., Any], args: tuple, kwargs: dict,
                  inputs: list[tuple[torch.Tensor, ReceptiveField]], output: torch.Tensor) -> ReceptiveField | None:
    """The field of one output of ``func``, from its traced inputs; None when it cannot tell."""
    field = _geometric_field(func, args, kwargs, inputs, output)
    if field is None:
        return None
    depth = max(f.weight_depth for _, f in inputs) + (1 if func in _WEIGHT_LAYERS else 0)
    return replace(field, weight_depth=depth)


def _geometric_field(func: Callable[..., Any], args: tuple, kwargs: dict,
                     inputs: list[tuple[torch.Tensor, ReceptiveField]], output: torch.Tensor) -> ReceptiveField | None:
    source, field = inputs[0]
    in_shape, out_shape = _spatial(source), _spatial(output)
    if not field.is_global:
        if func in _WINDOW_RULES:
            return _WINDOW_RULES[func](args, kwargs).apply(field)
        if func is torch.conv_transpose2d:
            call = _bind(_CONV_TRANSPOSE, args, kwargs, {"stride": 1, "padding": 0, "dilation": 1})
            window = Window.from_arguments(tuple(call["weight"].shape[-2:]), call["stride"], call["padding"],
                                           call["dilation"])
            return replace(field.map_axes(lambda axis, i: axis.through_transposed_kernel(
                window.kernel[i], window.stride[i], window.padding[i], window.dilation[i]), (0, 1)), uniform=False)
        if func in _ADAPTIVE_POOLS and in_shape and out_shape:
            if out_shape == in_shape:
                return field
            if out_shape == (1, 1):
                return field.made_global(in_shape)
            return field.map_axes(lambda axis, i: axis.through_adaptive_pool(in_shape[i], out_shape[i]), (0, 1))
        nearest = func is F.interpolate and _bind(_INTERPOLATE, args, kwargs, {"mode": "nearest"})["mode"] == "nearest"
        if nearest and in_shape and out_shape:
            return field.map_axes(lambda axis, i: axis.through_nearest_resize(in_shape[i], out_shape[i]), (0, 1))
        if func in _PADS:
            pad = _as_tuple(_bind(("input", "pad"), args, kwargs, {})["pad"])
            # F.pad lists (left, right, top, bottom, ...): width first.
            before = (pad[2] if len(pad) >= 4 else 0, pad[0])
            return field.map_axes(lambda axis, i: axis.padded(before[i]), (0, 1))
        if func is torch.Tensor.__getitem__ and in_shape:
            spatial_slices = _spatial_slices(args[1], source.dim(), in_shape)
            if spatial_slices is not None:
                return field.map_axes(lambda axis, i: axis.sliced(*spatial_slices[i]), (0, 1))

    # Any other operation: if it keeps the spatial grid it acts on each position (ReLU,
    # BatchNorm, addition, concatenation along channels, LRN, dropout, ...), and a unit
    # sees the union of what its inputs see there.
    local = [tensor for tensor, f in inputs if not f.is_global]
    if out_shape is not None and all(_spatial(tensor) == out_shape for tensor in local):
        return merge([f for _, f in inputs])
    # Collapsing the grid (flatten, view, mean over H and W, a linear layer after them):
    # every unit may depend on every position.
    if out_shape is None or out_shape == (1, 1):
        return merge([f.made_global(_spatial(t)) if _spatial(t) else replace(f, is_global=True) for t, f in inputs])
    return None


# --------------------------------------------------------------------------- the tracer


@dataclass
class ModuleCall:
    """One call of one module during a trace, in the order the calls finished."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...] | None
    output_shapes: list[tuple[int, ...]]
    output_bytes: int
    field: ReceptiveField | None


class FieldTracer(TorchFunctionMode):
    """Carries a receptive field on every tensor of a forward pass, and records each module call.

    Use as a context manager around one forward pass of ``model``, whose input was
    returned by :meth:`trace_input`::

        with FieldTracer(model) as tracer:
            model(tracer.trace_input(x))
        tracer.calls, tracer.final_field, tracer.weight_depth

    Functional operations are interpreted as they run (``torch.overrides`` function
    mode); convolution and pooling *modules* are interpreted by their attributes
    instead, whatever their forward computes with. Nothing in the model is changed.
    """

    def __init__(self, model: nn.Module, names_from: nn.Module | None = None) -> None:
        """``names_from``: the model that holds ``model``, when a part of it is traced
        (``image_network``), so that calls carry the names of that whole model."""
        super().__init__()
        self.model = model
        self.calls: list[ModuleCall] = []
        self.unsupported: set[str] = set()
        self.running: list[tuple[str, nn.Module, tuple[int, ...] | None]] = []
        """(name, module, input shape) of the modules whose forward has started and not
        finished: after an error, the last one is where it happened."""
        self.final_field: ReceptiveField | None = None
        self.output_field: ReceptiveField | None = None
        self._names = _module_names(names_from or model)
        self._opaque = 0
        self._window_inputs: list[ReceptiveField | None] = []
        self._handles: list[Any] = []

    # -- entering and leaving

    def __enter__(self) -> FieldTracer:
        for module in self.model.modules():
            self._handles.append(module.register_forward_pre_hook(self._before_module))
            self._handles.append(module.register_forward_hook(self._after_module))
        return super().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        super().__exit__(*exc_info)

    def trace_input(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mark ``tensor`` as the network's input: each pixel sees itself."""
        self._tag(tensor, ReceptiveField.of_input())
        return tensor

    @property
    def weight_depth(self) -> int:
        return self.output_field.weight_depth if self.output_field else 0

    # -- functional operations

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        if self._opaque == 0:
            inputs = [(t, f) for t in _tensors((args, kwargs)) if (f := field_of(t)) is not None]
            if inputs:
                for tensor in _tensors(output):
                    field = _output_field(func, args, kwargs, inputs, tensor)
                    if field is None:
                        self.unsupported.add(getattr(func, "__name__", repr(func)))
                        field = merge([f for _, f in inputs]).unknown()
                    self._tag(tensor, field)
        return output

    def _tag(self, tensor: torch.Tensor, field: ReceptiveField) -> None:
        setattr(tensor, _TAG, field)
        if field.is_known and not field.is_global and (
            self.final_field is None or field.largest_size >= self.final_field.largest_size
        ):
            self.final_field = field

    # -- modules

    def _before_module(self, module: nn.Module, args: tuple) -> None:
        first_input = next(_tensors(args), None)
        input_shape = tuple(first_input.shape) if first_input is not None else None
        self.running.append((self._names.get(id(module), type(module).__name__), module, input_shape))
        if Window.of_module(module) is not None:
            self._opaque += 1
            self._window_inputs.append(next((field_of(t) for t in _tensors(args)), None))

    def _after_module(self, module: nn.Module, args: tuple, output: Any) -> None:
        window = Window.of_module(module)
        outputs = list(_tensors(output))
        if window is not None:
            self._opaque -= 1
            field = self._window_inputs.pop()
            if field is not None:
                if not field.is_global:
                    field = window.apply(field)
                if isinstance(getattr(module, "weight", None), torch.Tensor):
                    field = field.deeper()
                for tensor in outputs:
                    self._tag(tensor, field)
        field = field_of(outputs[0]) if outputs else None
        name, _, input_shape = self.running.pop()
        self.calls.append(ModuleCall(
            name=name,
            module=module,
            input_shape=input_shape,
            output_shapes=[tuple(t.shape) for t in outputs],
            output_bytes=sum(t.numel() * t.element_size() for t in outputs),
            field=field,
        ))
        if module is self.model:
            self.output_field = field


def image_network(model: nn.Module) -> nn.Module:
    """The part of ``model`` that maps an image batch to feature maps, which a trace follows:
    the model itself, or a detector's backbone. Past it, a detector's RPN and RoI heads
    work on proposals and boxes, where a pixel's receptive field has no meaning."""
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    return model.backbone if isinstance(model, GeneralizedRCNN) else model


def _module_names(model: nn.Module) -> dict[int, str]:
    """Qualified name of each module (the first, when one module is registered twice)."""
    names: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), name)
    return names


@contextmanager
def model_left_unchanged(model: nn.Module) -> Iterator[None]:
    """Run forward passes for inspection without leaving a trace on ``model``.

    Restores every module's train/eval flag (not just the top one: a model may have
    frozen BatchNorm layers in eval inside a training model), the buffers a training-mode
    pass updates (BatchNorm running statistics), and the CPU random number generator that
    dropout draws from. Never moves the model or changes its dtype.
    """
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers() if buffer.device.type != "meta"]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for module, training in modes:
            module.training = training
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


@dataclass
class FieldTrace:
    """The result of :func:`receptive_fields`."""

    calls: list[ModuleCall]
    final_field: ReceptiveField | None
    """The widest field of any feature map that still has a spatial layout (before global pooling)."""
    output_field: ReceptiveField | None
    unsupported: set[str]

    def field(self, module_name: str) -> ReceptiveField | None:
        """The field of a module's output (its last call, if it is called several times)."""
        found = [call.field for call in self.calls if call.name == module_name]
        if not found:
            raise KeyError(f"no module named {module_name!r} ran in the forward pass")
        return found[-1]


def receptive_fields(model: nn.Module, input_size: Sequence[int], *, batch_size: int = 1,
                     train_mode: bool = False) -> FieldTrace:
    """Trace one forward pass of ``model`` on a zero input of ``(C, H, W)``.

    Runs where the model is (a model built under ``torch.device("meta")`` costs nothing)
    and leaves it as it was. A detector is traced through its backbone (``image_network``).
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    with model_left_unchanged(model), torch.no_grad():
        model.train(train_mode)
        network = image_network(model)
        with FieldTracer(network, names_from=model) as tracer:
            network(tracer.trace_input(torch.zeros(batch_size, *input_size, device=device, dtype=dtype)))
    return FieldTrace(tracer.calls, tracer.final_field, tracer.output_field, tracer.unsupported)


# --------------------------------------------------------------------------- the measurement


class _StopForward(Exception):
    pass


class _GradientProbeMode(TorchFunctionMode):
    """Makes a forward pass pass gradient to every pixel a unit depends on.

    A max-pooling passes gradient to one element of each window only, and a clipping
    activation (ReLU6) passes none once saturated: both would hide pixels that belong to
    the field. Average pooling over the same windows and the identity see the same pixels
    and pass gradient to all of them. (ReLU needs no change: with positive weights and a
    positive input every pre-activation is positive.)
    """

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in (F.max_pool2d, torch.max_pool2d):
            call = _bind(_MAX_POOL, args, kwargs, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                                                   "return_indices": False})
            if _pair(call["dilation"]) != (1, 1) or call["return_indices"]:
                raise NotImplementedError("gradient probe: dilated max-pooling or pooling indices")
            return F.avg_pool2d(call["input"], call["kernel_size"], call["stride"] or None, call["padding"],
                                call["ceil_mode"], True)
        if func is F.adaptive_max_pool2d:
            return F.adaptive_avg_pool2d(args[0], args[1] if len(args) > 1 else kwargs["output_size"])
        if func in (F.hardtanh, F.hardtanh_, F.relu6):
            return args[0]
        return func(*args, **kwargs)


def _positive_value(name: str, tensor: torch.Tensor) -> float:
    """Weights 1/fan-in (activations stay near the input's scale), biases and means 0,
    scales and variances 1: BatchNorm becomes the identity, and no sum can cancel."""
    if tensor.dim() >= 2:
        return 1.0 / (tensor.numel() // tensor.shape[0])
    if "bias" in name or "mean" in name or "num_batches" in name:
        return 0.0
    return 1.0


def _materialise_positively(module: nn.Module, dtype: torch.dtype) -> None:
    for store in (module._parameters, module._buffers):
        for name, tensor in list(store.items()):
            if tensor is not None and tensor.device.type == "meta":
                filled = torch.full(tensor.shape, _positive_value(name, tensor), dtype=dtype) \
                    if tensor.is_floating_point() else torch.zeros(tensor.shape, dtype=tensor.dtype)
                # No gradient for the weights: only the input's is measured.
                store[name] = nn.Parameter(filled, requires_grad=False) if isinstance(tensor, nn.Parameter) else filled


def measure_receptive_field(
    model: nn.Module,
    input_size: Sequence[int],
    layer: str,
    position: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Measure, by gradient, which input pixels one unit of ``layer``'s output depends on.

    Works on a positive-weight copy of ``model`` (the model itself is untouched): every
    weight 1/fan-in, biases 0, BatchNorm at identity, in eval mode, in float64, on an
    input of ones. The unit at ``position`` (default: the centre) of the output of module
    ``layer`` is summed over channels and back-propagated; the input pixels with a
    non-zero gradient are its measured field. Parameters are only materialised for the
    modules that run before ``layer``, so VGG's 100 M classifier weights cost nothing.

    Returns ((first row, last row), (first column, last column)) of that set, within the
    image, and the position used.
    """
    # A copy whose parameters are on the meta device: free to make whatever the model's size.
    memo = {id(t): (nn.Parameter(t.detach().to("meta"), t.requires_grad) if isinstance(t, nn.Parameter) else t.to("meta"))
            for t in list(model.parameters()) + list(model.buffers())}
    probe = copy.deepcopy(model, memo).eval()
    modules = dict(probe.named_modules())
    if layer not in modules:
        raise KeyError(f"no module named {layer!r}")
    captured: dict[str, torch.Tensor] = {}

    def capture(_module: nn.Module, _args: tuple, output: Any) -> None:
        captured["output"] = next(_tensors(output))
        raise _StopForward

    handles = [module.register_forward_pre_hook(lambda module, _args: _materialise_positively(module, dtype))
               for module in probe.modules()]
    handles.append(modules[layer].register_forward_hook(capture))
    image = torch.ones(1, *input_size, dtype=dtype, requires_grad=True)
    try:
        with _GradientProbeMode():
            image_network(probe)(image)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    output = captured["output"]
    if position is None:
        position = (output.shape[-2] // 2, output.shape[-1] // 2)
    output[0, ..., position[0], position[1]].sum().backward()
    seen = image.grad[0].abs().sum(0) != 0
    rows = torch.nonzero(seen.any(1)).flatten()
    columns = torch.nonzero(seen.any(0)).flatten()
    return (int(rows[0]), int(rows[-1])), (int(columns[0]), int(columns[-1])), position
