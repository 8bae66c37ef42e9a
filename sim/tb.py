"""cocotb testbench parts: a clock-and-reset ``TB`` base, stream sources with idle
inserters, sinks with back-pressure inserters, and a protocol monitor.

Timing discipline (the same on Verilator and Icarus): every part acts after the
clock's falling edge. It sets its inputs for the coming rising edge, waits for
``ReadOnly`` (all inputs of all parts set, combinational logic settled), and then
reads ``valid`` and ``ready``: when both are 1 a transfer happens at the next
rising edge, and that is when the source moves to its next item and the sink
keeps the payload.
"""

from __future__ import annotations

import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hw.simulation import StreamRules

__all__ = ["TB", "StreamSource", "StreamSink", "StreamMonitor"]


def _int(handle) -> int:
    return int(handle.value)


class _Port:
    def __init__(self, dut, name: str):
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")


class StreamSource:
    """Drives ``NAME__valid``/``NAME__payload`` from ``queue``; before each item it
    idles (valid low) for a cycle with probability ``idle``. ``sent`` counts transfers."""

    def __init__(self, tb: "TB", name: str, *, idle: float = 0.0):
        self.tb = tb
        self.port = _Port(tb.dut, name)
        self.idle = idle
        self.queue: deque[int] = deque()
        self.current: int | None = None
        self.sent = 0
        self.port.valid.value = 0

    def clear(self):
        self.queue.clear()
        self.current = None

    async def run(self):
        rng = self.tb.rng
        while True:
            await FallingEdge(self.tb.clk)
            if self.tb.in_reset:
                self.current = None
            elif self.current is None and self.queue and not (self.idle and rng.random() < self.idle):
                self.current = self.queue.popleft()
            self.port.valid.value = int(self.current is not None)
            if self.current is not None:
                self.port.payload.value = self.current
            await ReadOnly()
            if self.current is not None and _int(self.port.ready) and not self.tb.in_reset:
                self.current = None
                self.sent += 1


class StreamSink:
    """Drives ``NAME__ready`` (low with probability ``backpressure`` each cycle) and
    appends every transferred payload to ``items``."""

    def __init__(self, tb: "TB", name: str, *, backpressure: float = 0.0):
        self.tb = tb
        self.port = _Port(tb.dut, name)
        self.backpressure = backpressure
        self.items: list[int] = []
        self.port.ready.value = 0

    async def run(self):
        rng = self.tb.rng
        while True:
            await FallingEdge(self.tb.clk)
            ready = not (self.backpressure and rng.random() < self.backpressure)
            self.port.ready.value = int(ready)
            await ReadOnly()
            if ready and _int(self.port.valid) and not self.tb.in_reset:
                self.items.append(_int(self.port.payload))


class StreamMonitor(StreamRules):
    """Applies the stream rules (``hw.simulation.StreamRules``, the same rules the
    Amaranth-simulator tests check) to one port every cycle: once ``valid`` is high it
    stays high with the same payload until a cycle where ``ready`` is high. Cycles
    in reset are exempt. Violations go to ``errors``."""

    def __init__(self, tb: "TB", name: str):
        super().__init__(name)
        self.tb = tb
        self.port = _Port(tb.dut, name)

    async def run(self):
        while True:
            await FallingEdge(self.tb.clk)
            await ReadOnly()
            valid, ready = _int(self.port.valid), _int(self.port.ready)
            # the payload only means something while valid (4-state simulators show X otherwise)
            payload = _int(self.port.payload) if valid and not self.tb.in_reset else None
            self.edge(valid=bool(valid), ready=bool(ready), payload=payload, in_reset=self.tb.in_reset)


class TB:
    """Clock, synchronous reset and the parts around one DUT."""

    def __init__(self, dut, *, seed: int = 0, clock_ns: int = 10):
        self.dut = dut
        self.clk = dut.clk
        self.rng = random.Random(seed)
        self.in_reset = False
        self.monitors: list[StreamMonitor] = []
        cocotb.start_soon(Clock(dut.clk, clock_ns, unit="ns").start())
        dut.rst.value = 0

    def start(self, *parts):
        for part in parts:
            cocotb.start_soon(part.run())
            if isinstance(part, StreamMonitor):
                self.monitors.append(part)

    async def reset(self, cycles: int = 2):
        """Hold ``rst`` high for ``cycles`` rising edges, from now (call it after a
        falling edge, e.g. after :meth:`cycles`): the parts that act in this same
        step already see ``in_reset``."""
        self.in_reset = True
        self.dut.rst.value = 1
        for _ in range(cycles):
            await FallingEdge(self.clk)
        self.dut.rst.value = 0
        await FallingEdge(self.clk)
        self.in_reset = False

    async def cycles(self, count: int):
        for _ in range(count):
            await FallingEdge(self.clk)

    async def run_until(self, done, progress, *, describe, each_cycle=None, stall_cycles: int = 5000):
        """Run clock cycles until ``done()``; fail if ``progress()`` (a count of what
        came out) stays the same for ``stall_cycles`` cycles, with ``describe()``.
        ``each_cycle`` is called after every cycle (e.g. to check outputs as they come)."""
        idle = 0
        while not done():
            before = progress()
            await self.cycles(1)
            if each_cycle is not None:
                each_cycle()
            idle = 0 if progress() != before else idle + 1
            assert idle < stall_cycles, f"stalled for {stall_cycles} cycles: {describe()}"

    def check_protocol(self):
        errors = [error for monitor in self.monitors for error in monitor.errors]
        assert not errors, "stream protocol violations:\n" + "\n".join(errors[:20])
