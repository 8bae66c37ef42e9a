"""Property tests over parameters, shapes and masks (hypothesis)."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from golden import EncodedTensor, FormatParams, bf16_bits, bf16_from_bits, decode, encode
from golden.format.params import EXPONENT_CODINGS
from tests.format.reference import draft_bits, unary_exponent_bits


@st.composite
def cases(draw):
    params = FormatParams(
        group_size=draw(st.sampled_from([8, 16, 32, 64, 128])),
        mantissa_bits=draw(st.integers(0, 7)),
        exponent_coding=draw(st.sampled_from(EXPONENT_CODINGS)),
        mx_block_size=draw(st.sampled_from([2, 4, 8, 16, 32])),
        unary_max_code_length=draw(st.integers(1, 16)),
        superblock_groups=draw(st.integers(1, 5)),
    )
    lead = draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    shape = (*lead, params.group_size * draw(st.integers(1, 4)))
    n = int(np.prod(shape))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    values = draw(st.sampled_from(["any_bits", "normal", "small", "constant"]))
    if values == "any_bits":
        bits = rng.integers(0, 65536, n)
    else:
        scale = {"normal": 1.0, "small": 1e-38, "constant": 0.0}[values]
        f = torch.from_numpy(rng.standard_normal(n) * scale + (0.5 if values == "constant" else 0.0))
        bits = bf16_bits(f.to(torch.bfloat16)).numpy()
    x = bf16_from_bits(torch.from_numpy(bits)).reshape(shape)
    mask_kind = draw(st.sampled_from(["all", "none", "random"]))
    if mask_kind == "random":
        keep = torch.from_numpy(rng.random(n) < draw(st.floats(0.0, 1.0))).reshape(shape)
    else:
        keep = torch.full(shape, mask_kind == "all", dtype=torch.bool)
    return params, x, keep


@given(cases())
def test_roundtrip_and_draft(case):
    params, x, keep = case
    enc = encode(x, keep, params)
    original = bf16_bits(x)
    assert torch.equal(bf16_bits(decode(enc, "full")), original)
    draft = bf16_bits(decode(enc, "draft")).numpy().reshape(-1)
    np.testing.assert_array_equal(draft, draft_bits(original.numpy(), keep.numpy(), params))
    # serialisation round trip: same bytes again, same decode
    data = enc.to_bytes()
    back = EncodedTensor.from_bytes(data)
    assert back.to_bytes() == data
    assert torch.equal(bf16_bits(decode(back, "full")), original)
    spec_only = EncodedTensor.from_bytes(data, part="speculation")
    assert torch.equal(bf16_bits(decode(spec_only, "draft")), torch.from_numpy(draft).reshape(x.shape))


@given(cases())
def test_exact_bit_counts(case):
    params, x, keep = case
    enc = encode(x, keep, params)
    n, k = x.numel(), int(keep.sum())
    m = params.mantissa_bits
    assert enc.num_kept == k
    assert enc.payload_bits("bitmap") == n
    assert enc.payload_bits("pruned_raw") == 16 * (n - k)
    if params.exponent_coding == "mx":
        assert enc.payload_bits("sign_mantissa") == k * (m + 2)
        per_group = keep.reshape(-1, params.group_size).sum(1)
        blocks = int(((per_group + params.mx_block_size - 1) // params.mx_block_size).sum())
        assert enc.payload_bits("exponent") == 8 * blocks
    else:
        assert enc.payload_bits("sign_mantissa") == k * (m + 1)
        assert enc.payload_bits("mantissa_low") == k * (7 - m)
        if params.exponent_coding == "raw":
            assert enc.payload_bits("exponent") == 8 * k
        else:
            want = unary_exponent_bits(
                bf16_bits(x).numpy(), keep.numpy(), enc.codebook.tolist(), params.unary_max_code_length
            )
            assert enc.payload_bits("exponent") == want
    for name, s in enc.streams.items():
        assert s.stored_bits >= s.payload_bits
        assert s.stored_bits - s.payload_bits < 64 * enc.num_superblocks or s.payload_bits == 0


@given(cases(), st.data())
def test_superblock_range_decode(case, data):
    """Any run of superblocks decodes alone, from its offsets, to the same values."""
    params, x, keep = case
    enc = encode(x, keep, params)
    n_sb = enc.num_superblocks
    start = data.draw(st.integers(0, n_sb))
    stop = data.draw(st.integers(start, n_sb))
    lo = start * params.superblock_values
    hi = min(stop * params.superblock_values, x.numel())
    for mode in ("draft", "full"):
        whole = bf16_bits(decode(enc, mode)).reshape(-1)
        part = bf16_bits(decode(enc, mode, superblocks=(start, stop)))
        assert torch.equal(part, whole[lo:hi])


@given(cases())
def test_payload_bits_equal_the_encoders(case):
    """payload_bits (no packing) counts exactly the bits encode writes, per stream."""
    from golden.format.codec import payload_bits

    params, x, keep = case
    enc = encode(x, keep, params)
    assert payload_bits(x, keep, params) == {name: enc.payload_bits(name) for name in enc.streams}
