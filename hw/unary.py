"""The unary exponent decoder: the ``exponent`` stream in, one beat's exponents per clock out.

A unary code (docs/FORMAT.md section 6) is ``r`` zeros and a one (rank ``r < L``), or
an escape: ``L`` zeros and the 8 raw exponent bits. Outside escapes **every one in
the stream ends a code**, and a code's rank is the number of zeros before its one,
so code boundaries are found for a whole window in parallel, without a chain of
code decoders. Escapes (rare in real data: 0.00012% of SmolLM2's kept values) take a
serial path.

Microarchitecture (every stage a register; no stage's logic reaches past the next)::

    words ─► skid ─► unit ring (64-bit units; units are freed behind the consumer)
                        │  windows of up to `window_bits` bits, in stream order,
                        ▼  never repositioned (the analysis knows no superblocks)
                     A1: window bits ─► A2: ones per 8-bit chunk ─► A3: prefix counts,
                        │   kept as offsets (ones before each chunk minus those taken)
                        ▼  writer: the next E ones of the window per clock (E = max(lanes, 8))
                     W1a: the chunk of each one (compares with constants) ─► W1b: its
                        │  chunk's bits and rank (AND-OR) ─► W1c: its position ─► W1d: gap
                        │  to the previous one, unit step, flag (gap >= L: a possible escape);
                        │  the writer's stages move together on a registered "ring has room"
                        ▼
                     entry ring (E banks x 8 rows): one entry per one in the stream
                        │
    beats (k, ends) ─► queue ─► skid ─► head beat (registers) ─► packer: takes the next k entries per beat
                        │  when none of them is flagged (rank = gap; the first code of a
                        │  superblock: bits from its 64-bit start); otherwise decodes the
                        │  beat serially from the raw bits (4 clocks per code), then skips
                        ▼  the entries it passed (ones inside escape payloads)
                     O1: the banks' entries (read in the pop's clock) ─► O2: rotated; ranks,
                        │  positions, codebook ─► out queue ─► out (k exponents, 8 bits each)
                        ▼
    The packer's decision reads registers only: the flags of the 2E entries from read_index
    (and the first-code checks of the first E + 1) are read into registers every clock, and
    the next clock selects them from how far read_index moved (see ``moved``).

Throughput: one beat per clock while the analysis keeps ahead, i.e. while a beat's
codes average at most ``window_bits / lanes`` bits; a beat holding an escape takes
the serial path (8 escaped codes: about 60 clocks).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format.params import BF16_EXPONENT_BITS, STREAM_ALIGN_BITS, FormatParams

from .common import parameter_checks, popcount, prefix_tree
from .pipe import Queue, SkidBuffer, write_at

__all__ = ["UnaryDecoder", "unary_beat_layout"]

UNIT = STREAM_ALIGN_BITS  # 64-bit units: superblock parts start on one
CHUNK = 8
ROWS = 8  # entry ring rows per bank


def unary_beat_layout(lanes: int) -> data.StructLayout:
    """One beat's use of the exponent stream: ``kept`` codes, then (``superblock_end``)
    the padding to the next 64-bit unit, or (``command_end``) to the next word."""
    return data.StructLayout({"kept": range(lanes + 1), "superblock_end": 1, "command_end": 1})


def _rotate(values: list, amount, *, right: bool = False) -> list:
    """``values`` rotated by ``amount`` places (a log-depth network): output ``i`` is
    input ``(i + amount) % n`` (``right=False``) or ``(i - amount) % n``."""
    n = len(values)
    layout = values[0].shape() if isinstance(values[0], data.View) else None
    out = [v.as_value() if layout is not None else v for v in values]
    for stage in range(max(0, (n - 1).bit_length())):
        step = (1 << stage) % n
        if not step:
            continue
        shifted = [out[(i - step) % n] if right else out[(i + step) % n] for i in range(n)]
        out = [Mux(amount[stage], shifted[i], out[i]) for i in range(n)]
    return [data.View(layout, v) for v in out] if layout is not None else out


class UnaryDecoder(wiring.Component):
    """Unary exponent decoder for the Cassandra decoder (see the module docstring).

    Parameters
    ----------
    params : FormatParams
        The format (``unary_max_code_length`` is L).
    lanes : int
        Exponents per beat (1..16).
    word_bits : int
        Width of the exponent stream's words.
    window_bits : int
        Stream bits analysed per clock, a multiple of 64.

    Ports
    -----
    words : In(stream.Signature(word_bits))
    codebook : In(data.ArrayLayout(8, L))
    beats : In(stream.Signature(unary_beat_layout(lanes)))
    out : Out(stream.Signature(8 * lanes))
        Per beat, its ``kept`` exponents (slot ``i`` in bits ``8i..8i+7``).
    beats_spare : Out(1)
        Registered: the beat queue has room for two more (see :class:`~hw.pipe.Queue`).
    """

    def __init__(self, params: FormatParams, *, lanes: int, word_bits: int, window_bits: int):
        with parameter_checks(self):
            if window_bits % UNIT or window_bits < UNIT:
                raise ValueError(f"window_bits={window_bits} must be a positive multiple of {UNIT}")
        self.params = params
        self.lanes = lanes
        self.word_bits = word_bits
        self.window_bits = window_bits
        self.code_length = params.unary_max_code_length
        self.emit = max(lanes, CHUNK)  # entries written per clock, and banks of the entry ring
        self.units_per_word = max(UNIT, word_bits) // UNIT
        window_units = window_bits // UNIT
        # the analysis cuts its prefix sums by a register stage (A2b) where they are deep
        self.split_prefix = window_bits // CHUNK > 8
        # the ring holds the units from the oldest one the consumer needs to the last word
        # written: two windows, two words and the units behind the analysis stages, the
        # writer and the packer (with A2b, 16 slots were too few at 8 lanes and 128-bit
        # words: 0.93 beats per clock with 8-bit codes)
        self.unit_slots = 1 << (2 * window_units + 2 * self.units_per_word + (12 if self.split_prefix else 4)
                                ).bit_length()
        self.position_bits = (self.unit_slots * UNIT).bit_length() + 2
        super().__init__({
            "words": In(stream.Signature(word_bits)),
            "codebook": In(data.ArrayLayout(BF16_EXPONENT_BITS, self.code_length)),
            "beats": In(stream.Signature(unary_beat_layout(lanes))),
            "out": Out(stream.Signature(8 * lanes)),
            "beats_spare": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901 (one pipeline, read top to bottom)
        m = Module()
        L = self.code_length
        lanes, E = self.lanes, self.emit
        U = self.window_bits
        window_units = U // UNIT
        chunks = U // CHUNK
        slots = self.unit_slots
        P = self.position_bits
        unit_bits = P - 6
        upw = self.units_per_word
        entries = E * ROWS
        entry_index_bits = (entries - 1).bit_length()
        bank_bits = (E - 1).bit_length()

        def unit_of(position):
            return position[6:]

        # ================= unit ring =================================================
        m.submodules.word_skid = word_skid = SkidBuffer(self.word_bits)
        wiring.connect(m, wiring.flipped(self.words), word_skid.i)
        ring_slots = [Signal(UNIT, name=f"unit{n}") for n in range(slots)]
        ring = Array(ring_slots)
        written = Signal(unit_bits)  # units written (a counter, wraps)
        fetched = Signal(unit_bits)  # units handed to the analysis
        consumer_unit = Signal(unit_bits)  # the packer no longer needs units before this
        consumer_ahead = Signal(unit_bits)
        m.d.comb += consumer_ahead.eq(consumer_unit - fetched)
        oldest = Mux(consumer_ahead[-1], consumer_unit, fetched)  # the earlier of the two (modular)
        in_use = Signal(unit_bits)
        m.d.comb += in_use.eq(written - oldest)
        # with the larger ring of 16 lanes, a register: "in_use after this clock leaves room
        # for a word" (oldest only moves on, so in_use grows by at most the word written now;
        # the subtractions and compare were an 8-lane ULX3S build's path into the ring's
        # write enables). The register sees units freed a clock late: at 8 lanes that cost
        # 7% of the rate with the 16-slot ring, so the room stays combinational there.
        word_room = Signal()
        writing = Signal()
        if self.split_prefix:
            m.d.sync += word_room.eq(Mux(writing, in_use <= slots - 2 * upw, in_use <= slots - upw))
        else:
            m.d.comb += word_room.eq(in_use <= slots - upw)
        if self.word_bits == 32:
            low_half = Signal(32)
            have_low = Signal()
            m.d.comb += [word_skid.o.ready.eq(~have_low | word_room),
                         writing.eq(word_skid.o.valid & have_low & word_room)]
            with m.If(word_skid.o.valid & word_skid.o.ready):
                m.d.sync += have_low.eq(~have_low)
                with m.If(~have_low):
                    m.d.sync += low_half.eq(word_skid.o.payload)
                with m.Else():
                    write_at(m, ring_slots, written[:(slots - 1).bit_length()], Cat(low_half, word_skid.o.payload))
                    m.d.sync += written.eq(written + 1)
        else:
            m.d.comb += [word_skid.o.ready.eq(word_room), writing.eq(word_skid.o.valid & word_room)]
            with m.If(word_skid.o.valid & word_room):
                for i in range(upw):  # words land on a multiple of upw: slot i of each group of upw
                    group_slots = ring_slots[i::upw]
                    write_at(m, group_slots, written[(upw - 1).bit_length():(slots - 1).bit_length()],
                             word_skid.o.payload[i * UNIT:(i + 1) * UNIT])
                m.d.sync += written.eq(written + upw)

        # ================= analysis: A1 (window), A2 (chunk counts), A3 (prefix counts) =====
        a1_valid, a2_valid, a2b_valid, a3_valid = Signal(), Signal(), Signal(), Signal()
        a1_bits, a2_bits, a2b_bits, a3_bits = (Signal(U, name=f"a{n}_bits", reset_less=True)
                                               for n in ("1", "2", "2b", "3"))
        a1_base, a2_base, a2b_base, a3_base = (Signal(unit_bits, name=f"a{n}_base", reset_less=True)
                                               for n in ("1", "2", "2b", "3"))
        a1_units, a2_units, a2b_units, a3_units = (Signal(range(window_units + 1), name=f"a{n}_units",
                                                          reset_less=True) for n in ("1", "2", "2b", "3"))
        a2_counts = [Signal(range(CHUNK + 1), name=f"a2_count{k}", reset_less=True) for k in range(chunks)]
        # A2b: the prefix sums' first two levels (the whole tree in one stage was the longest
        # path at 16 lanes, 11.5 LUT levels with the compares after it)
        split_span = 4
        a2b_partial = [Signal(range(U + 1), name=f"a2b_partial{k}", reset_less=True) for k in range(chunks)]
        # a3_offset[k] (ones before chunk k minus the ones the writer has taken from the window,
        # group * E) kept as its remainder modulo E, fixed for the window, and its quotient as a
        # thermometer: a3_at_least[k][h] is "a3_offset[k] >= h * E". Taking a group of E ones
        # shifts the thermometer, and the writer's chunk search and its last-group test are
        # a few gates of registers (compares of a signed a3_offset with constants were 12 LUT
        # levels at 16 lanes)
        quotients = U // E + 3
        a3_low = [Signal(range(E), name=f"a3_low{k}", reset_less=True) for k in range(chunks + 1)]
        a3_at_least = [Signal(quotients, name=f"a3_at_least{k}", reset_less=True) for k in range(chunks + 1)]

        def offset_at_most(k, value):
            """a3_offset[k] <= value, for a constant 0 <= value <= E."""
            if value == E:
                return ~a3_at_least[k][1] | (~a3_at_least[k][2] & (a3_low[k] == 0))
            if value == E - 1:  # every remainder is at most E - 1
                return ~a3_at_least[k][1]
            return ~a3_at_least[k][0] | (~a3_at_least[k][1] & (a3_low[k] <= value))
        writer_issue = Signal()  # the writer takes the next E ones of the A3 window
        writer_take = Signal()  # the writer takes the A3 window
        a3_free = ~a3_valid | writer_take
        # (A2b is a register stage only where the tree is deep: more than 8 chunks, 16 lanes;
        # below, its names stand for A2's and the whole tree runs in A3)
        a2b_free = (~a2b_valid | a3_free) if self.split_prefix else a3_free
        a2_free = ~a2_valid | a2b_free
        a1_free = ~a1_valid | a2_free
        have = Signal(unit_bits)
        m.d.comb += have.eq(written - fetched)
        fetch = a1_free & (written != fetched)  # (have != 0 without the subtraction: it led the chain)
        count_units = Mux(have >= window_units, window_units, have)
        with m.If(a1_free):
            m.d.sync += a1_valid.eq(fetch)
            with m.If(fetch):
                m.d.sync += [a1_base.eq(fetched), a1_units.eq(count_units), fetched.eq(fetched + count_units)]
                for i in range(window_units):
                    unit = ring[(fetched + i)[:(slots - 1).bit_length()]]
                    m.d.sync += a1_bits[i * UNIT:(i + 1) * UNIT].eq(Mux(i < count_units, unit, 0))
        with m.If(a2_free):
            m.d.sync += [a2_valid.eq(a1_valid), a2_bits.eq(a1_bits), a2_base.eq(a1_base), a2_units.eq(a1_units)]
            m.d.sync += [a2_counts[k].eq(popcount(a1_bits[k * CHUNK:(k + 1) * CHUNK])) for k in range(chunks)]
        # last_group: the ones left in the window fit one group
        last_group = offset_at_most(chunks, E)
        first_levels = prefix_tree(a2_counts, end_span=split_span)
        if self.split_prefix:
            with m.If(a2b_free):
                m.d.sync += [a2b_valid.eq(a2_valid), a2b_bits.eq(a2_bits), a2b_base.eq(a2_base),
                             a2b_units.eq(a2_units)]
                m.d.sync += [partial.eq(value) for partial, value in zip(a2b_partial, first_levels)]
        else:
            m.d.comb += [a2b_valid.eq(a2_valid), a2b_bits.eq(a2_bits), a2b_base.eq(a2_base),
                         a2b_units.eq(a2_units)]
            m.d.comb += [partial.eq(value) for partial, value in zip(a2b_partial, first_levels)]
        with m.If(a3_free):
            m.d.sync += [a3_valid.eq(a2b_valid), a3_bits.eq(a2b_bits), a3_base.eq(a2b_base), a3_units.eq(a2b_units)]
            # exclusive prefix sums as a parallel-prefix tree (log2(chunks) adder levels, not a ripple)
            inclusive = [Const(0, 1)] + prefix_tree(a2b_partial, first_span=split_span)
            for k in range(chunks + 1):
                quotient = inclusive[k] >> bank_bits
                top = U >> bank_bits  # the largest quotient
                m.d.sync += [a3_low[k].eq(inclusive[k][:bank_bits]),
                             a3_at_least[k].eq(Cat(*(Const(1) if h == 0 else Const(0) if h > top else quotient >= h
                                                     for h in range(quotients))))]
        with m.Elif(writer_issue):
            m.d.sync += [a3_at_least[k].eq(a3_at_least[k][1:]) for k in range(chunks + 1)]

        # ================= writer: E ones per clock ==================================
        # W1a: which chunk holds each of the window's next E ones (compares of registers with
        # constants); W1b: that chunk's bits and the one's rank in it (AND-OR over chunks);
        # W1c: its position; W1d: the ring entries (gaps, flags), written into the ring the next
        # clock. The four stages and the ring write move together on ``ring_room``, a register
        # (so the enable is a flip-flop's fan-out, no logic before it).
        entry_layout = data.StructLayout({
            "position": P,
            "gap": range(32),  # zeros since the previous one, capped at 31
            "flag": 1,  # gap >= L: this one may end an escape, or follow padding
            "low": 6,  # bits from the start of the position's unit
            "unit_step": range(4),  # units from the previous one's unit, capped at 3
            "unit_low": range(max(2, upw)),  # the unit index modulo the units per word
        })
        group_layout = data.StructLayout({
            "entries": data.ArrayLayout(entry_layout, E),
            "count": range(E + 1),
            "window_done": 1,  # the window's last group: every one before window_end is written
            "window_end": P,
        })
        ring_room = Signal()  # registered: the ring has room for the group in W1d and the next
        m.d.comb += [writer_issue.eq(a3_valid & ring_room), writer_take.eq(writer_issue & last_group)]
        issue_count = Mux(last_group & ~a3_at_least[chunks][1], a3_low[chunks], E)

        def one_hot_select(select, values):
            """The value whose ``select`` bit is set (an AND-OR; zero when none is)."""
            terms = [Mux(select[k], value, 0) for k, value in enumerate(values)]
            while len(terms) > 1:
                terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
            return terms[0]

        writer = []  # the writer stages' register updates, made on ring_room
        w1a_valid, w1a_window_done = Signal(), Signal()
        w1a_count = Signal(range(E + 1), reset_less=True)
        w1a_window_end = Signal(P, reset_less=True)
        w1a_bits = Signal(U, reset_less=True)
        w1a_base = Signal(unit_bits, reset_less=True)
        w1a_select = [Signal(chunks, name=f"w1a_select{s}", reset_less=True) for s in range(E)]
        w1a_offset_low = [Signal(3, name=f"w1a_offset_low{k}", reset_less=True) for k in range(chunks)]
        writer += [w1a_valid.eq(writer_issue), w1a_window_done.eq(writer_issue & last_group)]
        writer += [
            w1a_count.eq(issue_count),
            w1a_window_end.eq((a3_base + a3_units) << 6),
            w1a_bits.eq(a3_bits),
            w1a_base.eq(a3_base),
        ]
        for s in range(E):  # chunk k holds one number group * E + s
            writer.append(w1a_select[s].eq(Cat(*(offset_at_most(k, s) & ~offset_at_most(k + 1, s)
                                                 for k in range(chunks)))))
        writer += [w1a_offset_low[k].eq(a3_low[k][:3]) for k in range(chunks)]

        w1b_valid, w1b_window_done = Signal(), Signal()
        w1b_count = Signal(range(E + 1), reset_less=True)
        w1b_window_end = Signal(P, reset_less=True)
        w1b_base = Signal(unit_bits, reset_less=True)
        w1b_chunk_bits = [Signal(CHUNK, name=f"w1b_chunk_bits{s}", reset_less=True) for s in range(E)]
        w1b_chunk = [Signal(range(chunks), name=f"w1b_chunk{s}", reset_less=True) for s in range(E)]
        w1b_rank = [Signal(range(CHUNK), name=f"w1b_rank{s}", reset_less=True) for s in range(E)]
        writer += [w1b_valid.eq(w1a_valid), w1b_window_done.eq(w1a_window_done)]
        writer += [w1b_count.eq(w1a_count), w1b_window_end.eq(w1a_window_end), w1b_base.eq(w1a_base)]
        for s in range(E):
            chunk_words = [w1a_bits[k * CHUNK:(k + 1) * CHUNK] for k in range(chunks)]
            ranks = [(s - w1a_offset_low[k])[:3] for k in range(chunks)]
            writer += [
                w1b_chunk_bits[s].eq(one_hot_select(w1a_select[s], chunk_words)),
                w1b_chunk[s].eq(one_hot_select(w1a_select[s], [Const(k, range(chunks)) for k in range(chunks)])),
                w1b_rank[s].eq(one_hot_select(w1a_select[s], ranks)),
            ]

        w1c_valid, w1c_window_done = Signal(), Signal()
        w1c_count = Signal(range(E + 1), reset_less=True)
        w1c_pos = [Signal(P, name=f"w1c_pos{s}", reset_less=True) for s in range(E)]
        w1c_window_end = Signal(P, reset_less=True)
        writer += [w1c_valid.eq(w1b_valid), w1c_window_done.eq(w1b_window_done)]
        writer += [w1c_count.eq(w1b_count), w1c_window_end.eq(w1b_window_end)]
        for s in range(E):
            chunk_bits, rank_in_chunk = w1b_chunk_bits[s], w1b_rank[s]
            # the rank_in_chunk-th one of the chunk: a one-hot of bits, then its index (an OR)
            target = Cat(*(chunk_bits[b] & (popcount([chunk_bits[i] for i in range(b)]) == rank_in_chunk)
                           for b in range(CHUNK)))
            bit = one_hot_select(target, [Const(b, range(CHUNK)) for b in range(CHUNK)])
            # position = base * 64 + chunk * 8 + bit; the chunk's bits above the unit add to the base
            chunk = w1b_chunk[s]
            units_in_window = chunk[3:] if len(chunk) > 3 else Const(0, 1)
            writer.append(w1c_pos[s].eq(Cat(bit, chunk[:3], (w1b_base + units_in_window)[:P - 6])))

        # W1d: the ring entries (previous_pos: the last one of the group before)
        previous_pos = Signal(P, init=(1 << P) - 1)  # the last one written (-1 at the start)
        w1d_valid = Signal()
        w1d = Signal(group_layout, reset_less=True)
        writer += [w1d_valid.eq(w1c_valid), w1d.count.eq(w1c_count), w1d.window_done.eq(w1c_window_done),
                   w1d.window_end.eq(w1c_window_end)]
        for s in range(E):
            before = previous_pos if s == 0 else w1c_pos[s - 1]
            gap = Signal(P, name=f"w1d_gap{s}")
            step = Signal(unit_bits, name=f"w1d_step{s}")
            m.d.comb += [gap.eq(w1c_pos[s] - before - 1), step.eq(unit_of(w1c_pos[s]) - unit_of(before))]
            entry = w1d.entries[s]
            writer += [
                entry.position.eq(w1c_pos[s]),
                entry.gap.eq(Mux(gap >= 31, 31, gap)),
                entry.flag.eq(gap >= L),
                entry.low.eq(w1c_pos[s][:6]),
                entry.unit_step.eq(Mux(step >= 3, 3, step)),
                entry.unit_low.eq(unit_of(w1c_pos[s])[:max(1, (upw - 1).bit_length())] if upw > 1 else 0),
            ]
        last_of_group = Array(w1c_pos)[(w1c_count - 1)[:bank_bits]] if E > 1 else w1c_pos[0]
        writer.append(previous_pos.eq(Mux(w1c_valid & (w1c_count != 0), last_of_group, previous_pos)))
        with m.If(ring_room):
            m.d.sync += writer

        frontier = Signal(P)  # every one before this stream position is in the ring
        tail_pos = Signal(P, init=(1 << P) - 1)
        bank_rows = [[Signal(entry_layout.size, name=f"bank{b}_row{r}", reset_less=True) for r in range(ROWS)]
                     for b in range(E)]
        bank = [Array(rows) for rows in bank_rows]
        write_index = Signal(entry_index_bits)
        written_entries = Signal(entry_index_bits + 2)  # counters, wrap
        visible_entries = Signal(entry_index_bits + 2)  # written one clock ago
        popped_entries = Signal(entry_index_bits + 2)
        # entries no stage reads again: passed on by O1 (which holds its window while the output
        # stalls), or dropped by the serial path's resync
        freed_entries = Signal(entry_index_bits + 2)
        used_entries = Signal(entry_index_bits + 2)
        m.d.comb += used_entries.eq(written_entries - freed_entries)
        # room for the group in W1d (written into the ring this clock) and the next one
        m.d.sync += visible_entries.eq(written_entries)
        m.d.sync += ring_room.eq(used_entries <= entries - 2 * E)

        def bank_place(b, index):
            """Where bank ``b`` holds a window of entries starting at ring index ``index``: its
            slot in the window, ``(b - index) mod E``, and its row (that of entry index + slot)."""
            row_bits = (ROWS - 1).bit_length()
            if E == 1:
                return Const(0, 1), index[:row_bits]
            slot = (Const(b, bank_bits + 1) - index[:bank_bits])[:bank_bits]
            # index + slot is b, or b + E when b is below index's bank: the row of index, or
            # the next (an increment and a compare with a constant, not an adder of slot)
            row = index[bank_bits:bank_bits + row_bits]
            if b == E - 1:  # no bank is above the last (a constant compare, which lint rejects)
                return slot, row
            return slot, Mux(index[:bank_bits] > b, (row + 1)[:row_bits], row)

        # write W1d's group into the banks
        head_group = w1d
        ring_write = w1d_valid & ring_room
        group_entries = [head_group.entries[s] for s in range(E)]
        rotated = _rotate(group_entries, write_index[:bank_bits], right=True) if E > 1 else group_entries
        # which (bank, row) each entry of the group in W1d goes to, computed as W1d loads
        # (from the write index after this clock's write), so the ring's write enables are
        # registers (the rotation and row compares before them were an 8-level path)
        bank_writes = [Signal(ROWS, name=f"w1d_bank_write{b}", reset_less=True) for b in range(E)]
        index_after = Signal(entry_index_bits)
        m.d.comb += index_after.eq(write_index + Mux(w1d_valid, head_group.count, 0))  # used when ring_room
        valid_next = _rotate([Const(s, range(E + 1)) < w1c_count for s in range(E)], index_after[:bank_bits],
                             right=True)
        with m.If(ring_room):
            for b in range(E):
                _, row = bank_place(b, index_after)
                m.d.sync += bank_writes[b].eq(Cat(*(valid_next[b] & (row == r) for r in range(ROWS))))
        with m.If(ring_write):
            for b in range(E):
                for r in range(ROWS):
                    with m.If(bank_writes[b][r]):
                        m.d.sync += bank_rows[b][r].eq(rotated[b].as_value())
            m.d.sync += [write_index.eq(write_index + head_group.count),
                         written_entries.eq(written_entries + head_group.count)]
            with m.If(head_group.count != 0):
                m.d.sync += tail_pos.eq(Array(e.position for e in group_entries)[(head_group.count - 1)[:bank_bits]]
                                        if E > 1 else group_entries[0].position)
            with m.If(head_group.window_done):
                m.d.sync += frontier.eq(head_group.window_end)

        # ================= packer ========================================================
        # each bank's row for the window at read_index (and for the E entries after it), in
        # registers that move with read_index: the reads at read_index are a row multiplexer
        # whose select is a register
        row_bits = (ROWS - 1).bit_length()
        near_rows = [Signal(row_bits, name=f"near_row{b}") for b in range(E)]
        far_rows = [Signal(row_bits, init=1 % ROWS, name=f"far_row{b}") for b in range(E)]

        def banks_at_read_index(rows):
            """Entries ``read_index .. + E - 1`` (``near_rows``) or the E after (``far_rows``) as
            each bank holds them: (slot, entry) per bank."""
            slots_ = [(Const(b, bank_bits + 1) - read_index[:bank_bits])[:bank_bits] if E > 1 else Const(0, 1)
                      for b in range(E)]
            return [(slot, data.View(entry_layout, bank[b][row])) for b, (slot, row) in enumerate(zip(slots_, rows))]

        def window_at_read_index(rows):
            entries = [entry for _, entry in banks_at_read_index(rows)]
            return _rotate(entries, read_index[:bank_bits]) if E > 1 else entries

        m.submodules.beat_queue = beat_queue = Queue(unary_beat_layout(lanes), depth=8)
        wiring.connect(m, wiring.flipped(self.beats), beat_queue.i)
        m.d.comb += self.beats_spare.eq(beat_queue.spare)
        m.submodules.out_queue = out_queue = Queue(8 * lanes, depth=2)
        wiring.connect(m, out_queue.o, wiring.flipped(self.out))
        advance = out_queue.i.ready
        # the head beat, in registers (its kept count and the mask of its codes after the first)
        beat = Signal(unary_beat_layout(lanes), reset_less=True)
        beat_valid = Signal()
        rest_mask = Signal(E, reset_less=True)
        beat_done = Signal()  # the head beat is decoded (fast or serial)
        # a skid buffer between the queue and the head beat: the queue's counters then pop on a
        # register (the skid's ready), not on pop_fast (that was an 8.5-level path)
        m.submodules.beat_skid = beat_skid = SkidBuffer(unary_beat_layout(lanes))
        wiring.connect(m, beat_queue.o, beat_skid.i)
        next_beat = beat_skid.o
        m.d.comb += next_beat.ready.eq(~beat_valid | beat_done)
        with m.If(~beat_valid | beat_done):
            m.d.sync += [beat_valid.eq(next_beat.valid), beat.eq(next_beat.payload),
                         rest_mask.eq(((1 << next_beat.payload.kept) - 1) & ~1)]
        k = beat.kept

        read_index = Signal(entry_index_bits)
        # available = visible_entries - popped_entries, as a register
        available = Signal(entry_index_bits + 2)
        written_last = Signal(range(E + 1))  # entries written in the clock before
        m.d.sync += written_last.eq(Mux(ring_write, head_group.count, 0))
        # The packer's view of the ring is read from the register read_index, into registers,
        # every clock: the flags of the 2E entries from there, and of the E + 1 first their
        # unit step and whether `low < L`. In the next clock read_index has moved by `moved`
        # (0, k or resync_count) and the head's are those from `moved` on (a multiplexer whose
        # select is a register). So the pop loop has no adder and no ring read in it
        # (read_index + k -> the banks -> the flags was the unary decoder's longest path).
        moved = Signal(range(E + 1))  # how far read_index moved in the clock before
        window_flags = Signal(2 * E, reset_less=True)
        window_first = [Signal(3, name=f"window_first{j}", reset_less=True) for j in range(E + 1)]
        head_flags = Signal(E)  # flags of entries read_index .. read_index + E - 1
        def by_moved(values):
            """values[moved], as a tree of 2:1 multiplexers on moved's bits (values past E,
            never selected, repeat the last: a complete select, which lint wants)."""
            level = values + [values[-1]] * ((1 << len(moved)) - len(values))
            for bit in range(len(moved)):
                level = [Mux(moved[bit], level[i + 1], level[i]) for i in range(0, len(level), 2)]
            return level[0]

        m.d.comb += head_flags.eq(by_moved([window_flags[j:j + E] for j in range(E + 1)]))
        head_first = data.View(data.StructLayout({"unit_step": range(4), "low_ok": 1}), by_moved(window_first))
        head_position = Signal(P, reset_less=True)  # of the entry at read_index a clock before
        # fresh: how the first code's rank is found. 0: its gap; 1: the stream restarts at the
        # start of unit (last code's unit + expect_step), rank = bits from that start;
        # 2: ``override`` (after the serial path)
        fresh = Signal(2, init=1)
        expect_step = Signal(range(upw + 2), init=1)
        override = Signal(range(32))
        last_pos = Signal(P, init=(1 << P) - 1)  # the last code's last bit
        last_unit_low = Signal(range(max(2, upw)))
        escape_evidence = Signal()  # zeros after the last entry reach L (checked a clock late)
        reference = Mux(available != 0, tail_pos, last_pos)
        zeros_after = Signal(P)
        m.d.comb += zeros_after.eq(frontier - reference - 1)
        m.d.sync += escape_evidence.eq(~zeros_after[-1] & (zeros_after >= L))
        override_valid = Signal()

        # FAST decision
        first_ok = Signal()
        with m.Switch(fresh):
            with m.Case(0):
                m.d.comb += first_ok.eq(~head_flags[0])
            with m.Case(1):
                m.d.comb += first_ok.eq((head_first.unit_step == expect_step) & head_first.low_ok)
            with m.Default():
                m.d.comb += first_ok.eq(override_valid & (override < L))
        rest_ok = (head_flags & rest_mask) == 0
        enough = available >= k

        # 0 fast; 1, 2: the gap after a command; 3..5: the serial path; 6, 7: resync
        state = Signal(4)
        (FAST, GAP1, GAP2, SLOW_SETUP, SLOW_READ, SLOW_SHIFT, SLOW_DECODE, SLOW_STEP, RESYNC, RESYNC_COUNT,
         RESYNC_POP, SETTLE, SETTLE2, SLOW_SETUP2) = range(14)

        pop_fast = Signal()
        m.d.comb += pop_fast.eq((state == FAST) & beat_valid & advance & enough
                                & ((k == 0) | (first_ok & rest_ok)))
        o1_valid = Signal()
        o1_zero = Signal()  # a popped beat with no codes: an empty window
        o2_valid = Signal()
        o2_zero = Signal()
        output_busy = Signal()  # O1 or O2 holds a beat (last_pos is the last code's when not)
        m.d.comb += output_busy.eq(o1_valid | o1_zero | o2_valid | o2_zero)
        # the serial path is decided a clock late, from a register: the decision is deep
        # (10 LUT levels into `state`), and a beat that needs the serial path waits there
        # anyway. Sound because the head beat, `state` and the output stages cannot change
        # in between (no pop in a clock that wants the serial path), and the serial path
        # decodes any beat; a fast pop in the later clock (more entries came) wins.
        want_slow = Signal()
        m.d.sync += want_slow.eq((state == FAST) & beat_valid & (k != 0) & ~output_busy & (
            (enough & ~(first_ok & rest_ok)) | (~enough & (
                ((head_flags & rest_mask & Mux(available >= E, (1 << E) - 1, (Const(1, E + 1) << available) - 1)) != 0)
                | ((available != 0) & ~first_ok) | escape_evidence))))
        go_slow = Signal()
        m.d.comb += go_slow.eq(want_slow & (state == FAST))  # a pop's `state` is set last: it wins

        # O1: the popped beat's entries (ranks and positions, registered); O2: ranks to exponents
        # O1 holds the banks' entries at read_index as read in the pop's clock (unrotated),
        # and the rotation: the ring read and the rotation were one path into O2
        o1_rows = [Signal(entry_layout.size, name=f"o1_row{b}", reset_less=True) for b in range(E)]
        o1_rotation = Signal(max(1, bank_bits), reset_less=True)
        o1_k = Signal(range(lanes + 1))
        o1_fresh = Signal(2)
        o1_override = Signal(range(32))
        slow_out_valid = Signal()
        slow_slots = Signal(8 * lanes)
        with m.If(advance):
            m.d.sync += [o1_valid.eq(pop_fast & (k != 0)), o1_zero.eq(pop_fast & (k == 0)),
                         o1_rotation.eq(read_index[:bank_bits] if E > 1 else 0),
                         o1_k.eq(k), o1_fresh.eq(fresh), o1_override.eq(override)]
            m.d.sync += [row.eq(entry.as_value()) for row, (_, entry) in zip(o1_rows, banks_at_read_index(near_rows))]
        o1_entries = [data.View(entry_layout, row) for row in o1_rows]
        window = _rotate(o1_entries, o1_rotation) if E > 1 else o1_entries
        lanes_pow = max(2, lanes)
        lane_bits = (lanes_pow - 1).bit_length()
        rank_bits = max(1, (L - 1).bit_length())
        o2_k = Signal(range(lanes + 1), reset_less=True)
        o2_ranks = [Signal(rank_bits, name=f"o2_rank{s}", reset_less=True) for s in range(lanes)]
        o2_positions = [Signal(P, name=f"o2_position{s}", reset_less=True) for s in range(lanes_pow)]
        o2_unit_lows = [Signal(range(max(2, upw)), name=f"o2_unit_low{s}", reset_less=True) for s in range(lanes_pow)]
        with m.If(advance):
            m.d.sync += [o2_valid.eq(o1_valid), o2_zero.eq(o1_zero), o2_k.eq(o1_k)]
            for s in range(lanes):
                rank = window[s].gap
                if s == 0:
                    rank = Mux(o1_fresh == 0, window[0].gap, Mux(o1_fresh == 1, window[0].low, o1_override))
                m.d.sync += o2_ranks[s].eq(rank[:rank_bits])
            m.d.sync += [o2_positions[s].eq(window[s].position) for s in range(lanes_pow)]
            m.d.sync += [o2_unit_lows[s].eq(window[s].unit_low) for s in range(lanes_pow)]
        exponents = [self.codebook[o2_ranks[s]] if L > 1 else self.codebook[0] for s in range(lanes)]
        slow_exponent = Signal(8, reset_less=True)  # the code decoded in SLOW_DECODE
        done_codes = Signal(range(lanes + 1))
        slow_payload = Cat(*(Mux(done_codes == s, slow_exponent, slow_slots.word_select(s, 8)) for s in range(lanes)))
        m.d.comb += [
            out_queue.i.valid.eq(o2_valid | o2_zero | slow_out_valid),
            out_queue.i.payload.eq(Mux(slow_out_valid, slow_payload, Mux(o2_valid, Cat(*exponents), 0))),
        ]
        with m.If(o2_valid & advance):
            m.d.sync += [last_pos.eq(Array(o2_positions)[(o2_k - 1)[:lane_bits]]),
                         last_unit_low.eq(Array(o2_unit_lows)[(o2_k - 1)[:lane_bits]])]

        # the window at read_index, read into registers (see `moved`)
        next_index = Signal(entry_index_bits)
        resync_pop = Signal()
        resync_count = Signal(range(E + 1))  # entries behind the pointer, counted in RESYNC
        m.d.comb += next_index.eq(Mux(pop_fast, read_index + k, Mux(resync_pop, read_index + resync_count, read_index)))
        # (each bank's flag and first-code check taken before the rotation: narrower)
        def window_bits(rows, bits_of):
            banks = [bits_of(entry) for _, entry in banks_at_read_index(rows)]
            return _rotate(banks, read_index[:bank_bits]) if E > 1 else banks

        near_flags, far_flags = (window_bits(rows, lambda entry: entry.flag) for rows in (near_rows, far_rows))
        near_first, far_first = (window_bits(rows, lambda entry: Cat(entry.unit_step, entry.low < L))
                                 for rows in (near_rows, far_rows))
        m.d.sync += [
            moved.eq(Mux(pop_fast, k, Mux(resync_pop, resync_count, 0))),
            window_flags.eq(Cat(*near_flags, *far_flags)),
            head_position.eq(window_at_read_index(near_rows)[0].position),
        ]
        # the rows for each candidate next read_index, then the choice
        row_candidates = []
        for index in ((read_index + k)[:entry_index_bits], (read_index + resync_count)[:entry_index_bits], read_index):
            near = [bank_place(b, index)[1] for b in range(E)]
            row_candidates.append((near, [(row + 1)[:row_bits] for row in near]))
        for rows, choice in ((near_rows, 0), (far_rows, 1)):
            m.d.sync += [rows[b].eq(Mux(pop_fast, row_candidates[0][choice][b],
                                        Mux(resync_pop, row_candidates[1][choice][b], row_candidates[2][choice][b])))
                         for b in range(E)]
        m.d.sync += [window_first[j].eq(bits) for j, bits in enumerate(near_first + far_first[:1])]
        m.d.sync += read_index.eq(next_index)
        m.d.sync += popped_entries.eq(popped_entries + Mux(pop_fast, k, 0) + Mux(resync_pop, resync_count, 0))
        m.d.sync += freed_entries.eq(freed_entries + Mux(o1_valid & advance, o1_k, 0) + Mux(resync_pop, resync_count, 0))
        visible_more = available + written_last
        m.d.sync += available.eq(Mux(pop_fast, visible_more - k, Mux(resync_pop, visible_more - resync_count,
                                                                      visible_more)))

        # what the popped beat leaves for the next: fresh, expect_step
        with m.If(pop_fast):
            m.d.comb += beat_done.eq(1)
            with m.If(beat.superblock_end):
                m.d.sync += [fresh.eq(1),
                             expect_step.eq(Mux((k == 0) & (fresh == 1), expect_step, 1))]
            with m.Elif(k != 0):
                m.d.sync += fresh.eq(0)
        # GAP: after a command's last beat, the next command starts on a word boundary
        gap_from = Signal(range(upw + 2))
        with m.If((state == GAP1) & ~o1_valid & ~o2_valid):  # O2 has updated last_unit_low
            m.d.sync += state.eq(GAP2)
        with m.If(state == GAP2):
            m.d.comb += gap_from.eq(last_unit_low + expect_step)  # unit position in the word, fresh == 1
            m.d.sync += [state.eq(FAST),
                         expect_step.eq(Mux(gap_from % upw == 0, expect_step, expect_step + upw - gap_from % upw)
                                        if upw > 1 else expect_step)]

        # slow path: decode the beat code by code from the raw bits
        pointer = Signal(P)
        slow_bits = Signal(L + 8)
        slow_have_next = Signal()
        with m.If(go_slow):
            m.d.sync += state.eq(SLOW_SETUP)
        with m.If(state == SLOW_SETUP):
            m.d.sync += [
                pointer.eq(Mux(fresh == 1, (unit_of(last_pos) + expect_step) << 6,
                               Mux(fresh == 2, pointer, last_pos + 1))),
                done_codes.eq(0), slow_slots.eq(0), state.eq(SLOW_SETUP2),
            ]
        pointer_unit = unit_of(pointer)

        unit_here = ring[pointer_unit[:(slots - 1).bit_length()]]
        unit_next = ring[(pointer_unit + 1)[:(slots - 1).bit_length()]]

        # whether the ring holds the unit SLOW_READ reads (and the one after it), as registers
        # set by the state before it from a pointer that is already a register (the pointer's
        # subtraction from `written` before `state` was an 8-lane ULX3S build's longest path):
        # SLOW_SETUP2 (after SETUP moved the pointer), SLOW_STEP (for the code_end it moves the
        # pointer to, or for the pointer it keeps), and SLOW_READ itself while it waits
        def units_from(unit):
            ahead = Signal(unit_bits)
            m.d.comb += ahead.eq(written - unit)
            return (ahead != 0) & ~ahead[-1], (ahead >= 2) & ~ahead[-1]

        read_unit_here, read_unit_next = Signal(), Signal()
        from_pointer = units_from(pointer_unit)
        # SLOW_READ: the pointer's unit and the next, from the ring into registers; SLOW_SHIFT:
        # the L + 8 bits from the pointer (the ring's multiplexer and the shifter were one path,
        # the longest of an 8-lane unary ULX3S build)
        slow_units = Signal(2 * UNIT, reset_less=True)
        with m.If(state == SLOW_SETUP2):
            m.d.sync += [read_unit_here.eq(from_pointer[0]), read_unit_next.eq(from_pointer[1]), state.eq(SLOW_READ)]
        with m.If(state == SLOW_READ):
            m.d.sync += [read_unit_here.eq(from_pointer[0]), read_unit_next.eq(from_pointer[1])]
            with m.If(read_unit_here):
                m.d.sync += [
                    slow_units.eq(Cat(unit_here, unit_next)),
                    slow_have_next.eq(read_unit_next),
                    state.eq(SLOW_SHIFT),
                ]
        with m.If(state == SLOW_SHIFT):
            m.d.sync += [slow_bits.eq((slow_units >> pointer[:6])[:L + 8]), state.eq(SLOW_DECODE)]
        # SLOW_DECODE: the code at the pointer (its length, end and exponent, registered);
        # SLOW_STEP: the pointer moves past it, and the beat goes out after its last code
        zeros = Signal(range(L + 1))
        m.d.comb += zeros.eq(L)
        for z in reversed(range(L)):
            with m.If(slow_bits[z]):
                m.d.comb += zeros.eq(z)
        escaped = zeros == L
        length = Mux(escaped, L + 8, zeros + 1)
        code_end = Signal(P, reset_less=True)
        past_unit = Signal(reset_less=True)  # the code runs into the next unit
        last_code = Signal(reset_less=True)  # the beat's last code
        with m.If(state == SLOW_DECODE):
            m.d.sync += [
                last_code.eq(done_codes + 1 == k),
                slow_exponent.eq(Mux(escaped, slow_bits[L:L + 8], self.codebook[zeros[:max(1, (L - 1).bit_length())]]
                                     if L > 1 else self.codebook[0])),
                code_end.eq(pointer + length),
                past_unit.eq((pointer[:6] + length) > UNIT),
                state.eq(SLOW_STEP),
            ]
        word_align = max(UNIT, self.word_bits).bit_length() - 1
        from_code_end = units_from(unit_of(code_end))
        with m.If(state == SLOW_STEP):
            with m.If(~slow_have_next & past_unit):
                m.d.sync += state.eq(SLOW_READ)  # the code runs into a unit not yet here
                m.d.sync += [read_unit_here.eq(from_pointer[0]), read_unit_next.eq(from_pointer[1])]
            with m.Elif(last_code):
                with m.If(advance & ~output_busy):
                    m.d.comb += [slow_out_valid.eq(1), beat_done.eq(1)]
                    m.d.sync += [last_pos.eq(code_end - 1), state.eq(RESYNC), fresh.eq(2)]
                    with m.If(beat.command_end):
                        m.d.sync += pointer.eq(((code_end + ((1 << word_align) - 1)) >> word_align) << word_align)
                    with m.Elif(beat.superblock_end):
                        m.d.sync += pointer.eq(((code_end + 63) >> 6) << 6)
                    with m.Else():
                        m.d.sync += pointer.eq(code_end)
            with m.Else():
                m.d.sync += [pointer.eq(code_end), done_codes.eq(done_codes + 1), state.eq(SLOW_READ),
                             read_unit_here.eq(from_code_end[0]), read_unit_next.eq(from_code_end[1])]
            with m.If(slow_have_next | ~past_unit):
                write_at(m, [slow_slots.word_select(s, 8) for s in range(lanes)], done_codes, slow_exponent)
        # RESYNC: drop the entries before the pointer (ones inside escape payloads), in two
        # registered steps: each bank's entry of the window at read_index and whether its slot
        # is available; then how many of those lie before the pointer. SETTLE, SETTLE2: two
        # clocks for head_position and the override (the next code's rank from the pointer)
        frontier_ahead = Signal(P)
        m.d.comb += frontier_ahead.eq(frontier - pointer)
        resync_pos = [Signal(P, name=f"resync_pos{b}", reset_less=True) for b in range(E)]
        resync_slot_ok = Signal(E, reset_less=True)
        with m.If(state == RESYNC):
            with m.If(available != 0):
                for b, (slot, entry) in enumerate(banks_at_read_index(near_rows)):  # unrotated: only counted
                    m.d.sync += [resync_pos[b].eq(entry.position), resync_slot_ok[b].eq(slot < available)]
                m.d.sync += state.eq(RESYNC_COUNT)
            with m.Elif(~frontier_ahead[-1]):
                m.d.sync += state.eq(SETTLE)
        with m.If(state == RESYNC_COUNT):
            behind = []
            for b in range(E):
                ahead = Signal(P, name=f"resync_ahead{b}")
                m.d.comb += ahead.eq(resync_pos[b] - pointer)
                behind.append(ahead[-1] & resync_slot_ok[b])
            m.d.sync += [resync_count.eq(popcount(behind)), state.eq(RESYNC_POP)]
        with m.If(state == RESYNC_POP):
            m.d.comb += resync_pop.eq(1)
            m.d.sync += state.eq(Mux(resync_count == 0, SETTLE, RESYNC))
        with m.If(state == SETTLE):
            m.d.sync += state.eq(SETTLE2)
        with m.If(state == SETTLE2):
            m.d.sync += state.eq(FAST)
        # a fast pop's next state, last: pop_fast (the packer's deepest decision) is then the
        # last multiplexer before `state`, not the first of its chain
        with m.If(pop_fast):
            m.d.sync += state.eq(Mux(beat.command_end, GAP1, FAST))
        # the override follows head_position, read a clock after read_index moved (so two
        # SETTLE clocks); an entry that `available` counts was in the ring at that read
        distance = Signal(P)
        m.d.comb += distance.eq(head_position - pointer)
        m.d.sync += [override.eq(Mux(distance >= 31, 31, distance)), override_valid.eq(available != 0)]
        # the consumer's unit: units before it are free
        slow_states = ((state == SLOW_SETUP2) | (state == SLOW_READ) | (state == SLOW_SHIFT) | (state == SLOW_DECODE)
                       | (state == SLOW_STEP) | (state == RESYNC) | (state == RESYNC_COUNT) | (state == RESYNC_POP) | (state == SETTLE)
                       | (state == SETTLE2))
        m.d.sync += consumer_unit.eq(Mux(slow_states, pointer_unit, unit_of(last_pos)))
        return m
