"""The strict reader: containers whose CRCs are valid (recomputed after the edit, as a
buggy or deliberate writer would leave them) but whose structure is inconsistent are
rejected with a CassandraFormatError naming the field; every container the encoder
writes loads."""

from __future__ import annotations

import struct
import zlib

import pytest
import torch

from golden import CassandraFormatError, EncodedTensor, FormatParams, bf16_bits, decode, encode, magnitude_topk_mask
from golden.format.params import STREAM_NAMES
from tests.samples import weights

STREAM_ENTRY = 24


def _pad8(n):
    return (n + 7) // 8 * 8


def _encoded(coding="unary", *, rows=4, cols=96, group=16, superblock_groups=5, mantissa_bits=3, keep=10,
             **extra):
    """Superblocks of 80 values: every stream has a padded tail, two superblocks."""
    x = weights(rows, cols, seed=11)
    params = FormatParams(group_size=group, exponent_coding=coding, superblock_groups=superblock_groups,
                          mantissa_bits=mantissa_bits, **extra)
    return x, encode(x, magnitude_topk_mask(x, keep=keep, group_size=group), params)


class Layout:
    """Where the header's parts and the streams sit in a valid container."""

    def __init__(self, data: bytes):
        coding, lmax, ndim = data[6], data[14], data[15]
        self.n_sb = struct.unpack_from("<I", data, 20)[0]
        self.codebook_end = 32 + 8 * ndim + (lmax if coding == 1 else 0)
        self.entries = _pad8(self.codebook_end)
        self.offsets = self.entries + STREAM_ENTRY * 5
        self.offsets_end = self.offsets + 4 * 5 * (self.n_sb + 1)
        self.crc = _pad8(self.offsets_end)
        self.header_len = self.crc + 8
        self.words = [struct.unpack_from("<Q", data, self.entries + STREAM_ENTRY * i + 8)[0] for i in range(5)]
        self.stream_start = {}
        pos = self.header_len
        for name, words in zip(STREAM_NAMES, self.words):
            self.stream_start[name] = pos
            pos += 8 * words

    def entry(self, name):
        return self.entries + STREAM_ENTRY * STREAM_NAMES.index(name)

    def stream_offsets(self, name):
        return self.offsets + 4 * (self.n_sb + 1) * STREAM_NAMES.index(name)


def _reseal(data: bytearray, layout: Layout) -> bytes:
    """Recompute every stream CRC and the header CRC."""
    for name, words in zip(STREAM_NAMES, layout.words):
        start = layout.stream_start[name]
        struct.pack_into("<I", data, layout.entry(name) + 16, zlib.crc32(bytes(data[start:start + 8 * words])))
    struct.pack_into("<I", data, layout.crc, zlib.crc32(bytes(data[:layout.crc])))
    return bytes(data)


def _edited(enc, edit) -> bytes:
    data = enc.to_bytes()
    layout = Layout(data)
    buffer = bytearray(data)
    edit(buffer, layout)
    return _reseal(buffer, layout)


def _set_last_word_bit(name, bit=63):
    """Set a bit in the last 64-bit word of a stream's first superblock part."""
    def edit(data, layout):
        offs = struct.unpack_from(f"<{layout.n_sb + 1}I", data, layout.stream_offsets(name))
        word = layout.stream_start[name] + 8 * (offs[1] - 1)
        value = struct.unpack_from("<Q", data, word)[0] | (1 << bit)
        struct.pack_into("<Q", data, word, value)
    return edit


def _payload_bits_less_one(name):
    """Lower a stream's payload-bit count in the stream table by one."""
    def edit(data, layout):
        bits = struct.unpack_from("<Q", data, layout.entry(name))[0]
        struct.pack_into("<Q", data, layout.entry(name), bits - 1)
    return edit


def _speculation_prefix(data: bytes) -> bytes:
    return data[:Layout(data).stream_start["mantissa_low"]]


