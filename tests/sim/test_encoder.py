"""The emitted encoder Verilog under cocotb against the golden encoder, word for
word, with idle and back-pressure inserters and protocol monitors on every port."""

from __future__ import annotations

import pytest

from golden.format.params import FormatParams, keep_count
from sim.jobs import encoder_phase, write_job
from sim.runner import built, run_cocotb
from tests.samples import special_values, weights

CONFIGS = {
    "unary-l8-w64": ("unary", 8, 64, dict()),
    "raw-l4-w32": ("raw", 4, 32, dict(group_size=16, superblock_groups=2, mantissa_bits=0)),
}
STALLS = dict(idle=0.3, backpressure=0.3)


def encoder(config: str):
    coding, lanes, word_bits, extra = CONFIGS[config]
    params = FormatParams(exponent_coding=coding, **extra)
    return (params, lanes, word_bits, *built("cassandra_encoder", params, lanes, word_bits))


def codebook_for(params):
    return [122, 121, 123, 120, 124, 119, 118, 117][:params.unary_max_code_length] \
        if params.exponent_coding == "unary" else None


def run_phases(config, phases, name, *, keep, seed=0):
    params, lanes, word_bits, runner, build_dir = encoder(config)
    job = write_job(build_dir / "jobs" / f"{name}.json", seed=seed, keep=keep, codebook=codebook_for(params),
                    beats_per_group=params.group_size // lanes, phases=phases, **STALLS)
    run_cocotb(runner, build_dir, "cassandra_encoder", "sim.cocotb_encoder", job)


@pytest.mark.parametrize("config", CONFIGS)
def test_random_and_special_tensors(config):
    params, lanes, word_bits, *_ = encoder(config)
    group = params.group_size
    keep = keep_count(group, 0.4)
    tensors = [weights(3, 2 * group, seed=1), special_values(group * 3, seed=2).reshape(1, -1),
               weights(1, group, seed=3)]
    phase = encoder_phase(tensors, params, keep=keep, lanes=lanes, word_bits=word_bits, codebook=codebook_for(params))
    run_phases(config, [phase], "random", keep=keep, seed=1)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("keep", ["none", "all"])
def test_keep_extremes(config, keep):
    params, lanes, word_bits, *_ = encoder(config)
    keep = 0 if keep == "none" else params.group_size
    x = special_values(params.group_size * 4, seed=4).reshape(2, -1)
    phase = encoder_phase([x], params, keep=keep, lanes=lanes, word_bits=word_bits, codebook=codebook_for(params))
    run_phases(config, [phase], f"keep{keep}", keep=keep, seed=2)


@pytest.mark.parametrize("config", CONFIGS)
def test_reset_in_mid_stream_then_normal_operation(config):
    params, lanes, word_bits, *_ = encoder(config)
    group = params.group_size
    keep = keep_count(group, 0.4)
    cut = encoder_phase([weights(4, group, seed=5)], params, keep=keep, lanes=lanes, word_bits=word_bits,
                        codebook=codebook_for(params), values_before_reset=group // lanes + 2)
    after = encoder_phase([weights(2, group, seed=6)], params, keep=keep, lanes=lanes, word_bits=word_bits,
                          codebook=codebook_for(params))
    run_phases(config, [cut, after], "reset", keep=keep, seed=3)
