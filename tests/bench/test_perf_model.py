"""The byte/roofline performance model (bench/perf_model.py)."""

import math

import pytest

import bench.perf_model as pm
from bench.perf_model import (
    PLATFORMS,
    SHAPES,
    DecoderLimit,
    ModelShape,
    Platform,
    StorageBits,
    best_gamma,
    expected_tokens,
    markdown_table,
    speculative_speedup,
    speedup_from_steps,
    step_bytes,
    step_flops,
    step_time,
    sweep,
)

CASSANDRA_BITS = StorageBits(weight_draft_bits=6.0, weight_full_bits=17.0, kv_draft_bits=12.0, kv_full_bits=16.0)


def test_smollm2_plain_bf16_bytes_from_shape_numbers():
    # SmolLM2-135M: 30 layers, hidden 576, MLP 1536, 9 heads / 3 KV heads of 64, vocab 49152, tied.
    L, h, m, H, KV, d, V = 30, 576, 1536, 9, 3, 64, 49152
    per_layer = h * H * d + 2 * h * KV * d + H * d * h + 3 * h * m
    linear = L * per_layer + V * h  # tied LM head still read whole
    norms = L * 2 * h + h
    embedding_row = h
    context = 512
    kv_read = 2 * L * KV * d * context
    kv_write = 2 * L * KV * d * 1
    expected = 2 * (linear + norms + embedding_row) + 2 * (kv_read + kv_write)
    got = step_bytes(SHAPES["smollm2-135m"], bits_weights=16, bits_kv=16, batch=1, context=context)
    assert got == expected
    assert SHAPES["smollm2-135m"].total_params == 134_515_008  # the published parameter count


def test_bytes_scale_with_batch_and_bits():
    s = SHAPES["llama-3-8b"]
    one = step_bytes(s, bits_weights=16, bits_kv=16, batch=1, context=1000)
    four = step_bytes(s, bits_weights=16, bits_kv=16, batch=4, context=1000)
    # weights are read once per step, the KV cache and embedding rows once per sequence
    per_seq = 2 * s.kv_values_per_token * 1001 + 2 * s.hidden
    assert four - one == pytest.approx(3 * per_seq)
    half = step_bytes(s, bits_weights=8, bits_kv=16, batch=1, context=1000)
    assert one - half == pytest.approx(s.linear_params)


def test_llama3_8b_params():
    s = SHAPES["llama-3-8b"]
    assert s.linear_params == pytest.approx(7.5e9, rel=0.01)
    assert s.total_params == pytest.approx(8.03e9, rel=0.01)
    assert s.kv_values_per_token == 2 * 32 * 8 * 128
    assert SHAPES["qwen3-8b"].total_params == pytest.approx(8.19e9, rel=0.01)


def test_flops():
    s = SHAPES["llama-3-8b"]
    assert s.flops_per_token(0) == 2 * s.linear_params
    assert step_flops(s, batch=1, context=100) == s.flops_per_token(101)
    five = step_flops(s, batch=2, context=100, tokens=5)
    assert five == pytest.approx(2 * sum(s.flops_per_token(100 + i + 1) for i in range(5)))


def test_expected_tokens():
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(1.0, 1) == 2.0
    assert expected_tokens(0.8, 4) == pytest.approx(1 + 0.8 + 0.64 + 0.512 + 0.4096, abs=1e-12)
    assert expected_tokens(0.8, 4) == pytest.approx(3.3616, abs=1e-12)


def test_plain_as_draft_never_speeds_up():
    # Draft reads exactly what plain decoding reads and is always right: the verify
    # step costs more than a plain step, so speculation cannot win.
    for name in SHAPES:
        for platform in PLATFORMS:
            r = speculative_speedup(platform, name, StorageBits.bf16(), gamma=4, alpha=1.0)
            assert r["tau"] == 5.0
            assert r["t_draft"] == r["t_plain"]
            assert r["t_verify"] > r["t_plain"]
            assert 0 < r["speedup"] < 1.0 < 5.0