def _rejected_at_load_and_by_draft_decode(data: bytes, message: str) -> None:
    """A fault in the speculation data: the whole container and its speculation prefix
    are rejected at load, and a draft decode rejects it where the load skipped the check."""
    for whole_or_prefix, part in ((data, "all"), (_speculation_prefix(data), "speculation")):
        with pytest.raises(CassandraFormatError, match=message):
            EncodedTensor.from_bytes(whole_or_prefix, part=part)
    with pytest.raises(CassandraFormatError, match=message):
        decode(EncodedTensor.from_bytes(data, check="structure"), "draft")


def test_resealing_alone_changes_nothing():
    x, enc = _encoded()
    data = _edited(enc, lambda data, layout: None)
    assert data == enc.to_bytes()
    assert torch.equal(bf16_bits(decode(EncodedTensor.from_bytes(data), "full")), bf16_bits(x))


@pytest.mark.parametrize("edit, message", [
    (lambda d, lay: struct.pack_into("<I", d, 16, 1), "reserved field at header offset 16 is 0x1, not zero"),
    (lambda d, lay: struct.pack_into("<I", d, lay.entry("exponent") + 20, 7),
     "stream table, stream 'exponent': reserved field is 0x7, not zero"),
    (lambda d, lay: struct.pack_into("<I", d, lay.crc + 4, 2), "reserved field after the header CRC is 0x2"),
], ids=["offset-16", "stream-table", "after-crc"])
def test_reserved_fields(edit, message):
    _, enc = _encoded()
    with pytest.raises(CassandraFormatError, match=message):
        EncodedTensor.from_bytes(_edited(enc, edit))


def test_header_padding_after_the_codebook():
    _, enc = _encoded(unary_max_code_length=5)  # 32 + 16 + 5 bytes: 3 bytes of padding
    layout = Layout(enc.to_bytes())
    assert layout.entries > layout.codebook_end
    data = _edited(enc, lambda d, lay: d.__setitem__(lay.codebook_end, 0x40))
    with pytest.raises(CassandraFormatError, match="header padding after the codebook .* is not zero"):
        EncodedTensor.from_bytes(data)


def test_header_padding_after_the_offset_table():
    _, enc = _encoded(rows=1)  # 2 superblocks: 5 x 3 offsets of 4 bytes, 4 bytes of padding
    layout = Layout(enc.to_bytes())
    assert layout.crc > layout.offsets_end
    data = _edited(enc, lambda d, lay: d.__setitem__(lay.offsets_end + 1, 1))
    with pytest.raises(CassandraFormatError, match="header padding after the offset table .* is not zero"):
        EncodedTensor.from_bytes(data)


@pytest.mark.parametrize("coding", ["raw", "unary"])
@pytest.mark.parametrize("name", STREAM_NAMES)
def test_nonzero_padding_bits_in_a_superblock_tail(coding, name):
    """Every stream's first superblock part ends inside a 64-bit word here."""
    _, enc = _encoded(coding)
    data = _edited(enc, _set_last_word_bit(name))
    with pytest.raises(CassandraFormatError, match=f"stream '{name}', superblock 0: padding bits .* not zero"):
        EncodedTensor.from_bytes(data)
    if coding == "unary" and name == "exponent":  # unary code boundaries: read at load, and by every decode
        tensor = EncodedTensor.from_bytes(data, check="structure")
        with pytest.raises(CassandraFormatError, match="stream 'exponent', superblock 0: padding bits"):
            decode(tensor, "draft")


def test_mx_low_bits_tail_is_checked_at_load():
    _, enc = _encoded("mx", mx_block_size=4)
    data = _edited(enc, _set_last_word_bit("mantissa_low"))
    with pytest.raises(CassandraFormatError, match="stream 'mantissa_low', superblock 0: padding bits"):
        EncodedTensor.from_bytes(data)  # the widths come from the speculation fields, read at load
    EncodedTensor.from_bytes(_speculation_prefix(data), part="speculation")  # a draft reader never sees those bits
    tensor = EncodedTensor.from_bytes(data, check="structure")
    decode(tensor, "draft")  # the draft does not read the verification streams
    with pytest.raises(CassandraFormatError, match="stream 'mantissa_low', superblock 0: padding bits"):
        decode(tensor, "full")


