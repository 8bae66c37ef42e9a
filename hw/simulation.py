"""Amaranth-simulator helpers for the Cassandra RTL: stream drivers with random idle
cycles, sinks with random back-pressure, a protocol monitor, and run harnesses for
the decoder and the encoder.

The tests (``tests/hw/``) and the benchmarks (``bench/codec_speed.py``) drive the RTL
through this module; it works on plain integers (stream words, beats, 16-bit
patterns) and knows nothing of the golden codec, so the caller computes the inputs
and the expected outputs (``sim/jobs.py`` does that with the golden model).

Stream rules checked (``amaranth.lib.stream``): once ``valid`` is high it stays high,
with the payload unchanged, until a clock edge at which ``ready`` is high.
:class:`StreamRules` holds those rules once; :class:`StreamMonitor` applies them in
the Amaranth simulator and ``sim/tb.py`` in cocotb.
"""

from __future__ import annotations

import inspect
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from amaranth.hdl import ClockDomain, Const, Elaboratable, Module, ResetInserter, Signal, Value
from amaranth.sim import Simulator

from golden.format.params import BF16_BITS, SPECULATION_STREAMS, STREAM_NAMES, FormatParams

from .decoder import Decoder, decoder_command
from .encoder import Encoder

__all__ = [
    "StreamRules", "StreamMonitor", "Feeder", "send_stream", "receive_stream", "simulate", "WithReset",
    "lane_beats", "beat_values", "codebook_word",
    "DecoderCommand", "DecodeRun", "run_decoder", "EncodeRun", "run_encoder",
]

_VALUE_MASK = (1 << BF16_BITS) - 1


# ---------------------------------------------------------------------------
# beats and packed ports
# ---------------------------------------------------------------------------
def lane_beats(values: Sequence[int], lanes: int) -> list[int]:
    """16-bit patterns as beats of ``lanes`` values (lane ``i`` in bits ``16i..16i+15``)."""
    if len(values) % lanes:
        raise ValueError(f"{len(values)} values do not fill beats of {lanes} lanes")
    return [sum((values[i + lane] & _VALUE_MASK) << (BF16_BITS * lane) for lane in range(lanes))
            for i in range(0, len(values), lanes)]


def beat_values(beat: int, lanes: int) -> list[int]:
    """The ``lanes`` 16-bit patterns of one beat, lane 0 first (inverse of :func:`lane_beats`)."""
    return [(beat >> (BF16_BITS * lane)) & _VALUE_MASK for lane in range(lanes)]


def codebook_word(codebook: Sequence[int]) -> int:
    """A unary codebook (exponents by rank) as one integer, rank ``r`` in bits ``8r..8r+7``
    (the encoder's ``codebook`` port, and the decoder's in Verilog)."""
    return sum(int(exponent) << (8 * rank) for rank, exponent in enumerate(codebook))


# ---------------------------------------------------------------------------
# stream drivers, sinks and the protocol monitor
# ---------------------------------------------------------------------------
def _value(payload):
    return Value.cast(payload)


class StreamRules:
    """The valid/ready rules of one stream, fed one clock edge at a time.

    Call :meth:`edge` with what was seen at each rising edge. Violations go to
    ``errors``; ``transfers`` counts payloads that moved, ``cycles`` the edges seen,
    ``first_valid_cycle`` / ``first_transfer_cycle`` number edges from 1. Edges in
    reset clear the state and are exempt.
    """

    def __init__(self, name: str):
        self.name = name
        self.errors: list[str] = []
        self.transfers = 0
        self.cycles = 0
        self.first_valid_cycle: int | None = None
        self.first_transfer_cycle: int | None = None
        self._pending: int | None = None  # payload offered at the last edge and not taken

    def edge(self, *, valid: bool, ready: bool, payload: int | None, in_reset: bool = False) -> None:
        """One rising edge: ``payload`` need only be given while ``valid``."""
        self.cycles += 1
        if in_reset:
            self._pending = None
            return
        if self._pending is not None:
            if not valid:
                self.errors.append(f"{self.name}: valid dropped before the transfer (cycle {self.cycles})")
            elif payload != self._pending:
                self.errors.append(f"{self.name}: payload changed from {self._pending:#x} to {payload:#x} "
                                   f"before the transfer (cycle {self.cycles})")
        if valid and self.first_valid_cycle is None:
            self.first_valid_cycle = self.cycles
        if valid and ready:
            self.transfers += 1
            if self.first_transfer_cycle is None:
                self.first_transfer_cycle = self.cycles
        self._pending = payload if valid and not ready else None


