"""Golden (bit-exact reference) model of the Cassandra format and pipeline.

>>> import torch
>>> from golden import FormatParams, encode, decode, magnitude_topk_mask, keep_count
>>> x = torch.randn(4, 128).to(torch.bfloat16)
>>> params = FormatParams(group_size=64, mantissa_bits=3, exponent_coding="unary")
>>> mask = magnitude_topk_mask(x, keep=keep_count(64, 0.4), group_size=64)
>>> enc = encode(x, mask, params)
>>> bool((decode(enc, "full").view(torch.int16) == x.view(torch.int16)).all())
True
"""

from .codec import (
    DECODE_MODES,
    CassandraFormatError,
    EncodedTensor,
    bf16_bits,
    bf16_from_bits,
    decode,
    decode_bitmap,
    encode,
    unary_codebook,
)
from .params import (
    EXPONENT_CODINGS,
    SPECULATION_STREAMS,
    STREAM_NAMES,
    VERIFICATION_STREAMS,
    FormatParams,
    keep_count,
)
from .select import activation_l2_norm, magnitude_topk_mask, wanda_topk_mask

__all__ = [
    "CassandraFormatError",
    "DECODE_MODES",
    "EXPONENT_CODINGS",
    "EncodedTensor",
    "FormatParams",
    "SPECULATION_STREAMS",
    "STREAM_NAMES",
    "VERIFICATION_STREAMS",
    "activation_l2_norm",
    "bf16_bits",
    "bf16_from_bits",
    "decode",
    "decode_bitmap",
    "encode",
    "keep_count",
    "magnitude_topk_mask",
    "unary_codebook",
    "wanda_topk_mask",
]
