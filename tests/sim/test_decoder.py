"""The emitted decoder Verilog under cocotb (Verilator by default, ``SIM=icarus``),
against the golden decode, bit for bit, with idle and back-pressure inserters and
protocol monitors on every port."""

from __future__ import annotations

import pytest

from golden.format.params import FormatParams, keep_count
from sim.jobs import decoder_phase, encode_tensor, write_job
from sim.runner import built, run_cocotb
from tests.samples import special_values, weights

# (coding, lanes, word_bits, format parameters): one Verilator build each
CONFIGS = {
    "unary-l8-w64": ("unary", 8, 64, dict()),
    "mx-l4-w32": ("mx", 4, 32, dict(group_size=16, superblock_groups=2, mx_block_size=4, mantissa_bits=2)),
    "raw-l16-w128": ("raw", 16, 128, dict(group_size=32, superblock_groups=3, mantissa_bits=5)),
}
STALLS = dict(idle=0.3, backpressure=0.3)


def decoder(config: str):
    coding, lanes, word_bits, extra = CONFIGS[config]
    params = FormatParams(exponent_coding=coding, **extra)
    runner, build_dir = built("cassandra_decoder", params, lanes, word_bits)
    return params, lanes, word_bits, runner, build_dir


def run_phases(config, phases_spec, name, *, codebook_from=None, seed=0, **stalls):
    params, lanes, word_bits, runner, build_dir = decoder(config)
    phases = [decoder_phase(spec, lanes=lanes, word_bits=word_bits, beats_before_reset=cut)
              for spec, cut in phases_spec]
    codebook = codebook_from.codebook.tolist() if codebook_from is not None and codebook_from.codebook is not None else None
    job = write_job(build_dir / "jobs" / f"{name}.json", lanes=lanes, seed=seed, codebook=codebook,
                    phases=phases, idle=stalls.get("idle", 0.0), backpressure=stalls.get("backpressure", 0.0))
    run_cocotb(runner, build_dir, "cassandra_decoder", "sim.cocotb_decoder", job)


@pytest.mark.parametrize("config", CONFIGS)
def test_random_tensors_draft_and_full(config):
    params, *_ = decoder(config)
    group = params.group_size
    first = encode_tensor(weights(4, 3 * group, seed=1), params, keep=keep_count(group, 0.4))
    second = encode_tensor(weights(3, group, seed=2, scale=2.0), params, keep=group // 2,
                           codebook=first.codebook.tolist() if first.codebook is not None else None)
    jobs = [(first, False), (first, True), (second, True), (second, False)]
    run_phases(config, [(jobs, None)], "random", codebook_from=first, seed=1, **STALLS)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("keep", ["none", "all"])
def test_special_values_keep_extremes(config, keep):
    params, *_ = decoder(config)
    group = params.group_size
    enc = encode_tensor(special_values(group * 8, seed=3).reshape(2, -1), params, keep=0 if keep == "none" else group)
    run_phases(config, [([(enc, False), (enc, True)], None)], f"special-{keep}", codebook_from=enc, seed=2, **STALLS)


@pytest.mark.parametrize("config", CONFIGS)
def test_reset_in_mid_stream_then_normal_operation(config):
    params, *_ = decoder(config)
    group = params.group_size
    first = encode_tensor(weights(4, 2 * group, seed=4), params, keep=keep_count(group, 0.4))
    codebook = first.codebook.tolist() if first.codebook is not None else None
    second = encode_tensor(weights(2, 2 * group, seed=5), params, keep=keep_count(group, 0.4), codebook=codebook)
    run_phases(config, [([(first, True)], 3), ([(second, False), (second, True)], None)], "reset",
               codebook_from=first, seed=3, **STALLS)
