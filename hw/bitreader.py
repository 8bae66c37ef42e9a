"""A bit-stream reader: memory words in, a window of the next bits out.

Every input stream of the decoder goes through one :class:`BitReader`. It turns
``word_bits``-wide words (stream bit ``i`` is bit ``i % word_bits`` of word
``i // word_bits``, docs/FORMAT.md section 4) into a window of the next
``window_bits`` stream bits, and drops a variable number of bits per cycle,
including the zero padding that ends a superblock's part of a stream.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.params import STREAM_ALIGN_BITS

__all__ = ["BitReader"]


class BitReader(wiring.Component):
    """Variable-rate reader of one stream.

    Parameters
    ----------
    word_bits : int
        Width of the input words.
    window_bits : int
        Stream bits visible at once (the most the user consumes in one cycle,
        padding not included).

    Ports
    -----
    words : In(stream.Signature(word_bits))
        The stream's words, in order.
    window : Out(window_bits)
        The next ``window_bits`` stream bits (bits at and above ``level`` are zero).
    consume : In(range(window_bits + 1))
        Data bits the user wants to drop this cycle.
    align_superblock, align_command : In(1)
        After ``consume``, also drop the padding to the next 64-bit boundary
        (end of a superblock) or the next ``max(64, word_bits)`` boundary (end of
        a command: the rest of the last word is padding too).
    ok : Out(1)
        The bits to drop (``consume`` plus the padding) are all in the buffer.
    advance : In(1)
        Drop them this cycle (only when ``ok``).
    hold_padding : In(1)
        With ``advance``: drop only ``consume`` bits and leave the padding (a user
        that finishes a field run over several cycles). ``ok`` ignores it.
    level : Out(range(capacity + 1))
        Bits in the buffer.

    The buffer holds ``window_bits + max_padding + 2 * word_bits`` bits and takes a
    word whenever at least ``word_bits`` bits are free, so ``words.ready`` is a
    register output. While the input is valid and the user drops at most
    ``word_bits`` per cycle on average, ``level`` stays at or above the window size
    after the first words, so ``ok`` never waits for data.
    """

    def __init__(self, *, word_bits: int, window_bits: int):
        if window_bits < 1:
            raise ValueError(f"window_bits={window_bits} must be at least 1")
        self.word_bits = word_bits
        self.window_bits = window_bits
        self.command_align_bits = max(STREAM_ALIGN_BITS, word_bits)
        self.reach_bits = window_bits + self.command_align_bits - 1
        self.capacity = self.reach_bits + 2 * word_bits
        super().__init__({
            "words": In(stream.Signature(word_bits)),
            "window": Out(window_bits),
            "consume": In(range(window_bits + 1)),
            "align_superblock": In(1),
            "align_command": In(1),
            "ok": Out(1),
            "advance": In(1),
            "hold_padding": In(1),
            "level": Out(range(self.capacity + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        word_bits, capacity = self.word_bits, self.capacity
        buffer = Signal(capacity)
        level = Signal(range(capacity + 1))
        position = Signal(range(self.command_align_bits))  # stream bits dropped, modulo the alignment

        after = Signal(range(self.command_align_bits + self.window_bits + 1))
        m.d.comb += after.eq(position + self.consume)
        padding = Signal(range(self.command_align_bits))
        with m.If(self.align_command):
            m.d.comb += padding.eq((-after)[:(self.command_align_bits - 1).bit_length()])
        with m.Elif(self.align_superblock):
            m.d.comb += padding.eq((-after)[:(STREAM_ALIGN_BITS - 1).bit_length()])
        total = Signal(range(self.reach_bits + 1))
        m.d.comb += [
            total.eq(self.consume + padding),
            self.ok.eq(level >= total),
            self.window.eq(buffer[:self.window_bits]),
            self.level.eq(level),
            self.words.ready.eq(level <= capacity - word_bits),
        ]

        taken = Signal.like(total)
        with m.If(self.advance):
            m.d.comb += taken.eq(Mux(self.hold_padding, self.consume, total))
        remaining = Signal(range(capacity + 1))
        shifted = Signal(capacity)
        m.d.comb += [
            remaining.eq(level - taken),
            shifted.eq(buffer >> taken),
        ]
        with m.If(self.words.valid & self.words.ready):
            m.d.sync += [
                buffer.eq(shifted | (self.words.payload << remaining)),
                level.eq(remaining + word_bits),
            ]
        with m.Else():
            m.d.sync += [buffer.eq(shifted), level.eq(remaining)]
        m.d.sync += position.eq(position + taken)
        return m
