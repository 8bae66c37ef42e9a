"""The Amaranth encoder (hw/encoder.py) against the golden codec, bit for bit.

Every test drives ``cmd`` and ``values`` with hw/simulation.py's ``send_stream``,
takes the five output streams with ``receive_stream`` and checks the stream
rules on every port with ``StreamMonitor``; the words must equal the golden
``encode`` of each command's values (``magnitude_topk_mask`` selection) as
``int``s. After the expected words, every output must stay idle.
"""

from __future__ import annotations

import random

import pytest
import torch
from amaranth.hdl import Value

from golden.format.bitstream import stream_words
from golden.format.codec import bf16_from_bits, encode
from golden.format.params import STREAM_NAMES, FormatParams, keep_count
from golden.format.select import magnitude_topk_mask
from hw.encoder import Encoder
from hw.simulation import StreamMonitor, WithReset, codebook_word, lane_beats, receive_stream, send_stream, simulate
from hw.simulation import run_encoder as rtl_encode
from hw.topk import select_geometry
from tests.samples import SPECIAL_PATTERNS

# ---------------------------------------------------------------------------
# golden side
# ---------------------------------------------------------------------------


def golden_words(bits: list[int], params: FormatParams, keep: int, word_bits: int, codebook=None) -> dict:
    """Expected output words per stream for one command (the 16-bit patterns ``bits``)."""
    x = bf16_from_bits(torch.tensor(bits, dtype=torch.int64))
    mask = magnitude_topk_mask(x, keep=keep, group_size=params.group_size)
    enc = encode(x, mask, params, codebook=codebook)
    out = {name: stream_words(enc.streams[name], word_bits) for name in STREAM_NAMES}
    return out


# ---------------------------------------------------------------------------
# ref vs rtl
# ---------------------------------------------------------------------------
def run_encoder(params: FormatParams, commands: list[list[int]], *, keep: int, lanes: int, word_bits: int,
                codebook=None, idle: float = 0.0, backpressure: float = 0.0, seed: int = 0,
                trace: dict | None = None, expected_codebook=None):
    """Encode ``commands`` (each a list of 16-bit patterns, a whole number of
    groups) back to back on the RTL (hw/simulation.py's harness); assert the words
    equal the golden ones. ``trace`` gets the cycles of the input beats (``in``) and
    of the output words (``out``: (cycle, stream))."""
    expected = {name: [] for name in STREAM_NAMES}
    for bits in commands:
        words = golden_words(bits, params, keep, word_bits,
                             codebook if expected_codebook is None else expected_codebook)
        for name in STREAM_NAMES:
            expected[name] += words[name]
    run = rtl_encode(params, commands, word_counts={name: len(expected[name]) for name in STREAM_NAMES},
                     keep=keep, lanes=lanes, word_bits=word_bits, codebook=codebook, idle=idle,
                     backpressure=backpressure, seed=seed)
    for name in STREAM_NAMES:
        assert run.words[name] == expected[name], f"stream {name}: words differ from the golden encoder"
    if trace is not None:
        trace.update({"in": run.input_cycles, "out": run.output_cycles})
    return expected


def random_bits(rng: random.Random, count: int, *, special: bool = False) -> list[int]:
    """Random 16-bit patterns; ``special`` mixes in NaN, Inf, +-0, subnormals and ties."""
    out = []
    pool = SPECIAL_PATTERNS
    for _ in range(count):
        r = rng.random()
        if special and r < 0.4:
            out.append(rng.choice(pool))
        elif special and r < 0.55 and out:
            out.append(out[rng.randrange(len(out))] ^ (rng.getrandbits(1) << 15))  # tie (same magnitude)
        else:
            out.append(rng.getrandbits(16))
    return out


