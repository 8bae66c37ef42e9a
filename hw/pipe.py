"""Pipeline building blocks with registered handshakes: a skid buffer and a small queue.

Both cut every combinational path through a stream: ``i.ready`` comes from a
register, and so do ``o.valid`` and ``o.payload``. The decoder puts one on every
input and on its output, and joins its internal streams only through them, so
no path runs from one stream's handshake to another's.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .common import parameter_checks

__all__ = ["SkidBuffer", "Queue", "write_at", "flag_fifo", "replicas", "REPLICA_MARK", "KEEP_REPLICAS"]

#: Signals whose name holds this are copies of one register, each driving a part of a wide
#: load (an enable across many data bits). Synthesis merges equal flip-flops unless they
#: carry ``keep``, so the FPGA flows set it on the flip-flops driving these names
#: (:data:`KEEP_REPLICAS`).
REPLICA_MARK = "__replica"

#: The Yosys command that keeps the replicas apart: run after reading the design (its
#: flip-flops are ``$dff`` cells then), before synthesis.
KEEP_REPLICAS = f"setattr -set keep 1 w:*{REPLICA_MARK}* %ci1 t:$dff %i"


def replicas(m, value, copies: int, *, name: str, domain: str = "sync") -> list:
    """``copies`` registers, each loaded with ``value`` in every clock (so each is the same
    register, one clock behind ``value``), for a wide load to be split among them: each
    copy's fan-out is a share of the load's, and placement can put each beside its share."""
    registers = [Signal(len(value), name=f"{name}{REPLICA_MARK}{n}", attrs={"keep": 1}) for n in range(copies)]
    m.d[domain] += [register.eq(value) for register in registers]
    return registers


def write_at(m, targets: list, index, value, *, domain: str = "sync") -> None:
    """``targets[index] <= value`` as one write enable per target (a dynamic index on the
    left of an assignment makes a ``case`` per target that Verilator reports as incomplete)."""
    for n, target in enumerate(targets):
        with m.If(index == n):
            m.d[domain] += target.eq(value)


def flag_fifo(m, name: str, *, depth: int, push, value, pop):
    """A first-in first-out queue of one-bit flags whose head is a register: entries move
    down by one on ``pop``. Returns ``(valid, head)``, both registers. ``push`` must not
    come when ``depth`` flags are held, nor ``pop`` when none is."""
    flags = [Signal(name=f"{name}{n}", reset_less=True) for n in range(depth)]  # data: no reset
    held = [Signal(name=f"{name}_held{n}") for n in range(depth)]  # thermometer: n < count
    for n in range(depth):
        above_held = held[n + 1] if n + 1 < depth else 0
        above = flags[n + 1] if n + 1 < depth else 0
        with m.If(pop):
            m.d.sync += [held[n].eq(above_held | (push & held[n])),
                         flags[n].eq(Mux(above_held, above, value))]
        with m.Else():
            m.d.sync += held[n].eq(held[n] | (push & (held[n - 1] if n else 1)))
            with m.If(~held[n]):
                m.d.sync += flags[n].eq(value)
    return held[0], flags[0]


class SkidBuffer(wiring.Component):
    """Two-register skid buffer: ``i.ready`` and ``o.valid``/``o.payload`` are register
    outputs, and it passes one transfer per clock.

    Parameters
    ----------
    shape : shape-castable
        The payload.

    Ports
    -----
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape):
        self.shape = shape
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        # payload registers hold data only while their valid flag says so: no reset (a
        # reset net to every data flip-flop is a long, wide net on an FPGA)
        skid = Signal(self.shape, reset_less=True)
        payload = Signal(self.shape, reset_less=True)
        m.d.comb += self.o.payload.eq(payload)
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        taken = self.i.valid & ~skid_valid
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Elif(self.i.valid):
                m.d.sync += [payload.eq(self.i.payload), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += self.o.valid.eq(0)
        with m.Elif(taken):
            m.d.sync += skid_valid.eq(1)
        # the skid captures the input in every clock it is empty, so its wide enable is a
        # register (skid_valid), not a function of o.ready: that enable's net to every bit
        # was a 16-lane ULX3S build's longest path
        with m.If(~skid_valid):
            m.d.sync += skid.eq(self.i.payload)
        return m


class Queue(wiring.Component):
    """First-in first-out queue of ``depth`` registers with registered flags:
    ``i.ready`` (not full) and ``o.valid`` (not empty) are register outputs;
    ``o.payload`` is the head entry (one multiplexer level after the registers).

    Parameters
    ----------
    shape : shape-castable
        The payload.
    depth : int
        Entries, a power of two >= 2.

    Attributes
    ----------
    spare : Signal
        Registered: at least two entries are free, so a producer that sees it may push
        in the next clock without looking at ``i.ready`` (a push in this clock leaves one).
    """

    def __init__(self, shape, depth: int = 2):
        with parameter_checks(self):
            if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2 or depth & (depth - 1):
                raise ValueError(f"depth={depth!r} must be a power of two >= 2")
        self.shape = shape
        self.depth = depth
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})
        self.spare = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        storage = [Signal(self.shape, name=f"entry{n}", reset_less=True) for n in range(depth)]  # data: no reset
        entries = Array(storage)
        write = Signal(range(depth))
        read = Signal(range(depth))
        count = Signal(range(depth + 1))
        full = Signal()
        m.d.comb += [
            self.i.ready.eq(~full),
            self.o.payload.eq(entries[read]),
        ]
        push = self.i.valid & ~full
        pop = self.o.valid & self.o.ready
        with m.If(push):
            write_at(m, storage, write, self.i.payload)
            m.d.sync += write.eq(write + 1)
        with m.If(pop):
            m.d.sync += read.eq(read + 1)
        with m.If(push & ~pop):
            m.d.sync += [count.eq(count + 1), full.eq(count == depth - 1), self.o.valid.eq(1),
                         self.spare.eq(count <= depth - 3)]  # count + 1 <= depth - 2, without an adder
        with m.Elif(pop & ~push):
            m.d.sync += [count.eq(count - 1), full.eq(0), self.o.valid.eq(count != 1),
                         self.spare.eq(count <= depth - 1)]
        return m
