"""Amaranth-simulator helpers shared by the RTL tests: stream drivers with random
idle cycles, sinks with random back-pressure, and a protocol monitor.

Stream rules checked (amaranth.lib.stream): once ``valid`` is high it stays high,
with the payload unchanged, until a clock edge at which ``ready`` is high.
"""

from __future__ import annotations

import inspect
import random
from collections import deque

from amaranth.hdl import Const, Value
from amaranth.sim import Simulator

__all__ = ["Feeder", "StreamMonitor", "send_stream", "receive_stream", "simulate"]


def _value(payload):
    return Value.cast(payload)


async def send_stream(ctx, stream, payloads, *, rng: random.Random, idle: float = 0.0, record=None):
    """Send ``payloads`` (ints) on ``stream``, idling before each with probability ``idle``.

    ``record`` (a list), when given, gets the index of each payload once it is taken.
    """
    payload = _value(stream.payload)
    for index, word in enumerate(payloads):
        while idle and rng.random() < idle:
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(payload, word)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)
        if record is not None:
            record.append(index)


async def receive_stream(ctx, stream, count: int, *, rng: random.Random, backpressure: float = 0.0,
                         out: list | None = None, timeout_cycles: int = 1_000_000):
    """Receive ``count`` payloads (ints) from ``stream``; ``ready`` is low with
    probability ``backpressure`` on each cycle. Returns the list (also ``out``)."""
    payload = _value(stream.payload)
    out = [] if out is None else out
    cycles = 0
    while len(out) < count:
        ready = not (backpressure and rng.random() < backpressure)
        ctx.set(stream.ready, ready)
        _, _, valid, value = await ctx.tick().sample(stream.valid, payload)
        if ready and valid:
            out.append(value)
        cycles += 1
        if cycles > timeout_cycles:
            raise AssertionError(f"timeout: {len(out)} of {count} payloads after {cycles} cycles")
    ctx.set(stream.ready, 0)
    return out


class Feeder:
    """Background testbench offering the payloads queued in ``queue`` on ``stream``,
    idle before each with probability ``idle``. ``taken`` counts transfers;
    :meth:`clear` drops everything (used around a reset)."""

    def __init__(self, stream, *, rng: random.Random, idle: float = 0.0):
        self.stream = stream
        self.rng = rng
        self.idle = idle
        self.queue: deque[int] = deque()
        self.offering: int | None = None
        self.taken = 0

    def clear(self, ctx):
        self.queue.clear()
        self.offering = None
        ctx.set(self.stream.valid, 0)

    async def __call__(self, ctx):
        payload = _value(self.stream.payload)
        while True:
            if self.offering is None and self.queue and not (self.idle and self.rng.random() < self.idle):
                self.offering = self.queue.popleft()
                ctx.set(payload, self.offering)
                ctx.set(self.stream.valid, 1)
            _, reset, valid, ready = await ctx.tick().sample(self.stream.valid, self.stream.ready)
            if valid and ready and not reset and self.offering is not None:
                self.taken += 1
                self.offering = None
                ctx.set(self.stream.valid, 0)


class StreamMonitor:
    """Background testbench asserting the valid/ready rules on one stream.

    Violations are collected in ``errors`` (checked by :func:`simulate`); ``transfers``
    counts the payloads that moved and ``cycles`` the clock edges seen.
    """

    def __init__(self, name: str, stream, *, reset=None):
        self.name = name
        self.stream = stream
        self.reset = reset  # a test-driven synchronous reset (ResetInserter), if any
        self.errors: list[str] = []
        self.transfers = 0
        self.cycles = 0
        self.first_valid_cycle: int | None = None
        self.first_transfer_cycle: int | None = None

    async def __call__(self, ctx):
        payload = _value(self.stream.payload)
        pending = None  # payload offered last cycle and not taken
        test_reset = self.reset if self.reset is not None else Const(0)
        async for _, reset, valid, ready, value, reset_by_test in ctx.tick().sample(
                self.stream.valid, self.stream.ready, payload, test_reset):
            self.cycles += 1
            if reset or reset_by_test:
                pending = None
                continue
            if pending is not None:
                if not valid:
                    self.errors.append(f"{self.name}: valid dropped before the transfer at cycle {self.cycles}")
                elif value != pending:
                    self.errors.append(
                        f"{self.name}: payload changed from {pending:#x} to {value:#x} before the transfer"
                        f" at cycle {self.cycles}")
            if valid and self.first_valid_cycle is None:
                self.first_valid_cycle = self.cycles
            if valid and ready:
                self.transfers += 1
                if self.first_transfer_cycle is None:
                    self.first_transfer_cycle = self.cycles
            pending = value if valid and not ready else None


def _as_testbench(obj):
    """An async function, or an object whose ``__call__`` is one (bound)."""
    return obj if inspect.iscoroutinefunction(obj) else obj.__call__


def simulate(dut, testbenches, *, monitors=(), background=(), vcd: str | None = None):
    """Run ``testbenches`` (async functions of ``ctx``) on ``dut`` with a 1 MHz clock;
    ``monitors`` run in the background and must record no violation; ``background``
    are further background testbenches (feeders)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for monitor in monitors:
        sim.add_testbench(_as_testbench(monitor), background=True)
    for testbench in background:
        sim.add_testbench(_as_testbench(testbench), background=True)
    for testbench in testbenches:
        sim.add_testbench(_as_testbench(testbench))
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    errors = [error for monitor in monitors for error in monitor.errors]
    assert not errors, "stream protocol violations:\n" + "\n".join(errors[:20])
