"""The golden pipeline's real tiles through the emitted Verilog.

A short SmolLM2-135M generation at the paper's defaults exports weight and KV
tiles (golden/pipeline/vectors.py). Weight and KV tiles go through the Verilog decoder in
draft and full mode; layer 0's KV tile goes through the Verilog encoder and
decoder (loopback, draft mode), and what comes out must equal, bit for bit, the
draft K and V the golden pipeline's draft model read during the run.
"""

from __future__ import annotations

import json

import pytest
import torch

from golden.format.codec import bf16_bits
from golden.pipeline.vectors import read_vector
from hw.decoder import decoder_command
from sim.jobs import beats, decoder_phase, write_job
from sim.runner import BUILD_ROOT, built, run_cocotb

LANES, WORD_BITS, LAYER = 8, 64, 0


@pytest.fixture(scope="module")
def exported():
    """(pipeline, vectors folder, manifest) of one short generation."""
    from golden.pipeline import Pipeline, PipelineConfig
    from golden.pipeline.vectors import export_vectors

    pipe = Pipeline(PipelineConfig())
    out = BUILD_ROOT / "pipeline-vectors"
    manifest = export_vectors(pipe, out, layers=(LAYER,), tile_rows=4, max_new_tokens=8)
    return pipe, out, json.loads(manifest.read_text())


def _decode_vector(out, entry, name):
    vector = read_vector(out, entry)
    enc = vector["encoded"]
    runner, build_dir = built("cassandra_decoder", enc.params, LANES, WORD_BITS)
    phase = decoder_phase([(enc, False), (enc, True)], lanes=LANES, word_bits=WORD_BITS)
    # the golden decode (in the phase) must also be what the vector files hold
    values = phase["expected"]
    n = enc.num_values
    assert values[:n] == vector["draft"].reshape(-1).tolist() and values[n:] == vector["full"].reshape(-1).tolist()
    job = write_job(build_dir / "jobs" / f"{name}.json", lanes=LANES, seed=0, phases=[phase], idle=0.2,
                    backpressure=0.2, codebook=enc.codebook.tolist() if enc.codebook is not None else None)
    run_cocotb(runner, build_dir, "cassandra_decoder", "sim.cocotb_decoder", job)


def test_weight_and_kv_tiles_through_the_decoder(exported):
    _, out, manifest = exported
    for entry in manifest["vectors"]:
        _decode_vector(out, entry, entry["name"])
    kinds = [entry["source"]["kind"] for entry in manifest["vectors"]]
    assert kinds.count("weight") == 8 and kinds.count("kv") == 1  # layer 0's 7 linears + the head; one KV tile


@pytest.mark.long  # a loopback build of its own (S = 1) and 3 min: `make sim-long`
def test_kv_tile_through_encoder_and_decoder_equals_the_drafts_view(exported):
    pipe, out, manifest = exported
    entry = next(e for e in manifest["vectors"] if e["source"]["kind"] == "kv")
    cache = pipe.last_cache
    _, length = entry["source"]["positions"]
    k, v = cache.read(LAYER, length, "full")
    x, _, codebook = cache.encoder_input(LAYER, k, v)
    draft_k, draft_v = cache.read(LAYER, length, "draft")
    served = torch.stack([draft_k, draft_v]).permute(0, 2, 1, 3).reshape(x.shape)  # what the draft read
    params = cache.params
    runner, build_dir = built("cassandra_loopback", params, LANES, WORD_BITS)
    groups = x.shape[0]  # one head vector per group
    job = write_job(build_dir / "jobs" / "pipeline-kv.json", lanes=LANES, seed=4, keep=cache.keep, draft_only=True,
                    codebook=[int(e) for e in codebook], idle=0.2, backpressure=0.2, values=beats(x, LANES),
                    enc_cmd=[groups], dec_cmd=[decoder_command(groups, False)],
                    expected=bf16_bits(served).reshape(-1).tolist())
    run_cocotb(runner, build_dir, "cassandra_loopback", "sim.cocotb_loopback", job)
    assert groups == 2 * length * pipe.model_config.num_key_value_heads
