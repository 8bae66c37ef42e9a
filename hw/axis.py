"""AXI4-Stream wrappers of the decoder and encoder, for integrators whose fabric
speaks AXI4-Stream: the same modules, with ``s_axis_*``/``m_axis_*`` port names.

Every stream keeps its meaning from docs/HARDWARE.md; ``tdata`` is the payload
(zero-extended to whole bytes), ``tvalid``/``tready`` the handshake. The decoder's
output adds ``tlast`` (last beat of a command) and ``tkeep`` (all ones: every beat
is whole). Byte ``i`` of a stream word is byte ``i`` of the stream, so an AXI DMA
can move container bytes unchanged.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.format.params import STREAM_NAMES, FormatParams

from .common import COMMAND_GROUP_BITS, parameter_checks
from .decoder import Decoder
from .encoder import Encoder

__all__ = ["DecoderAXIS", "EncoderAXIS"]


def _bytes(bits: int) -> int:
    return -(-bits // 8) * 8


def _axis(prefix: str, direction, width: int, *, last: bool = False, keep: int = 0) -> dict:
    inward = direction is In
    members = {
        f"{prefix}_tdata": direction(width),
        f"{prefix}_tvalid": direction(1),
        f"{prefix}_tready": (Out if inward else In)(1),
    }
    if last:
        members[f"{prefix}_tlast"] = direction(1)
    if keep:
        members[f"{prefix}_tkeep"] = direction(keep)
    return members


def _connect_in(m, wrapper, prefix: str, inner) -> None:
    """AXI4-Stream slave port -> an inner In(stream)."""
    payload = inner.payload.as_value() if hasattr(inner.payload, "as_value") else inner.payload
    m.d.comb += [
        payload.eq(getattr(wrapper, f"{prefix}_tdata")[:len(payload)]),
        inner.valid.eq(getattr(wrapper, f"{prefix}_tvalid")),
        getattr(wrapper, f"{prefix}_tready").eq(inner.ready),
    ]


def _connect_out(m, wrapper, prefix: str, inner) -> None:
    """An inner Out(stream) of words -> AXI4-Stream master port."""
    m.d.comb += [
        getattr(wrapper, f"{prefix}_tdata").eq(inner.payload),
        getattr(wrapper, f"{prefix}_tvalid").eq(inner.valid),
        inner.ready.eq(getattr(wrapper, f"{prefix}_tready")),
    ]


class DecoderAXIS(wiring.Component):
    """:class:`hw.decoder.Decoder` with AXI4-Stream ports.

    Ports: ``s_axis_cmd_*`` (tdata 40 bits: groups in bits 0..31, full in bit 32),
    ``s_axis_<stream>_*`` for the five streams (tdata ``word_bits``), ``codebook``
    (unary), ``m_axis_*`` (tdata ``16 x lanes``, tlast, tkeep), ``status``.
    """

    def __init__(self, params: FormatParams, *, lanes: int = 8, word_bits: int = 64, **options):
        with parameter_checks(self):
            self.decoder = Decoder(params, lanes=lanes, word_bits=word_bits, **options)
        self.lanes = lanes
        members = _axis("s_axis_cmd", In, _bytes(COMMAND_GROUP_BITS + 1))
        for name in STREAM_NAMES:
            members.update(_axis(f"s_axis_{name}", In, word_bits))
        if params.exponent_coding == "unary":
            members["codebook"] = In(self.decoder.signature.members["codebook"].shape)
        members.update(_axis("m_axis", Out, 16 * lanes, last=True, keep=2 * lanes))
        members["status"] = Out(self.decoder.signature.members["status"].shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = self.decoder
        _connect_in(m, self, "s_axis_cmd", decoder.cmd)
        for name in STREAM_NAMES:
            _connect_in(m, self, f"s_axis_{name}", getattr(decoder, name))
        if "codebook" in self.signature.members:
            m.d.comb += decoder.codebook.as_value().eq(self.codebook.as_value())
        m.d.comb += [
            self.m_axis_tdata.eq(decoder.out.payload.values.as_value()),
            self.m_axis_tlast.eq(decoder.out.payload.last),
            self.m_axis_tkeep.eq((1 << (2 * self.lanes)) - 1),
            self.m_axis_tvalid.eq(decoder.out.valid),
            decoder.out.ready.eq(self.m_axis_tready),
            self.status.as_value().eq(decoder.status.as_value()),
        ]
        return m


class EncoderAXIS(wiring.Component):
    """:class:`hw.encoder.Encoder` with AXI4-Stream ports.

    Ports: ``s_axis_cmd_*`` (tdata 32 bits: groups), ``s_axis_*`` (BF16 values,
    tdata ``16 x lanes``), ``keep``, ``codebook`` (unary), ``m_axis_<stream>_*``
    for the five streams (tdata ``word_bits``), ``status``.
    """

    def __init__(self, params: FormatParams, *, lanes: int = 8, word_bits: int = 64):
        with parameter_checks(self):
            self.encoder = Encoder(params, lanes=lanes, word_bits=word_bits)
        members = _axis("s_axis_cmd", In, _bytes(COMMAND_GROUP_BITS))
        members.update(_axis("s_axis", In, 16 * lanes))
        members["keep"] = In(self.encoder.signature.members["keep"].shape)
        if params.exponent_coding == "unary":
            members["codebook"] = In(self.encoder.signature.members["codebook"].shape)
        for name in STREAM_NAMES:
            members.update(_axis(f"m_axis_{name}", Out, word_bits))
        members["status"] = Out(self.encoder.signature.members["status"].shape)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.encoder = encoder = self.encoder
        _connect_in(m, self, "s_axis_cmd", encoder.cmd)
        _connect_in(m, self, "s_axis", encoder.values)
        m.d.comb += encoder.keep.eq(self.keep)
        if "codebook" in self.signature.members:
            m.d.comb += encoder.codebook.as_value().eq(self.codebook.as_value())
        for name in STREAM_NAMES:
            _connect_out(m, self, f"m_axis_{name}", getattr(encoder, name))
        m.d.comb += self.status.as_value().eq(encoder.status.as_value())
        return m
