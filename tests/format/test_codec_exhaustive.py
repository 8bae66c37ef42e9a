"""Every one of the 65536 BF16 bit patterns, in every exponent coding and for
every kept-mantissa width: full decode returns the bits exactly, draft decode
equals the definition (tests/format/reference.py)."""

import numpy as np
import pytest
import torch

from golden import FormatParams, bf16_bits, bf16_from_bits, decode, encode, magnitude_topk_mask
from golden.format.params import EXPONENT_CODINGS
from tests.format.reference import draft_bits, midpoint_draft_bits

ALL_PATTERNS = torch.arange(65536, dtype=torch.int64)


def _patterns(order: str) -> torch.Tensor:
    if order == "sorted":
        bits = ALL_PATTERNS
    else:
        bits = ALL_PATTERNS[torch.randperm(65536, generator=torch.Generator().manual_seed(1))]
    return bf16_from_bits(bits).reshape(1024, 64)


def _mask(kind: str, x: torch.Tensor) -> torch.Tensor:
    if kind == "all":
        return torch.ones(x.shape, dtype=torch.bool)
    if kind == "none":
        return torch.zeros(x.shape, dtype=torch.bool)
    if kind == "topk":
        return magnitude_topk_mask(x, keep=38, group_size=64)
    return torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) < 0.6


@pytest.mark.parametrize("coding", EXPONENT_CODINGS)
@pytest.mark.parametrize("mantissa_bits", range(8))
@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_all_patterns_full_exact_and_draft_by_definition(coding, mantissa_bits, order):
    x = _patterns(order)
    original = bf16_bits(x)
    for kind in ("all", "none", "topk", "random"):
        keep = _mask(kind, x)
        params = FormatParams(group_size=64, mantissa_bits=mantissa_bits, exponent_coding=coding, superblock_groups=16)
        enc = encode(x, keep, params)
        full = decode(enc, "full")
        assert full.dtype == torch.bfloat16 and full.shape == x.shape
        assert torch.equal(bf16_bits(full), original), (coding, mantissa_bits, kind)
        draft = bf16_bits(decode(enc, "draft")).numpy().reshape(-1)
        expected = draft_bits(original.numpy(), keep.numpy(), params)
        mismatch = np.nonzero(draft != expected)[0]
        assert mismatch.size == 0, (
            f"{coding} m={mantissa_bits} {kind}: draft differs at {mismatch[:5]}: "
            f"got {[hex(v) for v in draft[mismatch[:5]]]}, want {[hex(v) for v in expected[mismatch[:5]]]}"
        )


@pytest.mark.parametrize("coding", ["raw", "unary"])
@pytest.mark.parametrize("mantissa_bits", range(8))
def test_all_patterns_midpoint_draft_by_definition(coding, mantissa_bits):
    """``rounding="midpoint"``: normal kept values sit half a quantum above the
    truncated magnitude; zeros, subnormals, Inf and NaN draft as truncated; the
    full decode is untouched."""
    x = _patterns("shuffled")
    original = bf16_bits(x)
    for kind in ("all", "random") if mantissa_bits == 3 else ("all",):  # "all": every pattern kept
        keep = _mask(kind, x)
        params = FormatParams(group_size=64, mantissa_bits=mantissa_bits, exponent_coding=coding, superblock_groups=16)
        enc = encode(x, keep, params)
        draft = bf16_bits(decode(enc, "draft", rounding="midpoint")).numpy().reshape(-1)
        expected = midpoint_draft_bits(original.numpy(), keep.numpy(), params)
        mismatch = np.nonzero(draft != expected)[0]
        assert mismatch.size == 0, (
            f"{coding} m={mantissa_bits} {kind}: midpoint draft differs at {mismatch[:5]}: "
            f"got {[hex(v) for v in draft[mismatch[:5]]]}, want {[hex(v) for v in expected[mismatch[:5]]]}"
        )
        assert torch.equal(bf16_bits(decode(enc, "full")), original)


def test_draft_rounding_errors():
    x = _patterns("sorted")
    keep = _mask("topk", x)
    enc = encode(x, keep, FormatParams(exponent_coding="unary"))
    with pytest.raises(ValueError, match="rounding='nearest' is not one of"):
        decode(enc, "draft", rounding="nearest")
    with pytest.raises(ValueError, match="applies to draft decode only"):
        decode(enc, "full", rounding="midpoint")
    with pytest.raises(ValueError, match="not mx"):
        decode(encode(x, keep, FormatParams(exponent_coding="mx")), "draft", rounding="midpoint")


def test_draft_sees_no_verification_bits():
    """Changing only the verification data must not change the draft."""
    x = _patterns("shuffled")
    keep = _mask("random", x)
    for coding in EXPONENT_CODINGS:
        enc = encode(x, keep, FormatParams(exponent_coding=coding))
        draft = decode(enc, "draft")
        for name in ("mantissa_low", "pruned_raw"):
            enc.streams[name].words = torch.zeros_like(enc.streams[name].words) - 1
        assert torch.equal(bf16_bits(decode(enc, "draft")), bf16_bits(draft))
