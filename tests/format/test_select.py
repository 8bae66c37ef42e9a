"""Selectors against plain-Python references of their tie rules."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from golden import activation_l2_norm, bf16_from_bits, magnitude_topk_mask, wanda_topk_mask
from tests.samples import SPECIAL_PATTERNS


def _ref_magnitude(bits_row, keep):
    order = sorted(range(len(bits_row)), key=lambda i: (-(bits_row[i] & 0x7FFF), i))
    return set(order[:keep])


@given(st.integers(0, 2**31 - 1), st.sampled_from([8, 16, 64]), st.data())
def test_magnitude_matches_reference(seed, group, data):
    rng = np.random.default_rng(seed)
    # few distinct values so that ties are common; NaN, Inf, +-0, subnormals among them
    pool = np.array(SPECIAL_PATTERNS)
    bits = rng.choice(pool, size=(3, group * 2))
    keep = data.draw(st.integers(0, group))
    mask = magnitude_topk_mask(bf16_from_bits(torch.from_numpy(bits)), keep=keep, group_size=group)
    for r in range(3):
        for g in range(2):
            row = bits[r, g * group : (g + 1) * group].tolist()
            got = set(torch.nonzero(mask[r, g * group : (g + 1) * group]).reshape(-1).tolist())
            assert got == _ref_magnitude(row, keep)


def test_magnitude_tie_rule_examples():
    x = bf16_from_bits(torch.tensor([[0x8000, 0x0000, 0x3F80, 0xBF80, 0x7FC0, 0x7F80, 0x3F80, 0x0001]]))
    # NaN first, then Inf, then the two 1.0 magnitudes (lower index first)
    mask = magnitude_topk_mask(x, keep=3, group_size=8)
    assert torch.nonzero(mask[0]).reshape(-1).tolist() == [2, 4, 5]
    mask = magnitude_topk_mask(x, keep=7, group_size=8)
    assert torch.nonzero(~mask[0]).reshape(-1).tolist() == [1]  # +0.0 loses the tie to -0.0 at index 0


def test_wanda_matches_reference():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(6, 40, generator=g).to(torch.bfloat16)
    w[0, :4] = 1.0  # ties in score
    acts = torch.randn(128, 40, generator=g)
    norm = activation_l2_norm(acts)
    np.testing.assert_allclose(norm.numpy(), np.sqrt((acts.double().numpy() ** 2).sum(0)), rtol=1e-6)
    mask = wanda_topk_mask(w, norm, keep=24)
    score = (w.float().abs() * norm).tolist()
    for r in range(6):
        order = sorted(range(40), key=lambda i: (-score[r][i], i))
        assert set(torch.nonzero(mask[r]).reshape(-1).tolist()) == set(order[:24])
    assert mask.sum(1).tolist() == [24] * 6


def test_selector_errors():
    x = torch.zeros(2, 64, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="keep=65 is out of range"):
        magnitude_topk_mask(x, keep=65, group_size=64)
    with pytest.raises(TypeError, match="float32"):
        magnitude_topk_mask(x.float(), keep=3, group_size=64)
    with pytest.raises(ValueError, match="group_size=48"):
        magnitude_topk_mask(x, keep=3, group_size=48)
    with pytest.raises(ValueError, match="activation_norm has 3 entries; weight has 64"):
        wanda_topk_mask(x, torch.ones(3), keep=3)
    with pytest.raises(ValueError, match="finite"):
        wanda_topk_mask(x, torch.full((64,), float("nan")), keep=3)
    with pytest.raises(ValueError, match="NaN or Inf"):
        activation_l2_norm(torch.tensor([[float("inf")]]))