class StreamMonitor(StreamRules):
    """Background testbench applying :class:`StreamRules` to one stream in the
    Amaranth simulator (:func:`simulate` fails on any violation).

    ``reset``: a test-driven synchronous reset (e.g. of a ``ResetInserter``), if any.
    """

    def __init__(self, name: str, stream, *, reset=None):
        super().__init__(name)
        self.stream = stream
        self.reset = reset

    async def __call__(self, ctx):
        payload = _value(self.stream.payload)
        test_reset = self.reset if self.reset is not None else Const(0)
        async for _, reset, valid, ready, value, reset_by_test in ctx.tick().sample(
                self.stream.valid, self.stream.ready, payload, test_reset):
            self.edge(valid=bool(valid), ready=bool(ready), payload=value,
                      in_reset=bool(reset or reset_by_test))


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


def _as_testbench(obj):
    """An async function, or an object whose ``__call__`` is one (bound)."""
    return obj if inspect.iscoroutinefunction(obj) else obj.__call__


def simulate(dut, testbenches, *, monitors=(), background=(), vcd: str | None = None,
             timing: dict | None = None):
    """Run ``testbenches`` (async functions of ``ctx``) on ``dut`` with a 1 MHz clock;
    ``monitors`` run in the background and must record no violation; ``background``
    are further background testbenches (feeders). ``timing`` (a dict), when given,
    gets ``elaborate_s`` (building the simulator) and ``run_s`` (running it)."""
    start = time.perf_counter()
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for monitor in monitors:
        sim.add_testbench(_as_testbench(monitor), background=True)
    for testbench in background:
        sim.add_testbench(_as_testbench(testbench), background=True)
    for testbench in testbenches:
        sim.add_testbench(_as_testbench(testbench))
    elaborated = time.perf_counter()
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    if timing is not None:
        timing.update(elaborate_s=elaborated - start, run_s=time.perf_counter() - elaborated)
    errors = [error for monitor in monitors for error in monitor.errors]
    assert not errors, "stream protocol violations:\n" + "\n".join(errors[:20])


class WithReset(Elaboratable):
    """``dut`` in an explicit ``sync`` domain whose reset the testbench drives (``rst``)."""

    def __init__(self, dut):
        self.dut = dut
        self.rst = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += cd.rst.eq(self.rst)
        m.submodules.dut = self.dut
        return m


# ---------------------------------------------------------------------------
# the decoder harness
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DecoderCommand:
    """One decoder command: ``groups`` groups in draft (``full=False``) or full mode,
    and the words each input stream carries for it at the run's word width (the
    speculation streams always; the verification streams in full mode only)."""

    groups: int
    full: bool
    words: Mapping[str, Sequence[int]]


@dataclass
class DecodeRun:
    """What one phase of :func:`run_decoder` put out, and when (cycles count clock
    edges from the start of the simulation)."""

    beats: list[int]
    values: list[int]
    lasts: list[int]
    first_out_cycle: int | None = None
    last_out_cycle: int | None = None
    consumed: dict = field(default_factory=dict)
    offered: dict = field(default_factory=dict)
    #: clock edges from the first input word taken to the first output beat valid
    latency: int | None = None
    #: clock edges simulated in the whole run (set on the first phase)
    cycles: int | None = None
    #: the simulator's wall time: ``elaborate_s``, ``run_s`` (set on the first phase)
    timing: dict = field(default_factory=dict)

    @property
    def beats_per_cycle(self) -> float:
        """Output beats per clock between the first and the last beat."""
        span = self.last_out_cycle - self.first_out_cycle
        return (len(self.beats) - 1) / span if span else 1.0


def _command(job, word_bits: int) -> DecoderCommand:
    return job if isinstance(job, DecoderCommand) else job.command(word_bits)


