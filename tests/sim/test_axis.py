"""The AXI4-Stream wrappers (``make verilog`` writes ``cassandra_*_axis.v``) under
cocotbext-axi's AxiStreamSource / AxiStreamSink with random pauses."""

from __future__ import annotations

import pytest

from golden.format.bitstream import stream_words
from golden.format.codec import bf16_bits, decode
from golden.format.params import STREAM_NAMES, FormatParams, keep_count
from hw.decoder import decoder_command
from sim.jobs import encode_tensor, write_job
from sim.runner import built, run_cocotb
from tests.samples import special_values, weights

PARAMS = FormatParams(superblock_groups=2)
LANES, WORD_BITS = 8, 64
CODEBOOK = [122, 121, 123, 120, 124, 119, 118, 117]


def _run(design: str, name: str, **job):
    runner, build_dir = built(design, PARAMS, LANES, WORD_BITS)
    path = write_job(build_dir / "jobs" / f"{name}.json", design=design, word_bits=WORD_BITS, seed=7,
                     pause=0.3, codebook=CODEBOOK, **job)
    run_cocotb(runner, build_dir, design, "sim.cocotb_axis", path)


def test_decoder_axis():
    keep = keep_count(64, 0.4)
    tensors = [weights(2, 192, seed=11), special_values(64 * 3, seed=12).reshape(1, -1)]
    encs = [encode_tensor(x, PARAMS, keep=keep, codebook=CODEBOOK) for x in tensors]
    modes = [(encs[0], True), (encs[1], False), (encs[1], True)]
    words = {name: [] for name in STREAM_NAMES}
    for enc, full in modes:
        for name in STREAM_NAMES:
            if full or name in ("bitmap", "sign_mantissa", "exponent"):
                words[name] += stream_words(enc.streams[name], WORD_BITS)
    _run("cassandra_decoder_axis", "decoder",
         commands=[decoder_command(enc.num_values // 64, full) for enc, full in modes], words=words,
         expected_per_command=[bf16_bits(decode(enc, "full" if full else "draft")).reshape(-1).tolist()
                               for enc, full in modes])


@pytest.mark.long  # an encoder build and 2-4 min: `make sim-long` (the decoder wrapper runs in make test)
def test_encoder_axis():
    keep = keep_count(64, 0.4)
    tensors = [weights(3, 128, seed=13), special_values(64 * 2, seed=14).reshape(1, -1)]
    expected = {name: [] for name in STREAM_NAMES}
    values = []
    for x in tensors:
        enc = encode_tensor(x, PARAMS, keep=keep, codebook=CODEBOOK)
        for name in STREAM_NAMES:
            expected[name] += stream_words(enc.streams[name], WORD_BITS)
        values += bf16_bits(x).reshape(-1).tolist()
    _run("cassandra_encoder_axis", "encoder", keep=keep, commands=[x.numel() // 64 for x in tensors],
         values=values, expected=expected)
