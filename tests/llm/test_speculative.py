"""Speculative decoding keeps the target's output: greedy tokens equal plain
decoding, and sampled tokens follow the target's distribution (statistical
tests with fixed seeds)."""


import pytest
import torch

from golden.format.params import FormatParams
from golden.llm.llama import DenseKVCache, Llama, dense_weights, load_checkpoint
from golden.llm.speculative import Sampler, generate_plain, generate_speculative
from golden.pipeline.encoded_model import CassandraWeights
from tests.tiny_model import make_tiny_checkpoint


# ---------------------------------------------------------------------------
# The acceptance rule alone, on a model whose next-token distributions are fixed tables
# ---------------------------------------------------------------------------
class TableModel:
    """forward() returns, for each input position, logits that depend only on the
    position and on whether the draft or the target is asked (``weights``)."""

    def __init__(self, target_logits, draft_logits):
        self.tables = {"target": target_logits, "draft": draft_logits}

    def forward(self, tokens, weights, cache, *, start, mode="full"):
        T = len(tokens)
        cache.length = start + T
        return self.tables[weights][start : start + T]


class NullCache:
    length = 0

    def truncate(self, n):
        self.length = min(self.length, n)


def _tv(a, b):
    return 0.5 * float((a - b).abs().sum())


def test_sampling_acceptance_matches_target_distribution():
    V, positions = 5, 8
    g = torch.Generator().manual_seed(0)
    target = torch.randn(positions, V, generator=g) * 1.5
    draft = torch.randn(positions, V, generator=g) * 1.5  # unrelated: many rejections
    model = TableModel(target, draft)
    p = torch.softmax(target.double(), -1)
    q = torch.softmax(draft.double(), -1)
    prompt = [0, 0]  # output token j is drawn at position 1 + j
    trials = 6000
    counts = torch.zeros(4, V, dtype=torch.float64)
    pair = torch.zeros(V, V, dtype=torch.float64)
    sampler = Sampler(sample=True, seed=123)
    proposed = accepted = 0
    for _ in range(trials):
        r = generate_speculative(model, "draft", "target", NullCache(), prompt, 4, gamma=3, sampler=sampler)
        assert len(r.tokens) == 4
        for j, t in enumerate(r.tokens):
            counts[j, t] += 1
        pair[r.tokens[1], r.tokens[2]] += 1
        proposed += r.proposed
        accepted += r.accepted
    assert 0.2 < accepted / proposed < 0.9  # the draft is wrong often enough to exercise rejection
    for j in range(4):
        empirical = counts[j] / trials
        assert _tv(empirical, p[1 + j]) < 0.03, (j, empirical, p[1 + j])
    # tokens are independent here, so the joint of two speculative positions is the product
    joint = pair / trials
    assert _tv(joint.reshape(-1), torch.outer(p[2], p[3]).reshape(-1)) < 0.05
    # and the test can fail: the draft's own distribution is far from the target's
    assert min(_tv(q[1 + j], p[1 + j]) for j in range(1, 4)) > 0.1


def test_greedy_acceptance_counts():
    target = torch.tensor([[0, 5, 0, 0], [0, 0, 5, 0], [5, 0, 0, 0], [0, 0, 0, 5]] * 3, dtype=torch.float32)
    draft = target.clone()
    draft[3] = torch.tensor([5.0, 0, 0, 0])  # the draft is wrong at position 3 only
    model = TableModel(target, draft)
    r = generate_speculative(model, "draft", "target", NullCache(), [0], 6, gamma=3)
    plain = [int(target[i].argmax()) for i in range(0, 6)]
    assert r.tokens == plain
    # round 1: drafts for positions 1, 2, 3; the one at position 3 is rejected
    assert r.proposed >= 3 and r.accepted == r.proposed - 1
    assert r.tau == pytest.approx((r.accepted + r.target_forwards) / r.target_forwards)


# ---------------------------------------------------------------------------
# A real (tiny) model in Cassandra format
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))
    config, ckpt = load_checkpoint(folder)
    weights = CassandraWeights(
        config, ckpt, FormatParams(group_size=16, mantissa_bits=2), prune_ratio=0.5, selector="magnitude"
    )
    return config, ckpt, weights


def test_tiny_model_sampling_distribution(tiny):
    """First speculative token over many seeded trials vs the exact target marginal."""
    config, ckpt, weights = tiny
    model = Llama(config)
    target, draft = weights.view("full"), weights.view("draft")
    torch.testing.assert_close(target["lm_head.weight"], dense_weights(ckpt)["lm_head.weight"], rtol=0, atol=0)
    prompt = [5, 17, 42]
    temperature = 0.7
    exact = Sampler(sample=True, temperature=temperature)

    def dist(weights_, tokens):
        logits = model.forward(tokens, weights_, DenseKVCache(config, 8), start=0)
        return exact.probs(logits[-1])

    p1 = dist(target, prompt)
    support = torch.nonzero(p1 > 1e-4).reshape(-1).tolist()
    p2 = sum(p1[x1] * dist(target, prompt + [x1]) for x1 in support)
    q2 = sum(p1[x1] * dist(draft, prompt + [x1]) for x1 in support)
    assert _tv(p2, q2) > 0.1  # the draft differs: a broken acceptance rule would show
    sampler = Sampler(sample=True, temperature=temperature, seed=7)
    trials = 1500
    counts = torch.zeros(config.vocab_size, dtype=torch.float64)
    for _ in range(trials):
        r = generate_speculative(model, draft, target, DenseKVCache(config, 8), prompt, 2, gamma=1, sampler=sampler)
        counts[r.tokens[1]] += 1
    # compare on bins: the 7 most likely tokens one by one, the rest together
    top = torch.argsort(p2, descending=True)[:7]

    def binned(d):
        return torch.cat([d[top], (1 - d[top].sum()).reshape(1)])

    assert _tv(binned(q2), binned(p2)) > 0.1  # binned, the draft still differs
    tv = _tv(binned(counts / trials), binned(p2))
    # an exact sampler's binned TV at N=1500 is ~0.02 (sd ~0.01)
    assert tv < 0.05, tv


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_tiny_model_greedy_lossless(tiny, dtype):
    config, ckpt, weights = tiny
    model = Llama(config, compute_dtype=dtype)
    draft = {k: v.to(dtype) for k, v in weights.view("draft").items()}
    target = {k: v.to(dtype) for k, v in weights.view("full").items()}
    plain = generate_plain(model, dense_weights(ckpt, dtype=dtype), DenseKVCache(config, 64), [3, 9, 27], 40)
    for gamma in (1, 3, 5):
        for verify in ("sequential", "parallel"):
            spec = generate_speculative(
                model, draft, target, DenseKVCache(config, 64), [3, 9, 27], 40, gamma=gamma, verify=verify
            )
            if verify == "sequential":  # bitwise the plain computation
                assert spec.tokens == plain.tokens
            assert spec.proposed > 0 and 0 <= spec.alpha <= 1 and spec.tau >= 1