def run_decoder(params: FormatParams, phases: list[list], *, lanes: int, word_bits: int = 64,
                idle: float = 0.0, backpressure: float = 0.0, seed: int = 0, codebook=None,
                reset_after_beats: int | None = None, unary_window_bits: int | None = None,
                vcd: str | None = None, draft_rounding: str = "truncate") -> list[DecodeRun]:
    """Decode each phase's commands back to back on ``hw.decoder.Decoder``; return one
    :class:`DecodeRun` per phase.

    A command is a :class:`DecoderCommand`, or any object whose ``command(word_bits)``
    returns one (``sim.jobs.DecodeJob`` builds it from a golden encoding). Every input
    idles with probability ``idle`` and the output is back-pressured with probability
    ``backpressure``; a :class:`StreamMonitor` checks every port. Between phases the
    clock domain is reset. With ``reset_after_beats``, every phase but the last is
    cut short by that reset once that many beats were received (reset in
    mid-stream); the last phase must then decode completely, and nothing more may
    come out after it. ``draft_rounding`` is the decoder's parameter.
    """
    dut = Decoder(params, lanes=lanes, word_bits=word_bits, unary_window_bits=unary_window_bits,
                  draft_rounding=draft_rounding)
    phases = [[_command(job, word_bits) for job in jobs] for jobs in phases]
    rng = random.Random(seed)
    ports = ("cmd", *STREAM_NAMES)
    feeders = {name: Feeder(getattr(dut, name), rng=rng, idle=idle) for name in ports}
    reset = Signal()  # a synchronous reset of the decoder's whole clock domain
    monitors = [StreamMonitor(name, getattr(dut, name), reset=reset) for name in (*ports, "out")]
    runs: list[DecodeRun] = []
    payload = Value.cast(dut.out.payload)
    total = {"cycles": 0}

    async def main(ctx):
        if codebook is not None:
            for rank, exponent in enumerate(codebook):
                ctx.set(dut.codebook[rank], int(exponent))
        cycle = 0
        for index, commands in enumerate(phases):
            final = index == len(phases) - 1
            words = {name: [] for name in ports}
            for command in commands:
                words["cmd"].append(decoder_command(command.groups, command.full))
                for name in STREAM_NAMES:
                    if name in SPECULATION_STREAMS or command.full:
                        words[name] += list(command.words[name])
            for name in ports:
                feeders[name].taken = 0
                feeders[name].queue.extend(words[name])
            beats = sum(command.groups * params.group_size for command in commands) // lanes
            target = beats if final or reset_after_beats is None else min(reset_after_beats, beats)
            run = DecodeRun(beats=[], values=[], lasts=[])
            runs.append(run)
            idle_cycles = 0
            while len(run.beats) < target:
                ready = not (backpressure and rng.random() < backpressure)
                ctx.set(dut.out.ready, ready)
                _, _, valid, beat = await ctx.tick().sample(dut.out.valid, payload)
                cycle += 1
                if ready and valid:
                    run.beats.append(beat)
                    run.values += beat_values(beat, lanes)
                    run.lasts.append(beat >> (BF16_BITS * lanes) & 1)
                    run.first_out_cycle = cycle if run.first_out_cycle is None else run.first_out_cycle
                    run.last_out_cycle = cycle
                    idle_cycles = 0
                else:
                    idle_cycles += 1
                    assert idle_cycles < 2000, (
                        f"decoder stalled: {len(run.beats)} of {target} beats, words taken "
                        f"{ {name: (feeders[name].taken, len(words[name])) for name in ports} }")
            ctx.set(dut.out.ready, 0)
            if not final:
                # reset in mid-stream (or between phases): drop what is left
                for feeder in feeders.values():
                    feeder.clear(ctx)
                ctx.set(reset, 1)
                await ctx.tick()
                cycle += 1
                ctx.set(reset, 0)
                continue
            ctx.set(dut.out.ready, 1)
            for _ in range(8):
                _, _, valid = await ctx.tick().sample(dut.out.valid)
                cycle += 1
                assert not valid, "the decoder produced more beats than the commands asked for"
            for name in ports:
                run.offered[name] = len(words[name])
                run.consumed[name] = feeders[name].taken
        total["cycles"] = cycle

    timing: dict = {}
    simulate(ResetInserter(reset)(dut), [main], monitors=monitors, background=list(feeders.values()), vcd=vcd,
             timing=timing)
    by_name = {monitor.name: monitor for monitor in monitors}
    first_in = min(by_name[name].first_transfer_cycle for name in STREAM_NAMES
                   if by_name[name].first_transfer_cycle is not None)
    runs[0].latency = by_name["out"].first_valid_cycle - first_in
    runs[0].cycles = total["cycles"]
    runs[0].timing = timing
    return runs


