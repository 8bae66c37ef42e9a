"""Teacher-forced acceptance (bench/acceptance.py): round simulation, equality with a real
speculative run where teacher forcing is exact, and the draft models' bits."""

from __future__ import annotations

import pytest
import torch

from bench.acceptance import (
    AcceptanceHarness,
    _draft_values,
    cassandra_draft,
    layer_skip_draft,
    plain_draft,
    rtn4_asym_draft,
    rtn4_draft,
    simulate_rounds,
)
from golden.format.codec import bf16_bits, decode, encode
from golden.format.params import FormatParams, keep_count
from golden.format.select import magnitude_topk_mask
from golden.llm.drafting import DraftPolicy
from golden.llm.llama import DenseKVCache
from golden.llm.speculative import GenerationResult, generate_speculative
from tests.tiny_model import make_tiny_checkpoint


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_dse"))
    return AcceptanceHarness(str(folder), new_tokens=24, calibration_samples=4)


@pytest.fixture(scope="module")
def sequences(harness):
    return harness.sequences([("a", "def add(a, b):"), ("b", "class Stack:\n    def push(self, x):")])


def flags(text):
    return torch.tensor([c == "1" for c in text])


def test_simulate_rounds_by_hand():
    r = simulate_rounds(flags("1101111"), 3)
    # round 1 accepts 2 (third disagrees) and adds the target's token; round 2 accepts 3 and ends
    assert (r["rounds"], r["proposed"], r["accepted"]) == (2, 6, 5)
    assert r["tau"] == 7 / 2 and r["alpha"] == 5 / 6
    r = simulate_rounds(flags("1101111"), 2)
    assert (r["rounds"], r["proposed"], r["accepted"]) == (3, 5, 5)
    assert simulate_rounds(flags("000"), 4)["tau"] == 1.0
    with pytest.raises(ValueError, match="gamma=0"):
        simulate_rounds(flags("1"), 0)


def test_draft_values_equal_golden_draft_decode():
    x = (torch.randn(8, 256) * 0.05).to(torch.bfloat16)
    x.view(torch.int16)[0, :4] = torch.tensor([0x7FC0, 0x7F80, -32768, 1], dtype=torch.int16)  # NaN, Inf, -0, subnormal
    for coding in ("raw", "unary"):
        params = FormatParams(mantissa_bits=2, exponent_coding=coding)
        keep = magnitude_topk_mask(x, keep=keep_count(64, 0.4), group_size=64)
        for rounding in ("truncate", "midpoint"):
            fast = _draft_values(x, keep, params, rounding)
            golden = decode(encode(x, keep, params), "draft", rounding=rounding)
            assert torch.equal(bf16_bits(fast), bf16_bits(golden).reshape(x.shape)), (coding, rounding)


def test_teacher_forcing_equals_a_real_run_when_exact(harness, sequences):
    """Only the last layer's MLP and the LM head differ in the draft, so the draft's
    own KV entries equal the target's: teacher forcing is then exact, and the
    simulated rounds must equal a real greedy speculative run, token for token."""
    c = harness.config
    last = c.num_hidden_layers - 1
    names = [f"model.layers.{last}.mlp.{p}.weight" for p in ("gate_proj", "up_proj", "down_proj")] + ["lm_head.weight"]
    changed = {}
    for name in names:
        w = harness.checkpoint[name]
        keep = magnitude_topk_mask(w, keep=keep_count(16, 0.5), group_size=16)
        changed[name] = _draft_values(w, keep, FormatParams(group_size=16, mantissa_bits=1)).to(torch.float32)
    from bench.acceptance import Draft

    draft = Draft("last layer only", harness.draft_view(changed))
    for gamma in (1, 3, 5):
        simulated = harness.evaluate(draft, sequences, gammas=[gamma])["gamma"][gamma]
        proposed = accepted = 0
        for seq in sequences:
            prompt = seq.tokens[:seq.start]
            cache = DenseKVCache(c, len(seq.tokens) + gamma + 2)
            result = generate_speculative(harness.model, draft.weights, harness.reference, cache, prompt,
                                          seq.new_tokens, gamma=gamma, eos_ids=harness.tokenizer.eos_token_ids)
            assert result.tokens == seq.tokens[seq.start:]
            proposed += result.proposed
            accepted += result.accepted
        assert (simulated["proposed"], simulated["accepted"]) == (proposed, accepted)
    assert 0 < simulated["accepted"] < simulated["proposed"]  # the case is not trivial


