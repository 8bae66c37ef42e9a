"""The Amaranth decoder against the golden codec (ref vs rtl), in the Amaranth simulator.

Every run drives all six inputs with random idle cycles and the output with random
back-pressure (unless it measures throughput), checks the stream rules on every
port, and compares every output value bit for bit with golden ``decode``.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from amaranth.hdl import Value

from golden.format.codec import bf16_from_bits
from golden.format.params import STREAM_NAMES, FormatParams, keep_count
from hw.common import prefix_tree
from hw.decoder import Decoder, decoder_command
from hw.simulation import Feeder, receive_stream, run_decoder, simulate
from sim.jobs import DecodeJob, encode_tensor
from tests.samples import special_values, weights

STALLS = dict(idle=0.3, backpressure=0.3)


def _codebook(enc):
    return enc.codebook.tolist() if enc.codebook is not None else None


def check(params: FormatParams, tensors, *, lanes: int, word_bits: int = 64, keep=None, modes=(False, True),
          codebook=None, seed: int = 0, draft_rounding: str = "truncate", **run_options):
    """Encode each tensor, decode it once per mode on the RTL, compare with golden."""
    keep = keep_count(params.group_size, 0.4) if keep is None else keep
    jobs = []
    for tensor in tensors:
        # one run-time codebook for the run: the first tensor's, unless given
        enc = encode_tensor(tensor, params, keep=keep, codebook=codebook)
        codebook = _codebook(enc)
        jobs += [DecodeJob(enc, full, draft_rounding) for full in modes]
    codebook = _codebook(jobs[0].enc)
    run = run_decoder(params, [jobs], lanes=lanes, word_bits=word_bits, codebook=codebook, seed=seed,
                      draft_rounding=draft_rounding, **run_options)[-1]
    expected = [value for job in jobs for value in job.expected]
    assert len(run.values) == len(expected)
    mismatches = [(i, got, want) for i, (got, want) in enumerate(zip(run.values, expected)) if got != want]
    assert not mismatches, f"{len(mismatches)} values differ, first (index, rtl, ref): {mismatches[:5]}"
    # `last` on the final beat of each command, nowhere else
    ends = list(itertools.accumulate(job.enc.num_values // lanes for job in jobs))
    assert [i + 1 for i, last in enumerate(run.lasts) if last] == ends
    assert run.consumed == run.offered, "input words left over or over-read"
    return run


CONFIGS = [
    # coding, lanes, group_size, mantissa_bits, word_bits, superblock_groups, extra
    ("raw", 4, 16, 3, 32, 2, {}),
    ("raw", 8, 64, 0, 64, 1, {}),
    ("raw", 16, 16, 7, 128, 3, {}),
    ("unary", 4, 16, 3, 64, 2, {"unary_max_code_length": 2}),
    ("unary", 8, 64, 3, 32, 1, {}),
    ("unary", 8, 16, 0, 64, 3, {"unary_max_code_length": 1}),
    ("unary", 16, 32, 7, 64, 2, {"unary_max_code_length": 16}),
    ("unary", 16, 16, 5, 256, 2, {"unary_max_code_length": 4}),
    ("mx", 4, 16, 3, 64, 2, {"mx_block_size": 4}),
    ("mx", 8, 64, 3, 32, 1, {"mx_block_size": 16}),
    ("mx", 8, 16, 0, 64, 2, {"mx_block_size": 2}),
    ("mx", 16, 64, 7, 128, 2, {"mx_block_size": 256}),
]


@pytest.mark.parametrize("coding,lanes,group,mant,word_bits,superblock,extra", CONFIGS,
                         ids=[f"{c[0]}-l{c[1]}-g{c[2]}-m{c[3]}-w{c[4]}-s{c[5]}" for c in CONFIGS])
def test_random_tensors_with_stalls(coding, lanes, group, mant, word_bits, superblock, extra):
    params = FormatParams(group_size=group, mantissa_bits=mant, exponent_coding=coding,
                          superblock_groups=superblock, **extra)
    # two tensors with different row counts (a short last superblock), each in draft and full mode
    tensors = [weights(3, 2 * group, seed=1), weights(2, group, seed=2, scale=3.0)]
    check(params, tensors, lanes=lanes, word_bits=word_bits, keep=(group * 5) // 8, **STALLS)


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
@pytest.mark.parametrize("keep", ["none", "some", "all"])
def test_special_values_and_keep_extremes(coding, keep):
    params = FormatParams(group_size=16, exponent_coding=coding, superblock_groups=2, mx_block_size=4,
                          unary_max_code_length=4)
    keep = {"none": 0, "some": 9, "all": 16}[keep]
    x = special_values(16 * 12, seed=3).reshape(4, 48)
    check(params, [x], lanes=8, keep=keep, **STALLS)


def _all_patterns(coding, rows):
    params = FormatParams(group_size=64, exponent_coding=coding)
    bits = torch.randperm(1 << 16, generator=torch.Generator().manual_seed(4))
    x = bf16_from_bits(bits).reshape(256, 256)[:rows]
    check(params, [x], lanes=8, word_bits=128, keep=38, modes=(True,))
    check(params, [x[:rows // 4]], lanes=8, word_bits=128, keep=64, modes=(False,))


@pytest.mark.parametrize("coding", ["unary", "mx"])
def test_bf16_patterns(coding):
    """A quarter of the 65536 patterns (shuffled: every exponent, NaN payloads,
    infinities, subnormals), 40% pruned, full mode; a sixteenth all kept in draft
    mode. The golden suite covers the format exhaustively; this covers the RTL's
    datapath. Every pattern: ``test_all_bf16_patterns`` (`make test-long`)."""
    _all_patterns(coding, 64)


@pytest.mark.long  # 2.5 min for unary: `make test-long`
@pytest.mark.parametrize("coding", ["unary", "mx"])
def test_all_bf16_patterns(coding):
    """Every one of the 65536 patterns, shuffled, 40% pruned, full mode; a quarter
    of them all kept in draft mode."""
    _all_patterns(coding, 256)


@pytest.mark.parametrize("coding", ["raw", "unary"])
def test_midpoint_draft_rounding(coding):
    """``draft_rounding="midpoint"``: special values (zeros, subnormals, Inf, NaN keep
    the truncated pattern) and weights, draft and full, with stalls."""
    params = FormatParams(group_size=16, mantissa_bits=2, exponent_coding=coding, superblock_groups=2,
                          unary_max_code_length=4)
    x = special_values(16 * 12, seed=5).reshape(4, 48)
    check(params, [x, weights(3, 32, seed=6)], lanes=8, keep=11, draft_rounding="midpoint", **STALLS)


@pytest.mark.parametrize("max_code", [1, 3, 8, 16])
def test_unary_longest_codes_and_escapes(max_code):
    """A codebook that misses most exponents (escapes) and ranks the rest last
    (the longest codes), with codes straddling word and window edges."""
    params = FormatParams(group_size=32, exponent_coding="unary", unary_max_code_length=max_code,
                          superblock_groups=2)
    x = weights(6, 64, seed=5, scale=1.0)
    present = sorted(set(((x.view(torch.int16).to(torch.int32) >> 7) & 0xFF).reshape(-1).tolist()))
    absent = [e for e in range(256) if e not in present]
    codebook = (absent[:max_code - 1] + present[:1])[:max_code]
    run = check(params, [x], lanes=8, keep=24, codebook=codebook, **STALLS)
    assert len(run.values) == 2 * x.numel()


@pytest.mark.parametrize("block", [2, 4, 8, 32])
def test_mx_blocks_across_beats(block):
    """Blocks smaller than a beat (several shared exponents per beat) and larger
    (one block over several beats), with infinities forcing E_s = 255."""
    params = FormatParams(group_size=32, exponent_coding="mx", mx_block_size=block, mantissa_bits=2,
                          superblock_groups=3)
    x = weights(4, 96, seed=6, scale=0.5)
    x.view(-1)[::37] = float("inf")
    x.view(-1)[5::41] = 1e-39  # subnormal
    check(params, [x], lanes=8, keep=20, **STALLS)


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
def test_smollm2_weight_tiles(coding, smollm2_tiles):
    params = FormatParams(exponent_coding=coding, superblock_groups=4)
    tiles = [smollm2_tiles[name] for name in ("blk.0.ffn_down.weight", "blk.0.attn_k.weight")]
    check(params, tiles, lanes=8, **STALLS)


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
def test_reset_in_mid_stream(coding):
    """A reset while words are in flight and beats half out; then a fresh command
    decodes exactly, and the beats before the reset were correct."""
    params = FormatParams(group_size=16, exponent_coding=coding, superblock_groups=2, mx_block_size=4)
    first = encode_tensor(weights(4, 32, seed=7), params, keep=10)
    second = encode_tensor(weights(3, 32, seed=8), params, keep=10, codebook=_codebook(first))
    jobs_before = [DecodeJob(first, True)]
    jobs_after = [DecodeJob(second, False), DecodeJob(second, True)]
    runs = run_decoder(params, [jobs_before, jobs_after], lanes=4, codebook=_codebook(first),
                       reset_after_beats=5, **STALLS)
    before, after = runs
    assert len(before.beats) == 5
    assert before.values == jobs_before[0].expected[:5 * 4]
    assert after.values == jobs_after[0].expected + jobs_after[1].expected
    assert after.consumed == after.offered


THROUGHPUT = [
    # coding, lanes, word_bits: configurations whose streams fit the word width
    ("raw", 4, 64), ("unary", 4, 64), ("mx", 4, 64),
    ("unary", 8, 128), ("mx", 8, 128),
    ("unary", 16, 256),
]


@pytest.mark.parametrize("coding,lanes,word_bits", THROUGHPUT)
def test_one_beat_per_clock(coding, lanes, word_bits):
    """No bubbles: with inputs always valid and the output always ready, one beat
    per clock over >= 10k values of SmolLM2-like weights (40% pruned), full mode."""
    params = FormatParams(exponent_coding=coding)
    x = weights(40, 256, seed=9)  # 10,240 values
    run = check(params, [x], lanes=lanes, word_bits=word_bits, modes=(True,))
    assert len(run.values) >= 10_000
    assert run.beats_per_cycle == 1.0
    assert run.latency == (29 if coding == "mx" else 20)  # docs/HARDWARE.md, "Decoder latency"


def test_rate_with_escapes_takes_the_serial_path():
    """All kept, every exponent escaped (16-bit codes, whose payloads hold ones that
    end no code): every beat goes through the serial path, at most one code per four
    clocks plus the skipping of the payloads' ones (docs/HARDWARE.md), and stays exact."""
    params = FormatParams(group_size=64, exponent_coding="unary")
    x = weights(8, 256, seed=10, scale=1.0)
    present = set(((x.view(torch.int16).to(torch.int32) >> 7) & 0xFF).reshape(-1).tolist())
    codebook = [e for e in range(256) if e not in present][:8]
    run = check(params, [x], lanes=8, word_bits=128, keep=64, modes=(False,), codebook=codebook)
    assert 1 / 64 < run.beats_per_cycle <= 1 / 16


