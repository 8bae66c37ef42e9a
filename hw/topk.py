"""Per-group magnitude top-k threshold by bit-serial radix select (Amaranth 0.5).

:class:`TopKThreshold` takes the 15-bit magnitudes of a stream of groups, ``lanes`` per
beat, and gives for every group, in order, the pair (``magnitude``, ``need``): the
``keep``-th largest magnitude of the group and how many of the values *equal* to it
are kept. Value ``i`` of the group is then kept iff its magnitude is larger, or equal
and fewer than ``need`` equal values come before it in the group: exactly
``golden.format.select.magnitude_topk_mask`` (larger magnitude first, ties to the lower
index). The encoder (``hw/encoder.py``) applies that rule as the beats leave its value
FIFO, with a running count of equal values, so no index bits go through the selection.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, stream
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory

__all__ = ["TopKThreshold", "MAGNITUDE_BITS", "select_geometry", "popcount_levels"]

#: BF16 magnitude: the 15 bits below the sign, compared as an unsigned integer.
MAGNITUDE_BITS = 15

#: Most RAM banks of the bit-plane store (the planes of a group are read in at most 16 blocks).
_MAX_BANKS = 16


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def select_geometry(group_size: int, lanes: int) -> dict:
    """The sizes of :class:`TopKThreshold` for ``group_size`` and ``lanes`` (see its Notes).

    Returns a dict with ``beats`` (n = G / lanes), ``banks`` (NB), ``beats_per_word`` (k),
    ``engines`` (E, planes per block), ``blocks`` (nb), ``planes`` (PL = nb x E),
    ``sub_stages`` (S, register stages per bit step), ``ring`` (Lr = E x S + 1 slots),
    ``latency`` (cycles from a group's first beat to its threshold, input at one beat
    per clock), ``slots`` (groups the bit-plane store holds) and ``fifo_depth``
    (thresholds waiting for the consumer).
    """
    n = group_size // lanes
    banks = min(n, _MAX_BANKS)
    k = n // banks
    engines = _ceil_div(MAGNITUDE_BITS, banks)
    blocks = _ceil_div(MAGNITUDE_BITS, engines)
    sub_stages = 1 if group_size <= 16 else 2 if group_size <= 256 else 3
    ring = engines * sub_stages + 1
    # fill (n) + write register (1) + wait for a free ring slot (< ring) + blocks passes
    # of the ring + threshold FIFO (2)
    latency = n + 1 + ring + blocks * ring + 2
    slots = _pow2_at_least(_ceil_div(latency, n) + 1)
    return dict(beats=n, banks=banks, beats_per_word=k, engines=engines, blocks=blocks,
                planes=blocks * engines, sub_stages=sub_stages, ring=ring, latency=latency,
                slots=slots, fifo_depth=2 * slots)


def _logic_add(a, b):
    """``a + b`` for narrow operands written as gates (ripple of XOR/AND/OR), not as an
    adder: synthesis then maps each sum bit (a function of <= 6 inputs) to a LUT
    instead of a carry chain, one LUT level per narrow tree level."""
    width = max(len(a), len(b))
    a, b = a.as_unsigned(), b.as_unsigned()
    bits, carry = [], None
    for i in range(width):
        x = a[i] if i < len(a) else Const(0, 1)
        y = b[i] if i < len(b) else Const(0, 1)
        if carry is None:
            bits.append(x ^ y)
            carry = x & y
        else:
            bits.append(x ^ y ^ carry)
            carry = (x & y) | (carry & (x ^ y))
    bits.append(carry)
    return Cat(*bits)


def popcount_levels(values, levels: int = 64):
    """Add ``values`` pairwise ``levels`` times (a balanced adder tree cut after ``levels``);
    operands of up to 3 bits are added as gates (:func:`_logic_add`), wider ones with ``+``."""
    values = list(values)
    for _ in range(levels):
        if len(values) == 1:
            break
        paired = []
        for i in range(0, len(values) - 1, 2):
            a, b = values[i], values[i + 1]
            paired.append(_logic_add(a, b) if max(len(a), len(b)) <= 3 else a + b)
        if len(values) % 2:
            paired.append(values[-1])
        values = paired
    return values


class TopKThreshold(Elaboratable):
    """Threshold of the per-group magnitude top-k, one group every ``G / lanes`` clocks.

    Parameters
    ----------
    group_size : int, keyword-only
        G, a power of two.
    lanes : int, keyword-only
        Magnitudes per input beat, a power of two dividing G.

    Attributes
    ----------
    keep : Signal(range(G + 1)), in
        Values kept per group; sampled when a group starts its selection (static while
        a command runs). A value above G keeps every value.
    in_ready : Signal, out
        A beat may be written this cycle (a register output: a group may start when a
        bit-plane slot is free and its threshold will find room in the output FIFO; a
        group's later beats are always accepted).
    start_ready : Signal, out
        A register: a new group may start (``in_ready`` when no group is part-written).
        For a writer that delivers its beats a clock after accepting them and counts a
        group's beats itself; valid when a group has two beats or more (a start delivered
        in the clock before is counted in it).
    in_valid : Signal, in
        Write strobe (only while ``in_ready``): ``in_magnitudes`` is the next beat.
    in_magnitudes : Signal(15 x lanes), in
        Lane ``l`` in bits ``15 l .. 15 l + 14``; beat ``b`` of a group holds values
        ``b * lanes ..``.
    threshold : stream.Signature(StructLayout({"magnitude": 15, "need": range(G + 1)})), out
        One transfer per group, in group order.

    Notes
    -----
    **Radix select.** With ``need = keep`` and every value a candidate, the magnitude
    bit planes are taken most significant first; for plane ``p`` let ``c`` be the
    number of candidates with a 1 in it. If ``c >= need`` the ``keep``-th largest
    value has a 1 there: threshold bit 1, the candidates with a 0 drop out. Otherwise
    threshold bit 0, the ``c`` candidates with a 1 are kept for sure (``need -= c``)
    and drop out of the candidates. After the 15 planes ``magnitude`` is the
    ``keep``-th largest magnitude and ``need`` (``1 <= need``, unless ``keep = 0``)
    the number of values equal to it that are kept, the first ones in index order.
    ``keep = 0`` ends with ``magnitude = 0x7FFF, need = 0`` (nothing is kept);
    ``keep >= G`` with ``magnitude = 0`` and ``need >= `` the number of zeros.

    **Bit-plane store.** A group's planes are needed whole (G bits) one at a time, but
    they arrive as beats of ``lanes`` magnitudes. The planes (zero-extended at the top
    to ``PL = nb x E`` planes) are cut into ``nb`` blocks of ``E`` planes; the beats into
    ``NB`` super-beats of ``k`` beats (``NB = min(n, 16)``, ``n = G / lanes``); the store
    is ``NB`` RAM banks of ``E x k x lanes`` bits. Block ``b`` of super-beat ``c`` goes to
    bank ``(c + b) mod NB``: a beat writes one word (or its ``lanes``-bit granules of
    it) into every bank (its blocks rotated by ``c``), and a block of the whole group
    reads one word from every bank at the same address. The bank order of a block read
    is rotated by ``b`` super-beats; the candidate flags are kept in that order and
    rotated by one super-beat per block (wiring only), so a read needs no multiplexer.

    **Ring.** ``E`` bit-step engines of ``S`` register stages each, plus an exit
    register, form a ring of ``Lr = E x S + 1`` slots that turns every clock. A slot
    holds one group's state (candidate flags, ``need``, threshold bits so far). At the
    ring entry a slot either goes round again with its next block (read from the store
    one clock before) or, when it holds nothing or has finished its ``nb`` blocks,
    takes the next written group. A bit step is ``popcount(candidates & plane)`` (an
    adder tree cut by the ``S - 1`` inner registers), a compare with ``need`` and the
    update::

        store (NB banks) --read--> R0 --E0.0--> R1 --E0.1--> R2 ... --E(E-1).(S-1)--> exit
           ^ write (rotated by super-beat)    ^                                         |
        beats                                 +---- next block / next group <-----------+
                                                                     | finished: (magnitude, need)
                                                                     v
                                                                 threshold FIFO

    ``E = ceil(15 / NB)`` engines give one block (E planes) per clock, and ``nb <= n``
    blocks take ``nb x Lr`` clocks per group, so the ring keeps up with one group per
    ``n`` clocks. Sizes and latency: :func:`select_geometry`.
    """

    def __init__(self, *, group_size: int, lanes: int):
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1 \
                or group_size & (group_size - 1):
            raise ValueError(f"group_size={group_size!r} must be a power of two")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or lanes & (lanes - 1) \
                or lanes > group_size:
            raise ValueError(f"lanes={lanes!r} must be a power of two <= group_size={group_size}")
        self.group_size = group_size
        self.lanes = lanes
        self.geometry = select_geometry(group_size, lanes)
        self.keep = Signal(range(group_size + 1))
        self.in_ready = Signal()
        self.start_ready = Signal()
        self.in_valid = Signal()
        self.in_magnitudes = Signal(MAGNITUDE_BITS * lanes)
        self.threshold_layout = data.StructLayout({"magnitude": MAGNITUDE_BITS, "need": range(group_size + 1)})
        self.threshold = stream.Signature(self.threshold_layout).create()

    def elaborate(self, platform):
        m = Module()
        G, lanes = self.group_size, self.lanes
        geo = self.geometry
        n, NB, k, E = geo["beats"], geo["banks"], geo["beats_per_word"], geo["engines"]
        nb, PL, S, NS = geo["blocks"], geo["planes"], geo["sub_stages"], geo["slots"]
        chunk = k * lanes  # bits of one plane in one bank word
        word_bits = E * chunk
        slot_bits = max(1, (NS - 1).bit_length())
        blk_bits = (NB - 1).bit_length()  # 0 when NB == 1
        need_shape = range(G + 1)

        # ---- bookkeeping: slots of the store, thresholds not yet taken ------------
        fifo = m.submodules.fifo = SyncFIFOBuffered(width=self.threshold_layout.size, depth=geo["fifo_depth"] + 1)
        slots_used = Signal(range(NS + 1))
        outstanding = Signal(range(geo["fifo_depth"] + 1))  # groups started, threshold not taken
        in_beat = Signal(range(max(2, n)))
        fill_slot = Signal(slot_bits)
        # a new group may start: a slot of the store and a place for its threshold are free,
        # as a register (the next clock's counts for both outcomes, chosen by `starting`), so
        # in_ready is one gate after registers (it was the head of an 8-lane ULX3S build's
        # longest encoder path)
        group_room = Signal(init=1)
        m.d.comb += [self.in_ready.eq((in_beat != 0) | group_room), self.start_ready.eq(group_room)]
        starting = Signal()
        m.d.comb += starting.eq(self.in_valid & (in_beat == 0))
        with m.If(self.in_valid):
            with m.If(in_beat == n - 1):
                m.d.sync += [in_beat.eq(0), fill_slot.eq(fill_slot + 1)]
            with m.Else():
                m.d.sync += in_beat.eq(in_beat + 1)

        # ---- write side: one register, then the rotated write into every bank --------
        w_valid = Signal()
        w_beat = Signal(range(max(2, n)))
        w_slot = Signal(slot_bits)
        w_mags = Signal(MAGNITUDE_BITS * lanes)
        m.d.sync += w_valid.eq(self.in_valid)
        with m.If(self.in_valid):
            m.d.sync += [w_beat.eq(in_beat), w_slot.eq(fill_slot), w_mags.eq(self.in_magnitudes)]
        w_super = w_beat[(k.bit_length() - 1):] if n > 1 else Const(0, 1)  # super-beat c = beat // k
        w_sub = w_beat[:(k.bit_length() - 1)] if k > 1 else Const(0, 1)    # beat within it

        # plane p (0 = most significant of PL) of every lane of the beat
        def plane_of_beat(p):
            bit = PL - 1 - p
            if bit >= MAGNITUDE_BITS:
                return Const(0, lanes)
            return Cat(*(w_mags[MAGNITUDE_BITS * lane + bit] for lane in range(lanes)))

        # block b of the beat, as a bank word: plane e in bits [e*chunk, (e+1)*chunk), the
        # beat's lanes replicated over the k granules (only granule `w_sub` is written)
        block_words = [Cat(*(Cat(*([plane_of_beat(b * E + e)] * k)) for e in range(E))) for b in range(nb)]
        while len(block_words) < NB:
            block_words.append(Const(0, word_bits))
        banks = []
        for j in range(NB):
            mem = Memory(shape=word_bits, depth=NS * NB, init=[])
            m.submodules[f"bank{j}"] = mem
            wport = mem.write_port(granularity=lanes if k > 1 else None)
            rport = mem.read_port(domain="sync")
            banks.append(rport)
            blk = Signal(max(1, blk_bits), name=f"wblk{j}")  # block written into bank j: (j - c) mod NB
            m.d.comb += blk.eq((j - w_super)[:max(1, blk_bits)] if NB > 1 else 0)
            rotated = Signal(word_bits, name=f"wdata{j}")
            if NB > 1:
                with m.Switch(blk):
                    for b in range(NB):
                        with m.Case(b):
                            m.d.comb += rotated.eq(block_words[b])
            else:
                m.d.comb += rotated.eq(block_words[0])
            in_range = (blk < nb) if nb < NB else Const(1)
            m.d.comb += [
                wport.addr.eq(Cat(blk[:blk_bits], w_slot) if blk_bits else w_slot),
                wport.data.eq(rotated),
            ]
            if k > 1:
                for e in range(E):
                    for i in range(k):
                        m.d.comb += wport.en[e * k + i].eq(w_valid & in_range & (w_sub == i))
            else:
                m.d.comb += wport.en.eq(w_valid & in_range)
        written_ptr = Signal(slot_bits + 1)  # groups written (mod 2 NS); read_ptr: groups into the ring
        group_written = Signal()
        m.d.comb += group_written.eq(w_valid & (w_beat == n - 1))

        # ---- the ring ----------------------------------------------------------------
        def state(name):
            return dict(
                valid=Signal(name=f"{name}_valid"),
                slot=Signal(slot_bits, name=f"{name}_slot"),
                blk=Signal(max(1, blk_bits), name=f"{name}_blk"),
                cand=Signal(G, name=f"{name}_cand"),
                need=Signal(need_shape, name=f"{name}_need"),
                thr=Signal(MAGNITUDE_BITS, name=f"{name}_thr"),
            )

        ring_len = E * S
        regs = [state(f"r{i}") for i in range(ring_len + 1)]  # regs[ring_len] is the exit register
        # planes of the current block, in bank order (G bits each), at regs[0]: the RAM outputs
        planes0 = [Cat(*(banks[j].data[e * chunk:(e + 1) * chunk] for j in range(NB))) for e in range(E)]
        carried = {0: dict(enumerate(planes0))}  # stage index -> {engine: plane}
        partial = {}            # stage index -> list of partial counts
        for s in range(ring_len):
            e, sub = divmod(s, S)
            cur, nxt = regs[s], regs[s + 1]
            planes = carried[s]
            plane = planes[e]
            updates = [nxt["valid"].eq(cur["valid"]), nxt["slot"].eq(cur["slot"]), nxt["blk"].eq(cur["blk"])]
            levels_total = (G - 1).bit_length()
            last_levels = min(levels_total, 2)
            early = levels_total - last_levels
            if sub == 0:
                flags = [(cur["cand"][i] & plane[i]) for i in range(G)]
                counts = flags
            else:
                counts = partial[s]
            if sub < S - 1:
                # inner stage: part of the adder tree, registered
                per_stage = _ceil_div(early, S - 1) if S > 1 else 0
                levels = min(per_stage, max(0, early - sub * per_stage))
                reduced = popcount_levels(counts, levels)
                regs_partial = []
                for idx, value in enumerate(reduced):
                    reg = Signal(len(value) if not isinstance(value, int) else 1, name=f"r{s + 1}_part{idx}")
                    m.d.sync += reg.eq(value)
                    regs_partial.append(reg)
                partial[s + 1] = regs_partial
                updates += [nxt["cand"].eq(cur["cand"]), nxt["need"].eq(cur["need"]), nxt["thr"].eq(cur["thr"])]
            else:
                (total,) = popcount_levels(counts, 64)
                count = Signal(range(G + 1), name=f"r{s}_count")
                decide = Signal(name=f"r{s}_bit")
                rest = Signal(need_shape, name=f"r{s}_rest")
                # two subtractions side by side: count - need decides (no borrow: count >= need),
                # need - count is the new need when the bit is 0
                over = Signal(len(count) + 1, name=f"r{s}_over")
                m.d.comb += [count.eq(total), over.eq(count - cur["need"]), decide.eq(~over[-1]),
                             rest.eq(cur["need"] - count)]
                updates += [
                    nxt["cand"].eq(Mux(decide, cur["cand"] & plane, cur["cand"] & ~plane)),
                    nxt["need"].eq(Mux(decide, cur["need"], rest)),
                    nxt["thr"].eq(Cat(decide, cur["thr"][:-1])),
                ]
            m.d.sync += updates
            # planes still needed downstream (engines >= the next stage's engine)
            if s + 1 < ring_len:
                e_next = (s + 1) // S
                regs_planes = {}
                for ee, pl in planes.items():
                    if ee >= e_next:
                        reg = Signal(G, name=f"r{s + 1}_plane{ee}")
                        m.d.sync += reg.eq(pl)
                        regs_planes[ee] = reg
                carried[s + 1] = regs_planes

        # ---- ring entry -----------------------------------------------------------------
        exit_ = regs[ring_len]
        entry = regs[0]
        last_blk = exit_["blk"] == nb - 1 if nb > 1 else Const(1)
        finishing = Signal()
        wrapping = Signal()
        new_group = Signal()
        read_ptr = Signal(slot_bits + 1)  # next written group to enter the ring (its slot: the low bits)
        read_slot = read_ptr[:slot_bits]
        m.d.comb += [
            finishing.eq(exit_["valid"] & last_blk),
            wrapping.eq(exit_["valid"] & ~last_blk),
            new_group.eq(~wrapping & (written_ptr != read_ptr)),
        ]
        nxt_slot = Signal(slot_bits)
        nxt_blk = Signal(max(1, blk_bits))
        with m.If(wrapping):
            m.d.comb += [nxt_slot.eq(exit_["slot"]), nxt_blk.eq(exit_["blk"] + 1)]
            rotated_cand = Cat(exit_["cand"][G - chunk:], exit_["cand"][:G - chunk]) if NB > 1 else exit_["cand"]
            m.d.sync += [
                entry["valid"].eq(1), entry["cand"].eq(rotated_cand),
                entry["need"].eq(exit_["need"]), entry["thr"].eq(exit_["thr"]),
            ]
        with m.Else():
            m.d.comb += [nxt_slot.eq(read_slot), nxt_blk.eq(0)]
            m.d.sync += [
                entry["valid"].eq(new_group), entry["cand"].eq(Const(-1, G)),
                entry["need"].eq(self.keep), entry["thr"].eq(0),
            ]
        m.d.sync += [entry["slot"].eq(nxt_slot), entry["blk"].eq(nxt_blk)]
        for rport in banks:
            m.d.comb += rport.addr.eq(Cat(nxt_blk[:blk_bits], nxt_slot) if blk_bits else nxt_slot)
        with m.If(new_group):
            m.d.sync += read_ptr.eq(read_ptr + 1)
        with m.If(group_written):
            m.d.sync += written_ptr.eq(written_ptr + 1)
        m.d.sync += slots_used.eq(slots_used + starting - finishing)

        # ---- thresholds out -------------------------------------------------------------
        result = data.View(self.threshold_layout, Signal(self.threshold_layout.size))
        m.d.comb += [
            result.magnitude.eq(exit_["thr"]),
            result.need.eq(exit_["need"]),
            fifo.w_data.eq(result.as_value()),
            fifo.w_en.eq(finishing),
            self.threshold.payload.eq(fifo.r_data),
            self.threshold.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.threshold.ready),
        ]
        taken = self.threshold.valid & self.threshold.ready
        m.d.sync += outstanding.eq(outstanding + starting - taken)
        room_after = []
        for started in (0, 1):
            slots_after = Signal(range(NS + 2), name=f"slots_after_start{started}")
            outstanding_after = Signal(range(geo["fifo_depth"] + 2), name=f"outstanding_after_start{started}")
            # (a threshold taken in this clock frees its place one clock later: `taken` comes
            # from the consumer's handshake, too late to count here)
            m.d.comb += [slots_after.eq(slots_used + started - finishing),
                         outstanding_after.eq(outstanding + started)]
            room_after.append((slots_after != NS) & (outstanding_after != geo["fifo_depth"]))
        m.d.sync += group_room.eq(Mux(starting, room_after[1], room_after[0]))
        return m