def test_plain_draft_accepts_everything(harness, sequences):
    r = harness.evaluate(plain_draft(harness), sequences, gammas=[4])
    assert r["agreement"] == 1.0 and r["gamma"][4]["alpha"] == 1.0


def test_cassandra_draft_bits_are_exact(harness, sequences):
    draft = cassandra_draft(harness, prune=0.5, truncate=4, kv_prune=0.25, kv_truncate=3, exponent="raw",
                            kv_sample=sequences[:1])
    spec = values = 0
    for name in harness.encoded_names:
        w = harness.checkpoint[name]
        keep = harness.mask(name, 0.5, "wanda", 64)
        enc = encode(w, keep, FormatParams(mantissa_bits=3, exponent_coding="raw", group_size=64))
        spec += enc.speculation_bits
        values += w.numel()
    assert draft.weight_bits == spec / values
    # raw coding: bitmap 1 + kept * (1 sign + 3 mantissa + 8 exponent) per value, no padding in payload bits
    assert draft.weight_bits == 1 + 0.5 * 12
    assert draft.kv_bits < 16 and draft.info["kv_full_bits"] > 16  # the bitmap costs one bit per value
    r = harness.evaluate(draft, sequences, gammas=[3])
    assert 0 <= r["gamma"][3]["alpha"] <= 1


def test_layer_skip_and_rtn4(harness, sequences):
    skip = layer_skip_draft(harness, [(0, "mlp"), (1, "attn")])
    assert 0 < skip.weight_fraction < 1 and skip.kv_fraction == 0.5
    rtn = rtn4_draft(harness, group=16)
    assert rtn.weight_bits == 5.0 and rtn.extra_memory_bits == 5.0
    for draft in (skip, rtn):
        r = harness.evaluate(draft, sequences, gammas=[2])
        assert 0 <= r["gamma"][2]["alpha"] <= 1
    with pytest.raises(ValueError, match="sublayer"):
        layer_skip_draft(harness, [(9, "mlp")])
    with pytest.raises(ValueError, match="group=48"):
        rtn4_draft(harness, group=48)


class _DraftFormCache(DenseKVCache):
    """A real run's cache where the draft reads every entry in its own form (what the
    Cassandra KV cache does), for drafts with a ``kv_read``."""

    def __init__(self, config, max_len, kv_read):
        super().__init__(config, max_len)
        self.kv_read = kv_read

    def read(self, layer, end, mode="full"):
        k, v = super().read(layer, end, mode)
        return self.kv_read(layer, k, v) if mode == "draft" else (k, v)


POLICIES = [
    DraftPolicy(gamma=4),
    DraftPolicy(gamma=3, tree="2x2x2"),
    DraftPolicy(gamma=4, tree="dynamic:8", width=2),
    DraftPolicy(gamma=6, threshold=0.4),
    DraftPolicy(gamma=4, lookup="alone", lookup_min=1),
    DraftPolicy(gamma=4, lookup="gated"),
    DraftPolicy(gamma=2, tree="2x2", lookup="branch", lookup_min=1),
]