def weight_bits(count: int, seed: int, scale: float = 0.02) -> list[int]:
    """BF16 patterns of weight-like data (normal, std ``scale``)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(count, generator=gen) * scale).to(torch.bfloat16)
    return (x.view(torch.int16).to(torch.int64) & 0xFFFF).tolist()


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
CASES = [
    # G, m, coding, L, S, lanes, word_bits, groups per command (two commands), keep
    (16, 3, "raw", 8, 2, 4, 64, (5, 3), 10),
    (16, 0, "unary", 2, 2, 8, 32, (3, 4), 9),
    (16, 7, "unary", 4, 3, 16, 64, (4, 2), 6),
    (64, 3, "unary", 8, 2, 8, 64, (3, 2), 38),
    (64, 7, "raw", 8, 1, 16, 32, (2, 1), 20),
    (16, 5, "unary", 3, 2, 4, 128, (3, 3), 11),
    (16, 3, "raw", 8, 4, 16, 256, (5, 1), 7),
]


def _cb(coding, L, rng):
    if coding != "unary":
        return None
    # exponents of values around 1.0 first, so that some codes hit and some escape
    base = [127, 126, 128, 125, 129, 124, 0, 255, 130, 123, 131, 122, 132, 121, 133, 120]
    cb = base[:L]
    rng.shuffle(cb)
    return cb


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"G{c[0]}-m{c[1]}-{c[2]}-L{c[3]}-S{c[4]}-lanes{c[5]}-w{c[6]}")
def test_random_tensors(case):
    G, m, coding, L, S, lanes, word_bits, groups, keep = case
    rng = random.Random(hash(case) & 0xFFFF)
    params = FormatParams(group_size=G, mantissa_bits=m, exponent_coding=coding,
                          unary_max_code_length=L, superblock_groups=S)
    commands = []
    for i, n in enumerate(groups):
        if i % 2:
            commands.append(random_bits(rng, n * G, special=True))
        else:
            commands.append(weight_bits(n * G, seed=rng.getrandbits(16), scale=0.5))
    codebook = _cb(coding, L, rng)
    run_encoder(params, commands, keep=keep, lanes=lanes, word_bits=word_bits, codebook=codebook,
                idle=0.3, backpressure=0.4, seed=rng.getrandbits(32))


@pytest.mark.parametrize("keep", [0, 16])
def test_keep_none_and_all(keep):
    params = FormatParams(group_size=16, mantissa_bits=3, exponent_coding="unary",
                          unary_max_code_length=2, superblock_groups=2)
    rng = random.Random(keep)
    commands = [random_bits(rng, 3 * 16, special=True), random_bits(rng, 16)]
    expected = run_encoder(params, commands, keep=keep, lanes=4, word_bits=64, codebook=[127, 128],
                           idle=0.2, backpressure=0.3, seed=keep)
    empty = ("sign_mantissa", "exponent", "mantissa_low") if keep == 0 else ("pruned_raw",)
    for name in empty:
        assert expected[name] == []


def test_specials_ties_and_escapes_no_stall():
    """NaN, Inf, +-0, subnormals, equal magnitudes; unary L = 1 (half of the codes escape)."""
    params = FormatParams(group_size=16, mantissa_bits=2, exponent_coding="unary",
                          unary_max_code_length=1, superblock_groups=2)
    rng = random.Random(7)
    ties = [0x3F80, 0xBF80] * 8  # one magnitude
    zeros = [0x0000, 0x8000] * 8
    commands = [ties + zeros + random_bits(rng, 32, special=True), [0x7FC0, 0xFF80, 0x7F80, 0x0001] * 4]
    run_encoder(params, commands, keep=5, lanes=4, word_bits=32, codebook=[255])


def test_longest_unary_codes():
    """L = 16: kept exponents coded by the last ranks (16-bit codes) and escapes (24 bits)."""
    params = FormatParams(group_size=16, mantissa_bits=3, exponent_coding="unary",
                          unary_max_code_length=16, superblock_groups=2)
    codebook = list(range(100, 116))
    rng = random.Random(3)
    bits = [(rng.getrandbits(1) << 15) | (rng.choice([114, 115, 200, 1]) << 7) | rng.getrandbits(7)
            for _ in range(64)]
    run_encoder(params, [bits], keep=12, lanes=8, word_bits=64, codebook=codebook,
                idle=0.1, backpressure=0.5, seed=3)


def test_zero_group_command_is_a_no_op():
    params = FormatParams(group_size=16, mantissa_bits=3, exponent_coding="raw", superblock_groups=2)
    rng = random.Random(11)
    run_encoder(params, [random_bits(rng, 32), [], random_bits(rng, 48)], keep=9, lanes=8, word_bits=64,
                idle=0.2, backpressure=0.2, seed=11)


def test_reset_mid_stream():
    """A reset in the middle of a command (outputs partly taken) returns the encoder
    to idle; the next command is encoded exactly."""
    G, lanes, word_bits, keep = 16, 4, 64, 7
    params = FormatParams(group_size=G, mantissa_bits=3, exponent_coding="unary",
                          unary_max_code_length=3, superblock_groups=2)
    codebook = [126, 127, 128]
    rng = random.Random(5)
    first = weight_bits(4 * G, seed=1, scale=1.0)
    second = random_bits(rng, 3 * G, special=True)
    dut = Encoder(params, lanes=lanes, word_bits=word_bits)
    top = WithReset(dut)
    expected = golden_words(second, params, keep, word_bits, codebook)
    got = {name: [] for name in STREAM_NAMES}
    monitors = [StreamMonitor(name, getattr(dut, name)) for name in ("cmd", "values", *STREAM_NAMES)]
    state = {"phase2": False, "taken_phase1": 0}

    async def driver(ctx):
        ctx.set(dut.keep, keep)
        ctx.set(Value.cast(dut.codebook), codebook_word(codebook))
        for name in STREAM_NAMES:
            ctx.set(getattr(dut, name).ready, 1)
        await send_stream(ctx, dut.cmd, [4], rng=rng)
        # 2.5 of the first command's 4 groups; the outputs drain freely
        await send_stream(ctx, dut.values, lane_beats(first, lanes)[: 5 * G // lanes // 2], rng=rng)
        # wait (the selection latency) until the first words come out
        for _ in range(200):
            if state["taken_phase1"]:
                break
            await ctx.tick()
        # offer the next beat while reset hits, with the third group in flight
        ctx.set(dut.values.valid, 1)
        ctx.set(Value.cast(dut.values.payload), lane_beats(first, lanes)[11])
        for _ in range(4):
            await ctx.tick()
        ctx.set(top.rst, 1)
        ctx.set(dut.values.valid, 0)
        for name in STREAM_NAMES:
            ctx.set(getattr(dut, name).ready, 0)
        await ctx.tick()
        await ctx.tick()
        ctx.set(top.rst, 0)
        await ctx.tick()
        for name in STREAM_NAMES:
            assert not ctx.get(getattr(dut, name).valid), f"{name} valid after reset"
        state["phase2"] = True
        await send_stream(ctx, dut.cmd, [3], rng=rng)
        await send_stream(ctx, dut.values, lane_beats(second, lanes), rng=rng, idle=0.2)

    def receiver(name):
        async def bench(ctx):
            while not state["phase2"]:
                await ctx.tick()
            await receive_stream(ctx, getattr(dut, name), len(expected[name]), rng=random.Random(name),
                                 backpressure=0.3, out=got[name])
        return bench

    async def count_phase1(ctx):
        ports = [getattr(dut, name) for name in STREAM_NAMES]
        async for _, _, *vr in ctx.tick().sample(*(s for p in ports for s in (p.valid, p.ready))):
            if state["phase2"]:
                return
            state["taken_phase1"] += sum(bool(vr[2 * k] and vr[2 * k + 1]) for k in range(len(ports)))

    simulate(top, [driver, count_phase1] + [receiver(name) for name in STREAM_NAMES], monitors=monitors)
    assert state["taken_phase1"] > 0, "the reset did not hit a stream in the middle of its output"
    for name in STREAM_NAMES:
        assert got[name] == expected[name], f"stream {name} after reset"


@pytest.mark.parametrize("coding", ["raw", "unary"])
def test_real_model_like_weights(coding):
    """Weight-like data (N(0, 0.02) in BF16), the default 40% pruning of G = 64, L = 8."""
    G = 64
    params = FormatParams(group_size=G, mantissa_bits=3, exponent_coding=coding, superblock_groups=2)
    bits = weight_bits(5 * G, seed=42)
    codebook = None
    if coding == "unary":
        # the golden encoder's own codebook for this data, given to the hardware
        x = bf16_from_bits(torch.tensor(bits, dtype=torch.int64))
        mask = magnitude_topk_mask(x, keep=keep_count(G, 0.4), group_size=G)
        codebook = encode(x, mask, params).codebook.tolist()
    run_encoder(params, [bits], keep=keep_count(G, 0.4), lanes=8, word_bits=64, codebook=codebook,
                idle=0.1, backpressure=0.2, seed=1)


THROUGHPUT = [
    # G, coding, lanes, word_bits, groups
    (64, "unary", 4, 64, 160),  # 10240 values; every stream <= 64 bits per beat
    (64, "raw", 8, 128, 160),
    (64, "unary", 16, 256, 160),
]


@pytest.mark.parametrize("case", THROUGHPUT, ids=lambda c: f"G{c[0]}-{c[1]}-lanes{c[2]}-w{c[3]}")
def test_throughput_and_latency(case):
    """Outputs always ready, inputs always valid: one input beat per clock over
    >= 10k values (bits per beat <= word_bits on every stream); the first output word
    at most the selection latency + 12 clocks after the group's first beat."""
    G, coding, lanes, word_bits, groups = case
    params = FormatParams(group_size=G, mantissa_bits=3, exponent_coding=coding, superblock_groups=2)
    dut = Encoder(params, lanes=lanes, word_bits=word_bits)
    assert max(dut.max_bits_per_beat().values()) <= word_bits
    dut._MustUse__silence = True  # only its widths are read here; run_encoder builds its own
    # a one-group command first (its words all come out at its end: the latency),
    # then >= 10k values in a second command queued behind it
    bits = weight_bits((groups + 1) * G, seed=9)
    bits[:lanes] = [0x0000] * lanes  # pruned: the first beat alone fills a pruned_raw word
    assert len(bits) - G >= 10_000
    codebook = [122, 121, 123, 120, 124, 119, 118, 117] if coding == "unary" else None
    trace = {}
    run_encoder(params, [bits[:G], bits[G:]], keep=keep_count(G, 0.4), lanes=lanes, word_bits=word_bits,
                codebook=codebook, trace=trace)
    beats = (groups + 1) * G // lanes
    first, last = trace["in"][0], trace["in"][-1]
    assert len(trace["in"]) == beats
    assert last - first + 1 == beats, f"{beats} beats took {last - first + 1} cycles"
    n = G // lanes
    selection = select_geometry(G, lanes)["latency"]
    # the first word depending on the group comes once the group's threshold is known
    # (the latency documented in hw/encoder.py)
    cycle, _ = trace["out"][0]
    assert cycle - first <= selection + 12, f"first word {cycle - first} clocks after the first beat"
    # the one-group command's last words (all streams padded at the command end)
    first_command = golden_words(bits[:G], params, keep_count(G, 0.4), word_bits, codebook)
    count = sum(len(words) for words in first_command.values())
    # (a packer emits one word per clock, so a stream with two words left at the
    # command end takes one clock more)
    assert max(cycle for cycle, _ in trace["out"][:count]) - first <= selection + n + 12


