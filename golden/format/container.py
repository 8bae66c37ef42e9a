"""The Cassandra container: one encoded tensor as bytes (docs/FORMAT.md, "Container").

Layout, little-endian throughout::

    fixed header (32 bytes) | shape | codebook | pad to 8 | stream table |
    superblock offset table | pad to 8 | header CRC-32 (+4 zero bytes) |
    bitmap | sign_mantissa | exponent | mantissa_low | pruned_raw

The speculation streams come first, so a draft-only reader reads a prefix
(``load(path, part="speculation")``).

:class:`EncodedTensor`, the in-memory form that ``golden.format.codec`` writes and
reads, is defined here beside its byte form, so the codec imports the container
and never the other way round. Both read the variable-width fields (unary codes,
mx low bits) with :mod:`golden.format.layout`, below them: the strict reader checks
those exactly at load too.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import torch

from .bitstream import PackedStream, bits_of_words, bytes_to_words
from .layout import (
    CassandraFormatError,
    check_part_sizes,
    check_payload_bits,
    check_stream_tail,
    check_variable_fields,
)
from .params import EXPONENT_CODINGS, SPECULATION_STREAMS, STREAM_NAMES, VERIFICATION_STREAMS, FormatParams

__all__ = ["CassandraFormatError", "EncodedTensor", "MAGIC", "VERSION", "to_bytes", "from_bytes", "save", "load",
           "PARTS", "CHECKS", "check_structure"]


# ---------------------------------------------------------------------------
# The encoded tensor
# ---------------------------------------------------------------------------
@dataclass
class EncodedTensor:
    """A tensor in Cassandra format.

    Attributes
    ----------
    params : FormatParams
    shape : tuple of int
        Shape of the original tensor.
    streams : dict of str to PackedStream
        In container order: ``bitmap``, ``sign_mantissa``, ``exponent`` (the
        speculation data), ``mantissa_low``, ``pruned_raw`` (the verification
        data). A speculation-only tensor (read with ``part="speculation"``)
        lacks the last two and decodes only in ``draft`` mode.
    codebook : torch.Tensor or None
        Unary coding only: the ``unary_max_code_length`` exponents, rank order.
    num_kept : int
        Values marked kept by the bitmap.
    """

    params: FormatParams
    shape: tuple[int, ...]
    streams: dict[str, PackedStream]
    codebook: torch.Tensor | None = None
    num_kept: int = 0

    # -- sizes ---------------------------------------------------------------
    @property
    def num_values(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def num_groups(self) -> int:
        return self.num_values // self.params.group_size

    @property
    def num_superblocks(self) -> int:
        sg = self.params.superblock_groups
        return (self.num_groups + sg - 1) // sg

    @property
    def has_verification(self) -> bool:
        return all(name in self.streams for name in VERIFICATION_STREAMS)

    def payload_bits(self, name: str) -> int:
        """Exact bits of one stream, padding excluded."""
        return self.streams[name].payload_bits

    @property
    def speculation_bits(self) -> int:
        """Exact payload bits the draft reads (bitmap + sign/mantissa + exponent)."""
        return sum(self.streams[n].payload_bits for n in SPECULATION_STREAMS)

    @property
    def verification_bits(self) -> int:
        """Exact payload bits only the target reads (low mantissa + pruned raw)."""
        return sum(self.streams[n].payload_bits for n in VERIFICATION_STREAMS)

    @property
    def speculation_stored_bits(self) -> int:
        """Speculation bits as stored, 64-bit superblock padding included."""
        return sum(self.streams[n].stored_bits for n in SPECULATION_STREAMS)

    @property
    def verification_stored_bits(self) -> int:
        return sum(self.streams[n].stored_bits for n in VERIFICATION_STREAMS)

    def bits_per_value(self) -> dict[str, float]:
        """Payload bits per original value, per stream and in total."""
        n = max(self.num_values, 1)
        out = {name: s.payload_bits / n for name, s in self.streams.items()}
        out["speculation"] = self.speculation_bits / n
        if self.has_verification:
            out["verification"] = self.verification_bits / n
            out["total"] = out["speculation"] + out["verification"]
        return out

    # -- serialisation (the container, below) --------------------------------
    def to_bytes(self) -> bytes:
        return to_bytes(self)

    @staticmethod
    def from_bytes(data: bytes, *, part: str = "all", check: str = "full") -> "EncodedTensor":
        return from_bytes(data, part=part, check=check)

    def save(self, path) -> None:
        save(self, path)

    @staticmethod
    def load(path, *, part: str = "all", check: str = "full") -> "EncodedTensor":
        return load(path, part=part, check=check)


# ---------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------
MAGIC = b"CSND"
VERSION = 1
MAX_NDIM = 8
PARTS = ("all", "speculation")

# magic, version, coding, mantissa_bits, group_size, superblock_groups,
# mx_block_size, unary_max_code_length, ndim, reserved (u32, zero), num_superblocks, num_kept
_FIXED = struct.Struct("<4sHBBHHHBBIIQ")
# payload_bits, stored 64-bit words, CRC-32 of the stored bytes, reserved
_STREAM_ENTRY = struct.Struct("<QQII")
assert _FIXED.size == 32 and _STREAM_ENTRY.size == 24


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


def to_bytes(enc: EncodedTensor) -> bytes:
    """Serialise an encoded tensor (all five streams) to bytes."""
    if not enc.has_verification:
        raise ValueError("this tensor holds only the speculation streams; a container needs all five")
    p = enc.params
    if len(enc.shape) > MAX_NDIM:
        raise ValueError(f"tensors of up to {MAX_NDIM} dimensions can be stored, got {len(enc.shape)}")
    n_sb = enc.num_superblocks
    head = bytearray(
        _FIXED.pack(
            MAGIC,
            VERSION,
            EXPONENT_CODINGS.index(p.exponent_coding),
            p.mantissa_bits,
            p.group_size,
            p.superblock_groups,
            p.mx_block_size,
            p.unary_max_code_length,
            len(enc.shape),
            0,
            n_sb,
            enc.num_kept,
        )
    )
    head += struct.pack(f"<{len(enc.shape)}Q", *enc.shape)
    if p.exponent_coding == "unary":
        head += bytes(int(v) for v in enc.codebook.tolist())
    head += bytes(_pad8(len(head)) - len(head))
    payloads = []
    for name in STREAM_NAMES:
        s = enc.streams[name]
        data = s.to_bytes()
        payloads.append(data)
        head += _STREAM_ENTRY.pack(s.payload_bits, int(s.superblock_offsets[-1]), zlib.crc32(data), 0)
    for name in STREAM_NAMES:
        head += enc.streams[name].superblock_offsets.numpy().astype("<u4").tobytes()
    head += bytes(_pad8(len(head)) - len(head))
    head += struct.pack("<II", zlib.crc32(head), 0)
    return bytes(head) + b"".join(payloads)


def _need(data, size: int, what: str) -> None:
    if len(data) < size:
        raise CassandraFormatError(
            f"container truncated: {what} needs {size} bytes, only {len(data)} are there"
        )


def _parse_header(data) -> tuple[dict, int]:
    """Parse and check the header; returns its fields and its length in bytes."""
    _need(data, _FIXED.size, "the fixed header")
    (magic, version, coding, mbits, gsize, sbg, mxb, lmax, ndim, reserved, n_sb,
     num_kept) = _FIXED.unpack_from(data, 0)
    if magic != MAGIC:
        raise CassandraFormatError(f"not a Cassandra container: magic is {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise CassandraFormatError(f"container version {version} is not supported (this reader knows {VERSION})")
    if coding >= len(EXPONENT_CODINGS):
        raise CassandraFormatError(f"exponent coding {coding} is unknown (0 raw, 1 unary, 2 mx)")
    if not 1 <= ndim <= MAX_NDIM:
        raise CassandraFormatError(f"ndim={ndim} is out of range 1..{MAX_NDIM}")
    try:
        params = FormatParams(
            group_size=gsize,
            mantissa_bits=mbits,
            exponent_coding=EXPONENT_CODINGS[coding],
            mx_block_size=mxb,
            unary_max_code_length=lmax,
            superblock_groups=sbg,
        )
    except (TypeError, ValueError) as exc:
        raise CassandraFormatError(f"container header holds invalid parameters: {exc}") from exc
    pos = _FIXED.size
    _need(data, pos + 8 * ndim, "the shape")
    shape = struct.unpack_from(f"<{ndim}Q", data, pos)
    pos += 8 * ndim
    codebook = None
    if params.exponent_coding == "unary":
        _need(data, pos + lmax, "the codebook")
        codebook = torch.tensor(list(bytes(data[pos : pos + lmax])), dtype=torch.int64)
        pos += lmax
    padding = [(pos, _pad8(pos))]
    pos = _pad8(pos)
    entries_at = pos
    pos += _STREAM_ENTRY.size * len(STREAM_NAMES)
    offsets_at = pos
    pos += 4 * (n_sb + 1) * len(STREAM_NAMES)
    padding.append((pos, _pad8(pos)))
    pos = _pad8(pos)
    _need(data, pos + 8, "the header")
    crc, reserved_after_crc = struct.unpack_from("<II", data, pos)
    if crc != zlib.crc32(bytes(data[:pos])):
        raise CassandraFormatError("header CRC-32 mismatch: the container header is corrupted")
    header_len = pos + 8
    # with a valid CRC, what is left to check is structure: a buggy or deliberate writer
    if reserved:
        raise CassandraFormatError(f"reserved field at header offset 16 is {reserved:#x}, not zero")
    if reserved_after_crc:
        raise CassandraFormatError(f"reserved field after the header CRC is {reserved_after_crc:#x}, not zero")
    for lo, hi in padding:
        if any(bytes(data[lo:hi])):
            what = "after the codebook" if lo < entries_at else "after the offset table"
            raise CassandraFormatError(f"header padding {what} (bytes {lo}..{hi - 1}) is not zero")

    numel = 1
    for d in shape:
        numel *= d
    if shape[-1] % params.group_size:
        raise CassandraFormatError(f"shape {shape} is not a multiple of group_size={params.group_size}")
    expect_sb = (numel // params.group_size + sbg - 1) // sbg
    if n_sb != expect_sb:
        raise CassandraFormatError(f"num_superblocks={n_sb} does not match shape {shape} (expected {expect_sb})")
    if num_kept > numel:
        raise CassandraFormatError(f"num_kept={num_kept} exceeds the {numel} values of shape {shape}")
    if codebook is not None and torch.unique(codebook).numel() != lmax:
        raise CassandraFormatError(f"codebook entries are not distinct: {codebook.tolist()}")

    streams = {}
    for i, name in enumerate(STREAM_NAMES):
        payload_bits, words64, s_crc, entry_reserved = _STREAM_ENTRY.unpack_from(data,
                                                                                 entries_at + i * _STREAM_ENTRY.size)
        if entry_reserved:
            raise CassandraFormatError(f"stream table, stream {name!r}: reserved field is {entry_reserved:#x}, "
                                       "not zero")
        raw = bytes(data[offsets_at + 4 * i * (n_sb + 1) : offsets_at + 4 * (i + 1) * (n_sb + 1)])
        offs = torch.tensor(list(struct.unpack(f"<{n_sb + 1}I", raw)), dtype=torch.int64)
        if int(offs[0]) != 0 or int(offs[-1]) != words64 or bool((offs[1:] < offs[:-1]).any()):
            raise CassandraFormatError(f"stream {name!r}: superblock offsets are inconsistent")
        if payload_bits > words64 * 64:
            raise CassandraFormatError(f"stream {name!r}: payload_bits={payload_bits} exceed its {words64} words")
        streams[name] = (payload_bits, words64, s_crc, offs)
    fields = dict(params=params, shape=tuple(shape), codebook=codebook, num_kept=num_kept, streams=streams)
    return fields, header_len


#: How much ``from_bytes`` / ``load`` check. ``full`` (the default): everything,
#: including what only reading the fields delimits (unary exponent codes; mx shared
#: exponents and, with the verification streams, mx low bits), exactly.
#: ``structure``: all but that, for bytes a trusted writer just made (every decode
#: still checks it for what it reads).
CHECKS = ("full", "structure")


def _check_options(part: str, check: str) -> None:
    if part not in PARTS:
        raise ValueError(f"part={part!r} is not one of {PARTS}")
    if check not in CHECKS:
        raise ValueError(f"check={check!r} is not one of {CHECKS}")


def from_bytes(data, *, part: str = "all", check: str = "full") -> EncodedTensor:
    """Parse a container. ``part="speculation"`` reads the speculation streams only.

    Parameters
    ----------
    data : bytes-like
    part : {"all", "speculation"}
    check : {"full", "structure"}
        See :data:`CHECKS`.

    Raises
    ------
    CassandraFormatError
        On a truncated, corrupted or inconsistent container; the message names
        the part that is wrong.
    """
    _check_options(part, check)
    view = memoryview(data)
    fields, pos = _parse_header(view)
    names = SPECULATION_STREAMS if part == "speculation" else STREAM_NAMES
    total = pos + 8 * sum(fields["streams"][n][1] for n in names)
    whole = pos + 8 * sum(fields["streams"][n][1] for n in STREAM_NAMES)
    if part == "all" and len(view) != total:
        raise CassandraFormatError(
            f"container truncated or padded: the header calls for {total} bytes, the data has {len(view)}"
        )
    if part == "speculation" and len(view) not in (total, whole):
        raise CassandraFormatError(
            f"part='speculation' takes the speculation prefix ({total} bytes) or the whole container ({whole} "
            f"bytes); the data has {len(view)}"
        )
    streams = {}
    for name in names:
        payload_bits, words64, s_crc, offs = fields["streams"][name]
        chunk = view[pos : pos + 8 * words64]
        if zlib.crc32(chunk) != s_crc:
            raise CassandraFormatError(f"stream {name!r}: CRC-32 mismatch, the data is corrupted")
        streams[name] = PackedStream(bytes_to_words(chunk), offs, payload_bits)
        pos += 8 * words64
    enc = EncodedTensor(
        params=fields["params"],
        shape=fields["shape"],
        streams=streams,
        codebook=fields["codebook"],
        num_kept=fields["num_kept"],
    )
    check_structure(enc)
    if check == "full":
        check_variable_fields(enc)
    return enc


# ---------------------------------------------------------------------------
# Structure: what the bitmap implies about every stream (the CRCs are valid by now)
# ---------------------------------------------------------------------------
def _popcount32(words: torch.Tensor) -> torch.Tensor:
    x = words - ((words >> 1) & 0x55555555)
    x = (x & 0x33333333) + ((x >> 2) & 0x33333333)
    x = (x + (x >> 4)) & 0x0F0F0F0F
    return ((x * 0x01010101) & 0xFFFFFFFF) >> 24


def _check_exact(enc: EncodedTensor, name: str, bits_per_sb: torch.Tensor, what: str) -> None:
    """A stream whose fields' widths the bitmap fixes: part sizes, payload bits, tails."""
    stream = enc.streams[name]
    check_part_sizes(name, bits_per_sb, stream.superblock_offsets, what)
    check_payload_bits(enc, {name: int(bits_per_sb.sum())})
    check_stream_tail(name, stream, bits_per_sb)


