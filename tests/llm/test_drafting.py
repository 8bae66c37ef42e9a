"""Token trees, adaptive stops and n-gram lookup: the building blocks, the
multi-draft acceptance rule (statistical), and greedy output identical to plain
decoding in every drafting mode, with the dense and the Cassandra KV cache, in
both verification modes."""

import pytest
import torch

from golden.format.params import FormatParams
from golden.llm.drafting import (
    DraftPolicy,
    DraftTree,
    ngram_lookup,
    parse_tree,
    tree_attention_mask,
)
from golden.llm.llama import DenseKVCache, Llama, dense_weights, load_checkpoint
from golden.llm.speculative import (
    Sampler,
    _accept,
    generate_plain,
    generate_speculative,
)
from golden.pipeline.encoded_model import CassandraKVCache, CassandraWeights
from tests.tiny_model import make_tiny_checkpoint


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------
def test_parse_tree():
    assert parse_tree("2x2x2") == ("static", (2, 2, 2))
    assert parse_tree("4") == ("static", (4,))
    assert parse_tree("dynamic:16") == ("dynamic", 16)


@pytest.mark.parametrize("text", ["", "2x", "x2", "0x2", "2x17", "dynamic:0", "dynamic:300", "8x8x8", "tree", "2*2"])
def test_parse_tree_rejects(text):
    with pytest.raises(ValueError, match="tree="):
        parse_tree(text)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gamma=0), "gamma=0"), (dict(threshold=1.0), "threshold=1.0"), (dict(threshold=-0.1), "threshold=-0.1"),
    (dict(lookup="always"), "lookup='always'"), (dict(lookup_min=0), "lookup_min=0"),
    (dict(lookup_min=5, lookup_max=4), "lookup_min=5"), (dict(width=0), "width=0"), (dict(tree="3y"), "tree='3y'"),
])
def test_policy_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        DraftPolicy(**kwargs)


def test_policy_sizes():
    assert DraftPolicy(gamma=5).max_nodes() == 5
    assert DraftPolicy(gamma=5).widths == (1,) * 5
    assert DraftPolicy(tree="2x2x2").max_nodes() == 14
    assert DraftPolicy(gamma=3, tree="2x2", lookup="branch").max_nodes() == 6 + 3
    assert DraftPolicy(gamma=4, tree="dynamic:10", width=2).max_nodes() == 16
    assert "tree 2x2x2" in DraftPolicy(tree="2x2x2").describe()


def test_ngram_lookup():
    ctx = [1, 2, 3, 4, 5, 9, 1, 2, 3]
    assert ngram_lookup(ctx, max_tokens=3) == [4, 5, 9]  # the suffix 1 2 3 matched
    assert ngram_lookup(ctx, max_tokens=1) == [4]
    assert ngram_lookup(ctx, max_tokens=3, min_match=4) == []  # 9 1 2 3 never occurred before
    assert ngram_lookup([7, 8, 7, 8, 6, 7, 8], max_tokens=2) == [6, 7]  # the most recent occurrence
    assert ngram_lookup([5, 6, 7], max_tokens=4) == []
    assert ngram_lookup([4, 4, 4, 4], max_tokens=3, min_match=2, max_match=2) == [4, 4, 4]  # copies past the end
    assert ngram_lookup([1, 2, 3, 1, 2], max_tokens=5) == [3, 1, 2, 3, 1]


def test_tree_structure_and_mask():
    tree = DraftTree.root(10)
    a = tree.add(0, 11, 0.6)
    b = tree.add(0, 12, 0.3)
    c = tree.add(a, 13, 0.5)
    assert tree.add(0, 11, 0.7) == a and tree.probs[a] == 0.7  # same token, same node
    assert tree.path(c) == [a, c] and tree.depths[c] == 2 and tree.child(a, 13) == c and tree.child(b, 13) is None
    slots = {0: 5, a: 6, b: 7, c: 8}
    mask = tree_attention_mask(tree, [a, b, c], slots, 5, 9)
    assert mask.tolist() == [[True] * 5 + [True, True, False, False],
                             [True] * 5 + [True, False, True, False],
                             [True] * 5 + [True, True, False, True]]
    small = tree.prune_to([c])
    assert small.tokens == [10, 11, 13] and small.parents == [-1, 0, 1]
    tree.insert_chain([12, 14])
    assert tree.trials[0][0] == (12, None) and tree.child(b, 14) is not None


# ---------------------------------------------------------------------------
# Multi-draft acceptance: the output follows the target distribution
# ---------------------------------------------------------------------------
def _tv(a, b):
    return 0.5 * float((a - b).abs().sum())


