"""Vectorised bit packing: fields of 0..32 bits into little-endian 32-bit words.

A stream is a sequence of bits; bit ``i`` of the stream is bit ``i % 32`` of
32-bit word ``i // 32`` (LSB first), and words are stored little-endian, so the
same bytes read as 8-, 16-, 32- or 64-bit little-endian words give the same bit
numbering. A field of width ``w`` at bit offset ``o`` occupies stream bits
``o .. o+w-1`` with its least significant bit first.

Streams are cut into superblocks; each superblock's part starts on a 64-bit
boundary (the bits in between are zero).

No Python loop runs over elements: fields are placed with ``index_add_`` on
disjoint bit ranges (so addition is OR) and read back with gathers.
"""

from __future__ import annotations

import numpy as np
import torch

from .params import STREAM_ALIGN_BITS

__all__ = ["PackedStream", "pack_fields", "read_fields", "stream_words", "words_to_bytes", "bytes_to_words"]

_MASK32 = 0xFFFFFFFF


class PackedStream:
    """One packed stream: 32-bit words plus per-superblock offsets.

    Attributes
    ----------
    words : torch.Tensor
        int64 tensor of 32-bit word values (0..2**32-1); its length is even
        (whole 64-bit words).
    superblock_offsets : torch.Tensor
        int64, ``num_superblocks + 1`` entries: where each superblock's part
        starts, in 64-bit words from the start of the stream; the last entry is
        the stream length in 64-bit words.
    payload_bits : int
        Exact number of bits written (sum of the field widths, no padding).
    """

    __slots__ = ("words", "superblock_offsets", "payload_bits")

    def __init__(self, words: torch.Tensor, superblock_offsets: torch.Tensor, payload_bits: int):
        self.words = words
        self.superblock_offsets = superblock_offsets
        self.payload_bits = int(payload_bits)

    @property
    def stored_bits(self) -> int:
        """Bits stored, padding included."""
        return int(self.superblock_offsets[-1]) * 64

    def to_bytes(self) -> bytes:
        return words_to_bytes(self.words)

    def __repr__(self) -> str:
        return (
            f"PackedStream(payload_bits={self.payload_bits}, stored_bits={self.stored_bits}, "
            f"superblocks={self.superblock_offsets.numel() - 1})"
        )


def exclusive_cumsum(values: torch.Tensor) -> torch.Tensor:
    """``out[i] = values[0] + ... + values[i-1]`` (``out[0] = 0``)."""
    out = torch.zeros_like(values)
    if values.numel() > 1:
        torch.cumsum(values[:-1], 0, out=out[1:])
    return out


def bits_per_superblock(widths: torch.Tensor, superblock: torch.Tensor, num_superblocks: int) -> torch.Tensor:
    """Payload bits each superblock's fields take in a stream."""
    bits = torch.zeros(num_superblocks, dtype=torch.int64)
    bits.index_add_(0, superblock, widths)
    return bits


def field_offsets(
    widths: torch.Tensor, superblock: torch.Tensor, sb_offsets: torch.Tensor, bits_per_sb: torch.Tensor
) -> torch.Tensor:
    """Absolute bit offset of every field: the start of its superblock's part
    (``sb_offsets`` in 64-bit words) plus the bits before it in that superblock."""
    within = exclusive_cumsum(widths) - exclusive_cumsum(bits_per_sb)[superblock]
    return sb_offsets[superblock] * 64 + within


def pack_fields(
    values: torch.Tensor,
    widths: torch.Tensor,
    superblock: torch.Tensor,
    num_superblocks: int,
) -> tuple[PackedStream, torch.Tensor]:
    """Pack fields, in order, into a stream.

    Parameters
    ----------
    values, widths : torch.Tensor
        int64, one entry per field; ``0 <= values < 2**widths``, ``0 <= widths <= 32``.
    superblock : torch.Tensor
        int64, the superblock of each field; non-decreasing.
    num_superblocks : int
        Total superblocks (superblocks with no field get an empty part).

    Returns
    -------
    (PackedStream, torch.Tensor)
        The stream and each field's absolute bit offset.
    """
    values = values.to(torch.int64)
    widths = widths.to(torch.int64)
    superblock = superblock.to(torch.int64)
    bits_per_sb = bits_per_superblock(widths, superblock, num_superblocks)
    words64_per_sb = (bits_per_sb + STREAM_ALIGN_BITS - 1) // STREAM_ALIGN_BITS
    sb_offsets = torch.zeros(num_superblocks + 1, dtype=torch.int64)
    torch.cumsum(words64_per_sb, 0, out=sb_offsets[1:])
    offsets = field_offsets(widths, superblock, sb_offsets, bits_per_sb)
    total_words32 = int(sb_offsets[-1]) * 2
    words = torch.zeros(total_words32 + 2, dtype=torch.int64)
    word_index = offsets >> 5
    shifted = values << (offsets & 31)
    words.index_add_(0, word_index, shifted & _MASK32)
    words.index_add_(0, word_index + 1, shifted >> 32)
    return PackedStream(words[:total_words32], sb_offsets, int(widths.sum())), offsets


def read_fields(words: torch.Tensor, offsets: torch.Tensor, widths: torch.Tensor | int) -> torch.Tensor:
    """Read fields of ``widths`` (<= 32) bits at absolute bit ``offsets``.

    The caller makes sure every field lies inside ``words``.
    """
    padded = torch.cat([words, torch.zeros(2, dtype=torch.int64)])
    offsets = offsets.to(torch.int64)
    word_index = offsets >> 5
    both = padded[word_index] | (padded[word_index + 1] << 32)
    if isinstance(widths, int):
        mask = (1 << widths) - 1
    else:
        mask = (torch.ones_like(offsets) << widths.to(torch.int64)) - 1
    return (both >> (offsets & 31)) & mask


def words_to_bytes(words: torch.Tensor) -> bytes:
    return words.numpy().astype("<u4").tobytes()


def bytes_to_words(data: bytes | memoryview) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(data, dtype="<u4").astype(np.int64))


def bits_of_words(words: torch.Tensor) -> torch.Tensor:
    """Expand 32-bit words into a uint8 tensor of single bits, stream order."""
    shifts = torch.arange(32, dtype=torch.int64)
    return ((words.unsqueeze(1) >> shifts) & 1).to(torch.uint8).reshape(-1)


def stream_words(stream: PackedStream, word_bits: int) -> list[int]:
    """A packed stream as ``word_bits``-bit little-endian words, as a memory with that
    word width delivers it (the last word zero-filled when 64 does not divide it);
    what the RTL's stream ports carry."""
    if word_bits % 8 or word_bits < 8:
        raise ValueError(f"word_bits={word_bits} must be a positive multiple of 8")
    data = stream.to_bytes()
    step = word_bits // 8
    data += bytes(-len(data) % step)
    return [int.from_bytes(data[i:i + step], "little") for i in range(0, len(data), step)]
