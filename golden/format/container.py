"""The Cassandra container: one encoded tensor as bytes (docs/FORMAT.md, "Container").

Layout, little-endian throughout::

    fixed header (32 bytes) | shape | codebook | pad to 8 | stream table |
    superblock offset table | pad to 8 | header CRC-32 (+4 zero bytes) |
    bitmap | sign_mantissa | exponent | mantissa_low | pruned_raw

The speculation streams come first, so a draft-only reader reads a prefix
(``load(path, part="speculation")``).

:class:`EncodedTensor`, the in-memory form that ``golden.format.codec`` writes and
reads, is defined here beside its byte form, so the codec imports the container
and never the other way round.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import torch

from .bitstream import PackedStream, bytes_to_words
from .params import EXPONENT_CODINGS, SPECULATION_STREAMS, STREAM_NAMES, VERIFICATION_STREAMS, FormatParams

__all__ = ["CassandraFormatError", "EncodedTensor", "MAGIC", "VERSION", "to_bytes", "from_bytes", "save", "load",
           "PARTS"]


class CassandraFormatError(ValueError):
    """An encoded tensor or container is truncated, corrupted or inconsistent."""


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
    def from_bytes(data: bytes, *, part: str = "all") -> "EncodedTensor":
        return from_bytes(data, part=part)

    def save(self, path) -> None:
        save(self, path)

    @staticmethod
    def load(path, *, part: str = "all") -> "EncodedTensor":
        return load(path, part=part)


# ---------------------------------------------------------------------------
# The container
# ---------------------------------------------------------------------------
MAGIC = b"CSND"
VERSION = 1
MAX_NDIM = 8
PARTS = ("all", "speculation")

# magic, version, coding, mantissa_bits, group_size, superblock_groups,
# mx_block_size, unary_max_code_length, ndim, reserved(4), num_superblocks, num_kept
_FIXED = struct.Struct("<4sHBBHHHBB4xIQ")
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
    (magic, version, coding, mbits, gsize, sbg, mxb, lmax, ndim, n_sb, num_kept) = _FIXED.unpack_from(data, 0)
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
    pos = _pad8(pos)
    entries_at = pos
    pos += _STREAM_ENTRY.size * len(STREAM_NAMES)
    offsets_at = pos
    pos += 4 * (n_sb + 1) * len(STREAM_NAMES)
    pos = _pad8(pos)
    _need(data, pos + 8, "the header")
    crc, reserved = struct.unpack_from("<II", data, pos)
    if crc != zlib.crc32(bytes(data[:pos])) or reserved != 0:
        raise CassandraFormatError("header CRC-32 mismatch: the container header is corrupted")
    header_len = pos + 8

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
        payload_bits, words64, s_crc, _ = _STREAM_ENTRY.unpack_from(data, entries_at + i * _STREAM_ENTRY.size)
        raw = bytes(data[offsets_at + 4 * i * (n_sb + 1) : offsets_at + 4 * (i + 1) * (n_sb + 1)])
        offs = torch.tensor(list(struct.unpack(f"<{n_sb + 1}I", raw)), dtype=torch.int64)
        if int(offs[0]) != 0 or int(offs[-1]) != words64 or bool((offs[1:] < offs[:-1]).any()):
            raise CassandraFormatError(f"stream {name!r}: superblock offsets are inconsistent")
        if payload_bits > words64 * 64:
            raise CassandraFormatError(f"stream {name!r}: payload_bits={payload_bits} exceed its {words64} words")
        streams[name] = (payload_bits, words64, s_crc, offs)
    fields = dict(params=params, shape=tuple(shape), codebook=codebook, num_kept=num_kept, streams=streams)
    return fields, header_len


def from_bytes(data, *, part: str = "all") -> EncodedTensor:
    """Parse a container. ``part="speculation"`` reads the speculation streams only.

    Raises
    ------
    CassandraFormatError
        On a truncated, corrupted or inconsistent container; the message names
        the part that is wrong.
    """
    if part not in PARTS:
        raise ValueError(f"part={part!r} is not one of {PARTS}")
    view = memoryview(data)
    fields, pos = _parse_header(view)
    names = SPECULATION_STREAMS if part == "speculation" else STREAM_NAMES
    total = pos + 8 * sum(fields["streams"][n][1] for n in names)
    if part == "all" and len(view) != total:
        raise CassandraFormatError(
            f"container truncated or padded: the header calls for {total} bytes, the data has {len(view)}"
        )
    _need(view, total, "the speculation streams" if part == "speculation" else "the streams")
    streams = {}
    for name in names:
        payload_bits, words64, s_crc, offs = fields["streams"][name]
        chunk = view[pos : pos + 8 * words64]
        if zlib.crc32(chunk) != s_crc:
            raise CassandraFormatError(f"stream {name!r}: CRC-32 mismatch, the data is corrupted")
        streams[name] = PackedStream(bytes_to_words(chunk), offs, payload_bits)
        pos += 8 * words64
    return EncodedTensor(
        params=fields["params"],
        shape=fields["shape"],
        streams=streams,
        codebook=fields["codebook"],
        num_kept=fields["num_kept"],
    )


def save(enc: EncodedTensor, path) -> None:
    """Write a container file (conventionally ``*.csnd``)."""
    data = to_bytes(enc)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load(path, *, part: str = "all") -> EncodedTensor:
    """Read a container file; ``part="speculation"`` reads only the file's prefix."""
    if part not in PARTS:
        raise ValueError(f"part={part!r} is not one of {PARTS}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no container at {os.fspath(path)!r}")
    with open(path, "rb") as f:
        if part == "all":
            return from_bytes(f.read())
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
        return from_bytes(head[:need], part="speculation")