def test_multi_draft_rejection_keeps_the_target_distribution():
    """One node with a deterministic candidate (lookup) tried first, then three
    independent draws from the draft's q: the committed token follows p."""
    V = 6
    g = torch.Generator().manual_seed(3)
    p_logits = torch.randn(V, generator=g) * 1.5
    q = torch.softmax(torch.randn(V, generator=g).double() * 1.5, -1)
    p = torch.softmax(p_logits.double(), -1)
    assert _tv(p, q) > 0.2
    sampler = Sampler(sample=True, seed=11)
    trials = 20000
    counts = torch.zeros(V, dtype=torch.float64)
    for _ in range(trials):
        tree = DraftTree.root(0)
        tree.trials[0] = [(2, None)] + [(sampler.draw(q), q) for _ in range(3)]
        for token, _ in tree.trials[0]:
            tree.add(0, token)
        accepted, correction = _accept(tree, {n: p_logits for n in range(len(tree))}, sampler)
        counts[accepted[0] if accepted else correction] += 1
    assert _tv(counts / trials, p) < 0.015, (counts / trials, p)
    # the rule matters: taking the first candidate p likes better than q does is far off
    biased = torch.zeros(V, dtype=torch.float64)
    biased[2] = 1.0
    assert _tv(biased, p) > 0.2


class TableModel:
    """Logits that depend only on the row's position and on draft vs target."""

    def __init__(self, target_logits, draft_logits):
        self.tables = {"target": target_logits, "draft": draft_logits}

    def forward(self, tokens, weights, cache, *, start, mode="full", positions=None, attention_mask=None):
        T = len(tokens)
        cache.length = start + T
        rows = torch.arange(start, start + T) if positions is None else torch.as_tensor(positions)
        return self.tables[weights][rows]


class NullCache:
    length = 0

    def truncate(self, n):
        self.length = min(self.length, n)

    def keep_slots(self, start, slots):
        self.length = start + len(slots)


@pytest.mark.parametrize("tree", ["2x2", "dynamic:4"])
def test_tree_sampling_matches_target_distribution(tree):
    V, positions = 5, 8
    g = torch.Generator().manual_seed(1)
    target = torch.randn(positions, V, generator=g) * 1.5
    draft = torch.randn(positions, V, generator=g) * 1.5
    p = torch.softmax(target.double(), -1)
    model = TableModel(target, draft)
    policy = DraftPolicy(gamma=2, tree=tree, width=2, threshold=0.05)
    sampler = Sampler(sample=True, seed=5)
    trials = 5000
    counts = torch.zeros(4, V, dtype=torch.float64)
    proposed = accepted = 0
    for _ in range(trials):
        r = generate_speculative(model, "draft", "target", NullCache(), [0, 0], 4, policy=policy, sampler=sampler,
                                 verify="parallel")
        assert len(r.tokens) == 4
        for j, t in enumerate(r.tokens):
            counts[j, t] += 1
        proposed += r.proposed
        accepted += r.accepted
    assert 0.1 < accepted / proposed < 0.9
    for j in range(4):
        assert _tv(counts[j] / trials, p[1 + j]) < 0.035, (j, counts[j] / trials, p[1 + j])


# ---------------------------------------------------------------------------
# Greedy: identical to plain decoding in every mode
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")
    config, ckpt = load_checkpoint(folder)
    weights = CassandraWeights(config, ckpt, FormatParams(group_size=16, mantissa_bits=6), prune_ratio=0.0,
                               selector="magnitude")
    return config, ckpt, weights


