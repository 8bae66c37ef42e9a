"""The unary exponent decoder: the ``exponent`` stream in, one beat's exponents per clock out.

A unary code (docs/FORMAT.md section 6) is ``r`` zeros and a one (rank ``r < L``), or
an escape: ``L`` zeros and the 8 raw exponent bits. Outside escapes **every one in
the stream ends a code**, and a code's rank is the number of zeros before its one,
so code boundaries are found for a whole window in parallel, without a chain of
code decoders. Escapes (rare in real data: 0.00012% of SmolLM2's kept values) take a
serial path.

Microarchitecture::

    words ─► skid ─► unit ring (64-bit units; units are freed behind the consumer)
                        │  windows of up to `window_bits` bits, in stream order,
                        ▼  never repositioned (the analysis knows no superblocks)
                     A1: window bits ─► A2: ones per 8-bit chunk, prefix counts
                        │
                        ▼  writer: the next E ones of the window per clock (E = max(lanes, 8)),
                     W1: their positions ─► W2: gap to the previous one, unit step,
                        │                  flags (gap >= L: a possible escape)
                        ▼
                     entry ring (E banks x 4 rows): one entry per one in the stream
                        │
    beats (k, ends) ─► packer: takes the next k entries per beat when none of them is
                        │  flagged (rank = gap; the first code of a superblock: bits
                        │  from its 64-bit start); otherwise decodes the beat serially
                        │  from the raw bits (2 clocks per code), then skips the
                        ▼  entries it passed (ones inside escape payloads)
                     O1: ranks ─► codebook ─► out queue ─► out (k exponents, 8 bits each)

Throughput: one beat per clock while the analysis keeps ahead, i.e. while a beat's
codes average at most ``window_bits / lanes`` bits; a beat holding an escape takes
about ``2 k + 3`` clocks.
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
        self.unit_slots = 1 << (2 * window_units + 2 * self.units_per_word + 4).bit_length()
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
        word_room = in_use <= slots - upw
        if self.word_bits == 32:
            low_half = Signal(32)
            have_low = Signal()
            m.d.comb += word_skid.o.ready.eq(~have_low | word_room)
            with m.If(word_skid.o.valid & word_skid.o.ready):
                m.d.sync += have_low.eq(~have_low)
                with m.If(~have_low):
                    m.d.sync += low_half.eq(word_skid.o.payload)
                with m.Else():
                    write_at(m, ring_slots, written[:(slots - 1).bit_length()], Cat(low_half, word_skid.o.payload))
                    m.d.sync += written.eq(written + 1)
        else:
            m.d.comb += word_skid.o.ready.eq(word_room)
            with m.If(word_skid.o.valid & word_room):
                for i in range(upw):  # words land on a multiple of upw: slot i of each group of upw
                    group_slots = ring_slots[i::upw]
                    write_at(m, group_slots, written[(upw - 1).bit_length():(slots - 1).bit_length()],
                             word_skid.o.payload[i * UNIT:(i + 1) * UNIT])
                m.d.sync += written.eq(written + upw)

        # ================= analysis: A1 (window), A2 (chunk counts) ====================
        a1_valid, a2_valid = Signal(), Signal()
        a1_bits, a2_bits = Signal(U), Signal(U)
        a1_base, a2_base = Signal(unit_bits), Signal(unit_bits)
        a1_units, a2_units = Signal(range(window_units + 1)), Signal(range(window_units + 1))
        a2_prefix = [Signal(range(U + 1), name=f"a2_prefix{k}") for k in range(chunks + 1)]
        writer_take = Signal()  # the writer takes the A2 window
        a2_free = ~a2_valid | writer_take
        a1_free = ~a1_valid | a2_free
        have = Signal(unit_bits)
        m.d.comb += have.eq(written - fetched)
        fetch = a1_free & (have != 0)
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
            counts = [popcount(a1_bits[k * CHUNK:(k + 1) * CHUNK]) for k in range(chunks)]
            # exclusive prefix sums as a parallel-prefix tree (log2(chunks) adder levels, not a ripple)
            inclusive = prefix_tree(counts)
            m.d.sync += a2_prefix[0].eq(0)
            for k in range(chunks):
                m.d.sync += a2_prefix[k + 1].eq(inclusive[k])

        # ================= writer: E ones per clock ==================================
        group = Signal(range(U // E + 1))  # which E ones of the window
        total = a2_prefix[chunks]
        last_group = (group + 1) * E >= total
        entry_room = Signal()
        m.d.comb += writer_take.eq(a2_valid & entry_room & last_group)
        with m.If(a2_valid & entry_room):
            m.d.sync += group.eq(Mux(last_group, 0, group + 1))
        # W1: the positions of ones group*E .. group*E + E - 1
        w1_valid = Signal()
        w1_count = Signal(range(E + 1))
        w1_pos = [Signal(P, name=f"w1_pos{s}") for s in range(E)]
        w1_window_end = Signal(P)
        w1_window_done = Signal()
        first = group * E
        # distance of each chunk's first one from the group's first one (signed)
        offsets = [Signal(range(-U, U + 1), name=f"chunk{k}_offset") for k in range(chunks + 1)]
        m.d.comb += [offsets[k].eq(a2_prefix[k] - first) for k in range(chunks + 1)]
        with m.If(entry_room):
            m.d.sync += [
                w1_valid.eq(a2_valid),
                w1_count.eq(Mux(last_group, total - first, E)),
                w1_window_done.eq(last_group),
                w1_window_end.eq((a2_base + a2_units) << 6),
            ]
            for s in range(E):
                chunk_bits = Signal(CHUNK, name=f"slot{s}_chunk_bits")
                chunk_index = Signal(range(chunks), name=f"slot{s}_chunk")
                rank_in_chunk = Signal(range(CHUNK), name=f"slot{s}_rank")
                for k in range(chunks):  # the chunk holding one number first + s
                    with m.If((offsets[k] <= s) & (offsets[k + 1] > s)):
                        m.d.comb += [chunk_bits.eq(a2_bits[k * CHUNK:(k + 1) * CHUNK]), chunk_index.eq(k),
                                     rank_in_chunk.eq(s - offsets[k])]
                bit = Signal(range(CHUNK), name=f"slot{s}_bit")
                for b in reversed(range(CHUNK)):  # the rank_in_chunk-th one of the chunk
                    with m.If(chunk_bits[b] & (popcount([chunk_bits[i] for i in range(b)]) == rank_in_chunk)):
                        m.d.comb += bit.eq(b)
                m.d.sync += w1_pos[s].eq((a2_base << 6) + (chunk_index << 3) + bit)

        # W2: gaps and unit steps, then the entry ring
        entry_layout = data.StructLayout({
            "position": P,
            "gap": range(32),  # zeros since the previous one, capped at 31
            "flag": 1,  # gap >= L: this one may end an escape, or follow padding
            "low": 6,  # bits from the start of the position's unit
            "unit_step": range(4),  # units from the previous one's unit, capped at 3
            "unit_low": range(max(2, upw)),  # the unit index modulo the units per word
        })
        previous_pos = Signal(P, init=(1 << P) - 1)  # the last one written (-1 at the start)
        frontier = Signal(P)  # every one before this stream position is in the ring
        tail_pos = Signal(P, init=(1 << P) - 1)
        bank_rows = [[Signal(entry_layout.size, name=f"bank{b}_row{r}") for r in range(ROWS)] for b in range(E)]
        bank = [Array(rows) for rows in bank_rows]
        write_index = Signal(entry_index_bits)
        written_entries = Signal(entry_index_bits + 2)  # counters, wrap
        visible_entries = Signal(entry_index_bits + 2)  # written one clock ago
        popped_entries = Signal(entry_index_bits + 2)
        freed_entries = Signal(entry_index_bits + 2)  # popped two clocks ago (O1 reads them)
        freed_delay = Signal(entry_index_bits + 2)
        # room for this group and the two in W1 and W2
        used_entries = Signal(entry_index_bits + 2)
        m.d.comb += [used_entries.eq(written_entries - freed_entries), entry_room.eq(used_entries <= entries - 3 * E)]
        m.d.sync += [freed_delay.eq(popped_entries), freed_entries.eq(freed_delay), visible_entries.eq(written_entries)]

        w2 = [Signal(entry_layout, name=f"w2_entry{s}") for s in range(E)]
        w2_count = Signal(range(E + 1))
        w2_valid = Signal()
        w2_window_done = Signal()
        w2_window_end = Signal(P)
        with m.If(entry_room):
            m.d.sync += [w2_valid.eq(w1_valid), w2_count.eq(w1_count), w2_window_done.eq(w1_valid & w1_window_done),
                         w2_window_end.eq(w1_window_end)]
            for s in range(E):
                before = previous_pos if s == 0 else w1_pos[s - 1]
                gap = Signal(P, name=f"w2_gap{s}")
                step = Signal(unit_bits, name=f"w2_step{s}")
                m.d.comb += [gap.eq(w1_pos[s] - before - 1), step.eq(unit_of(w1_pos[s]) - unit_of(before))]
                m.d.sync += [
                    w2[s].position.eq(w1_pos[s]),
                    w2[s].gap.eq(Mux(gap >= 31, 31, gap)),
                    w2[s].flag.eq(gap >= L),
                    w2[s].low.eq(w1_pos[s][:6]),
                    w2[s].unit_step.eq(Mux(step >= 3, 3, step)),
                    w2[s].unit_low.eq(unit_of(w1_pos[s])[:max(1, (upw - 1).bit_length())] if upw > 1 else 0),
                ]
            with m.If(w1_valid & (w1_count != 0)):
                m.d.sync += previous_pos.eq(Array(w1_pos)[(w1_count - 1)[:bank_bits]] if E > 1 else w1_pos[0])
        # write W2 into the banks
        rotated = _rotate(w2, write_index[:bank_bits], right=True) if E > 1 else w2
        valid_slot = _rotate([Const(s, range(E + 1)) < w2_count for s in range(E)], write_index[:bank_bits],
                             right=True) if E > 1 else [w2_count != 0]
        with m.If(w2_valid & entry_room):
            for b in range(E):
                # bank b takes slot (b - write_index) mod E, at the row of entry write_index + that slot
                slot = (Const(b, bank_bits + 1) - write_index[:bank_bits])[:bank_bits] if E > 1 else 0
                row = ((write_index + slot) >> bank_bits)[:(ROWS - 1).bit_length()]
                with m.If(valid_slot[b]):
                    write_at(m, bank_rows[b], row, rotated[b].as_value())
            m.d.sync += [write_index.eq(write_index + w2_count), written_entries.eq(written_entries + w2_count)]
            with m.If(w2_count != 0):
                m.d.sync += tail_pos.eq(Array(s.position for s in w2)[(w2_count - 1)[:bank_bits]] if E > 1 else w2[0].position)
            with m.If(w2_window_done):
                m.d.sync += frontier.eq(w2_window_end)

        def read_entry(index):
            """The entry at ring index ``index`` (an expression)."""
            row = (index >> bank_bits)[:(ROWS - 1).bit_length()]
            return data.View(entry_layout, Array(bank[b][row] for b in range(E))[index[:bank_bits] if E > 1 else 0])

        def read_window(index):
            """Entries ``index .. index + E - 1``, slot 0 first."""
            rows = []
            for b in range(E):
                slot = (Const(b, bank_bits + 1) - index[:bank_bits])[:bank_bits] if E > 1 else 0
                rows.append(data.View(entry_layout, bank[b][((index + slot) >> bank_bits)[:(ROWS - 1).bit_length()]]))
            return _rotate(rows, index[:bank_bits]) if E > 1 else rows

        # ================= packer ========================================================
        m.submodules.beat_queue = beat_queue = Queue(unary_beat_layout(lanes), depth=8)
        wiring.connect(m, wiring.flipped(self.beats), beat_queue.i)
        m.d.comb += self.beats_spare.eq(beat_queue.spare)
        m.submodules.out_queue = out_queue = Queue(8 * lanes, depth=2)
        wiring.connect(m, out_queue.o, wiring.flipped(self.out))
        advance = out_queue.i.ready
        beat = beat_queue.o.payload
        k = beat.kept

        read_index = Signal(entry_index_bits)
        available = Signal(entry_index_bits + 2)
        m.d.comb += available.eq(visible_entries - popped_entries)
        head0 = Signal(entry_layout)  # entry read_index, refreshed every clock
        head_flags = Signal(E)  # flags of entries read_index .. read_index + E - 1
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
                m.d.comb += first_ok.eq(~head0.flag)
            with m.Case(1):
                m.d.comb += first_ok.eq((head0.unit_step == expect_step) & (head0.low < L))
            with m.Default():
                m.d.comb += first_ok.eq(override_valid & (override < L))
        rest_mask = Signal(E)
        m.d.comb += rest_mask.eq(((1 << k) - 1) & ~1)
        rest_ok = (head_flags & rest_mask) == 0
        enough = available >= k

        # 0 fast; 1, 2: the gap after a command; 3..5: the serial path; 6, 7: resync
        state = Signal(4)
        FAST, GAP1, GAP2, SLOW_SETUP, SLOW_READ, SLOW_DECODE, RESYNC, RESYNC_POP, SETTLE = range(9)

        pop_fast = Signal()
        m.d.comb += pop_fast.eq((state == FAST) & beat_queue.o.valid & advance & enough
                                & ((k == 0) | (first_ok & rest_ok)))
        o1_valid = Signal()
        zero_beat = Signal()  # a popped beat with no codes gives an empty window
        go_slow = Signal()
        # (only once O1 has passed the previous beat on: last_pos is then the last code's)
        m.d.comb += go_slow.eq((state == FAST) & beat_queue.o.valid & (k != 0) & ~o1_valid & ~zero_beat & (
            (enough & ~(first_ok & rest_ok)) | (~enough & (
                ((head_flags & rest_mask & Mux(available >= E, (1 << E) - 1, (Const(1, E + 1) << available) - 1)) != 0)
                | ((available != 0) & ~first_ok) | escape_evidence))))

        # O1: the popped beat's entries to exponents
        o1_index = Signal(entry_index_bits)
        o1_k = Signal(range(lanes + 1))
        o1_fresh = Signal(2)
        o1_override = Signal(range(32))
        slow_out_valid = Signal()
        slow_slots = Signal(8 * lanes)
        with m.If(advance):
            m.d.sync += [o1_valid.eq(pop_fast & (k != 0)), o1_index.eq(read_index), o1_k.eq(k), o1_fresh.eq(fresh),
                         o1_override.eq(override)]
        window = read_window(o1_index)
        lanes_pow = max(2, lanes)
        lane_bits = (lanes_pow - 1).bit_length()
        exponents = []
        for s in range(lanes):
            rank = window[s].gap
            if s == 0:
                rank = Mux(o1_fresh == 0, window[0].gap, Mux(o1_fresh == 1, window[0].low, o1_override))
            exponents.append(self.codebook[rank[:max(1, (L - 1).bit_length())]] if L > 1 else self.codebook[0])
        slow_exponent = Signal(8)
        done_codes = Signal(range(lanes + 1))
        slow_payload = Cat(*(Mux(done_codes == s, slow_exponent, slow_slots.word_select(s, 8)) for s in range(lanes)))
        with m.If(advance):
            m.d.sync += zero_beat.eq(pop_fast & (k == 0))
        m.d.comb += [
            out_queue.i.valid.eq(o1_valid | zero_beat | slow_out_valid),
            out_queue.i.payload.eq(Mux(slow_out_valid, slow_payload, Mux(o1_valid, Cat(*exponents), 0))),
        ]
        with m.If(o1_valid & advance):
            m.d.sync += [last_pos.eq(Array(w.position for w in window[:lanes_pow])[(o1_k - 1)[:lane_bits]]),
                         last_unit_low.eq(Array(w.unit_low for w in window[:lanes_pow])[(o1_k - 1)[:lane_bits]])]

        # head0 and head_flags follow read_index (both candidates read, then chosen)
        next_index = Signal(entry_index_bits)
        resync_pop = Signal()
        resync_count = Signal(range(E + 1))  # entries behind the pointer, counted in RESYNC
        m.d.comb += next_index.eq(Mux(pop_fast, read_index + k, Mux(resync_pop, read_index + resync_count, read_index)))
        candidates = [(read_index + k)[:entry_index_bits], (read_index + resync_count)[:entry_index_bits], read_index]
        heads = [read_entry(index) for index in candidates]
        flags = [Cat(*(w.flag for w in read_window(index))) for index in candidates]
        m.d.sync += [head0.eq(Mux(pop_fast, heads[0], Mux(resync_pop, heads[1], heads[2]))),
                     head_flags.eq(Mux(pop_fast, flags[0], Mux(resync_pop, flags[1], flags[2])))]
        m.d.sync += read_index.eq(next_index)
        m.d.sync += popped_entries.eq(popped_entries + Mux(pop_fast, k, 0) + Mux(resync_pop, resync_count, 0))

        # what the popped beat leaves for the next: fresh, expect_step
        with m.If(pop_fast):
            m.d.comb += beat_queue.o.ready.eq(1)
            with m.If(beat.command_end):
                m.d.sync += state.eq(GAP1)
            with m.If(beat.superblock_end):
                m.d.sync += [fresh.eq(1),
                             expect_step.eq(Mux((k == 0) & (fresh == 1), expect_step, 1))]
            with m.Elif(k != 0):
                m.d.sync += fresh.eq(0)
        # GAP: after a command's last beat, the next command starts on a word boundary
        gap_from = Signal(range(upw + 2))
        with m.If((state == GAP1) & ~o1_valid):  # O1 has updated last_unit_low
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
                done_codes.eq(0), slow_slots.eq(0), state.eq(SLOW_READ),
            ]
        pointer_unit = unit_of(pointer)
        unit_here = ring[pointer_unit[:(slots - 1).bit_length()]]
        unit_next = ring[(pointer_unit + 1)[:(slots - 1).bit_length()]]
        units_ahead = Signal(unit_bits)
        m.d.comb += units_ahead.eq(written - pointer_unit)
        with m.If(state == SLOW_READ):
            with m.If((units_ahead != 0) & ~units_ahead[-1]):
                m.d.sync += [
                    slow_bits.eq((Cat(unit_here, unit_next) >> pointer[:6])[:L + 8]),
                    slow_have_next.eq(units_ahead >= 2),
                    state.eq(SLOW_DECODE),
                ]
        zeros = Signal(range(L + 1))
        m.d.comb += zeros.eq(L)
        for z in reversed(range(L)):
            with m.If(slow_bits[z]):
                m.d.comb += zeros.eq(z)
        escaped = zeros == L
        length = Mux(escaped, L + 8, zeros + 1)
        m.d.comb += slow_exponent.eq(Mux(escaped, slow_bits[L:L + 8], self.codebook[zeros[:max(1, (L - 1).bit_length())]]
                                         if L > 1 else self.codebook[0]))
        code_end = pointer + length
        with m.If(state == SLOW_DECODE):
            with m.If(~slow_have_next & ((pointer[:6] + length) > UNIT)):
                m.d.sync += state.eq(SLOW_READ)  # the code runs into a unit not yet here
            with m.Elif(done_codes + 1 == k):
                with m.If(advance & ~o1_valid & ~zero_beat):
                    m.d.comb += [slow_out_valid.eq(1), beat_queue.o.ready.eq(1)]
                    m.d.sync += [last_pos.eq(code_end - 1), state.eq(RESYNC), fresh.eq(2)]
                    with m.If(beat.command_end):
                        m.d.sync += pointer.eq(((code_end + (max(UNIT, self.word_bits) - 1))
                                                >> (max(UNIT, self.word_bits).bit_length() - 1))
                                               << (max(UNIT, self.word_bits).bit_length() - 1))
                    with m.Elif(beat.superblock_end):
                        m.d.sync += pointer.eq(((code_end + 63) >> 6) << 6)
                    with m.Else():
                        m.d.sync += pointer.eq(code_end)
            with m.Else():
                m.d.sync += [pointer.eq(code_end), done_codes.eq(done_codes + 1), state.eq(SLOW_READ)]
            with m.If(~(~slow_have_next & ((pointer[:6] + length) > UNIT))):
                write_at(m, [slow_slots.word_select(s, 8) for s in range(lanes)], done_codes, slow_exponent)
        # RESYNC: drop the entries before the pointer (ones inside escape payloads); SETTLE:
        # one clock for head0 and the override (the next code's rank from the pointer)
        frontier_ahead = Signal(P)
        m.d.comb += frontier_ahead.eq(frontier - pointer)
        head_window = read_window(read_index)
        behind_flags = []
        for s in range(E):
            ahead = Signal(P, name=f"resync_ahead{s}")
            m.d.comb += ahead.eq(head_window[s].position - pointer)
            behind_flags.append(ahead[-1] & (s < available))
        with m.If(state == RESYNC):
            with m.If(available != 0):
                m.d.sync += [resync_count.eq(popcount(behind_flags)), state.eq(RESYNC_POP)]
            with m.Elif(~frontier_ahead[-1]):
                m.d.sync += state.eq(SETTLE)
        with m.If(state == RESYNC_POP):
            m.d.comb += resync_pop.eq(1)
            m.d.sync += state.eq(Mux(resync_count == 0, SETTLE, RESYNC))
        with m.If(state == SETTLE):
            m.d.sync += state.eq(FAST)
        distance = Signal(P)
        m.d.comb += distance.eq(head0.position - pointer)
        m.d.sync += [override.eq(Mux(distance >= 31, 31, distance)), override_valid.eq(available != 0)]
        # the consumer's unit: units before it are free
        slow_states = ((state == SLOW_READ) | (state == SLOW_DECODE) | (state == RESYNC) | (state == RESYNC_POP)
                       | (state == SETTLE))
        m.d.sync += consumer_unit.eq(Mux(slow_states, pointer_unit, unit_of(last_pos)))
        return m
