"""Known-answer vectors, worked by hand in docs/FORMAT.md ("Worked example")."""

import torch

from golden import FormatParams, bf16_bits, bf16_from_bits, decode, encode

X = [0x3F80, 0xC000, 0x0000, 0x4060, 0x3E80, 0x3FC0, 0xBF80, 0x42C8]  # 1 -2 0 3.5 .25 1.5 -1 100
KEEP = [1, 1, 0, 1, 0, 1, 0, 1]


def _encode(**kw):
    x = bf16_from_bits(torch.tensor(X)).reshape(1, 8)
    keep = torch.tensor(KEEP, dtype=torch.bool).reshape(1, 8)
    return x, encode(x, keep, FormatParams(group_size=8, mantissa_bits=3, **kw))


def _stream_bytes(enc):
    return {name: s.to_bytes() for name, s in enc.streams.items()}


def test_unary_worked_example():
    x, enc = _encode(exponent_coding="unary", unary_max_code_length=2)
    assert enc.codebook.tolist() == [127, 128]
    pad = bytes(5)
    assert _stream_bytes(enc) == {
        "bitmap": bytes([0xAB]) + bytes(7),
        "sign_mantissa": bytes([0x80, 0x46, 0x04]) + pad,
        "exponent": bytes([0x35, 0x85]) + bytes(6),
        "mantissa_low": bytes([0x00, 0x00, 0x08]) + pad,
        "pruned_raw": bytes([0x00, 0x00, 0x80, 0x3E, 0x80, 0xBF, 0x00, 0x00]),
    }
    assert [enc.payload_bits(n) for n in enc.streams] == [8, 20, 16, 20, 48]
    assert bf16_bits(decode(enc, "draft")).tolist() == [[0x3F80, 0xC000, 0, 0x4060, 0, 0x3FC0, 0, 0x42C0]]
    assert bf16_bits(decode(enc, "full")).tolist() == [X]


def test_mx_worked_example():
    x, enc = _encode(exponent_coding="mx", mx_block_size=2)
    # blocks (1.0, -2.0) (3.5, 1.5) (100.0): shared exponents 128, 128, 133
    assert enc.streams["exponent"].to_bytes()[:3] == bytes([128, 128, 133])
    # 5-bit fields sign|aligned: 1.0 -> 0b0_0100, -2.0 -> 0b1_1000, 3.5 -> 0b0_1110,
    # 1.5 -> 0b0_0110, 100.0 -> 0b0_1100
    fields = [0b00100, 0b11000, 0b01110, 0b00110, 0b01100]
    packed = sum(f << (5 * i) for i, f in enumerate(fields))
    assert enc.streams["sign_mantissa"].to_bytes() == packed.to_bytes(8, "little")
    # dropped low bits: widths 5, 4, 4, 5, 4 (4 truncated + d); only 100.0 has a non-zero one (8)
    assert enc.payload_bits("mantissa_low") == 22
    assert enc.streams["mantissa_low"].to_bytes() == (8 << 18).to_bytes(8, "little")
    assert bf16_bits(decode(enc, "draft")).tolist() == [[0x3F80, 0xC000, 0, 0x4060, 0, 0x3FC0, 0, 0x42C0]]
    assert bf16_bits(decode(enc, "full")).tolist() == [X]
