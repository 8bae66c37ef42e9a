"""BF16 -> encoder -> decoder (full mode) -> the same BF16, on the emitted Verilog;
``make sim-long`` runs >= 1M values."""

from __future__ import annotations

import json

import pytest
import torch

from golden.format.codec import bf16_bits
from golden.format.params import FormatParams, keep_count
from hw.decoder import decoder_command
from sim.jobs import beats, write_job
from sim.runner import built, run_cocotb
from tests.samples import special_values


def run_loopback(x: torch.Tensor, params: FormatParams, *, lanes: int, word_bits: int, keep: int, codebook,
                 name: str, groups_per_command: int, idle: float, backpressure: float, seed: int = 0) -> dict:
    runner, build_dir = built("cassandra_loopback", params, lanes, word_bits)
    groups = x.numel() // params.group_size
    sizes = [min(groups_per_command, groups - start) for start in range(0, groups, groups_per_command)]
    job = write_job(build_dir / "jobs" / f"{name}.json", lanes=lanes, seed=seed, keep=keep, codebook=codebook,
                    idle=idle, backpressure=backpressure, values=beats(x, lanes), enc_cmd=sizes,
                    dec_cmd=[decoder_command(size, True) for size in sizes],
                    expected=bf16_bits(x).reshape(-1).tolist())
    run_cocotb(runner, build_dir, "cassandra_loopback", "sim.cocotb_loopback", job)
    return json.loads(job.with_suffix(".stats.json").read_text())


def _mixed_values(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    weights = (torch.randn(count, generator=generator) * 0.05).to(torch.bfloat16)
    odd = special_values(count, seed)
    return torch.where(torch.rand(count, generator=generator) < 0.1, odd, weights)


CODEBOOK = [122, 121, 123, 120, 124, 119, 118, 117]


def test_loopback_short():
    """CI: 16,384 values (weights with 10% NaN/Inf/subnormal/random patterns),
    commands of 5 groups, 30% idle and back-pressure."""
    params = FormatParams()
    x = _mixed_values(16_384, seed=1).reshape(-1, 256)
    stats = run_loopback(x, params, lanes=8, word_bits=64, keep=keep_count(64, 0.4), codebook=CODEBOOK,
                         name="short", groups_per_command=5, idle=0.3, backpressure=0.3)
    assert stats["values"] == 16_384


@pytest.mark.long
def test_loopback_one_million_values():
    """>= 1M values (2**20), no stalls, commands of 64 groups (one superblock each)."""
    params = FormatParams()
    x = _mixed_values(1 << 20, seed=2).reshape(-1, 1024)
    stats = run_loopback(x, params, lanes=8, word_bits=128, keep=keep_count(64, 0.4), codebook=CODEBOOK,
                         name="long", groups_per_command=64, idle=0.0, backpressure=0.0)
    assert stats["values"] >= 1_000_000
    print(f"loopback: {stats['values']} values in {stats['seconds']:.0f} s "
          f"({stats['values_per_second']:.0f} values/s, Verilator)")
