"""The KV cache in Cassandra format: what readers get, rollback, exact sizes."""

import pytest
import torch

from golden.format.codec import bf16_bits, encode
from golden.format.params import FormatParams, keep_count
from golden.format.select import magnitude_topk_mask
from golden.llm.llama import LlamaConfig
from golden.pipeline.encoded_model import CassandraKVCache

CONFIG = LlamaConfig(vocab_size=16, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16)
CODEBOOKS = [torch.tensor([127, 126, 128, 125, 124, 129, 123, 122])] * 2


def _cache(prune=0.25, mantissa_bits=3, coding="unary"):
    params = FormatParams(group_size=16, mantissa_bits=mantissa_bits, exponent_coding=coding, superblock_groups=1)
    return CassandraKVCache(CONFIG, params, 32, kv_prune_ratio=prune, codebooks=CODEBOOKS), params


def _kv(T, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, CONFIG.num_key_value_heads, T, 16, generator=g).to(torch.bfloat16)


def _draft_by_definition(x, prune, mantissa_bits, midpoint=False):
    """Per head vector: magnitude top-k kept, low mantissa bits zeroed (midpoint: the
    highest of them set in a normal value), the rest +0."""
    vectors = x.transpose(0, 1).reshape(-1, 16)  # [T*H, D]
    keep = magnitude_topk_mask(vectors, keep=keep_count(16, prune), group_size=16)
    bits = bf16_bits(vectors)
    low = (1 << (7 - mantissa_bits)) - 1
    exponent = (bits >> 7) & 0xFF
    half = (low + 1) >> 1 if midpoint else 0
    draft = torch.where(keep, (bits & ~low) | torch.where((exponent >= 1) & (exponent <= 254), half, 0), 0)
    return draft.reshape(x.shape[1], x.shape[0], 16).transpose(0, 1)


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
def test_readers_get_full_and_draft(coding):
    cache, params = _cache(coding=coding)
    k, v = _kv(5, 0)
    cache.write(0, 0, k, v, mode="full")
    fk, fv = cache.read(0, 5, "full")
    assert torch.equal(bf16_bits(fk), bf16_bits(k)) and torch.equal(bf16_bits(fv), bf16_bits(v))
    dk, dv = cache.read(0, 5, "draft")
    if coding != "mx":
        assert torch.equal(bf16_bits(dk), _draft_by_definition(k, 0.25, 3))
        assert torch.equal(bf16_bits(dv), _draft_by_definition(v, 0.25, 3))
    else:  # shared exponents: coarser, never larger in magnitude
        assert bool((dk.float().abs() <= k.float().abs()).all())
    s, ver = cache.bits()
    assert s > 0 and ver > 0 and cache.step_bytes("draft") == s // 8 and cache.step_bytes("full") == (s + ver) // 8


@pytest.mark.parametrize("coding", ["raw", "unary"])
def test_midpoint_draft_reader(coding):
    params = FormatParams(group_size=16, mantissa_bits=3, exponent_coding=coding, superblock_groups=1)
    cache = CassandraKVCache(CONFIG, params, 32, kv_prune_ratio=0.25, codebooks=CODEBOOKS, draft_rounding="midpoint")
    k, v = _kv(5, 0)
    cache.write(0, 0, k, v, mode="full")
    fk, fv = cache.read(0, 5, "full")
    assert torch.equal(bf16_bits(fk), bf16_bits(k)) and torch.equal(bf16_bits(fv), bf16_bits(v))
    dk, dv = cache.read(0, 5, "draft")
    assert torch.equal(bf16_bits(dk), _draft_by_definition(k, 0.25, 3, midpoint=True))
    assert torch.equal(bf16_bits(dv), _draft_by_definition(v, 0.25, 3, midpoint=True))
    assert not torch.equal(bf16_bits(dk), _draft_by_definition(k, 0.25, 3))
    with pytest.raises(ValueError, match="draft_rounding='nearest'"):
        CassandraKVCache(CONFIG, params, 32, draft_rounding="nearest")


def test_rollback_keeps_exact_sizes():
    cache, params = _cache()
    k, v = _kv(10, 1)
    cache.write(1, 0, k[:, :6], v[:, :6], mode="full")
    cache.write(1, 6, k[:, 6:], v[:, 6:], mode="full")
    for pos in range(10, 13):  # draft-written entries, dropped again
        dk, dv = _kv(1, pos)
        cache.write(1, pos, dk, dv, mode="draft")
    cache.truncate(8)  # cuts the second chunk in the middle
    survivors = torch.stack([k[:, :8], v[:, :8]])  # [2, H, 8, D]
    x = survivors.permute(0, 2, 1, 3).reshape(-1, 16)
    enc = encode(x, magnitude_topk_mask(x, keep=keep_count(16, 0.25), group_size=16), params, codebook=CODEBOOKS[1])
    layer_bits = (sum(c[2] for c in cache.chunks[1]), sum(c[3] for c in cache.chunks[1]))
    assert layer_bits == (enc.speculation_bits, enc.verification_bits)
    assert [c[:2] for c in cache.chunks[1]] == [(0, 6), (6, 2)]
    fk, _ = cache.read(1, 8, "full")
    assert torch.equal(bf16_bits(fk), bf16_bits(k[:, :8]))


def test_kv_errors():
    cache, _ = _cache()
    k, v = _kv(4, 2)
    with pytest.raises(ValueError, match="max_len=32"):
        cache.write(0, 30, k, v)
    with pytest.raises(ValueError, match="group_size=64 must equal head_dim=16"):
        CassandraKVCache(CONFIG, FormatParams(group_size=64), 8)
