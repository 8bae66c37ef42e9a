"""Bit-exact reference codec of the Cassandra format (docs/FORMAT.md).

``encode(x, keep_mask, params)`` splits a BF16 tensor into speculation streams
(``bitmap``, ``sign_mantissa``, ``exponent``) and verification streams
(``mantissa_low``, ``pruned_raw``); ``decode(encoded, "draft")`` rebuilds the
draft tensor from the speculation streams alone and ``decode(encoded, "full")``
returns the original bits exactly.

Everything works on integer views of the BF16 bits with masks and gathers; no
Python loop runs over elements (decoding loops over chunks of superblocks to
bound memory, and over ``log2(superblock size)`` pointer-doubling steps for
unary codes).
"""

from __future__ import annotations

import torch

from .bitstream import (
    PackedStream,
    bits_of_words,
    bits_per_superblock,
    exclusive_cumsum,
    field_offsets,
    pack_fields,
    read_fields,
)
from .container import CassandraFormatError, EncodedTensor, check_stream_tail
from .params import (
    BF16_BITS,
    MX_ESCAPE_BITS,
    FormatParams,
    check_draft_rounding,
)

__all__ = [
    "CassandraFormatError",
    "EncodedTensor",
    "DECODE_MODES",
    "encode",
    "payload_bits",
    "decode",
    "decode_bitmap",
    "unary_codebook",
    "bf16_bits",
    "bf16_from_bits",
    "round_draft_bits",
]

DECODE_MODES = ("draft", "full")

#: Decoding works on this many values at a time (whole superblocks).
_DECODE_CHUNK_VALUES = 1 << 20


# ---------------------------------------------------------------------------
# BF16 bit views
# ---------------------------------------------------------------------------
def bf16_bits(x: torch.Tensor) -> torch.Tensor:
    """BF16 tensor -> int64 tensor of its 16-bit patterns (0..65535), same shape."""
    return x.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF


def round_draft_bits(bits: torch.Tensor, truncated_bits: int, rounding: str = "truncate") -> torch.Tensor:
    """Draft patterns of raw / unary kept values from their 16-bit patterns ``bits``.

    ``truncate`` zeros the ``truncated_bits`` low mantissa bits. ``midpoint`` also
    sets the highest of them for a normal value (``1 <= e <= 254``): the middle of
    the interval the truncated value stands for, so the draft's error is centred
    on zero instead of always shrinking the magnitude. Zeros, subnormals,
    infinities and NaN keep the truncated pattern. Works on any int tensor of
    patterns 0..65535; the speculation data holds everything it reads.
    """
    check_draft_rounding(rounding, label="rounding")
    if not 0 <= truncated_bits <= 7:
        raise ValueError(f"truncated_bits={truncated_bits} is out of range 0..7")
    out = bits & ((0xFFFF << truncated_bits) & 0xFFFF)
    if rounding == "midpoint" and truncated_bits > 0:
        exponent = (bits >> 7) & 0xFF
        out = torch.where((exponent >= 1) & (exponent <= 254), out | (1 << (truncated_bits - 1)), out)
    return out


def bf16_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """int tensor of 16-bit patterns (0..65535) -> BF16 tensor, same shape."""
    signed = torch.where(bits >= 0x8000, bits - 0x10000, bits)
    return signed.to(torch.int16).view(torch.bfloat16)


# MSB position of 1..255 (entry 0 unused).
_MSB_TABLE = torch.tensor([max(v.bit_length() - 1, 0) for v in range(256)], dtype=torch.int64)


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------
def _check_inputs(x, keep_mask, params) -> None:
    if not isinstance(params, FormatParams):
        raise TypeError(f"params must be a FormatParams, got {type(params).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of dtype torch.bfloat16, got {type(x).__name__}")
    if x.dtype != torch.bfloat16:
        raise TypeError(f"x must have dtype torch.bfloat16, got {x.dtype}")
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension; got a scalar")
    if x.shape[-1] % params.group_size != 0:
        raise ValueError(
            f"x.shape={tuple(x.shape)}: the last dimension ({x.shape[-1]}) is not a multiple "
            f"of group_size={params.group_size}"
        )
    if not isinstance(keep_mask, torch.Tensor):
        raise TypeError(f"keep_mask must be a torch.Tensor of dtype torch.bool, got {type(keep_mask).__name__}")
    if keep_mask.dtype != torch.bool:
        raise TypeError(f"keep_mask must have dtype torch.bool, got {keep_mask.dtype}")
    if tuple(keep_mask.shape) != tuple(x.shape):
        raise ValueError(
            f"keep_mask.shape={tuple(keep_mask.shape)} does not match x.shape={tuple(x.shape)}"
        )


