"""Where every field of an encoded tensor's streams lies (docs/FORMAT.md sections 4-7).

The bitmap fixes the width of most fields. Two kinds are known only by reading
them: unary exponent codes (a code's length is in its own bits) and mx low bits
(a value's width follows from its aligned significand and its block's shared
exponent). This module reads those layouts and checks, on the way, every
superblock part's size, its padding bits and the stream table's payload bits.

It sits below both its users, so the strict reader checks everything at load
without importing the codec:

* :mod:`golden.format.container` (``from_bytes`` / ``load``) runs
  :func:`check_variable_fields`;
* :mod:`golden.format.codec` decodes with :func:`read_speculation` and
  :func:`read_mx_low_bits`, which are the same checks.

The functions take an encoded tensor by its attributes (``params``, ``streams``,
``codebook``, ``num_values``, ``num_superblocks``); they do not import its class.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .bitstream import (
    PackedStream,
    bits_of_words,
    bits_per_superblock,
    exclusive_cumsum,
    field_offsets,
    read_fields,
)
from .params import MX_ESCAPE_BITS, FormatParams

__all__ = [
    "CassandraFormatError",
    "CHUNK_VALUES",
    "MSB_TABLE",
    "MxSplit",
    "SpeculationFields",
    "check_part_sizes",
    "check_payload_bits",
    "check_stream_tail",
    "check_variable_fields",
    "checked_field_offsets",
    "kept_rank_in_group",
    "mx_blocks",
    "mx_split",
    "read_bitmap",
    "read_mx_low_bits",
    "read_speculation",
    "read_unary_codes",
    "slice_stream",
    "superblock_chunks",
]


class CassandraFormatError(ValueError):
    """An encoded tensor or container is truncated, corrupted or inconsistent."""


#: Reading works on about this many values at a time (whole superblocks), to bound memory.
CHUNK_VALUES = 1 << 20

#: MSB position of 1..255 (entry 0 unused).
MSB_TABLE = torch.tensor([max(v.bit_length() - 1, 0) for v in range(256)], dtype=torch.int64)


def superblock_chunks(start: int, stop: int, params: FormatParams):
    """``(lo, hi)`` runs of whole superblocks covering ``start .. stop-1``."""
    per_chunk = max(1, CHUNK_VALUES // params.superblock_values)
    for lo in range(start, stop, per_chunk):
        yield lo, min(lo + per_chunk, stop)


# ---------------------------------------------------------------------------
# Superblock parts
# ---------------------------------------------------------------------------
def slice_stream(stream: PackedStream, start: int, stop: int):
    """Words of superblocks ``start .. stop-1`` and their offsets, rebased to 0."""
    offsets = stream.superblock_offsets
    lo, hi = int(offsets[start]), int(offsets[stop])
    return stream.words[lo * 2 : hi * 2], offsets[start : stop + 1] - lo


def check_stream_tail(name: str, stream: PackedStream, bits_per_sb: torch.Tensor) -> None:
    """Raise unless the bits after each superblock's ``bits_per_sb`` payload bits, up
    to its part's 64-bit boundary, are zero (docs/FORMAT.md section 4)."""
    offs, words = stream.superblock_offsets, stream.words
    start32 = offs[:-1] * 2
    rem = bits_per_sb % 32
    partial = torch.nonzero(rem > 0).reshape(-1)
    if partial.numel():
        index = (start32 + bits_per_sb // 32)[partial]
        bad = partial[(words[index] >> rem[partial]) != 0]
        if bad.numel():
            sb = int(bad[0])
            raise CassandraFormatError(f"stream {name!r}, superblock {sb}: padding bits after its "
                                       f"{int(bits_per_sb[sb])} payload bits are not zero")
    first_pad = start32 + (bits_per_sb + 31) // 32
    whole = torch.nonzero(first_pad < offs[1:] * 2).reshape(-1)  # at most one 32-bit word each
    if whole.numel():
        bad = whole[words[first_pad[whole]] != 0]
        if bad.numel():
            sb = int(bad[0])
            raise CassandraFormatError(f"stream {name!r}, superblock {sb}: padding bits after its "
                                       f"{int(bits_per_sb[sb])} payload bits are not zero")


def check_part_sizes(name: str, bits_per_sb: torch.Tensor, sb_offsets: torch.Tensor, what: str = "its fields") -> None:
    """Raise unless each superblock's part of stream ``name`` is exactly its
    ``bits_per_sb`` payload bits padded to 64 bits (``what`` names those bits)."""
    region_words = sb_offsets[1:] - sb_offsets[:-1]
    needed_words = (bits_per_sb + 63) // 64
    bad = torch.nonzero(needed_words != region_words).reshape(-1)
    if bad.numel():
        sb = int(bad[0])
        raise CassandraFormatError(
            f"stream {name!r}, superblock {sb}: {what} take {int(bits_per_sb[sb])} bits ({int(needed_words[sb])} "
            f"64-bit words), but its part holds {int(region_words[sb])} words: truncated or corrupted"
        )


def checked_field_offsets(name: str, widths: torch.Tensor, superblock: torch.Tensor,
                          sb_offsets: torch.Tensor) -> torch.Tensor:
    """Absolute bit offsets of fields laid out as ``pack_fields`` lays them out,
    after :func:`check_part_sizes`."""
    bits_per_sb = bits_per_superblock(widths, superblock, sb_offsets.numel() - 1)
    check_part_sizes(name, bits_per_sb, sb_offsets)
    return field_offsets(widths, superblock, sb_offsets, bits_per_sb)


def check_payload_bits(enc, used: dict) -> None:
    """Raise unless each stream's payload bits found by reading (``used``: name ->
    bits, summed over every superblock) equal the stream table's."""
    for name, bits in used.items():
        if bits != enc.streams[name].payload_bits:
            raise CassandraFormatError(
                f"stream {name!r}: the stream table's payload_bits={enc.streams[name].payload_bits} but "
                f"its fields take {bits} bits")


# ---------------------------------------------------------------------------
# Index bookkeeping (the encoder's and the reader's)
# ---------------------------------------------------------------------------
def kept_rank_in_group(kept_group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For kept values in stream order: rank within their group, and kept count per group."""
    per_group = torch.bincount(kept_group, minlength=num_groups)
    rank = torch.arange(kept_group.numel(), dtype=torch.int64) - exclusive_cumsum(per_group)[kept_group]
    return rank, per_group


def mx_blocks(kept_group: torch.Tensor, num_groups: int, block: int):
    """mx blocks: ``block`` consecutive kept values of a group share an exponent.

    Returns the block index of every kept value, and each block's group.
    """
    rank, per_group = kept_rank_in_group(kept_group, num_groups)
    blocks_per_group = (per_group + block - 1) // block
    first_block = exclusive_cumsum(blocks_per_group)
    block_index = first_block[kept_group] + rank // block
    block_group = torch.repeat_interleave(torch.arange(num_groups, dtype=torch.int64), blocks_per_group)
    return block_index, block_group


# ---------------------------------------------------------------------------
# The speculation streams
# ---------------------------------------------------------------------------
class SpeculationFields(NamedTuple):
    """The speculation data of a run of superblocks, field by field.

    ``keep`` is the keep bit of every value of the run; the other tensors have one
    entry per kept value in stream order: its index in the run, its superblock in
    the run, sign, ``high`` (the ``m`` kept mantissa bits, or mx's aligned
    significand) and ``exponent`` (mx: its block's shared exponent).
    """

    keep: torch.Tensor
    kept_index: torch.Tensor
    superblock: torch.Tensor
    sign: torch.Tensor
    high: torch.Tensor
    exponent: torch.Tensor


def read_bitmap(enc, start: int, stop: int) -> torch.Tensor:
    """Keep bits of superblocks ``start .. stop-1``, flat."""
    p = enc.params
    sb_values = p.superblock_values
    n = min(stop * sb_values, enc.num_values) - start * sb_values
    words, offs = slice_stream(enc.streams["bitmap"], start, stop)
    n_chunks = n // 8
    chunk_sb = torch.arange(n_chunks, dtype=torch.int64) * 8 // sb_values
    chunk_off = checked_field_offsets("bitmap", torch.full((n_chunks,), 8, dtype=torch.int64), chunk_sb, offs)
    chunks = read_fields(words, chunk_off, 8)
    return ((chunks.unsqueeze(1) >> torch.arange(8, dtype=torch.int64)) & 1).reshape(-1).bool()


def read_speculation(enc, start: int, stop: int, used: dict | None = None) -> SpeculationFields:
    """Read the speculation streams of superblocks ``start .. stop-1``, checking each
    part's size (and, for unary codes, their padding bits); the payload bits of the
    unary exponent stream are added to ``used``."""
    p = enc.params
    G = p.group_size
    keep = read_bitmap(enc, start, stop)
    kept_index = torch.nonzero(keep).reshape(-1)
    k_sb = kept_index // p.superblock_values
    num_kept = kept_index.numel()

    words, offs = slice_stream(enc.streams["sign_mantissa"], start, stop)
    width = p.sign_mantissa_bits
    sm_off = checked_field_offsets("sign_mantissa", torch.full((num_kept,), width, dtype=torch.int64), k_sb, offs)
    sm = read_fields(words, sm_off, width)
    sign = sm >> (width - 1)
    high = sm & ((1 << (width - 1)) - 1)

    words, offs = slice_stream(enc.streams["exponent"], start, stop)
    if p.exponent_coding == "raw":
        ex_off = checked_field_offsets("exponent", torch.full((num_kept,), 8, dtype=torch.int64), k_sb, offs)
        exponent = read_fields(words, ex_off, 8)
    elif p.exponent_coding == "unary":
        exponent = read_unary_codes(words, offs, k_sb, stop - start, enc.codebook, p, used)
    else:
        block_index, block_group = mx_blocks(kept_index // G, keep.numel() // G, p.mx_block_size)
        b_sb = block_group // p.superblock_groups
        ex_off = checked_field_offsets("exponent", torch.full((b_sb.numel(),), 8, dtype=torch.int64), b_sb, offs)
        shared = read_fields(words, ex_off, 8)
        if bool((shared == 0).any()):
            raise CassandraFormatError("stream 'exponent': an mx shared exponent is 0 (never written): corrupted")
        exponent = shared[block_index]
    return SpeculationFields(keep, kept_index, k_sb, sign, high, exponent)


def read_unary_codes(words, offs, k_sb, n_sb, codebook, p: FormatParams, used: dict | None = None) -> torch.Tensor:
    """The exponents of a run of superblocks' unary codes (docs/FORMAT.md section 6).

    Code starts are found by pointer doubling: ``next[b]`` is where a code
    starting at bit ``b`` would end; the r-th code of a superblock starts at
    ``next^r(superblock start)``, computed from the bits of r. Checks that no code
    runs past its superblock's part, that each part is its codes padded to 64
    bits, and that the padding bits are zero; adds the codes' bits to ``used``.
    """
    if codebook is None:
        raise CassandraFormatError("unary coding needs a codebook and this tensor has none")
    L = p.unary_max_code_length
    bits = bits_of_words(words)
    nbits = bits.numel()
    positions = torch.arange(nbits, dtype=torch.int64)
    one_at = torch.where(bits.bool(), positions, nbits + L)
    if nbits:
        next_one = torch.flip(torch.cummin(torch.flip(one_at, [0]), 0).values, [0])
    else:
        next_one = one_at
    zeros = torch.clamp(next_one - positions, max=L)
    length = torch.where(zeros < L, zeros + 1, L + 8)
    jump = torch.cat([torch.clamp(positions + length, max=nbits), torch.tensor([nbits])])
    kept_per_sb = torch.bincount(k_sb, minlength=n_sb)
    rank = torch.arange(k_sb.numel(), dtype=torch.int64) - exclusive_cumsum(kept_per_sb)[k_sb]
    pos = offs[:-1][k_sb] * 64
    step = 0
    max_rank = int(rank.max()) if rank.numel() else 0
    while (1 << step) <= max_rank:
        pos = torch.where(((rank >> step) & 1).bool(), jump[pos], pos)
        step += 1
        if (1 << step) <= max_rank:
            jump = jump[jump]
    region_end = offs[1:] * 64
    safe = torch.clamp(pos, max=max(nbits - 1, 0))
    code_len = torch.where(pos < nbits, length[safe] if nbits else pos, L + 8)
    end = pos + code_len
    bad = end > region_end[k_sb]
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise CassandraFormatError(
            f"stream 'exponent': unary code {int(rank[i])} of superblock {int(k_sb[i])} runs past the end "
            "of that superblock's part: the stream is truncated or corrupted"
        )
    last_end = torch.zeros(n_sb, dtype=torch.int64)
    if end.numel():
        last_end.scatter_reduce_(0, k_sb, end - offs[:-1][k_sb] * 64, reduce="amax", include_self=True)
    check_part_sizes("exponent", last_end, offs, "its unary codes")
    check_stream_tail("exponent", PackedStream(words, offs, 0), last_end)
    if used is not None:
        used["exponent"] = used.get("exponent", 0) + int(last_end.sum())
    z = zeros[safe] if nbits else pos
    escaped = z >= L
    raw = read_fields(words, torch.clamp(pos + L, max=max(nbits - 8, 0)), 8) if nbits else pos
    return torch.where(escaped, raw, codebook.to(torch.int64)[torch.clamp(z, max=L - 1)])


# ---------------------------------------------------------------------------
# mx low bits (a verification stream whose widths the speculation data gives)
# ---------------------------------------------------------------------------
class MxSplit(NamedTuple):
    """How an mx kept value's aligned significand and shared exponent split it
    (docs/FORMAT.md section 7): the significand's MSB position, the value's own
    exponent if normal (``<= 0``: subnormal), whether it is normal, the low mantissa
    bits alignment dropped, and the width of its ``mantissa_low`` field (the
    dropped bits, or the escape's raw 15 bits when the significand is 0)."""

    msb: torch.Tensor
    exponent: torch.Tensor
    normal: torch.Tensor
    dropped: torch.Tensor
    low_bits: torch.Tensor


def mx_split(aligned: torch.Tensor, shared: torch.Tensor, p: FormatParams) -> MxSplit:
    """The :class:`MxSplit` of mx kept values (aligned significands, shared exponents)."""
    m, t = p.mantissa_bits, p.truncated_bits
    msb = MSB_TABLE[aligned]
    exponent = shared - m + msb
    normal = exponent >= 1
    dropped = torch.where(normal, m - msb, shared - 1) + t
    low_bits = torch.where(aligned != 0, torch.clamp(dropped, max=15), MX_ESCAPE_BITS)
    return MxSplit(msb, exponent, normal, dropped, low_bits)


def read_mx_low_bits(enc, fields: SpeculationFields, split: MxSplit, start: int, stop: int,
                     used: dict | None = None):
    """The ``mantissa_low`` words of superblocks ``start .. stop-1`` and its fields'
    bit offsets, after checking each part's size and padding bits against the widths
    ``split.low_bits``; their sum is added to ``used``."""
    words, offs = slice_stream(enc.streams["mantissa_low"], start, stop)
    bits_per_sb = bits_per_superblock(split.low_bits, fields.superblock, stop - start)
    check_part_sizes("mantissa_low", bits_per_sb, offs, "the kept values' low bits")
    check_stream_tail("mantissa_low", PackedStream(words, offs, 0), bits_per_sb)
    if used is not None:
        used["mantissa_low"] = used.get("mantissa_low", 0) + int(bits_per_sb.sum())
    return words, field_offsets(split.low_bits, fields.superblock, offs, bits_per_sb)


def check_variable_fields(enc) -> None:
    """Read what only reading delimits, checking it exactly: unary exponent codes
    (part sizes, padding bits, payload bits) and mx shared exponents, and, with the
    verification streams, mx low bits (part sizes, padding bits, payload bits).
    Nothing to do for raw exponents: :func:`golden.format.container.check_structure`
    checks every fixed-width field from the bitmap alone."""
    coding = enc.params.exponent_coding
    if coding == "raw":
        return
    with_low_bits = coding == "mx" and "mantissa_low" in enc.streams
    used: dict = {}
    for start, stop in superblock_chunks(0, enc.num_superblocks, enc.params):
        fields = read_speculation(enc, start, stop, used)
        if with_low_bits:
            read_mx_low_bits(enc, fields, mx_split(fields.high, fields.exponent, enc.params), start, stop, used)
    check_payload_bits(enc, used)