def _check_bounded(enc: EncodedTensor, name: str, low: torch.Tensor, high: torch.Tensor, what: str) -> None:
    """A stream of variable-width fields: each superblock's part and the payload within
    what its fields can take (``check_variable_fields`` then reads the exact sizes and
    the tails)."""
    stream = enc.streams[name]
    offs = stream.superblock_offsets
    words = offs[1:] - offs[:-1]
    bad = torch.nonzero((words < (low + 63) // 64) | (words > (high + 63) // 64)).reshape(-1)
    if bad.numel():
        sb = int(bad[0])
        raise CassandraFormatError(
            f"stream {name!r}, superblock {sb}: {int(words[sb])} 64-bit words, but {what} take "
            f"{int(low[sb])}..{int(high[sb])} bits")
    if not int(low.sum()) <= stream.payload_bits <= int(high.sum()):
        raise CassandraFormatError(f"stream {name!r}: the stream table's payload_bits={stream.payload_bits} is "
                                   f"outside the {int(low.sum())}..{int(high.sum())} bits {what} take")


def check_structure(enc: EncodedTensor) -> None:
    """Check every stream against the bitmap: each superblock's part is the size its
    fields take (exact for fixed-width fields, within bounds for unary exponent codes
    and mx low bits, whose exact sizes only reading them gives:
    :func:`golden.format.layout.check_variable_fields`), the stream table's payload
    bits agree, padding bits are zero, and ``num_kept`` is the bitmap's popcount.
    Raises :class:`CassandraFormatError` naming the stream and superblock."""
    p = enc.params
    n, n_sb = enc.num_values, enc.num_superblocks
    sb_values = p.group_size * p.superblock_groups
    values = torch.clamp(n - torch.arange(n_sb, dtype=torch.int64) * sb_values, max=sb_values)
    _check_exact(enc, "bitmap", values, "its values")
    bitmap = enc.streams["bitmap"]
    cumulative = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(_popcount32(bitmap.words), 0)])
    kept = cumulative[bitmap.superblock_offsets[1:] * 2] - cumulative[bitmap.superblock_offsets[:-1] * 2]
    if int(kept.sum()) != enc.num_kept:
        raise CassandraFormatError(f"num_kept={enc.num_kept} in the header, but the bitmap marks "
                                   f"{int(kept.sum())} values kept")
    _check_exact(enc, "sign_mantissa", kept * p.sign_mantissa_bits, "the kept values' sign and mantissa fields")
    if p.exponent_coding == "raw":
        _check_exact(enc, "exponent", kept * 8, "the kept values' exponents")
    elif p.exponent_coding == "unary":
        _check_bounded(enc, "exponent", kept, kept * (p.unary_max_code_length + 8), "the kept values' unary codes")
    else:
        offs = bitmap.superblock_offsets
        index = torch.arange(n, dtype=torch.int64)
        keep = bits_of_words(bitmap.words)[offs[index // sb_values] * 64 + index % sb_values]
        per_group = keep.reshape(-1, p.group_size).sum(1)
        blocks = (per_group + p.mx_block_size - 1) // p.mx_block_size
        blocks_per_sb = torch.zeros(n_sb, dtype=torch.int64)
        blocks_per_sb.index_add_(0, torch.arange(per_group.numel()) // p.superblock_groups, blocks)
        _check_exact(enc, "exponent", blocks_per_sb * 8, "the mx blocks' shared exponents")
    if not enc.has_verification:
        return
    if p.exponent_coding == "mx":
        _check_bounded(enc, "mantissa_low", torch.zeros_like(kept), kept * 15, "the kept values' low bits")
    else:
        _check_exact(enc, "mantissa_low", kept * p.truncated_bits, "the kept values' truncated bits")
    _check_exact(enc, "pruned_raw", (values - kept) * 16, "the pruned values")


def save(enc: EncodedTensor, path) -> None:
    """Write a container file (conventionally ``*.csnd``)."""
    data = to_bytes(enc)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load(path, *, part: str = "all", check: str = "full") -> EncodedTensor:
    """Read a container file; ``part="speculation"`` reads only the file's prefix.
    ``check`` as for :func:`from_bytes`."""
    _check_options(part, check)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no container at {os.fspath(path)!r}")
    with open(path, "rb") as f:
        if part == "all":
            return from_bytes(f.read(), check=check)
        head = f.read(1 << 16)
        while True:
            try:
                fields, header_len = _parse_header(head)
                break
            except CassandraFormatError as exc:
                more = f.read(len(head))
                if not more or "truncated" not in str(exc):
                    raise
                head += more
        need = header_len + 8 * sum(fields["streams"][n][1] for n in SPECULATION_STREAMS)
        if len(head) < need:
            head += f.read(need - len(head))
        return from_bytes(head[:need], part="speculation", check=check)
