"""hw/field_reader.py, hw/pipe.py and the spreading network (hw/common.py) against
plain-Python models, with random idle cycles on every input and back-pressure on
every output, protocol monitors on every port, and a reset in mid-stream."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Cat, Const, Module, ResetInserter, Signal
from amaranth.sim import Simulator

from hw.common import popcount, spread, spread_controls
from hw.field_reader import FieldReader
from hw.pipe import Queue, SkidBuffer, flag_fifo
from hw.simulation import Feeder, StreamMonitor, receive_stream, simulate


def model_windows(bits: list[int], descs, *, word_bits: int, max_bits: int) -> list[int]:
    """The window each descriptor gets: ``max_bits`` stream bits from the beat's first
    bit, masked to its ``delta`` bits."""
    align_command = max(64, word_bits)
    position, out = 0, []
    for delta, superblock, command in descs:
        window = sum(bit << i for i, bit in enumerate(bits[position:position + delta]))
        out.append(window)
        position += delta
        if command:
            position = -(-position // align_command) * align_command
        elif superblock:
            position = -(-position // 64) * 64
    return out, position


def make_case(rng: random.Random, *, word_bits: int, max_bits: int, beats: int):
    descs = []
    for _ in range(beats):
        r = rng.random()
        delta = rng.choice([0, max_bits, rng.randrange(max_bits + 1)])
        descs.append((delta, r < 0.15, r > 0.93))
    stream_bits = [rng.getrandbits(1) for _ in range(beats * max_bits + 4 * max(64, word_bits))]
    windows, end = model_windows(stream_bits, descs, word_bits=word_bits, max_bits=max_bits)
    words_needed = -(-end // word_bits) + 2
    words = [sum(stream_bits[w * word_bits + i] << i for i in range(word_bits)) for w in range(words_needed)]
    return descs, words, windows


def run_reader(word_bits, max_bits, descs, words, expected, *, idle=0.3, backpressure=0.3, seed=0):
    dut = FieldReader(word_bits=word_bits, max_bits=max_bits)
    rng = random.Random(seed)
    desc_feeder = Feeder(dut.desc, rng=rng, idle=idle)
    word_feeder = Feeder(dut.words, rng=rng, idle=idle)
    for delta, superblock, command in descs:
        desc_feeder.queue.append(delta | superblock << len(dut.desc.payload.delta) |
                                 command << (len(dut.desc.payload.delta) + 1))
    word_feeder.queue.extend(words)
    got = []

    async def bench(ctx):
        await receive_stream(ctx, dut.out, len(expected), rng=rng, backpressure=backpressure, out=got)

    monitors = [StreamMonitor(name, getattr(dut, name)) for name in ("desc", "words", "out")]
    simulate(dut, [bench], monitors=monitors, background=[desc_feeder, word_feeder])
    masked = [window & ((1 << delta) - 1) for window, (delta, _, _) in zip(got, descs)]
    assert masked == expected


@pytest.mark.parametrize("word_bits,max_bits", [(32, 12), (64, 48), (64, 128), (128, 90), (256, 256), (256, 40)])
def test_windows_match_the_model(word_bits, max_bits):
    rng = random.Random(word_bits * 1000 + max_bits)
    descs, words, expected = make_case(rng, word_bits=word_bits, max_bits=max_bits, beats=120)
    run_reader(word_bits, max_bits, descs, words, expected, seed=word_bits + max_bits)


def test_one_beat_per_clock_when_words_keep_up():
    """Inputs always valid, output always ready, beats of at most one word: a beat
    per clock after the first ones."""
    word_bits, max_bits = 64, 64
    rng = random.Random(3)
    descs = [(rng.randrange(40, 65), False, False) for _ in range(200)]
    bits = [rng.getrandbits(1) for _ in range(200 * 64 + 256)]
    expected, end = model_windows(bits, descs, word_bits=word_bits, max_bits=max_bits)
    words = [sum(bits[w * 64 + i] << i for i in range(64)) for w in range(-(-end // 64) + 2)]
    dut = FieldReader(word_bits=word_bits, max_bits=max_bits)
    rng2 = random.Random(0)
    desc_feeder, word_feeder = Feeder(dut.desc, rng=rng2), Feeder(dut.words, rng=rng2)
    desc_feeder.queue.extend(d for d, _, _ in descs)
    word_feeder.queue.extend(words)
    cycles = []

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        got, cycle = [], 0
        while len(got) < len(descs):
            _, _, valid, payload = await ctx.tick().sample(dut.out.valid, dut.out.payload)
            cycle += 1
            if valid:
                got.append(payload)
                cycles.append(cycle)
        assert [w & ((1 << d) - 1) for w, (d, _, _) in zip(got, descs)] == expected

    simulate(dut, [bench], background=[desc_feeder, word_feeder])
    assert cycles[-1] - cycles[0] == len(descs) - 1


def test_reset_in_mid_stream_then_exact():
    """A reset with beats in flight; afterwards a fresh stream reads exactly."""
    word_bits, max_bits = 64, 48
    dut = FieldReader(word_bits=word_bits, max_bits=max_bits)
    reset = Signal()
    rng = random.Random(9)
    first = make_case(rng, word_bits=word_bits, max_bits=max_bits, beats=40)
    second = make_case(rng, word_bits=word_bits, max_bits=max_bits, beats=40)
    desc_feeder, word_feeder = Feeder(dut.desc, rng=rng, idle=0.2), Feeder(dut.words, rng=rng, idle=0.2)
    width = len(dut.desc.payload.delta)

    def load(case):
        descs, words, _ = case
        desc_feeder.queue.extend(d | s << width | c << (width + 1) for d, s, c in descs)
        word_feeder.queue.extend(words)

    async def bench(ctx):
        load(first)
        await receive_stream(ctx, dut.out, 7, rng=rng, backpressure=0.3)
        desc_feeder.clear(ctx)
        word_feeder.clear(ctx)
        ctx.set(reset, 1)
        await ctx.tick()
        ctx.set(reset, 0)
        load(second)
        got = await receive_stream(ctx, dut.out, len(second[2]), rng=rng, backpressure=0.3)
        assert [w & ((1 << d) - 1) for w, (d, _, _) in zip(got, second[0])] == second[2]

    monitors = [StreamMonitor(name, getattr(dut, name), reset=reset) for name in ("desc", "words", "out")]
    simulate(ResetInserter(reset)(dut), [bench], monitors=monitors, background=[desc_feeder, word_feeder])


@pytest.mark.parametrize("block", ["skid", "queue2", "queue4"])
def test_skid_buffer_and_queue_pass_everything_in_order(block):
    dut = {"skid": lambda: SkidBuffer(16), "queue2": lambda: Queue(16, 2), "queue4": lambda: Queue(16, 4)}[block]()
    rng = random.Random(block)
    payloads = [rng.getrandbits(16) for _ in range(300)]
    feeder = Feeder(dut.i, rng=rng, idle=0.4)
    feeder.queue.extend(payloads)

    async def bench(ctx):
        got = await receive_stream(ctx, dut.o, len(payloads), rng=rng, backpressure=0.4)
        assert got == payloads

    simulate(dut, [bench], monitors=[StreamMonitor("i", dut.i), StreamMonitor("o", dut.o)], background=[feeder])


@pytest.mark.parametrize("block", ["skid", "queue2"])
def test_full_rate_through_registered_handshakes(block):
    """Always valid in, always ready out: one transfer per clock."""
    dut = SkidBuffer(8) if block == "skid" else Queue(8, 2)
    feeder = Feeder(dut.i, rng=random.Random(0))
    feeder.queue.extend(range(100))
    cycles = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        cycle = 0
        while len(cycles) < 100:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            cycle += 1
            if valid:
                cycles.append(cycle)

    simulate(dut, [bench], background=[feeder])
    assert cycles[-1] - cycles[0] == 99


def test_queue_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth=3 must be a power of two"):
        Queue(8, 3)


# ---- the spreading network and the join's registers (hw/common.py, hw/pipe.py) ------------
def _spread_module(lanes: int):
    m = Module()
    mask = Signal(lanes)
    present = [mask[j] for j in range(lanes)]
    width = max(1, (lanes - 1).bit_length()) + 1
    shifts = [Signal(width, name=f"shift{j}") for j in range(lanes)]
    m.d.comb += [shifts[j].eq(popcount(~mask[:j]) if j else 0) for j in range(lanes)]
    controls = spread_controls(present, shifts)
    stages = len(controls)
    # packed element k is the number k; after all stages lane j holds the number of its element
    upper, lower = range(stages // 2, stages), range(stages // 2)  # split as the decoder does (L2 between)
    lanes_out = spread(spread([Const(k, 8) for k in range(lanes)], controls, upper), controls, lower)
    out = Signal(8 * lanes)
    m.d.comb += out.eq(Cat(*lanes_out))
    return m, mask, out


@pytest.mark.parametrize("lanes,masks", [(2, None), (4, None), (8, None), (16, 3000)])
def test_spreading_network_puts_every_packed_element_on_its_lane(lanes, masks):
    """Every mask (16 lanes: 3,000 random ones and the edge cases): the k-th marked lane
    receives packed element k, in both halves of the stages as the decoder splits them."""
    m, mask, out = _spread_module(lanes)
    rng = random.Random(lanes)
    cases = list(range(1 << lanes)) if masks is None else (
        [0, (1 << lanes) - 1, 1, 1 << (lanes - 1), 0x5555 & ((1 << lanes) - 1), 0xAAAA & ((1 << lanes) - 1)]
        + [rng.getrandbits(lanes) for _ in range(masks)])
    failures = []

    async def bench(ctx):
        for value in cases:
            ctx.set(mask, value)
            got = ctx.get(out)
            marked = [j for j in range(lanes) if value >> j & 1]
            for k, j in enumerate(marked):
                if (got >> (8 * j)) & 0xFF != k:
                    failures.append((value, j, k))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert failures == []


def test_flag_fifo_follows_a_model():
    """flag_fifo keeps its flags in order with the head in a register, under random
    pushes and pops (a push and a pop in one clock too)."""
    m = Module()
    push, value, pop = Signal(), Signal(), Signal()
    held, head = flag_fifo(m, "flags", depth=8, push=push, value=value, pop=pop)
    rng = random.Random(5)

    async def bench(ctx):
        flags = []
        for _ in range(2000):
            assert ctx.get(held) == (len(flags) > 0)
            if flags:
                assert ctx.get(head) == flags[0]
            do_push = len(flags) < 8 and rng.random() < 0.5
            do_pop = len(flags) > 0 and rng.random() < 0.5
            bit = rng.getrandbits(1)
            ctx.set(push, do_push)
            ctx.set(value, bit)
            ctx.set(pop, do_pop)
            await ctx.tick()
            if do_pop:
                flags.pop(0)
            if do_push:
                flags.append(bit)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