def test_codes_of_any_length_at_full_rate():
    """All kept, one exponent per tensor at codebook rank 0, 3 and 7 (codes of 1, 4 and 8
    bits): one beat per clock while codes average at most unary_window_bits / lanes bits."""
    for rank in (0, 3, 7):
        params = FormatParams(group_size=64, exponent_coding="unary")
        x = torch.full((16, 256), 1.5, dtype=torch.bfloat16)  # exponent 127, one magnitude
        codebook = [e for e in range(120, 135) if e != 127][:7]
        codebook.insert(rank, 127)
        run = check(params, [x], lanes=8, word_bits=128, keep=64, modes=(False,), codebook=codebook)
        assert run.beats_per_cycle == 1.0, rank


@pytest.mark.parametrize("kwargs,message", [
    ({"lanes": 3}, "lanes=3 must be a power of two"),
    ({"lanes": 128}, "lanes=128 is not supported"),
    ({"lanes": 16, "params": FormatParams(group_size=8)}, "lanes=16 is larger than group_size=8"),
    ({"word_bits": 48}, "word_bits=48 is not one of"),
    ({"unary_window_bits": 8}, "unary_window_bits=8 must be a multiple of 64 in 64..1024"),
    ({"draft_rounding": "nearest"}, "draft_rounding='nearest' is not one of"),
    ({"draft_rounding": "midpoint", "params": FormatParams(exponent_coding="mx")}, "not mx"),
    ({"unary_window_bits": 96}, "unary_window_bits=96 must be a multiple of 64"),
    ({"lanes": 32}, "lanes=32 is not supported"),
])
def test_bad_parameters(kwargs, message):
    params = kwargs.pop("params", FormatParams())
    with pytest.raises(ValueError, match=message):
        Decoder(params, **kwargs)


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
@pytest.mark.parametrize("held_back", ["sign_mantissa", "exponent", "pruned_raw"])
def test_status_names_a_stream_that_ran_out(coding, held_back):
    """``status``: one stream is held back after its first word; the output stops,
    ``busy`` stays set and ``waiting`` names that stream only. Once the rest comes,
    every value is exact, ``busy`` falls and ``waiting`` clears."""
    params = FormatParams(group_size=16, exponent_coding=coding, superblock_groups=2, mx_block_size=4,
                          unary_max_code_length=4)
    enc = encode_tensor(weights(8, 32, seed=11), params, keep=10)
    job = DecodeJob(enc, True)
    command = job.command(64)
    dut = Decoder(params, lanes=4, word_bits=64)
    rng = random.Random(5)
    feeders = {name: Feeder(getattr(dut, name), rng=rng, idle=0.2) for name in ("cmd", *STREAM_NAMES)}
    bit = 1 << STREAM_NAMES.index(held_back)
    expected_beats = [sum(v << (16 * i) for i, v in enumerate(job.expected[b:b + 4]))
                      for b in range(0, len(job.expected), 4)]
    assert len(command.words[held_back]) > 1

    async def main(ctx):
        if enc.codebook is not None:
            for rank, exponent in enumerate(enc.codebook.tolist()):
                ctx.set(dut.codebook[rank], int(exponent))
        assert ctx.get(dut.status.busy) == 0 and ctx.get(dut.status.waiting) == 0
        feeders["cmd"].queue.append(decoder_command(command.groups, True))
        for name in STREAM_NAMES:
            words = list(command.words[name])
            feeders[name].queue.extend(words[:1] if name == held_back else words)
        got = []
        for _ in range(300):
            ctx.set(dut.out.ready, 1)
            _, _, valid, payload = await ctx.tick().sample(dut.out.valid, Value.cast(dut.out.payload))
            if valid:
                got.append(payload & ((1 << 64) - 1))
        assert len(got) < len(expected_beats), "the output went on without the held-back stream"
        assert ctx.get(dut.status.busy) == 1
        assert ctx.get(dut.status.waiting) == bit, f"waiting={ctx.get(dut.status.waiting):05b}, want {bit:05b}"
        feeders[held_back].queue.extend(list(command.words[held_back])[1:])
        got += [p & ((1 << 64) - 1) for p in
                await receive_stream(ctx, dut.out, len(expected_beats) - len(got), rng=rng, timeout_cycles=2000)]
        assert got == expected_beats
        await ctx.tick().repeat(3)
        assert ctx.get(dut.status.busy) == 0 and ctx.get(dut.status.waiting) == 0

    simulate(dut, [main], background=list(feeders.values()))


def test_prefix_tree_equals_running_sums():
    """hw.common.prefix_tree (the unary window's chunk counts, mx field offsets): the
    running sums for every length 1..40, with log2 levels of additions."""
    rng = random.Random(12)
    for n in range(1, 41):
        values = [rng.randint(0, 15) for _ in range(n)]
        assert prefix_tree(values) == list(itertools.accumulate(values)), n
