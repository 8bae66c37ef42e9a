"""Container: round trip, files, speculation-only reads, and rejection of
truncated or corrupted data with an error that names what is wrong."""

import struct

import pytest
import torch

from golden import CassandraFormatError, EncodedTensor, FormatParams, bf16_bits, decode, encode, magnitude_topk_mask
from golden.format.container import MAGIC


def _encoded(coding="unary", shape=(3, 128), superblock_groups=2):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    params = FormatParams(group_size=32, exponent_coding=coding, superblock_groups=superblock_groups)
    keep = magnitude_topk_mask(x, keep=19, group_size=32)
    return x, encode(x, keep, params)


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
def test_file_round_trip(tmp_path, coding):
    x, enc = _encoded(coding)
    path = tmp_path / "t.csnd"
    enc.save(path)
    assert path.read_bytes()[:4] == MAGIC
    back = EncodedTensor.load(path)
    assert back.shape == x.shape and back.params == enc.params and back.num_kept == enc.num_kept
    assert torch.equal(bf16_bits(decode(back, "full")), bf16_bits(x))
    spec = EncodedTensor.load(path, part="speculation")
    assert not spec.has_verification
    assert torch.equal(bf16_bits(decode(spec, "draft")), bf16_bits(decode(enc, "draft")))
    with pytest.raises(ValueError, match="verification streams"):
        decode(spec, "full")
    with pytest.raises(ValueError, match="speculation"):
        spec.to_bytes()


def test_speculation_is_a_prefix():
    _, enc = _encoded()
    data = enc.to_bytes()
    spec_len = len(data) - sum(enc.streams[n].stored_bits // 8 for n in ("mantissa_low", "pruned_raw"))
    spec = EncodedTensor.from_bytes(data[:spec_len], part="speculation")
    assert torch.equal(bf16_bits(decode(spec, "draft")), bf16_bits(decode(enc, "draft")))


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
def test_every_truncation_rejected(coding):
    _, enc = _encoded(coding, shape=(1, 64))
    data = enc.to_bytes()
    for n in range(len(data)):
        with pytest.raises(CassandraFormatError, match="truncated|magic|CRC"):
            EncodedTensor.from_bytes(data[:n])
    with pytest.raises(CassandraFormatError, match="truncated or padded"):
        EncodedTensor.from_bytes(data + b"\0" * 8)


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
def test_every_byte_corruption_rejected(coding):
    _, enc = _encoded(coding, shape=(1, 64))
    data = enc.to_bytes()
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(CassandraFormatError):
            EncodedTensor.from_bytes(bytes(bad))


def _with_header(data: bytes, offset: int, fmt: str, value) -> bytes:
    """Change a header field and recompute the header CRC, to reach the later checks."""
    import zlib

    from golden.format.container import _parse_header

    bad = bytearray(data)
    struct.pack_into(fmt, bad, offset, value)
    # find the CRC position the same way a reader would: parse the good header
    _, header_len = _parse_header(data)
    crc_at = header_len - 8
    struct.pack_into("<I", bad, crc_at, zlib.crc32(bytes(bad[:crc_at])))
    return bytes(bad)


def test_header_fields_checked_after_crc():
    _, enc = _encoded()
    data = enc.to_bytes()
    cases = [
        (4, "<H", 2, "version 2"),
        (6, "<B", 7, "exponent coding 7"),
        (7, "<B", 9, "mantissa_bits=9"),
        (8, "<H", 48, "group_size=48"),
        (32, "<Q", 5, r"does not match shape \(5, 128\)"),
        (24, "<Q", 10**6, "num_kept=1000000"),
    ]
    for offset, fmt, value, message in cases:
        with pytest.raises(CassandraFormatError, match=message):
            EncodedTensor.from_bytes(_with_header(data, offset, fmt, value))
    with pytest.raises(CassandraFormatError, match="not a Cassandra container"):
        EncodedTensor.from_bytes(b"NOPE" + data[4:])


def test_stream_inconsistent_with_bitmap_rejected():
    """A bitmap that calls for more kept values than sign_mantissa holds."""
    x, enc = _encoded("raw", shape=(1, 64), superblock_groups=4)
    enc.streams["bitmap"].words[0] = 0xFFFFFFFF  # keep all of the first 32 values
    with pytest.raises(CassandraFormatError, match="sign_mantissa"):
        decode(enc, "draft")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.csnd"):
        EncodedTensor.load(tmp_path / "nothing.csnd")
    with pytest.raises(ValueError, match="part='half'"):
        EncodedTensor.load(tmp_path / "nothing.csnd", part="half")
