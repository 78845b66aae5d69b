"""Which input cells each kernel tap (or output position) of a correlation reads, one axis at a time.

The primitive in ``convzoo.ops.correlation`` lays the padded input on a grid split into
phases (``grid[q][m] = x[m*period + q - origin]``) so that every tap, or every output
position, reads a unit-stride window of one phase.  The plans here are that index
arithmetic and nothing else; they are pure Python on integers.
"""

from __future__ import annotations

from dataclasses import dataclass

Pair = tuple[int, int]


@dataclass(frozen=True)
class GridAxis:
    """How one spatial axis of the input is laid on a grid: ``grid[q][m] = x[m*period + q - origin]``."""

    period: int
    origin: int
    length: int


@dataclass(frozen=True)
class Tap:
    """One kernel tap along one axis: kernel index, input phase it reads, offset in that phase."""

    index: int
    phase: int
    offset: int


@dataclass(frozen=True)
class OutputPhase:
    """Output positions ``start, start + period, ...`` (``count`` of them) and the taps feeding them."""

    start: int
    count: int
    taps: tuple[Tap, ...]


@dataclass(frozen=True)
class TapPlan:
    """One axis evaluated by looping over kernel taps."""

    grid: GridAxis
    out_period: int
    phases: tuple[OutputPhase, ...]


@dataclass(frozen=True)
class PositionPlan:
    """One axis evaluated by looping over output positions: ``(phase, offset)`` for each."""

    grid: GridAxis
    positions: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Lattice:
    """Taps (or output positions) of one axis that read one phase at evenly spaced offsets,
    so that a single strided view holds all their windows."""

    phase: int
    start: int
    step: int
    members: tuple[int, ...]
    """Indices into the axis' list of taps (or positions)."""


def group_into_lattices(entries: list[tuple[int, int]]) -> list[Lattice]:
    """``(phase, offset)`` entries (taps or positions of one axis) grouped by phase.

    Within a phase the offsets are always evenly spaced: tap ``u`` reads phase
    ``(u*d) % s``, and ``u -> u + s/gcd(d, s)`` keeps the phase while adding ``d/gcd(d, s)``
    to the offset; positions (``i*s`` over ``d``) and input dilation work alike.
    """
    by_phase: dict[int, list[int]] = {}
    for n, (phase, _) in enumerate(entries):
        by_phase.setdefault(phase, []).append(n)
    lattices = []
    for phase, members in sorted(by_phase.items()):
        offsets = [entries[n][1] for n in members]
        step = offsets[1] - offsets[0] if len(offsets) > 1 else 1
        assert all(b - a == step for a, b in zip(offsets, offsets[1:])), offsets
        lattices.append(Lattice(phase, offsets[0], step, tuple(members)))
    return lattices


def output_size(size: int, kernel: int, stride: int, dilation: int, input_dilation: int, pad: Pair) -> int:
    """Lecture 004's ``floor((N + 2 pad - K) / stride) + 1``, with dilations and uneven padding."""
    span = (size - 1) * input_dilation + 1 + pad[0] + pad[1]
    return (span - dilation * (kernel - 1) - 1) // stride + 1


def plan_taps(size: int, kernel: int, stride: int, dilation: int, input_dilation: int, pad: Pair) -> TapPlan:
    """The taps of one axis: which phase each reads at which offset, split by output phase under input dilation."""
    out_length = output_size(size, kernel, stride, dilation, input_dilation, pad)
    if input_dilation == 1:
        # Tap u reads padded index i*s + u*d = s*(i + (u*d)//s) + (u*d)%s: phase (u*d)%s, unit stride.
        taps = tuple(Tap(u, (u * dilation) % stride, (u * dilation) // stride) for u in range(kernel))
        length = out_length + max(tap.offset for tap in taps)
        return TapPlan(GridAxis(stride, pad[0], length), 1, (OutputPhase(0, out_length, taps),))
    if stride != 1:
        raise ValueError("the tap loop takes a stride or an input dilation, not both")
    # Output t = m*e + r reads dilated index t + u*d - pad, a real sample only when that is a multiple of e.
    phases = []
    for start in range(min(input_dilation, out_length)):
        count = -(-(out_length - start) // input_dilation)
        taps = tuple(
            Tap(u, 0, (start + u * dilation - pad[0]) // input_dilation)
            for u in range(kernel)
            if (start + u * dilation - pad[0]) % input_dilation == 0
        )
        phases.append(OutputPhase(start, count, taps))
    shift = max([0] + [-tap.offset for phase in phases for tap in phase.taps])
    phases = [
        OutputPhase(p.start, p.count, tuple(Tap(t.index, 0, t.offset + shift) for t in p.taps)) for p in phases
    ]
    length = max([1] + [p.count + t.offset for p in phases for t in p.taps])
    return TapPlan(GridAxis(1, shift, length), input_dilation, tuple(phases))


def plan_positions(size: int, kernel: int, stride: int, dilation: int, pad: Pair) -> PositionPlan:
    """The output positions of one axis: which phase each reads, and where its window of taps starts."""
    out_length = output_size(size, kernel, stride, dilation, 1, pad)
    # Position i, tap u reads padded index i*s + u*d = d*((i*s)//d + u) + (i*s)%d: taps are contiguous in a phase.
    positions = tuple(((i * stride) % dilation, (i * stride) // dilation) for i in range(out_length))
    length = max(offset for _, offset in positions) + kernel
    return PositionPlan(GridAxis(dilation, pad[0], length), positions)


def real_cells(axis: GridAxis, phase: int, size: int) -> tuple[int, int, int]:
    """Grid indices [lo, hi) of a phase that hold real samples, and the first sample's index."""
    lo = max(0, -((phase - axis.origin) // axis.period))
    hi = min(axis.length, (size - 1 + axis.origin - phase) // axis.period + 1)
    return lo, max(lo, hi), lo * axis.period + phase - axis.origin


def reading_samples(grid: GridAxis, tap: Tap, count: int, size: int) -> tuple[int, int, int]:
    """Output indices [lo, hi) at which ``tap`` reads an input sample, and that first sample's index."""
    first, last, _ = real_cells(grid, tap.phase, size)
    lo, hi = max(0, first - tap.offset), min(count, last - tap.offset)
    return lo, max(lo, hi), (lo + tap.offset) * grid.period + tap.phase - grid.origin


def share_reading_samples(plans: tuple[TapPlan, TapPlan], size: Pair) -> float:
    """Of all (tap, output cell) products, the share that multiplies an input sample, not padding."""
    share = 1.0
    for plan, length in zip(plans, size):
        (phase,) = plan.phases
        cells = sum(hi - lo for lo, hi, _ in (reading_samples(plan.grid, t, phase.count, length) for t in phase.taps))
        share *= cells / (len(phase.taps) * phase.count)
    return share