# ---------------------------------------------------------------------------
# the encoder harness
# ---------------------------------------------------------------------------
@dataclass
class EncodeRun:
    """What :func:`run_encoder` got: the words per output stream, and when (cycles
    count clock edges from 0): ``input_cycles`` of every input beat taken,
    ``output_cycles`` of every output word as ``(cycle, stream)``."""

    words: dict[str, list[int]]
    input_cycles: list[int]
    output_cycles: list[tuple[int, str]]
    cycles: int
    timing: dict = field(default_factory=dict)


def run_encoder(params: FormatParams, commands: list[list[int]], *, word_counts: Mapping[str, int], keep: int,
                lanes: int, word_bits: int, codebook=None, idle: float = 0.0, backpressure: float = 0.0,
                seed: int = 0) -> EncodeRun:
    """Encode ``commands`` (each a list of 16-bit patterns, a whole number of groups)
    back to back on ``hw.encoder.Encoder``, keeping ``keep`` values per group.

    Receives ``word_counts[name]`` words on every output stream (the caller knows
    them from the golden encoder), then checks that no output offers anything more.
    Inputs idle with probability ``idle``, outputs are back-pressured with
    probability ``backpressure``; a :class:`StreamMonitor` checks every port and the
    number of input beats taken.
    """
    dut = Encoder(params, lanes=lanes, word_bits=word_bits)
    top = WithReset(dut)
    group = params.group_size
    cmd_payloads = [len(bits) // group for bits in commands]
    beat_payloads = [beat for bits in commands for beat in lane_beats(bits, lanes)]
    rng = random.Random(seed)
    got = {name: [] for name in STREAM_NAMES}
    monitors = [StreamMonitor(name, getattr(dut, name)) for name in ("cmd", "values", *STREAM_NAMES)]
    done = {"receivers": 0}
    log = {"in": [], "out": [], "cycles": 0}

    async def setup_and_cmd(ctx):
        ctx.set(dut.keep, keep)
        if codebook is not None:
            ctx.set(Value.cast(dut.codebook), codebook_word(codebook))
        await send_stream(ctx, dut.cmd, cmd_payloads, rng=random.Random(rng.random()), idle=idle)

    async def values(ctx):
        await ctx.tick()  # keep/codebook set
        await send_stream(ctx, dut.values, beat_payloads, rng=random.Random(rng.random()), idle=idle)

    def receiver(name):
        sub_rng = random.Random(rng.random())

        async def bench(ctx):
            await receive_stream(ctx, getattr(dut, name), word_counts[name], rng=sub_rng,
                                 backpressure=backpressure, out=got[name])
            done["receivers"] += 1
            # nothing more may come out of any stream
            while done["receivers"] < len(STREAM_NAMES):
                await ctx.tick()
            for name2 in STREAM_NAMES:
                ctx.set(getattr(dut, name2).ready, 1)
            for _ in range(3 * group // lanes + 8):
                _, _, *valids = await ctx.tick().sample(*(getattr(dut, n).valid for n in STREAM_NAMES))
                assert not any(valids), f"extra output words after the expected ones ({name})"
        return bench

    async def tracer(ctx):
        cycle = 0
        streams = [dut.values] + [getattr(dut, n) for n in STREAM_NAMES]
        async for _, _, *vr in ctx.tick().sample(*(s for p in streams for s in (p.valid, p.ready))):
            if vr[0] and vr[1]:
                log["in"].append(cycle)
            for k in range(len(STREAM_NAMES)):
                if vr[2 + 2 * k] and vr[3 + 2 * k]:
                    log["out"].append((cycle, STREAM_NAMES[k]))
            cycle += 1
            log["cycles"] = cycle

    timing: dict = {}
    simulate(top, [setup_and_cmd, values] + [receiver(name) for name in STREAM_NAMES], monitors=monitors,
             background=[tracer], timing=timing)
    taken = monitors[1].transfers
    assert taken == len(beat_payloads), f"the encoder took {taken} beats, {len(beat_payloads)} were offered"
    return EncodeRun(words=got, input_cycles=log["in"], output_cycles=log["out"], cycles=log["cycles"],
                     timing=timing)