def _check_codebook(codebook, params: FormatParams) -> torch.Tensor:
    cb = torch.as_tensor(codebook).to(torch.int64).reshape(-1)
    L = params.unary_max_code_length
    if cb.numel() != L:
        raise ValueError(
            f"codebook has {cb.numel()} entries; unary_max_code_length={L} needs exactly {L}"
        )
    if cb.numel() and (int(cb.min()) < 0 or int(cb.max()) > 255):
        raise ValueError(f"codebook entries must be exponents 0..255, got {cb.tolist()}")
    if torch.unique(cb).numel() != cb.numel():
        raise ValueError(f"codebook entries must be distinct, got {cb.tolist()}")
    return cb


def unary_codebook(exponents: torch.Tensor, params: FormatParams) -> torch.Tensor:
    """The encoder's codebook: the L_max most frequent exponents, ties to the smaller.

    Exponents that never occur fill the remaining places, smallest first, so the
    codebook always has ``unary_max_code_length`` distinct entries.
    """
    counts = torch.bincount(exponents.reshape(-1).to(torch.int64), minlength=256)
    order = torch.argsort(-counts, stable=True)
    return order[: params.unary_max_code_length].clone()


# ---------------------------------------------------------------------------
# Shared index bookkeeping (used by encode and decode alike)
# ---------------------------------------------------------------------------
def _kept_rank_in_group(kept_group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For kept values in stream order: rank within their group, and kept count per group."""
    per_group = torch.bincount(kept_group, minlength=num_groups)
    rank = torch.arange(kept_group.numel(), dtype=torch.int64) - exclusive_cumsum(per_group)[kept_group]
    return rank, per_group


def _mx_blocks(kept_group: torch.Tensor, num_groups: int, block: int):
    """mx blocks: ``block`` consecutive kept values of a group share an exponent.

    Returns the block index of every kept value, and each block's group.
    """
    rank, per_group = _kept_rank_in_group(kept_group, num_groups)
    blocks_per_group = (per_group + block - 1) // block
    first_block = exclusive_cumsum(blocks_per_group)
    block_index = first_block[kept_group] + rank // block
    block_group = torch.repeat_interleave(torch.arange(num_groups, dtype=torch.int64), blocks_per_group)
    return block_index, block_group


def _field_offsets(
    name: str,
    widths: torch.Tensor,
    superblock: torch.Tensor,
    sb_offsets: torch.Tensor,
) -> torch.Tensor:
    """Absolute bit offsets of fields laid out as pack_fields lays them out.

    Raises CassandraFormatError when a superblock's part of the stream is not
    exactly its fields padded to 64 bits (truncated or corrupted data).
    """
    bits_per_sb = bits_per_superblock(widths, superblock, sb_offsets.numel() - 1)
    region_words = sb_offsets[1:] - sb_offsets[:-1]
    needed_words = (bits_per_sb + 63) // 64
    bad = needed_words != region_words
    if bool(bad.any()):
        sb = int(torch.nonzero(bad)[0])
        raise CassandraFormatError(
            f"stream {name!r}, superblock {sb}: the bitmap calls for {int(bits_per_sb[sb])} bits "
            f"({int(needed_words[sb])} 64-bit words) but the stream holds {int(region_words[sb])} words "
            "there: the stream is truncated or corrupted"
        )
    return field_offsets(widths, superblock, sb_offsets, bits_per_sb)


# ---------------------------------------------------------------------------
# encode
# ---------------------------------------------------------------------------
def _stream_fields(x: torch.Tensor, keep_mask: torch.Tensor, params: FormatParams, codebook):
    """Every stream's fields before packing: ``{name: (values, widths, superblock)}``,
    plus the superblock count, the unary codebook used (or None) and the kept count."""
    _check_inputs(x, keep_mask, params)
    G = params.group_size
    bits = bf16_bits(x.detach().cpu()).reshape(-1)
    keep = keep_mask.detach().cpu().reshape(-1)
    n = bits.numel()
    num_groups = n // G
    n_sb = (num_groups + params.superblock_groups - 1) // params.superblock_groups
    sb_values = params.superblock_values

    fields = {}

    # bitmap: G bits per group, value i of the group at bit i (8-bit fields)
    chunk = keep.to(torch.int64).reshape(-1, 8)
    chunk_values = (chunk << torch.arange(8, dtype=torch.int64)).sum(1)
    chunk_sb = torch.arange(chunk_values.numel(), dtype=torch.int64) * 8 // sb_values
    fields["bitmap"] = (chunk_values, torch.full_like(chunk_values, 8), chunk_sb)

    kept_idx = torch.nonzero(keep).reshape(-1)
    pruned_idx = torch.nonzero(~keep).reshape(-1)
    kbits = bits[kept_idx]
    sign = kbits >> 15
    exponent = (kbits >> 7) & 0xFF
    mantissa = kbits & 0x7F
    k_sb = kept_idx // sb_values
    m = params.mantissa_bits
    t = params.truncated_bits
    cb = None

    if params.exponent_coding in ("raw", "unary"):
        sm_values = (sign << m) | (mantissa >> t)
        sm_widths = torch.full_like(sm_values, params.sign_mantissa_bits)
        ml_values = mantissa & ((1 << t) - 1)
        ml_widths = torch.full_like(ml_values, t)
        if params.exponent_coding == "raw":
            ex_values, ex_widths, ex_sb = exponent, torch.full_like(exponent, 8), k_sb
        else:
            cb = unary_codebook(exponent, params) if codebook is None else _check_codebook(codebook, params)
            L = params.unary_max_code_length
            rank_of = torch.full((256,), L, dtype=torch.int64)
            rank_of[cb] = torch.arange(L, dtype=torch.int64)
            rank = rank_of[exponent]
            escape = rank == L
            ex_values = torch.where(escape, exponent << L, torch.ones_like(rank) << torch.clamp(rank, max=L - 1))
            ex_widths = torch.where(escape, torch.full_like(rank, L + 8), rank + 1)
            ex_sb = k_sb
    else:  # mx
        if codebook is not None:
            raise ValueError("codebook is only used with exponent_coding='unary'")
        effective = torch.clamp(exponent, min=1)
        significand = torch.where(exponent > 0, 128, 0) | mantissa
        block_index, block_group = _mx_blocks(kept_idx // G, num_groups, params.mx_block_size)
        shared = torch.zeros(block_group.numel(), dtype=torch.int64)
        shared.scatter_reduce_(0, block_index, effective, reduce="amax", include_self=True)
        shift = shared[block_index] - effective + t  # bits of the significand alignment drops
        aligned = torch.where(shift <= 7, significand >> torch.clamp(shift, max=15), 0)
        sm_values = (sign << params.mx_significand_bits) | aligned
        sm_widths = torch.full_like(sm_values, params.sign_mantissa_bits)
        nonzero = aligned != 0
        ml_widths = torch.where(nonzero, shift, MX_ESCAPE_BITS)
        ml_values = torch.where(
            nonzero, mantissa & ((1 << torch.clamp(shift, max=15)) - 1), (exponent << 7) | mantissa
        )
        ex_values, ex_widths = shared, torch.full_like(shared, 8)
        ex_sb = block_group // params.superblock_groups

    fields["sign_mantissa"] = (sm_values, sm_widths, k_sb)
    fields["exponent"] = (ex_values, ex_widths, ex_sb)
    fields["mantissa_low"] = (ml_values, ml_widths, k_sb)
    pruned_bits = bits[pruned_idx]
    fields["pruned_raw"] = (pruned_bits, torch.full_like(pruned_bits, BF16_BITS), pruned_idx // sb_values)
    return fields, n_sb, cb, kept_idx.numel()


def payload_bits(x: torch.Tensor, keep_mask: torch.Tensor, params: FormatParams | None = None, *,
                 codebook=None) -> dict[str, int]:
    """Exact payload bits of every stream of ``encode(x, keep_mask, params,
    codebook=codebook)`` (padding excluded), without packing the bits: the same
    field widths, several times faster. Used for byte counts of many settings."""
    params = FormatParams() if params is None else params
    fields, _, _, _ = _stream_fields(x, keep_mask, params, codebook)
    return {name: int(widths.sum()) for name, (_, widths, _) in fields.items()}


def encode(
    x: torch.Tensor,
    keep_mask: torch.Tensor,
    params: FormatParams | None = None,
    *,
    codebook=None,
) -> EncodedTensor:
    """Encode a BF16 tensor.

    Parameters
    ----------
    x : torch.Tensor
        dtype ``torch.bfloat16``, last dimension a multiple of ``group_size``.
        Every bit pattern is accepted (NaN payloads, infinities, signed zeros,
        subnormals) and ``decode(..., "full")`` returns it unchanged.
    keep_mask : torch.Tensor
        bool, same shape: True keeps the value in the speculation data. The
        format does not choose it; see golden/format/select.py for selectors.
    params : FormatParams, optional
        Defaults to ``FormatParams()``.
    codebook : sequence of int, optional
        Unary coding: the exponents in rank order (``unary_max_code_length``
        distinct values). Default: computed from the kept values
        (:func:`unary_codebook`). A fixed codebook is how online (KV cache)
        encoding works.

    Returns
    -------
    EncodedTensor
    """
    params = FormatParams() if params is None else params
    shape = tuple(x.shape)
    fields, n_sb, cb, num_kept = _stream_fields(x, keep_mask, params, codebook)
    streams: dict[str, PackedStream] = {}
    for name, (values, widths, superblock) in fields.items():
        streams[name], _ = pack_fields(values, widths, superblock, n_sb)
    for s in streams.values():
        if int(s.superblock_offsets[-1]) >= 1 << 32:
            raise ValueError("a stream exceeds 2**32 64-bit words; split the tensor")
    return EncodedTensor(params=params, shape=shape, streams=streams, codebook=cb, num_kept=num_kept)


# ---------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------
def decode(encoded: EncodedTensor, mode: str = "full", *, superblocks: tuple[int, int] | None = None,
           rounding: str = "truncate") -> torch.Tensor:
    """Decode an encoded tensor.

    Parameters
    ----------
    encoded : EncodedTensor
    mode : {"draft", "full"}
        ``draft`` reads the speculation streams only: pruned values become +0.0
        and truncated mantissa bits 0 (mx: each kept value truncated to its
        block's shared-exponent grid). ``full`` returns the original bits.
    superblocks : (start, stop), optional
        Decode only superblocks ``start .. stop-1``, starting from the
        per-superblock offsets without reading anything before them. The
        result is then the flat run of values those superblocks hold.
    rounding : {"truncate", "midpoint"}
        Draft decode of raw / unary codings only: ``midpoint`` sets the highest
        truncated mantissa bit of every normal kept value (see
        :func:`round_draft_bits`). A reader's choice: the streams are the same.

    Returns
    -------
    torch.Tensor
        bfloat16, ``encoded.shape`` (or 1-D for a superblock range).
    """
    if not isinstance(encoded, EncodedTensor):
        raise TypeError(f"decode() takes an EncodedTensor, got {type(encoded).__name__}")
    if mode not in DECODE_MODES:
        raise ValueError(f"mode={mode!r} is not one of {DECODE_MODES}")
    if mode == "full" and not encoded.has_verification:
        raise ValueError("full decode needs the verification streams; this tensor was read with part='speculation'")
    check_draft_rounding(rounding, encoded.params.exponent_coding, label="rounding")
    if rounding != "truncate" and mode != "draft":
        raise ValueError(f"rounding={rounding!r} applies to draft decode only, not mode={mode!r}")
    n_sb = encoded.num_superblocks
    if superblocks is None:
        start, stop = 0, n_sb
    else:
        start, stop = (int(v) for v in superblocks)
        if not 0 <= start <= stop <= n_sb:
            raise ValueError(f"superblocks=({start}, {stop}) is out of range for {n_sb} superblocks")
    per_chunk = max(1, _DECODE_CHUNK_VALUES // encoded.params.superblock_values)
    used: dict = {}  # payload bits of the variable-width streams, as decoding finds them
    parts = [
        _decode_range(encoded, mode, lo, min(lo + per_chunk, stop), rounding, used)
        for lo in range(start, stop, per_chunk)
    ]
    if superblocks is None:
        for name, bits in used.items():
            if bits != encoded.streams[name].payload_bits:
                raise CassandraFormatError(
                    f"stream {name!r}: the stream table's payload_bits={encoded.streams[name].payload_bits} but "
                    f"its fields take {bits} bits")
    out = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
    values = bf16_from_bits(out)
    return values.reshape(encoded.shape) if superblocks is None else values


def decode_bitmap(encoded: EncodedTensor) -> torch.Tensor:
    """The keep mask (bool, ``encoded.shape``) that the bitmap stream holds."""
    if not isinstance(encoded, EncodedTensor):
        raise TypeError(f"decode_bitmap() takes an EncodedTensor, got {type(encoded).__name__}")
    return _read_bitmap(encoded, 0, encoded.num_superblocks, encoded.num_values).reshape(encoded.shape)


def _read_bitmap(enc: EncodedTensor, start: int, stop: int, n: int) -> torch.Tensor:
    """Keep bits of superblocks start..stop-1 (n values), flat."""
    sb_values = enc.params.superblock_values
    words, offs = _slice_stream(enc.streams["bitmap"], start, stop)
    n_chunks = n // 8
    chunk_sb = torch.arange(n_chunks, dtype=torch.int64) * 8 // sb_values
    chunk_off = _field_offsets("bitmap", torch.full((n_chunks,), 8, dtype=torch.int64), chunk_sb, offs)
    chunks = read_fields(words, chunk_off, 8)
    return ((chunks.unsqueeze(1) >> torch.arange(8, dtype=torch.int64)) & 1).reshape(-1).bool()


def _slice_stream(stream: PackedStream, start: int, stop: int):
    offsets = stream.superblock_offsets
    lo, hi = int(offsets[start]), int(offsets[stop])
    return stream.words[lo * 2 : hi * 2], offsets[start : stop + 1] - lo


def _decode_range(enc: EncodedTensor, mode: str, start: int, stop: int, rounding: str = "truncate",
                  used: dict | None = None) -> torch.Tensor:
    """Decode superblocks start..stop-1 into a flat int64 tensor of bit patterns."""
    p = enc.params
    G, sb_values = p.group_size, p.superblock_values
    v0 = start * sb_values
    v1 = min(stop * sb_values, enc.num_values)
    n = v1 - v0
    n_groups = n // G
    m, t = p.mantissa_bits, p.truncated_bits

    keep = _read_bitmap(enc, start, stop, n)
    kept_idx = torch.nonzero(keep).reshape(-1)
    k_sb = kept_idx // sb_values
    num_kept = kept_idx.numel()

    # sign + (aligned) mantissa
    words, offs = _slice_stream(enc.streams["sign_mantissa"], start, stop)
    width = p.sign_mantissa_bits
    sm_off = _field_offsets("sign_mantissa", torch.full((num_kept,), width, dtype=torch.int64), k_sb, offs)
    sm = read_fields(words, sm_off, width)
    sign = sm >> (width - 1)
    high = sm & ((1 << (width - 1)) - 1)  # m mantissa bits, or the m+1-bit aligned significand (mx)

    words, offs = _slice_stream(enc.streams["exponent"], start, stop)
    if p.exponent_coding == "raw":
        ex_off = _field_offsets("exponent", torch.full((num_kept,), 8, dtype=torch.int64), k_sb, offs)
        exponent = read_fields(words, ex_off, 8)
    elif p.exponent_coding == "unary":
        exponent = _decode_unary(words, offs, k_sb, stop - start, enc.codebook, p, used)
    else:
        block_index, block_group = _mx_blocks(kept_idx // G, n_groups, p.mx_block_size)
        b_sb = block_group // p.superblock_groups
        ex_off = _field_offsets("exponent", torch.full((b_sb.numel(),), 8, dtype=torch.int64), b_sb, offs)
        shared = read_fields(words, ex_off, 8)
        if bool((shared == 0).any()):
            raise CassandraFormatError("stream 'exponent': an mx shared exponent is 0 (never written): corrupted")
        shared = shared[block_index]

    out = torch.zeros(n, dtype=torch.int64)
    if p.exponent_coding != "mx":
        if mode == "draft":
            out[kept_idx] = round_draft_bits((sign << 15) | (exponent << 7) | (high << t), t, rounding)
        else:
            words, offs = _slice_stream(enc.streams["mantissa_low"], start, stop)
            ml_off = _field_offsets("mantissa_low", torch.full((num_kept,), t, dtype=torch.int64), k_sb, offs)
            low = read_fields(words, ml_off, t)
            out[kept_idx] = (sign << 15) | (exponent << 7) | (high << t) | low
    else:
        aligned = high
        nonzero = aligned != 0
        msb = _MSB_TABLE[aligned]
        exp_normal = shared - m + msb  # >= 1: a normal number; <= 0: a subnormal one
        normal = exp_normal >= 1
        if mode == "draft":
            normal_bits = (torch.clamp(exp_normal, min=0) << 7) | ((aligned - (1 << msb)) << (7 - msb))
            subnormal_bits = aligned << torch.clamp(shared - 1 + t, max=15)
            draft = torch.where(normal, normal_bits, subnormal_bits) & 0x7FFF
            out[kept_idx] = (sign << 15) | torch.where(nonzero, draft, 0)
        else:
            dropped = torch.where(normal, m - msb, shared - 1) + t
            ml_widths = torch.where(nonzero, torch.clamp(dropped, max=15), MX_ESCAPE_BITS)
            words, offs = _slice_stream(enc.streams["mantissa_low"], start, stop)
            ml_off = _field_offsets("mantissa_low", ml_widths, k_sb, offs)
            ml_bits = bits_per_superblock(ml_widths, k_sb, stop - start)
            check_stream_tail("mantissa_low", PackedStream(words, offs, 0), ml_bits)
            if used is not None:
                used["mantissa_low"] = used.get("mantissa_low", 0) + int(ml_bits.sum())
            low = read_fields(words, ml_off, ml_widths)
            mantissa = ((aligned << torch.clamp(dropped, max=15)) | low) & 0x7F
            exponent = torch.where(normal, exp_normal, 0)
            rebuilt = (exponent << 7) | mantissa
            out[kept_idx] = (sign << 15) | torch.where(nonzero, rebuilt, low)

    if mode == "full":
        pruned_idx = torch.nonzero(~keep).reshape(-1)
        words, offs = _slice_stream(enc.streams["pruned_raw"], start, stop)
        pr_off = _field_offsets(
            "pruned_raw", torch.full((pruned_idx.numel(),), 16, dtype=torch.int64), pruned_idx // sb_values, offs
        )
        out[pruned_idx] = read_fields(words, pr_off, 16)
    return out


def _decode_unary(words, offs, k_sb, n_sb, codebook, p: FormatParams, used: dict | None = None) -> torch.Tensor:
    """Decode the unary exponent codes of a range of superblocks.

    Code starts are found by pointer doubling: ``next[b]`` is where a code
    starting at bit ``b`` would end; the r-th code of a superblock starts at
    ``next^r(superblock start)``, computed from the bits of r.
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
    if bool(((last_end + 63) // 64 != offs[1:] - offs[:-1]).any()):
        raise CassandraFormatError(
            "stream 'exponent': a superblock's part is longer than its unary codes: corrupted offsets"
        )
    check_stream_tail("exponent", PackedStream(words, offs, 0), last_end)
    if used is not None:
        used["exponent"] = used.get("exponent", 0) + int(last_end.sum())
    z = zeros[safe] if nbits else pos
    escaped = z >= L
    raw = read_fields(words, torch.clamp(pos + L, max=max(nbits - 8, 0)), 8) if nbits else pos
    return torch.where(escaped, raw, codebook.to(torch.int64)[torch.clamp(z, max=L - 1)])