def test_cheaper_draft_speeds_up_and_is_bounded():
    r = speculative_speedup("rtx4090", "llama-3-8b", CASSANDRA_BITS, gamma=4, alpha=0.8)
    assert r["bytes_draft"] < r["bytes_plain"] < r["bytes_verify"]
    assert 1.0 < r["speedup"] < r["tau"]
    assert r["speedup"] == pytest.approx(
        r["tau"] * r["t_plain"] / (4 * r["t_draft"] + r["t_verify"]))
    assert r["tokens_per_s_spec"] / r["tokens_per_s_plain"] == pytest.approx(r["speedup"])
    assert {r["bound_plain"], r["bound_draft"], r["bound_verify"]} == {"memory"}
    # tau given instead of alpha gives the same answer
    r2 = speculative_speedup("rtx4090", "llama-3-8b", CASSANDRA_BITS, gamma=4, tau=r["tau"])
    assert r2["speedup"] == r["speedup"]


def test_compute_bound_reported():
    # A big batch at short context on an H100: weights are shared, FLOPs are not.
    s = SHAPES["llama-3-8b"]
    b = step_bytes(s, bits_weights=16, bits_kv=16, batch=512, context=16)
    f = step_flops(s, batch=512, context=16)
    t = step_time("h100", bytes=b, flops=f)
    assert t.bound == "compute"
    assert t.seconds == t.compute_s == pytest.approx(f / 989e12)
    # and a starved bandwidth flips it to memory
    slow = Platform("slow", bandwidth_gb_s=1.0, peak_tflops=1000.0)
    assert step_time(slow, bytes=b, flops=f).bound == "memory"
    # the verify step of a big batch becomes compute-bound in speculative_speedup too
    r = speculative_speedup("h100", s, CASSANDRA_BITS, gamma=8, alpha=0.8, batch=256, context=16)
    assert r["bound_verify"] == "compute"


def test_decoder_limit_binds():
    tiny = DecoderLimit(units=1, lanes=1, clock_hz=1e6)
    assert tiny.values_per_second == 1e6
    t = step_time("npu", bytes=1e6, flops=1e6, decoder=tiny, decoded_values=1e9)
    assert t.bound == "decoder"
    assert t.seconds == pytest.approx(1000.0)
    r = speculative_speedup("npu", "smollm2-135m", CASSANDRA_BITS, gamma=4, alpha=0.8, decoder=tiny)
    assert r["bound_draft"] == r["bound_verify"] == "decoder"
    assert r["bound_plain"] == "memory"  # plain BF16 bypasses the decoders
    assert r["speedup"] < 0.01
    # a generous decoder changes nothing
    fast = DecoderLimit(units=40, lanes=16, clock_hz=1e9)
    free = speculative_speedup("npu", "smollm2-135m", CASSANDRA_BITS, gamma=4, alpha=0.8)
    assert speculative_speedup("npu", "smollm2-135m", CASSANDRA_BITS, gamma=4, alpha=0.8,
                               decoder=fast)["speedup"] == free["speedup"]


def test_speedup_from_steps():
    assert speedup_from_steps(1.0, 0.25, 1.0, 3.0, 4) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="tau"):
        speedup_from_steps(1.0, 0.25, 1.0, 6.0, 4)


def test_best_gamma_and_sweep():
    g = best_gamma("rtx4090", "llama-3-8b", CASSANDRA_BITS, alpha=0.8)
    speedups = {k: speculative_speedup("rtx4090", "llama-3-8b", CASSANDRA_BITS, gamma=k, alpha=0.8)["speedup"]
                for k in range(1, 9)}
    assert 1 <= g <= 8 and speedups[g] == max(speedups.values())
    assert best_gamma("rtx4090", "llama-3-8b", CASSANDRA_BITS, alpha=0.0) == 1
    rows = sweep(["rtx4090", "orin"], ["smollm2-135m", "llama-3-8b"], {"c1": CASSANDRA_BITS}, alpha=0.8,
                 gammas=(3, 5))
    assert len(rows) == 2 * 2 * 2 * 3 * 4
    assert rows[0]["bits"] == "c1" and rows[0]["platform"] == "rtx4090" and rows[0]["context"] == 512
    # speedup falls as context grows: the KV cache's share of the bytes grows, and the
    # draft saves less on it (12 of 16 bits) than on the weights (6 of 16)
    by_ctx = [r["speedup"] for r in rows if r["platform"] == "rtx4090" and r["model"] == "llama-3-8b"
              and r["gamma"] == 3 and r["batch"] == 1]
    assert by_ctx == sorted(by_ctx, reverse=True)


def test_markdown_table():
    text = markdown_table([{"a": 1, "b": 2.0 / 3, "c": "x|y"}, {"a": 2}], ["a", ("b", "B"), "c"])
    assert text.splitlines() == [
        "| a | B | c |",
        "|---|---|---|",
        "| 1 | 0.6667 | x\\|y |",
        "| 2 |  |  |",
    ]


