"""Independent expressions of the format's definitions, for the tests.

These are written from docs/FORMAT.md with numpy and float64 arithmetic, not
from the codec's code: the draft value is the original truncated toward zero
to a power-of-two quantum, and the unary code lengths are counted per value.
"""

from __future__ import annotations

import numpy as np
import torch

from golden.format.params import FormatParams


def float64_of_bits(bits: np.ndarray) -> np.ndarray:
    signed = np.where(bits >= 0x8000, bits - 0x10000, bits).astype(np.int16)
    return torch.from_numpy(signed).view(torch.bfloat16).to(torch.float64).numpy()


def bits_of_float64(values: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(values)
    b = t.to(torch.bfloat16)
    assert torch.equal(b.to(torch.float64).isnan(), t.isnan())
    finite = ~t.isnan()
    assert torch.equal(b.to(torch.float64)[finite], t[finite]), "draft value not representable in BF16"
    return (b.view(torch.int16).to(torch.int64) & 0xFFFF).numpy()


def shared_exponents(bits: np.ndarray, keep: np.ndarray, params: FormatParams) -> np.ndarray:
    """Per value: max(max(e, 1)) over its mx block (blocks of B kept values per group)."""
    G, B = params.group_size, params.mx_block_size
    e = np.maximum((bits >> 7) & 0xFF, 1).reshape(-1, G)
    k = keep.reshape(-1, G)
    rows = e.shape[0]
    blocks_per_row = (G + B - 1) // B
    rank = np.cumsum(k, axis=1) - 1
    block = np.arange(rows)[:, None] * blocks_per_row + rank // B
    shared = np.zeros(rows * blocks_per_row, dtype=np.int64)
    np.maximum.at(shared, block[k], e[k])
    return shared[block].reshape(-1)


def draft_bits(bits: np.ndarray, keep: np.ndarray, params: FormatParams) -> np.ndarray:
    """The draft decode by its definition: kept values truncated toward zero to
    a quantum of 2**(E - 127 - m), E = max(e, 1) (raw, unary) or the block's
    shared exponent (mx); pruned values +0.0; NaN keeps its high mantissa bits."""
    bits = bits.reshape(-1).astype(np.int64)
    keep = keep.reshape(-1).astype(bool)
    m = params.mantissa_bits
    e = (bits >> 7) & 0xFF
    if params.exponent_coding == "mx":
        quantum_exp = shared_exponents(bits, keep, params)
    else:
        quantum_exp = np.maximum(e, 1)
    value = float64_of_bits(bits)
    quantum = np.ldexp(1.0, (quantum_exp - 127 - m).astype(np.int32))
    with np.errstate(invalid="ignore"):
        magnitude = np.floor(np.abs(value) / quantum) * quantum
    is_nan = np.isnan(value)
    magnitude[is_nan] = 0.0
    out = bits_of_float64(magnitude) | ((bits >> 15) << 15)
    truncated = bits & ~((1 << (7 - m)) - 1)
    out = np.where(is_nan, truncated, out)
    return np.where(keep, out, 0)


def midpoint_draft_bits(bits: np.ndarray, keep: np.ndarray, params: FormatParams) -> np.ndarray:
    """The midpoint draft decode (raw, unary) by its definition: a kept normal value
    (1 <= e <= 254) is truncated toward zero to a quantum of 2**(e - 127 - m) and
    moved half a quantum away from zero when bits are truncated; every other value
    drafts as with truncation."""
    bits = bits.reshape(-1).astype(np.int64)
    truncated = draft_bits(bits, keep, params)
    e = (bits >> 7) & 0xFF
    if params.mantissa_bits == 7:
        return truncated
    value = float64_of_bits(truncated)
    half = np.ldexp(1.0, (e - 127 - params.mantissa_bits - 1).astype(np.int32))
    normal = keep.reshape(-1).astype(bool) & (e >= 1) & (e <= 254)
    with np.errstate(invalid="ignore", over="ignore"):
        moved = np.where(normal, np.sign(value) * (np.abs(value) + half), value)
    out = bits_of_float64(np.where(normal, moved, 0.0)) | ((bits >> 15) << 15)
    return np.where(normal, out, truncated)


def unary_exponent_bits(bits: np.ndarray, keep: np.ndarray, codebook, L: int) -> int:
    exps = ((bits.reshape(-1)[keep.reshape(-1)] >> 7) & 0xFF).tolist()
    rank = {int(c): i for i, c in enumerate(codebook)}
    return sum(rank[x] + 1 if x in rank else L + 8 for x in exps)