def tie_groups(rng: random.Random, G: int) -> list[int]:
    """Groups that only the tie rule decides, G values each:

    * one magnitude, signs mixed at random (every value ties with every other);
    * only +0 and -0;
    * NaNs with different payloads (each its own magnitude), +-Inf and a run of
      equal finite values, with two of the NaN magnitudes repeated;
    * three magnitudes, each many times, in random order.
    """
    same = [(rng.getrandbits(1) << 15) | 0x3F80 for _ in range(G)]
    zeros = [rng.choice((0x0000, 0x8000)) for _ in range(G)]
    nans = [0x7FC0, 0xFFC0, 0x7F81, 0xFFFF, 0x7FC0, 0xFF81]
    mixed = [rng.choice(nans + [0x7F80, 0xFF80]) if i % 3 == 0 else rng.choice((0x4000, 0xC000))
             for i in range(G)]
    three = [(rng.getrandbits(1) << 15) | rng.choice((0x0001, 0x3F80, 0x7F80)) for _ in range(G)]
    return same + zeros + mixed + three


TIE_CASES = [
    # G, lanes, word_bits, coding, m
    (16, 4, 64, "unary", 3),
    (32, 2, 32, "raw", 5),
    (64, 8, 64, "unary", 3),
]


@pytest.mark.parametrize("case", TIE_CASES, ids=lambda c: f"G{c[0]}-lanes{c[1]}-w{c[2]}-{c[3]}")
@pytest.mark.parametrize("keep", ["0", "1", "G/2", "G-1", "G"])
def test_ties_decided_by_index(case, keep):
    """Groups of equal magnitudes (mixed signs, +-0, NaN payloads with Inf and equal
    finite values): the kept values must be the golden ones (lower index first) at
    keep 0, 1, G/2, G-1 and G, with idle cycles and back-pressure."""
    G, lanes, word_bits, coding, m = case
    keep = {"0": 0, "1": 1, "G/2": G // 2, "G-1": G - 1, "G": G}[keep]
    params = FormatParams(group_size=G, mantissa_bits=m, exponent_coding=coding,
                          unary_max_code_length=4, superblock_groups=3)
    rng = random.Random(G * 1000 + keep)
    commands = [tie_groups(rng, G), tie_groups(rng, G)[: 2 * G]]
    codebook = [127, 128, 255, 0] if coding == "unary" else None
    run_encoder(params, commands, keep=keep, lanes=lanes, word_bits=word_bits, codebook=codebook,
                idle=0.3, backpressure=0.4, seed=keep)


RANDOM_KEEP_CASES = [
    # G, lanes, word_bits, coding, L, S
    (16, 1, 32, "unary", 8, 2),
    (16, 16, 128, "raw", 8, 3),
    (32, 2, 64, "unary", 6, 2),
    (32, 8, 32, "raw", 8, 1),
    (64, 4, 64, "unary", 8, 2),
    pytest.param((64, 16, 256, "unary", 8, 4), marks=pytest.mark.long),  # 1 min: `make test-long`
]


@pytest.mark.parametrize("case", RANDOM_KEEP_CASES,
                         ids=lambda c: f"G{c[0]}-lanes{c[1]}-w{c[2]}-{c[3]}-L{c[4]}-S{c[5]}")
def test_random_keep(case):
    """Reference vs RTL over random keep values (lanes 1 to 16, G 16 to 64): random
    patterns with specials and ties, weight-like values, and runs of one magnitude."""
    G, lanes, word_bits, coding, L, S = case
    rng = random.Random(hash(case) & 0xFFFFFF)
    params = FormatParams(group_size=G, mantissa_bits=rng.choice((0, 3, 4, 7)), exponent_coding=coding,
                          unary_max_code_length=L, superblock_groups=S)
    codebook = _cb(coding, L, rng)
    for run in range(3):
        keep = rng.randint(0, G)
        commands = [random_bits(rng, 3 * G, special=True), weight_bits(2 * G, seed=rng.getrandbits(16), scale=0.1),
                    [rng.choice((0x3F80, 0xBF80, 0x0000, 0x8000)) for _ in range(G)]]
        run_encoder(params, commands, keep=keep, lanes=lanes, word_bits=word_bits, codebook=codebook,
                    idle=0.2, backpressure=0.3, seed=rng.getrandbits(32))


def test_keep_above_group_size_keeps_everything():
    """``keep`` is an input of range(G + 1) bits wide; a value above G keeps every value."""
    G, lanes, word_bits = 16, 4, 64
    params = FormatParams(group_size=G, exponent_coding="raw", superblock_groups=2)
    rng = random.Random(21)
    bits = random_bits(rng, 3 * G, special=True)
    expected = golden_words(bits, params, G, word_bits)
    run = rtl_encode(params, [bits], word_counts={name: len(expected[name]) for name in STREAM_NAMES},
                     keep=(1 << (G + 1).bit_length()) - 1, lanes=lanes, word_bits=word_bits, idle=0.2,
                     backpressure=0.2, seed=21)
    for name in STREAM_NAMES:
        assert run.words[name] == expected[name], f"stream {name}"


def test_smollm2_weight_tile(smollm2_tiles):
    """A tile of real SmolLM2-135M weights (the default GGUF as BF16), unary with the
    tile's own codebook, 40% pruned, with stalls."""
    from golden.format.codec import unary_codebook

    tile = smollm2_tiles["blk.0.ffn_gate.weight"]
    params = FormatParams(superblock_groups=4)
    keep = keep_count(params.group_size, 0.4)
    bits = (tile.contiguous().view(torch.int16).to(torch.int32) & 0xFFFF).reshape(-1).tolist()
    kept = tile[magnitude_topk_mask(tile, keep=keep, group_size=params.group_size)]
    codebook = unary_codebook(((kept.view(torch.int16).to(torch.int32) >> 7) & 0xFF), params).tolist()
    run_encoder(params, [bits], keep=keep, lanes=8, word_bits=64, codebook=codebook,
                idle=0.3, backpressure=0.3, seed=12)


@pytest.mark.parametrize("kwargs,message", [
    ({"params": FormatParams(exponent_coding="mx")}, "the encoder supports raw and unary"),
    ({"lanes": 6}, "lanes=6 must be a power of two"),
    ({"lanes": 128}, "lanes=128 is not supported"),
    ({"lanes": 16, "params": FormatParams(group_size=8)}, "lanes=16 is larger than group_size=8"),
    ({"word_bits": 16}, "word_bits=16 is not one of"),
])
def test_bad_parameters(kwargs, message):
    params = kwargs.pop("params", FormatParams())
    with pytest.raises(ValueError, match=message):
        Encoder(params, **kwargs)


def test_repeated_codebook_entry_uses_the_lowest_rank():
    """The golden codec rejects a codebook with repeats; the RTL codes a repeated
    exponent with its lowest rank, which is what the golden encoder does with the
    repeat replaced by an exponent that never occurs."""
    params = FormatParams(group_size=16, exponent_coding="unary", unary_max_code_length=4, superblock_groups=2)
    bits = weight_bits(4 * 16, seed=13, scale=1.0)
    run_encoder(params, [bits], keep=10, lanes=4, word_bits=64, codebook=[127, 126, 127, 125],
                expected_codebook=[127, 126, 250, 125])


def test_status():
    """``status.keep_above_group`` follows ``keep > G``; ``busy`` is set from a command
    until its last value is taken."""
    G, lanes = 16, 4
    params = FormatParams(group_size=G, exponent_coding="raw", superblock_groups=2)
    dut = Encoder(params, lanes=lanes, word_bits=64)
    rng = random.Random(3)
    bits = random_bits(rng, G)

    async def main(ctx):
        for keep, flag in ((G, 0), (G + 1, 1), (0, 0), ((1 << len(dut.keep)) - 1, 1), (5, 0)):
            ctx.set(dut.keep, keep)
            await ctx.tick().repeat(2)
            assert ctx.get(dut.status.keep_above_group) == flag, f"keep={keep}"
        assert ctx.get(dut.status.busy) == 0
        for name in STREAM_NAMES:
            ctx.set(getattr(dut, name).ready, 1)
        await send_stream(ctx, dut.cmd, [1], rng=rng)
        await ctx.tick()
        assert ctx.get(dut.status.busy) == 1
        await send_stream(ctx, dut.values, lane_beats(bits, lanes), rng=rng)
        await ctx.tick().repeat(2)
        assert ctx.get(dut.status.busy) == 0

    simulate(dut, [main])
