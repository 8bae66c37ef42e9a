"""Bad input gets a clear error that names the value."""

import pytest
import torch

from golden import FormatParams, decode, encode, keep_count


def _x(shape=(2, 64)):
    return torch.zeros(shape, dtype=torch.bfloat16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(group_size=48), "group_size=48 must be a power of two"),
        (dict(group_size=4), "group_size=4 is out of range"),
        (dict(group_size=8192), "group_size=8192 is out of range"),
        (dict(mantissa_bits=8), "mantissa_bits=8 is out of range"),
        (dict(mantissa_bits=-1), "mantissa_bits=-1 is out of range"),
        (dict(mantissa_bits=2.0), "mantissa_bits must be an int"),
        (dict(exponent_coding="huffman"), "exponent_coding='huffman'"),
        (dict(mx_block_size=3), "mx_block_size=3 must be a power of two"),
        (dict(mx_block_size=512), "mx_block_size=512 is out of range"),
        (dict(unary_max_code_length=0), "unary_max_code_length=0 is out of range"),
        (dict(unary_max_code_length=17), "unary_max_code_length=17 is out of range"),
        (dict(superblock_groups=0), "superblock_groups=0 is out of range"),
        (dict(group_size=True), "group_size must be an int"),
    ],
)
def test_params_out_of_range(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        FormatParams(**kwargs)


def test_wrong_dtype():
    with pytest.raises(TypeError, match="torch.float32"):
        encode(torch.zeros(2, 64), torch.ones(2, 64, dtype=torch.bool))
    with pytest.raises(TypeError, match="ndarray"):
        encode(_x().float().numpy(), torch.ones(2, 64, dtype=torch.bool))


def test_shape_not_multiple_of_group():
    with pytest.raises(ValueError, match=r"x.shape=\(2, 96\).*96.*group_size=64"):
        encode(_x((2, 96)), torch.ones(2, 96, dtype=torch.bool))
    with pytest.raises(ValueError, match="scalar"):
        encode(torch.tensor(1.0, dtype=torch.bfloat16), torch.tensor(True))


def test_mask_mismatch():
    with pytest.raises(ValueError, match=r"keep_mask.shape=\(2, 32\) does not match x.shape=\(2, 64\)"):
        encode(_x(), torch.ones(2, 32, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.uint8"):
        encode(_x(), torch.ones(2, 64, dtype=torch.uint8))


def test_codebook_checked():
    keep = torch.ones(2, 64, dtype=torch.bool)
    with pytest.raises(ValueError, match="codebook has 3 entries; unary_max_code_length=8"):
        encode(_x(), keep, codebook=[1, 2, 3])
    with pytest.raises(ValueError, match="distinct"):
        encode(_x(), keep, codebook=[1, 1, 2, 3, 4, 5, 6, 7])
    with pytest.raises(ValueError, match="0..255"):
        encode(_x(), keep, codebook=[1, 2, 3, 4, 5, 6, 7, 300])
    with pytest.raises(ValueError, match="only used with exponent_coding='unary'"):
        encode(_x(), keep, FormatParams(exponent_coding="mx"), codebook=list(range(8)))


def test_decode_arguments():
    enc = encode(_x(), torch.ones(2, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="mode='half'"):
        decode(enc, "half")
    with pytest.raises(ValueError, match=r"superblocks=\(0, 5\) is out of range for 1"):
        decode(enc, "full", superblocks=(0, 5))
    with pytest.raises(TypeError, match="EncodedTensor"):
        decode(_x(), "full")


def test_keep_count():
    assert keep_count(64, 0.4) == 38
    assert keep_count(64, 0.0) == 64 and keep_count(64, 1.0) == 0
    with pytest.raises(ValueError, match="prune_ratio=1.5"):
        keep_count(64, 1.5)
