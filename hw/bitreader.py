"""A bit-stream reader: memory words in, a window of the next bits out.

Every input stream of the decoder goes through one :class:`BitReader`. It turns
``word_bits``-wide words (stream bit ``i`` is bit ``i % word_bits`` of word
``i // word_bits``, docs/FORMAT.md section 4) into a window of the next
``window_bits`` stream bits, and drops a variable number of bits per cycle,
including the zero padding that ends a superblock's part of a stream.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format.params import STREAM_ALIGN_BITS

from .common import bit_window

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
        The next ``window_bits`` stream bits. Bits at and above ``level`` are stale
        (left from earlier words): a user reads only what ``ok`` covers.
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

    The buffer, a ring of whole words read at a bit pointer, holds at least
    ``window_bits + max_padding + 2 * word_bits`` bits and takes a
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
        # whole words: the reach plus two words of room, so words.ready is a register output
        self.capacity = -(-(self.reach_bits + 2 * word_bits) // word_bits) * word_bits
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
        word_bits, capacity, window_bits = self.word_bits, self.capacity, self.window_bits
        # a ring of whole words: word k of the stream lands in slot k mod slots, and the
        # window is read at a bit pointer; no shifting of the stored bits (this keeps the
        # reader to about window_bits x log2(capacity) multiplexers)
        slots = capacity // word_bits
        ring = Signal(capacity)
        read_pointer = Signal(range(capacity))
        write_slot = Signal(range(slots))
        level = Signal(range(capacity + 1))
        position = Signal(range(self.command_align_bits))  # stream bits dropped, modulo the alignment

        after = Signal(range(self.command_align_bits + window_bits + 1))
        m.d.comb += after.eq(position + self.consume)
        padding = Signal(range(self.command_align_bits))
        with m.If(self.align_command):
            m.d.comb += padding.eq((-after)[:(self.command_align_bits - 1).bit_length()])
        with m.Elif(self.align_superblock):
            m.d.comb += padding.eq((-after)[:(STREAM_ALIGN_BITS - 1).bit_length()])
        total = Signal(range(self.reach_bits + 1))
        # the ring followed by its first window_bits - 1 bits again, so a window that
        # wraps around the end is one bit_select
        unrolled = Cat(ring, ring[:window_bits - 1]) if window_bits > 1 else ring
        m.d.comb += [
            total.eq(self.consume + padding),
            self.ok.eq(level >= total),
            self.window.eq(bit_window(unrolled, read_pointer, window_bits)),
            self.level.eq(level),
            self.words.ready.eq(level <= capacity - word_bits),
        ]

        taken = Signal.like(total)
        with m.If(self.advance):
            m.d.comb += taken.eq(Mux(self.hold_padding, self.consume, total))
        moved = Signal(range(capacity + self.reach_bits + 1))
        m.d.comb += moved.eq(read_pointer + taken)
        m.d.sync += read_pointer.eq(Mux(moved >= capacity, moved - capacity, moved))
        with m.If(self.words.valid & self.words.ready):
            m.d.sync += [
                write_slot.eq(Mux(write_slot == slots - 1, 0, write_slot + 1)),
                level.eq(level - taken + word_bits),
            ]
            # one enable per slot (not a `case` on write_slot, which is incomplete when
            # the slot count is not a power of two)
            for slot in range(slots):
                with m.If(write_slot == slot):
                    m.d.sync += ring[slot * word_bits:(slot + 1) * word_bits].eq(self.words.payload)
        with m.Else():
            m.d.sync += level.eq(level - taken)
        m.d.sync += position.eq(position + taken)
        return m