POLICIES = [
    DraftPolicy(gamma=4),
    DraftPolicy(gamma=3, tree="2x2x2"),
    DraftPolicy(gamma=4, tree="dynamic:10", width=3),
    DraftPolicy(gamma=5, threshold=0.5),
    DraftPolicy(gamma=3, tree="3x2", threshold=0.2),
    DraftPolicy(gamma=4, lookup="alone"),
    DraftPolicy(gamma=4, lookup="gated"),
    DraftPolicy(gamma=3, tree="2x2", lookup="branch"),
]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.describe())
def test_greedy_lossless_every_mode(tiny, policy):
    config, ckpt, weights = tiny
    model = Llama(config)
    draft, target = weights.view("draft"), weights.view("full")
    prompt = [3, 9, 27, 3, 9, 27, 5]
    plain = generate_plain(model, dense_weights(ckpt), DenseKVCache(config, 200), prompt, 40)
    kv_params = FormatParams(group_size=config.head_dim, mantissa_bits=3, superblock_groups=1, exponent_coding="raw")
    for verify in ("sequential", "parallel"):
        for cache in (DenseKVCache(config, 200), CassandraKVCache(config, kv_params, 200)):
            rows = []
            r = generate_speculative(model, draft, target, cache, prompt, 40, policy=policy, verify=verify,
                                     draft_bytes=lambda ctx, n: rows.append(n) or n, verify_bytes=lambda n, ctx: n)
            assert r.tokens == plain.tokens, (verify, type(cache).__name__)
            assert r.tau >= 1 and len(r.tokens) - 1 <= r.committed <= len(r.tokens) + policy.gamma
            if policy.lookup != "alone":
                assert r.accepted > 0 and rows
            if policy.tree is not None:  # the rounds verified real trees, not chains
                depth = policy.gamma if policy.kind == "dynamic" else len(policy.widths)
                assert max(r.verify_step_bytes) > depth + 1
            assert max(r.verify_step_bytes) <= policy.max_nodes() + 1
            # the cache holds exactly the committed tokens' entries, in order
            if isinstance(cache, CassandraKVCache):
                assert [c[:2] for c in cache.chunks[0]][0] == (0, len(prompt))
                assert sum(c[1] for c in cache.chunks[0]) == cache.length


@pytest.mark.parametrize("policy", [DraftPolicy(gamma=4), DraftPolicy(gamma=4, tree="dynamic:10", width=3)],
                         ids=lambda p: p.describe())
def test_greedy_lossless_with_midpoint_draft(tiny, policy):
    """A midpoint draft (weights and KV) changes what is proposed, not the output."""
    config, ckpt, _ = tiny
    weights = CassandraWeights(config, ckpt, FormatParams(group_size=16, mantissa_bits=2), prune_ratio=0.25,
                               selector="magnitude", draft_rounding="midpoint")
    truncated = CassandraWeights(config, ckpt, FormatParams(group_size=16, mantissa_bits=2), prune_ratio=0.25,
                                 selector="magnitude")
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(weights.view("draft")[name], truncated.view("draft")[name])
    assert torch.equal(weights.view("full")[name], truncated.view("full")[name])
    model = Llama(config)
    prompt = [3, 9, 27, 3, 9, 27, 5]
    plain = generate_plain(model, dense_weights(ckpt), DenseKVCache(config, 200), prompt, 40)
    kv_params = FormatParams(group_size=config.head_dim, mantissa_bits=3, superblock_groups=1, exponent_coding="raw")
    cache = CassandraKVCache(config, kv_params, 200, draft_rounding="midpoint")
    r = generate_speculative(model, weights.view("draft"), weights.view("full"), cache, prompt, 40, policy=policy)
    assert r.tokens == plain.tokens and r.accepted > 0


def test_lookup_drafts_repeat_the_context():
    """A target that repeats a period-3 pattern: lookup alone proposes it and the
    target accepts every proposal after the first period."""
    V = 8
    pattern = [4, 6, 2]
    target = torch.full((64, V), -5.0)
    for t in range(64):
        target[t, pattern[(t + 1) % 3]] = 5.0  # the token at position t + 1
    model = TableModel(target, torch.zeros(64, V))
    prompt = [pattern[t % 3] for t in range(4)]
    plain = generate_plain(model, "target", NullCache(), prompt, 30)
    r = generate_speculative(model, "draft", "target", NullCache(), prompt, 30,
                             policy=DraftPolicy(gamma=4, lookup="alone"))
    assert r.tokens == plain.tokens
    assert r.draft_forwards == 0 and r.alpha == 1.0 and r.tau == 5.0


def test_chat_prompts_select_and_check():
    from golden.llm.datasets import CALIBRATION_TEXTS, CHAT_PROMPTS, chat_prompts

    assert len(CHAT_PROMPTS) == 48 and len(set(CHAT_PROMPTS)) == 48
    assert not set(CHAT_PROMPTS) & set(CALIBRATION_TEXTS)  # evaluation text kept apart from calibration
    assert chat_prompts(8, 10) == [("chat/8", CHAT_PROMPTS[8]), ("chat/9", CHAT_PROMPTS[9])]
    assert len(chat_prompts(40)) == 8 and len(chat_prompts(40, 999)) == 8
    with pytest.raises(ValueError, match="--chat-offset 48 is out of range"):
        chat_prompts(48, label="--chat-offset")
    with pytest.raises(ValueError, match="range is empty"):
        chat_prompts(5, 5)
