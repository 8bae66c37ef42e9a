"""Definitions shared by the Cassandra encoder and decoder RTL.

The format's own parameters come from :class:`golden.format.params.FormatParams` (one
definition for golden/, hw/ and sim/); this module adds only what is about the
hardware: the BF16 field layout, the command layout, and the checks of the
hardware parameters (lanes, memory word width).
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth.hdl import Cat, Const, Mux
from amaranth.lib import data

from golden.format.params import (
    BF16_BITS,
    BF16_EXPONENT_BITS,
    BF16_MANTISSA_BITS,
    STREAM_ALIGN_BITS,
    FormatParams,
)

__all__ = [
    "prefix_tree",
    "MAX_LANES",
    "BF16_LAYOUT",
    "WORD_BITS_CHOICES",
    "COMMAND_GROUP_BITS",
    "check_hardware_params",
    "parameter_checks",
    "popcount",
    "bit_window",
    "stream_fifo_depth",
]

#: One BF16 value, least significant field first (mantissa 7, exponent 8, sign 1).
BF16_LAYOUT = data.StructLayout({
    "mantissa": BF16_MANTISSA_BITS,
    "exponent": BF16_EXPONENT_BITS,
    "sign": 1,
})
assert BF16_LAYOUT.size == BF16_BITS

#: Memory word widths a stream port may have. Every one divides or is a multiple of
#: the 64-bit superblock alignment, so the bit numbering of docs/FORMAT.md section 4
#: is the same on any of them.
WORD_BITS_CHOICES = (32, 64, 128, 256)

#: Width of the group count in a command: up to 2**32 - 1 groups per command.
COMMAND_GROUP_BITS = 32


#: Most BF16 values per beat the decoder and encoder are built and tested for.
MAX_LANES = 16


def check_hardware_params(params: FormatParams, *, lanes: int, word_bits: int) -> None:
    """Raise ``ValueError`` naming the value when the hardware parameters are unusable.

    ``lanes`` (BF16 values per beat) must be a power of two that divides the group
    size, so a beat never spans two groups; ``word_bits`` must be one of
    :data:`WORD_BITS_CHOICES`.
    """
    if not isinstance(params, FormatParams):
        raise TypeError(f"params must be a golden.format.params.FormatParams, not {type(params).__name__}")
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes={lanes!r} must be a power of two >= 1")
    if lanes > MAX_LANES:
        raise ValueError(f"lanes={lanes} is not supported: the decoder and encoder are built and tested "
                         f"for 1, 2, 4, 8 and {MAX_LANES} lanes")
    if lanes > params.group_size:
        raise ValueError(
            f"lanes={lanes} is larger than group_size={params.group_size}: "
            "a beat must not span two groups"
        )
    if word_bits not in WORD_BITS_CHOICES:
        raise ValueError(f"word_bits={word_bits!r} is not one of {WORD_BITS_CHOICES}")
    assert STREAM_ALIGN_BITS == 64


@contextmanager
def parameter_checks(component):
    """Run a component's parameter checks; on an error, keep Amaranth from adding an
    "elaboratable created but never used" warning to the error itself."""
    try:
        yield
    except (TypeError, ValueError):
        component._MustUse__silence = True
        raise


def popcount(bits):
    """Number of ones among ``bits`` (1-bit values), as a balanced adder tree."""
    level = list(bits)
    if not level:
        return Const(0, 1)
    while len(level) > 1:
        paired = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def bit_window(value, offset, width: int):
    """``value.bit_select(offset, width)`` as a shifter that resolves the offset's
    most significant bit first.

    Each stage keeps only the bits later stages can still reach (``width`` plus the
    rest of the offset's range), so the cost is about ``width x offset bits +
    len(value)`` two-input multiplexers; Yosys maps a plain ``bit_select`` least
    significant bit first, where every stage is nearly ``len(value)`` wide.
    Bits past the end of ``value`` read as zero.
    """
    offset_bits = len(offset)
    bits = Cat(value, Const(0, max(0, width + (1 << offset_bits) - 1 - len(value))))
    for stage in reversed(range(offset_bits)):
        step = 1 << stage
        keep = width + step - 1  # bits the stages below this one can still select from
        bits = Mux(offset[stage], bits[step:step + keep], bits[:keep])
    return bits[:width]


def stream_fifo_depth(params: FormatParams, word_bits: int) -> int:
    """Words per stream FIFO between an encoder and a decoder wired back to back.

    The decoder needs a group's bitmap bits before it can use that group's other
    fields, and the encoder emits a bitmap word only once it is full (after
    ``word_bits / G`` groups); without buffering, the other streams' words fill the
    decoder's readers first and both ends wait on each other. This depth holds two
    such spans of the busiest stream (16 bits per value over ``max(G, word_bits)``
    values), plus slack, rounded up to a power of two.
    """
    words = 2 * 16 * max(params.group_size, word_bits) // word_bits + 4
    return 1 << (words - 1).bit_length()


def prefix_tree(values: list, *, first_span: int = 1, end_span: int | None = None) -> list:
    """Inclusive prefix sums of ``values`` by a Sklansky tree: ``ceil(log2(n))`` levels of
    adders (each output is the sum of at most that many partial sums in sequence).

    ``first_span`` and ``end_span`` (powers of two) run only the levels whose span lies in
    ``[first_span, end_span)``, so the tree can be cut by registers: the levels below
    ``s`` and then, on their outputs, the levels from ``s`` give the whole tree."""
    sums = list(values)
    n, span = len(sums), first_span
    while span < n and (end_span is None or span < end_span):
        sums = [sums[i] + sums[(i // span) * span - 1] if (i // span) % 2 else sums[i] for i in range(n)]
        span *= 2
    return sums


def spread_controls(present: list, shifts: list) -> list:
    """Controls of the network that spreads packed elements to their lanes (see
    :func:`spread`): ``controls[t][q]`` says that lane ``q`` takes, in stage ``t``, the
    element ``2**t`` lanes below it.

    ``present[j]`` marks the lanes that receive an element (the k-th marked lane takes
    packed element k) and ``shifts[j]`` is, for a marked lane, the number of unmarked lanes
    below it (how far its element moves). The network is the exact reverse of a
    compaction that moves each element down by its shift in stages of 1, 2, 4, ... lanes
    (lowest bit first), which never puts two elements on one lane. Lane ``q`` after
    stage ``t`` of that compaction holds the element of lane ``j`` when ``j - q`` is the
    element's shift modulo ``2**t``, so each control is an OR over at most ``2**t`` lanes.
    """
    lanes = len(present)
    stages = (lanes - 1).bit_length()
    controls = []
    for t in range(stages):
        row = [Const(0, 1)] * (1 << t)  # the lowest 2**t lanes have nothing below to take
        for q in range(1 << t, lanes):
            row.append(Cat(*(present[j] & shifts[j][t] & (shifts[j][:t] == j - q if t else 1)
                             for j in range(q, min(lanes, q + (1 << t))))).any())
        controls.append(row)
    return controls


def spread(elements: list, controls: list, stages) -> list:
    """Stages ``stages`` (highest first) of the spreading network of :func:`spread_controls`:
    each a 2:1 multiplexer per lane between its own element and the one ``2**t`` lanes
    below. Elements start packed (element k on lane k); after every stage from the
    highest down to 0 each marked lane holds its element (unmarked lanes: don't care)."""
    current = list(elements)
    for t in sorted(stages, reverse=True):
        step = 1 << t
        current = [Mux(controls[t][q], current[q - step], current[q]) if q >= step else current[q]
                   for q in range(len(current))]
    return current