@pytest.fixture(scope="module")
def harness64(tmp_path_factory):
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_dse64"))
    harness = AcceptanceHarness(str(folder), new_tokens=24, calibration_samples=4, compute_dtype=torch.float64)
    seqs = harness.sequences([("a", "def add(a, b):"), ("b", "class Stack:\n    def push(self, x):"),
                              ("c", "the the the the")])
    return harness, seqs


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.describe())
def test_policy_rounds_equal_real_runs(harness64, policy):
    """The harness drafts every round for real (the draft reading the target's KV for
    the committed tokens and its own for the round, in draft form) and skips only
    the target: its rounds equal a real run's, round by round. float64 keeps the
    teacher-forced target KV bitwise equal to the real run's after BF16 rounding."""
    harness, sequences = harness64
    draft = cassandra_draft(harness, prune=0.25, truncate=3, kv_prune=0.25, kv_truncate=3, exponent="raw")
    assert draft.kv_read is not None
    simulated = harness.run_policy(draft, sequences, policy)
    real = []
    for seq in sequences:
        prompt = seq.tokens[:seq.start]
        cache = _DraftFormCache(harness.config, len(seq.tokens) + policy.max_nodes() + 2, draft.kv_read)
        rows = []
        result = generate_speculative(harness.model, draft.weights, harness.reference, cache, prompt,
                                      seq.new_tokens, policy=policy, eos_ids=harness.tokenizer.eos_token_ids,
                                      draft_bytes=lambda ctx, n: rows.append(n) or n)
        assert result.tokens == seq.tokens[seq.start:]
        real.append((result, rows))
    assert simulated.round_accepted == [r.round_accepted for r, _ in real]
    assert simulated.proposed == sum(r.proposed for r, _ in real)
    assert simulated.draft_rows == [n for _, rows in real for n in rows]
    assert simulated.tau == GenerationResult.combine(r for r, _ in real).tau
    assert 0 < simulated.accepted  # not a trivial case


def test_policy_rounds_of_a_chain_equal_simulate_rounds_with_exact_kv(harness, sequences):
    """A chain with a draft whose KV equals the target's: run_policy and the batched
    teacher-forced simulation agree."""
    draft = plain_draft(harness)
    r = harness.run_policy(draft, sequences, DraftPolicy(gamma=3))
    batched = harness.evaluate(draft, sequences, gammas=[3])["gamma"][3]
    assert (r.rounds, r.accepted, r.proposed) == (batched["rounds"], batched["accepted"], batched["proposed"])
    assert r.alpha == 1.0


def test_fair_bits_and_memory_per_target(harness, sequences):
    """What each draft's step and the verification read on the BF16 and the compressed
    target, and the memory each costs."""
    from bench.policies import draft_bits, memory_vs_bf16

    lossless = {"weight_bits": 12.0, "kv_bits": 12.5}
    cas = cassandra_draft(harness, prune=0.5, truncate=4, kv_truncate=4, exponent="raw", kv_sample=sequences[:1])
    b = draft_bits(cas, "compressed", lossless)
    assert (b.weight_draft_bits, b.weight_full_bits) == (cas.weight_bits, cas.info["weight_full_bits"])
    assert draft_bits(cas, "bf16", lossless).weight_full_bits == 16.0
    assert memory_vs_bf16(cas, "compressed", lossless) == cas.info["weight_full_bits"] / 16 - 1
    assert memory_vs_bf16(cas, "bf16", lossless) == cas.weight_bits / 16  # a second copy beside BF16
    rtn = rtn4_draft(harness, group=16)
    b = draft_bits(rtn, "compressed", lossless)
    assert (b.weight_draft_bits, b.weight_full_bits, b.kv_draft_bits, b.kv_full_bits) == (5.0, 12.0, 12.5, 12.5)
    assert memory_vs_bf16(rtn, "compressed", lossless) == (12.0 + 5.0) / 16 - 1
    skip = layer_skip_draft(harness, [(0, "attn")])
    b = draft_bits(skip, "bf16", lossless)
    assert b.weight_draft_bits == 16.0 * skip.weight_fraction and b.kv_draft_bits == 16.0 * 0.5
    assert memory_vs_bf16(skip, "bf16", lossless) == 0.0
    assert draft_bits(None, "compressed", lossless).weight_full_bits == 12.0
    asym = rtn4_asym_draft(harness, group=16)
    assert asym.weight_bits == 6.0
    r = harness.run_policy(asym, sequences, DraftPolicy(gamma=2))
    assert r.rounds > 0 and 0 <= r.alpha <= 1
    lookup = harness.run_policy(None, sequences, DraftPolicy(gamma=4, lookup="alone"))
    assert lookup.draft_rows == [] and lookup.tau >= 1
    with pytest.raises(ValueError, match="only lookup alone"):
        harness.run_policy(None, sequences, DraftPolicy(gamma=2))