def test_unary_codes_that_disagree_with_their_part_are_rejected_at_load():
    """A code's terminating 1 cleared (CRCs recomputed): the codes no longer end where
    the superblock's part does, which only reading the codes shows."""
    _, enc = _encoded("unary")

    def clear_first_one(d, lay):
        start = lay.stream_start["exponent"]
        d[start] &= d[start] - 1  # clears the lowest set bit: the first code's terminator
    data = _edited(enc, clear_first_one)
    first = Layout(data).stream_start["exponent"]
    assert data[first] != enc.to_bytes()[first]
    _rejected_at_load_and_by_draft_decode(data, "stream 'exponent'")


def test_mx_low_bits_that_no_longer_fit_the_significands_are_rejected_at_load():
    """An mx aligned significand changed (CRCs recomputed) changes its value's low-bit
    width, so the low bits' sizes no longer agree with the stream table."""
    _, enc = _encoded("mx", mx_block_size=4)

    def flip_significand_bit(d, lay):
        d[lay.stream_start["sign_mantissa"]] ^= 1 << 3  # the first kept value's aligned significand, MSB
    data = _edited(enc, flip_significand_bit)
    with pytest.raises(CassandraFormatError, match="stream 'mantissa_low'"):
        EncodedTensor.from_bytes(data)
    EncodedTensor.from_bytes(_speculation_prefix(data), part="speculation")


@pytest.mark.parametrize("name", ["bitmap", "sign_mantissa", "mantissa_low", "pruned_raw"])
def test_payload_bits_that_differ_from_the_fields(name):
    _, enc = _encoded("raw")
    with pytest.raises(CassandraFormatError, match=f"stream '{name}': the stream table's payload_bits=.* but its "
                                                   "fields take"):
        EncodedTensor.from_bytes(_edited(enc, _payload_bits_less_one(name)))


@pytest.mark.parametrize("coding, name", [("unary", "exponent"), ("mx", "mantissa_low")])
def test_payload_bits_of_variable_fields_are_checked_at_load(coding, name):
    _, enc = _encoded(coding, mx_block_size=4)
    data = _edited(enc, _payload_bits_less_one(name))
    message = f"stream '{name}': the stream table's payload_bits=.* but its fields take"
    with pytest.raises(CassandraFormatError, match=message):
        EncodedTensor.from_bytes(data)
    with pytest.raises(CassandraFormatError, match=message):  # and by every whole decode
        decode(EncodedTensor.from_bytes(data, check="structure"), "full")


def test_a_flipped_bitmap_bit_no_longer_decodes_silently():
    """A kept value turned pruned (bitmap bit cleared, CRCs recomputed) used to shift
    every later field: now the kept count and the stream sizes disagree with it."""
    x, enc = _encoded("raw")

    def flip(d, lay):
        start = lay.stream_start["bitmap"]
        d[start] ^= 1 << (next(i for i in range(8) if d[start] >> i & 1))
    with pytest.raises(CassandraFormatError, match="num_kept=.* in the header, but the bitmap marks"):
        EncodedTensor.from_bytes(_edited(enc, flip))

    def flip_and_count(d, lay):  # the writer also "fixed" the kept count
        flip(d, lay)
        struct.pack_into("<Q", d, 24, enc.num_kept - 1)
    with pytest.raises(CassandraFormatError, match="stream 'sign_mantissa'"):
        EncodedTensor.from_bytes(_edited(enc, flip_and_count))


