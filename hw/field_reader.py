"""A stream reader that turns memory words into one window of a beat's fields per clock.

Every input stream of the decoder has one :class:`FieldReader`. A *descriptor* per
beat says how many bits the beat takes from the stream (``delta``) and whether the
beat ends a superblock (the stream then skips to its next 64-bit boundary) or a
command (it skips to its next word boundary). The reader puts out, per descriptor,
the next ``max_bits`` stream bits starting at the beat's first bit (bits at and
above ``delta`` are don't-care).

Microarchitecture (every loop is short, every handshake registered)::

    words ─► skid ─► [pair 32-bit words] ─► ring of R words (slot = word index mod R)
                                                │
    desc ─► queue ─► next: need, advance, next offset (computed on entry) ─► head
                           │
                           pop = head valid & enough & room   (enough: a register)
                           │
                     capture the words the beat spans ─► shift by the bit offset
                     (two pipeline stages) ─► out queue ─► out

The only loop is the pop: an AND of three registers, then the pointer, offset,
word count and ``enough`` (need <= words available) registers load values computed
from registers in the same clock, one of four candidates per register (pop or not,
a word taken or not), so no compare or add follows the pop decision. The bit
arithmetic (offset + delta, rounded up at superblock and command ends) is done for
the next descriptor while the current one waits, from the current one's result.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format.params import STREAM_ALIGN_BITS

from .common import WORD_BITS_CHOICES, parameter_checks
from .pipe import Queue, SkidBuffer, replicas

__all__ = ["FieldReader", "field_descriptor_layout"]


def field_descriptor_layout(max_bits: int) -> data.StructLayout:
    """One beat's use of a stream: ``delta`` data bits, then the padding to the next
    64-bit boundary (``align_superblock``) or word boundary (``align_command``)."""
    return data.StructLayout({"delta": range(max_bits + 1), "align_superblock": 1, "align_command": 1})


def _shift_right(value, offset, keep: int, *, scale: int = 0):
    """``(value >> (offset << scale))[:keep]`` as a mux tree that resolves the offset's
    most significant bit first (each stage keeps only the bits later stages can still
    reach). Bits past the end of ``value`` read as zero."""
    bits = value
    for stage in reversed(range(len(offset))):
        step = 1 << (stage + scale)
        width = keep + (1 << scale) * ((1 << stage) - 1)  # what the stages below can still select
        missing = step + width - len(bits)
        padded = Cat(bits, Const(0, missing)) if missing > 0 else bits
        bits = Mux(offset[stage], padded[step:step + width], padded[:width])
    return bits[:keep]


class FieldReader(wiring.Component):
    """Variable-rate reader of one stream, one beat per clock.

    Parameters
    ----------
    word_bits : int
        Width of the input words (32, 64, 128 or 256); 32-bit words are paired.
    max_bits : int
        The most data bits one beat takes (``delta``), and the width of ``out``.
    out_depth : int
        Entries of the output queue (default 2).
    desc_depth : int
        Entries of the descriptor queue (default 4).

    Ports
    -----
    words : In(stream.Signature(word_bits))
    desc : In(stream.Signature(field_descriptor_layout(max_bits)))
    out : Out(stream.Signature(max_bits))
        One window per descriptor: stream bits from the beat's first bit.
    starved : Out(1)
        Registered: the next beat waits for words the stream has not delivered.
    desc_spare : Out(1)
        Registered: the descriptor queue has room for two more, so a producer that sees
        it may push in the next clock without looking at ``desc.ready``.
    """

    def __init__(self, *, word_bits: int, max_bits: int, out_depth: int = 2, desc_depth: int = 4):
        with parameter_checks(self):
            if word_bits not in WORD_BITS_CHOICES:
                raise ValueError(f"word_bits={word_bits!r} is not one of {WORD_BITS_CHOICES}")
            if isinstance(max_bits, bool) or not isinstance(max_bits, int) or max_bits < 1:
                raise ValueError(f"max_bits={max_bits!r} must be an int >= 1")
        self.word_bits = word_bits
        self.max_bits = max_bits
        self.out_depth = out_depth
        self.desc_depth = desc_depth
        #: internal word width: 32-bit words are paired, so a superblock's 64-bit
        #: alignment never splits a ring slot
        self.slot_bits = max(STREAM_ALIGN_BITS, word_bits)
        #: words a beat's data can span, from any bit offset
        self.span_words = -(-(self.slot_bits - 1 + max_bits) // self.slot_bits)
        self.slots = 1 << (self.span_words + 1).bit_length()  # >= span + 2, a power of two
        super().__init__({
            "words": In(stream.Signature(word_bits)),
            "desc": In(stream.Signature(field_descriptor_layout(max_bits))),
            "out": Out(stream.Signature(max_bits)),
            "starved": Out(1),
            "desc_spare": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        slot_bits, slots, span = self.slot_bits, self.slots, self.span_words
        slot_shift = slot_bits.bit_length() - 1
        max_bits = self.max_bits

        # ---- words in: skid buffer, 32-bit pairing, ring --------------------------
        m.submodules.word_skid = word_skid = SkidBuffer(self.word_bits)
        wiring.connect(m, wiring.flipped(self.words), word_skid.i)
        ring_slots = [Signal(slot_bits, name=f"slot{n}", reset_less=True) for n in range(slots)]  # data: no reset
        ring = Array(ring_slots)
        write_slot = Signal(range(slots))
        read_slot = Signal(range(slots))
        # whole words in the ring from the read word on, as a thermometer code:
        # ``have[k - 1]`` is "at least k words" (k = 1..slots), so comparing with a
        # need is a bit select and a change by a few words is a shift
        have = Signal(slots, name="have_words")
        # a word is written into the ring a clock after it is taken (below), and counted in
        # ``have`` then: the ring has room for one more while it holds at most slots - 1
        # words, counting the one on its way
        take_pending = Signal()
        room = Mux(take_pending, ~have[slots - 2], ~have[slots - 1])
        word_valid = Signal()
        word = Signal(slot_bits)
        take_word = Signal()
        if self.word_bits == 32:
            low_half = Signal(32, reset_less=True)
            have_low = Signal()
            m.d.comb += [
                word_valid.eq(word_skid.o.valid & have_low),
                word.eq(Cat(low_half, word_skid.o.payload)),
                word_skid.o.ready.eq(~have_low | room),
                take_word.eq(word_valid & room),
            ]
            with m.If(word_skid.o.valid & word_skid.o.ready):
                m.d.sync += have_low.eq(~have_low)
                with m.If(~have_low):
                    m.d.sync += low_half.eq(word_skid.o.payload)
        else:
            m.d.comb += [
                word_valid.eq(word_skid.o.valid),
                word.eq(word_skid.o.payload),
                word_skid.o.ready.eq(room),
                take_word.eq(word_valid & room),
            ]
        # the taken word and each slot's write enable in registers, the enable replicated per
        # 64 bits of the slot: the enable's logic (the skid's valid, the ring's room, the slot)
        # and its fan-out to every bit of the slot were a 16-lane ULX3S build's longest path
        pending_word = Signal(slot_bits, reset_less=True)
        m.d.sync += [pending_word.eq(word), take_pending.eq(take_word)]
        parts = slot_bits // STREAM_ALIGN_BITS
        for n, slot in enumerate(ring_slots):
            enables = replicas(m, take_word & (write_slot == n), parts, name=f"slot{n}_write")
            for part, enable in enumerate(enables):
                bits = slice(part * STREAM_ALIGN_BITS, (part + 1) * STREAM_ALIGN_BITS)
                with m.If(enable):
                    m.d.sync += slot[bits].eq(pending_word[bits])
        with m.If(take_word):
            m.d.sync += write_slot.eq(write_slot + 1)

        # ---- descriptors: queue, then the head with its arithmetic done ------------
        queued = data.StructLayout({
            "need_addend": range(max_bits + slot_bits),  # delta + slot_bits - 1
            "advance_addend": range(max_bits + slot_bits),  # delta + the padding's worst case
            "align_superblock": 1,
            "align_command": 1,
        })
        m.submodules.desc_queue = desc_queue = Queue(queued, depth=self.desc_depth)
        m.d.comb += self.desc_spare.eq(desc_queue.spare)
        desc = self.desc.payload
        m.d.comb += [
            desc_queue.i.valid.eq(self.desc.valid),
            self.desc.ready.eq(desc_queue.i.ready),
            desc_queue.i.payload.need_addend.eq(desc.delta + (slot_bits - 1)),
            desc_queue.i.payload.advance_addend.eq(
                desc.delta + Mux(desc.align_command, slot_bits - 1,
                                 Mux(desc.align_superblock, STREAM_ALIGN_BITS - 1, 0))),
            desc_queue.i.payload.align_superblock.eq(desc.align_superblock),
            desc_queue.i.payload.align_command.eq(desc.align_command),
        ]
        offset = Signal(range(slot_bits))  # bit offset of the read position in its word
        # two registered descriptor stages: ``next`` (its arithmetic done on entry) and
        # ``head`` (the beat the reader serves), each with need (words the beat's data
        # spans), advance (words the read position moves on) and the offset after it
        head_valid, next_valid = Signal(), Signal()
        head_need, next_need = Signal(range(span + 1)), Signal(range(span + 1))
        head_advance, next_advance = Signal(range(span + 1)), Signal(range(span + 1))
        head_next_offset, next_next_offset = Signal(range(slot_bits)), Signal(range(slot_bits))

        # a descriptor's arithmetic starts from where the one in front of it leaves the offset
        base = Mux(next_valid, next_next_offset, Mux(head_valid, head_next_offset, offset))
        entering = desc_queue.o.payload
        need_sum = Signal(range(slot_bits + max_bits + slot_bits))
        advance_sum = Signal(range(slot_bits + max_bits + slot_bits))
        m.d.comb += [need_sum.eq(base + entering.need_addend), advance_sum.eq(base + entering.advance_addend)]
        low_mask = Mux(entering.align_command, slot_bits - 1,
                       Mux(entering.align_superblock, STREAM_ALIGN_BITS - 1, 0))

        # ``enough`` is the registered "head_need <= words available": the pop decision reads
        # registers only. Its next value is one of four candidates computed from
        # registers (pop or not, a word taken or not), so no compare sits in the loop.
        pop = Signal()
        advance_pipe = Signal()
        enough = Signal()
        head_load = next_valid & (~head_valid | pop)
        next_load = desc_queue.o.valid & (~next_valid | head_load)
        m.d.comb += [
            pop.eq(head_valid & enough & advance_pipe),
            desc_queue.o.ready.eq(next_load),
        ]
        need_if_kept = Mux(head_valid, head_need, next_need)  # the head's need after a clock without pop

        def at_least(count):  # "at least ``count`` words" in the thermometer, for a fixed count
            return Const(1) if count <= 0 else Const(0) if count > slots else have[count - 1]

        def full_table(values, index):  # one entry per value of ``index`` (above span: never used)
            values = list(values)
            return Array(values + [values[-1]] * ((1 << len(index)) - len(values)))

        candidates = {}  # (pop, take) -> (thermometer after, enough after)
        for popped in (0, 1):
            moved = head_advance if popped else Const(0, len(head_advance))  # words the pop frees
            for taken in (0, 1):
                # after the clock, "at least k words" is "at least k - taken + advance" now
                shifted = full_table((Cat(*(at_least(k + advance - taken) for k in range(1, slots + 1)))
                                      for advance in range(span + 1)), moved)
                have_after = Signal(slots, name=f"have_p{popped}_t{taken}")
                m.d.comb += have_after.eq(shifted[moved])
                need_after = next_need if popped else need_if_kept
                table = full_table((full_table((at_least(need + advance - taken) for advance in range(span + 1)), moved)
                                    for need in range(span + 1)), next_need)
                enough_after = Signal(name=f"enough_p{popped}_t{taken}")
                m.d.comb += enough_after.eq(table[need_after][moved])
                candidates[popped, taken] = (have_after, enough_after)
        with m.Switch(Cat(take_pending, pop)):
            for (popped, taken), (have_after, enough_after) in candidates.items():
                with m.Case(taken | popped << 1):
                    m.d.sync += [have.eq(have_after), enough.eq(enough_after)]
        with m.If(next_load):
            m.d.sync += [
                next_valid.eq(1),
                next_need.eq(need_sum[slot_shift:]),
                next_advance.eq(advance_sum[slot_shift:]),
                next_next_offset.eq(advance_sum[:slot_shift] & ~low_mask),
            ]
        with m.Elif(head_load):
            m.d.sync += next_valid.eq(0)
        with m.If(head_load):
            m.d.sync += [
                head_valid.eq(1),
                head_need.eq(next_need),
                head_advance.eq(next_advance),
                head_next_offset.eq(next_next_offset),
            ]
        with m.Elif(pop):
            m.d.sync += head_valid.eq(0)
        with m.If(pop):
            m.d.sync += [read_slot.eq(read_slot + head_advance), offset.eq(head_next_offset)]
        # a beat waits for words that have not come (registered; a status flag)
        m.d.sync += self.starved.eq(head_valid & ~enough)

        # ---- window: capture the spanned words, shift by the offset (2 stages) -----
        m.submodules.out_queue = out_queue = Queue(max_bits, depth=self.out_depth)
        m.d.comb += advance_pipe.eq(out_queue.i.ready)
        captured = Signal(span * slot_bits, reset_less=True)  # data registers: no reset
        captured_offset = Signal(range(slot_bits), reset_less=True)
        captured_valid = Signal()
        low_bits = slot_shift // 2  # offset bits resolved in the second shift stage
        half = Signal(max_bits + (1 << low_bits) - 1, reset_less=True)
        half_offset = Signal(low_bits, reset_less=True)
        half_valid = Signal()
        with m.If(advance_pipe):
            m.d.sync += [captured_valid.eq(pop), half_valid.eq(captured_valid)]
            with m.If(pop):
                m.d.sync += [
                    captured.word_select(i, slot_bits).eq(ring[(read_slot + i)[:len(read_slot)]])
                    for i in range(span)
                ]
                m.d.sync += captured_offset.eq(offset)
            m.d.sync += [
                half.eq(_shift_right(captured, captured_offset[low_bits:], len(half), scale=low_bits)),
                half_offset.eq(captured_offset[:low_bits]),
            ]
        m.d.comb += [
            out_queue.i.valid.eq(half_valid),
            out_queue.i.payload.eq(_shift_right(half, half_offset, max_bits)),
        ]
        wiring.connect(m, out_queue.o, wiring.flipped(self.out))
        return m
