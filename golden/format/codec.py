"""Bit-exact reference codec of the Cassandra format (docs/FORMAT.md).

``encode(x, keep_mask, params)`` splits a BF16 tensor into speculation streams
(``bitmap``, ``sign_mantissa``, ``exponent``) and verification streams
(``mantissa_low``, ``pruned_raw``); ``decode(encoded, "draft")`` rebuilds the
draft tensor from the speculation streams alone and ``decode(encoded, "full")``
returns the original bits exactly.

Everything works on integer views of the BF16 bits with masks and gathers; no
Python loop runs over elements (decoding loops over chunks of superblocks to
bound memory, and over ``log2(superblock size)`` pointer-doubling steps for
unary codes). Decoding reads the streams with :mod:`golden.format.layout`, the
same reader (and checks) the strict container reader runs at load.
"""

from __future__ import annotations

import torch

from .bitstream import PackedStream, pack_fields, read_fields
from .container import CassandraFormatError, EncodedTensor
from .layout import (
    check_payload_bits,
    checked_field_offsets,
    mx_blocks,
    mx_split,
    read_bitmap,
    read_mx_low_bits,
    read_speculation,
    slice_stream,
    superblock_chunks,
)
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
        block_index, block_group = mx_blocks(kept_idx // G, num_groups, params.mx_block_size)
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
    used: dict = {}  # payload bits of the variable-width streams, as reading finds them
    parts = [_decode_range(encoded, mode, lo, hi, rounding, used)
             for lo, hi in superblock_chunks(start, stop, encoded.params)]
    if superblocks is None:
        check_payload_bits(encoded, used)
    out = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
    values = bf16_from_bits(out)
    return values.reshape(encoded.shape) if superblocks is None else values


def decode_bitmap(encoded: EncodedTensor) -> torch.Tensor:
    """The keep mask (bool, ``encoded.shape``) that the bitmap stream holds."""
    if not isinstance(encoded, EncodedTensor):
        raise TypeError(f"decode_bitmap() takes an EncodedTensor, got {type(encoded).__name__}")
    return read_bitmap(encoded, 0, encoded.num_superblocks).reshape(encoded.shape)


def _decode_range(enc: EncodedTensor, mode: str, start: int, stop: int, rounding: str = "truncate",
                  used: dict | None = None) -> torch.Tensor:
    """Decode superblocks start..stop-1 into a flat int64 tensor of bit patterns."""
    p = enc.params
    sb_values = p.superblock_values
    t = p.truncated_bits
    fields = read_speculation(enc, start, stop, used)  # checks the parts as it reads them
    keep, kept_idx, k_sb = fields.keep, fields.kept_index, fields.superblock
    sign, high = fields.sign, fields.high  # high: m mantissa bits, or mx's m+1-bit aligned significand

    out = torch.zeros(keep.numel(), dtype=torch.int64)
    if p.exponent_coding != "mx":
        exponent = fields.exponent
        if mode == "draft":
            out[kept_idx] = round_draft_bits((sign << 15) | (exponent << 7) | (high << t), t, rounding)
        else:
            words, offs = slice_stream(enc.streams["mantissa_low"], start, stop)
            ml_off = checked_field_offsets("mantissa_low", torch.full((kept_idx.numel(),), t, dtype=torch.int64),
                                           k_sb, offs)
            low = read_fields(words, ml_off, t)
            out[kept_idx] = (sign << 15) | (exponent << 7) | (high << t) | low
    else:
        aligned, shared = high, fields.exponent
        split = mx_split(aligned, shared, p)
        nonzero = aligned != 0
        if mode == "draft":
            normal_bits = (torch.clamp(split.exponent, min=0) << 7) | ((aligned - (1 << split.msb)) << (7 - split.msb))
            subnormal_bits = aligned << torch.clamp(shared - 1 + t, max=15)
            draft = torch.where(split.normal, normal_bits, subnormal_bits) & 0x7FFF
            out[kept_idx] = (sign << 15) | torch.where(nonzero, draft, 0)
        else:
            words, ml_off = read_mx_low_bits(enc, fields, split, start, stop, used)
            low = read_fields(words, ml_off, split.low_bits)
            mantissa = ((aligned << torch.clamp(split.dropped, max=15)) | low) & 0x7F
            exponent = torch.where(split.normal, split.exponent, 0)
            rebuilt = (exponent << 7) | mantissa
            out[kept_idx] = (sign << 15) | torch.where(nonzero, rebuilt, low)

    if mode == "full":
        pruned_idx = torch.nonzero(~keep).reshape(-1)
        words, offs = slice_stream(enc.streams["pruned_raw"], start, stop)
        pr_off = checked_field_offsets(
            "pruned_raw", torch.full((pruned_idx.numel(),), 16, dtype=torch.int64), pruned_idx // sb_values, offs
        )
        out[pruned_idx] = read_fields(words, pr_off, 16)
    return out