def test_speculation_part_takes_the_prefix_or_the_whole_container():
    x, enc = _encoded()
    data = enc.to_bytes()
    layout = Layout(data)
    prefix = layout.stream_start["mantissa_low"]
    draft = bf16_bits(decode(enc, "draft"))
    for good in (data[:prefix], data):
        assert torch.equal(bf16_bits(decode(EncodedTensor.from_bytes(good, part="speculation"), "draft")), draft)
    for length in (prefix + 1, prefix + 8, len(data) - 8, len(data) + 1):
        padded = (data + bytes(8))[:length]
        with pytest.raises(CassandraFormatError, match=f"takes the speculation prefix \\({prefix} bytes\\) or the "
                                                       f"whole container \\({len(data)} bytes\\); the data has "
                                                       f"{length}"):
            EncodedTensor.from_bytes(padded, part="speculation")


def test_fields_a_coding_does_not_use_are_ignored():
    """FORMAT.md: mx_block_size outside mx and L_max outside unary are stored, checked
    as parameters, and ignored."""
    x, enc = _encoded("raw")
    data = _edited(enc, lambda d, lay: (struct.pack_into("<H", d, 12, 4), d.__setitem__(14, 3)))
    back = EncodedTensor.from_bytes(data)
    assert back.params.mx_block_size == 4 and back.params.unary_max_code_length == 3
    assert torch.equal(bf16_bits(decode(back, "full")), bf16_bits(x))
    assert torch.equal(bf16_bits(decode(back, "draft")), bf16_bits(decode(enc, "draft")))


@pytest.mark.parametrize("coding", ["raw", "unary", "mx"])
@pytest.mark.parametrize("shape, group, superblock_groups, mantissa_bits, keep", [
    ((4, 96), 16, 5, 3, 10),
    ((3, 64), 64, 1, 0, 0),
    ((2, 128), 32, 3, 7, 32),
    ((1, 8), 8, 4096, 5, 5),
    ((0, 64), 64, 64, 3, 38),
    ((5, 0), 16, 2, 3, 10),
])
def test_every_container_the_encoder_writes_loads(coding, shape, group, superblock_groups, mantissa_bits, keep):
    x = weights(max(shape[0], 1), max(shape[1], group), seed=3)[:shape[0], :shape[1]]
    params = FormatParams(group_size=group, exponent_coding=coding, superblock_groups=superblock_groups,
                          mantissa_bits=mantissa_bits, mx_block_size=4 if coding == "mx" else 16)
    enc = encode(x, magnitude_topk_mask(x, keep=keep, group_size=group) if x.numel() else
                 torch.zeros(shape, dtype=torch.bool), params)
    data = enc.to_bytes()
    back = EncodedTensor.from_bytes(data)
    assert back.shape == tuple(shape) and back.num_kept == enc.num_kept
    assert torch.equal(bf16_bits(decode(back, "full")), bf16_bits(x))
    spec = EncodedTensor.from_bytes(_speculation_prefix(data), part="speculation")
    assert torch.equal(bf16_bits(decode(spec, "draft")), bf16_bits(decode(enc, "draft")))


def test_mx_shared_exponent_zero_is_rejected():
    _, enc = _encoded("mx", mx_block_size=4)
    data = _edited(enc, lambda d, lay: d.__setitem__(lay.stream_start["exponent"], 0))
    _rejected_at_load_and_by_draft_decode(data, "mx shared exponent is 0")


def test_check_values(tmp_path):
    _, enc = _encoded()
    with pytest.raises(ValueError, match="check='some' is not one of \\('full', 'structure'\\)"):
        EncodedTensor.from_bytes(enc.to_bytes(), check="some")
    enc.save(tmp_path / "t.csnd")
    with pytest.raises(ValueError, match="check='fast' is not one of"):
        EncodedTensor.load(tmp_path / "t.csnd", check="fast")
    for check in ("full", "structure"):
        for part in ("all", "speculation"):
            back = EncodedTensor.load(tmp_path / "t.csnd", part=part, check=check)
            assert torch.equal(bf16_bits(decode(back, "draft")), bf16_bits(decode(enc, "draft")))