@pytest.mark.parametrize("alpha", [-0.1, 1.1, math.nan])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ValueError, match="alpha"):
        expected_tokens(alpha, 4)
    with pytest.raises(ValueError, match="alpha"):
        speculative_speedup("npu", "llama-3-8b", CASSANDRA_BITS, gamma=4, alpha=alpha)


@pytest.mark.parametrize("gamma", [0, -1, 2.5])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        expected_tokens(0.5, gamma)
    with pytest.raises(ValueError, match="gamma"):
        speculative_speedup("npu", "llama-3-8b", CASSANDRA_BITS, gamma=gamma, alpha=0.5)


def test_other_value_errors():
    with pytest.raises(ValueError, match="context.*-1"):
        step_bytes(SHAPES["llama-3-8b"], bits_weights=16, bits_kv=16, batch=1, context=-1)
    with pytest.raises(ValueError, match="context"):
        speculative_speedup("npu", "llama-3-8b", CASSANDRA_BITS, gamma=4, alpha=0.5, context=-5)
    with pytest.raises(ValueError, match="exactly one"):
        speculative_speedup("npu", "llama-3-8b", CASSANDRA_BITS, gamma=4, alpha=0.5, tau=2.0)
    with pytest.raises(ValueError, match="exactly one"):
        speculative_speedup("npu", "llama-3-8b", CASSANDRA_BITS, gamma=4)
    with pytest.raises(ValueError, match="batch"):
        step_flops("llama-3-8b", batch=0, context=1)
    with pytest.raises(ValueError, match="unknown platform 'tpu'"):
        step_time("tpu", bytes=1, flops=1)
    with pytest.raises(ValueError, match="bits_weights"):
        step_bytes("llama-3-8b", bits_weights=0, bits_kv=16, batch=1, context=1)
    with pytest.raises(ValueError, match="kv_draft_bits"):
        StorageBits(6.0, 17.0, -1.0, 16.0)
    with pytest.raises(ValueError, match="kv_heads"):
        ModelShape("bad", layers=1, hidden=8, intermediate=8, heads=3, kv_heads=2, head_dim=4, vocab=8,
                   tied_embeddings=False)
    with pytest.raises(ValueError, match="bandwidth_gb_s"):
        Platform("bad", bandwidth_gb_s=0, peak_tflops=1)
    with pytest.raises(ValueError, match="units"):
        DecoderLimit(units=0, lanes=1, clock_hz=1)


def test_policy_speedup_and_overheads():
    bits = pm.StorageBits(6.0, 12.0, 6.0, 13.0)
    chain = pm.policy_speedup("rtx4090", "smollm2-135m", bits, tau=3.0, draft_forwards=2.0, verify_rows=3.0)
    # a chain of 2 draft steps and a verify of 3 rows is exactly speculative_speedup's round
    ref = pm.speculative_speedup("rtx4090", "smollm2-135m", bits, gamma=2, tau=3.0)
    assert chain["speedup"] == pytest.approx(ref["speedup"], rel=1e-12)
    slower = pm.policy_speedup("rtx4090", "smollm2-135m", bits, tau=3.0, draft_forwards=2.0, verify_rows=3.0,
                               overhead_s=50e-6)
    assert slower["speedup"] < chain["speedup"]  # 3 forwards pay the overhead for 3 tokens: worse than plain's 1
    lookup = pm.policy_speedup("rtx4090", "smollm2-135m", bits, tau=1.0, draft_forwards=0, verify_rows=2.0)
    assert lookup["speedup"] == pytest.approx(pm.plain_speedup("rtx4090", "smollm2-135m", weight_bits=12.0,
                                                               kv_bits=13.0), rel=1e-3)
    assert pm.plain_speedup("rtx4090", "smollm2-135m", weight_bits=16.0, kv_bits=16.0) == 1.0
    with pytest.raises(ValueError, match="tau must be >= 1.0"):
        pm.policy_speedup("rtx4090", "smollm2-135m", bits, tau=0.5, draft_forwards=1, verify_rows=2)
    with pytest.raises(ValueError, match="draft_forwards must be >= 0"):
        pm.policy_speedup("rtx4090", "smollm2-135m", bits, tau=2, draft_forwards=-1, verify_rows=2)
