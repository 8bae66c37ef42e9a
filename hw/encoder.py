"""Streaming Cassandra encoder (Amaranth 0.5), bit-exact with ``golden.format.codec.encode``.

The encoder takes BF16 values ``lanes`` per beat, selects the ``keep`` values of
largest magnitude in every group of ``G`` values (the tie rule of
``golden.format.select.magnitude_topk_mask``) and writes the five streams of
docs/FORMAT.md as ``word_bits``-bit little-endian words. See :class:`Encoder`.
"""

from __future__ import annotations

from math import gcd

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from golden.format.params import (
    BF16_BITS,
    BF16_EXPONENT_BITS,
    STREAM_ALIGN_BITS,
    STREAM_NAMES,
    FormatParams,
)

from .common import BF16_LAYOUT, COMMAND_GROUP_BITS, check_hardware_params, parameter_checks
from .topk import MAGNITUDE_BITS, TopKThreshold, popcount_levels, select_geometry

__all__ = ["Encoder", "ENCODER_EXPONENT_CODINGS", "encoder_status_layout"]

#: Exponent codings the encoder produces (mx is decode-only).
ENCODER_EXPONENT_CODINGS = ("raw", "unary")

#: Most 2:1 multiplexer levels of a shifter in one register stage.
_SHIFT_LEVELS_PER_STAGE = 4

#: A packer whose position shift has at most this many levels does it in its join stage.
_FOLD_SHIFT_LEVELS = 3


def encoder_status_layout() -> data.StructLayout:
    """The encoder's ``status`` output (registered): ``busy`` (a command is running
    or queued) and ``keep_above_group`` (the ``keep`` input is above G)."""
    return data.StructLayout({"busy": 1, "keep_above_group": 1})


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _log2(x: int) -> int:
    return x.bit_length() - 1


def _shift_left(value, amount, step: int, *, levels=None):
    """``value << (amount * step)`` as explicit 2:1 multiplexer levels (``amount`` most
    significant bit last); the result is ``len(value) + step * (2**len(amount) - 1)``
    wide. ``levels`` (a range) limits it to those bits of ``amount``."""
    out = value
    bits = range(len(amount)) if levels is None else levels
    for i in bits:
        by = step << i
        out = Mux(amount[i], Cat(Const(0, by), out), Cat(out, Const(0, by)))
    return out


def _popcount(bits):
    """Number of ones among ``bits`` (0-bit safe), narrow levels as LUT logic."""
    bits = list(bits)
    if not bits:
        return Const(0, 1)
    (total,) = popcount_levels(bits)
    return total


def _compare(a, b):
    """``(a > b, a == b)`` for unsigned ``a``, ``b`` of one width, as a tree of 2-bit
    comparisons joined by (gt, eq) pairs: LUT logic only, about log2(width) levels."""
    nodes = []
    for i in range(0, len(a), 2):
        x, y = a[i:i + 2], b[i:i + 2]
        nodes.append((x > y, x == y))
    while len(nodes) > 1:
        joined = []
        for i in range(0, len(nodes) - 1, 2):
            (gt_lo, eq_lo), (gt_hi, eq_hi) = nodes[i], nodes[i + 1]
            joined.append((gt_hi | (eq_hi & gt_lo), eq_hi & eq_lo))
        if len(nodes) % 2:
            joined.append(nodes[-1])
        nodes = joined
    return nodes[0]


class _Stage:
    """Registers of one stage of the output pipeline: every field updates together when
    the pipeline advances (``adv``)."""

    def __init__(self, m, adv, name: str, **values):
        self._names = []
        updates = []
        for field, value in values.items():
            if isinstance(value, (list, tuple)):
                regs = []
                for i, item in enumerate(value):
                    reg = Signal.like(item, name=f"{name}_{field}{i}") if isinstance(item, Signal) \
                        else Signal(len(item), name=f"{name}_{field}{i}")
                    updates.append(reg.eq(item))
                    regs.append(reg)
                setattr(self, field, regs)
            else:
                reg = Signal.like(value, name=f"{name}_{field}") if isinstance(value, Signal) \
                    else Signal(len(value), name=f"{name}_{field}")
                updates.append(reg.eq(value))
                setattr(self, field, reg)
        with m.If(adv):
            m.d.sync += updates


class _Wires:
    """Named values standing in for a :class:`_Stage` that is not registered."""

    def __init__(self, **values):
        self.__dict__.update(values)


class _Packer(wiring.Component):
    """Appends one beat's bits per clock to a stream and emits ``word_bits``-bit words.

    Parameters
    ----------
    max_bits : int
        Most payload bits of one beat (``M``).
    granule : int
        Every length (and so every stream position) is a multiple of it: a power of
        two dividing 64 (the superblock alignment).
    word_bits : int
        Width of the output words (``W``).
    depth : int
        Entries of the word queue.

    Attributes
    ----------
    adv : In(1)
        The encoder's output pipeline advances this clock (a register).
    valid, data, length, sb_end, cmd_end : In
        The beat at the packer's input register stage: ``data`` (bit 0 first, zero at
        and above ``length``), ``length`` in bits; after it, pad the stream with zeros to
        the next 64-bit boundary (``sb_end``) or ``max(64, W)`` boundary (``cmd_end``,
        after which the stream position restarts at 0).
    room : Out(1)
        The queue can take an entry next clock even if nothing leaves it: part of the
        encoder's next ``adv``.
    out : Out(stream.Signature(word_bits))

    Notes
    -----
    Three stages, all advancing with ``adv``, then a queue::

        P1 position: pos += length, rounded up at sb_end / cmd_end (the only loop)
        P2 shift:    data << (pos mod W)                  (one or two register stages)
        P3 join:     words = residue | shifted; the full ones (0..K) go into the queue as
                     one entry, the next partial word stays as the residue (a loop of
                     one OR and one K-way multiplexer)
        queue:       entries of K_d words and a count, emitted one word per clock

    A beat can complete several words (``M > W``, or padding), so an entry holds all
    of them and the emitter takes one per clock; the words of an entry never move.
    """

    def __init__(self, *, max_bits: int, granule: int, word_bits: int, depth: int):
        self.max_bits = max_bits
        self.granule = granule
        self.word_bits = word_bits
        self.period = max(STREAM_ALIGN_BITS, word_bits)
        self.depth = depth
        W, g, P = word_bits, granule, self.period
        # most words one beat completes (padding included), and words of data in an entry
        most = 0
        for pos in range(0, P, g):
            p1 = pos + max_bits
            for q in (p1, -(-p1 // STREAM_ALIGN_BITS) * STREAM_ALIGN_BITS, -(-p1 // P) * P):
                most = max(most, q // W - pos // W)
        self.most_words = most
        self.shifted_bits = max_bits + W - g
        self.data_words = -(-self.shifted_bits // W)
        super().__init__({
            "adv": In(1),
            "valid": In(1),
            "data": In(max_bits),
            "length": In(range(max_bits + 1)),
            "sb_end": In(1),
            "cmd_end": In(1),
            "room": Out(1),
            "out": Out(stream.Signature(word_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        W, g, P, M = self.word_bits, self.granule, self.period, self.max_bits
        Wg, Pg, Ag = W // g, P // g, STREAM_ALIGN_BITS // g
        adv = self.adv
        K, Kd = self.most_words, self.data_words

        # ---- P1: stream position (granules, modulo P) -----------------------------
        pos = Signal(range(Pg))
        length = self.length[_log2(g):] if g > 1 else self.length
        p1 = Signal(range(Pg + M // g + 1))
        m.d.comb += p1.eq(pos + length)

        def round_up(x, to):
            bits = _log2(to)
            if bits == 0:
                return x
            return Cat(Const(0, bits), x[bits:] + (x[:bits] != 0))

        q = Signal(range(2 * Pg + M // g + 1))
        with m.If(self.cmd_end):
            m.d.comb += q.eq(round_up(p1, Pg))
        with m.Elif(self.sb_end):
            m.d.comb += q.eq(round_up(p1, Ag))
        with m.Else():
            m.d.comb += q.eq(p1)
        with m.If(adv & self.valid):
            m.d.sync += pos.eq(q[:_log2(Pg)] if Pg > 1 else 0)
        s1 = _Stage(m, adv, "p1", valid=self.valid, data=self.data, q=q, pos=pos)

        # ---- P2: shift by the position within the word ----------------------------
        shift_bits = _log2(Wg)
        cr = s1.pos[:shift_bits] if shift_bits else Const(0, 1)
        word_shift = _log2(W) - _log2(g)
        nw = Signal(range(K + 1))
        m.d.comb += nw.eq((s1.q >> word_shift) - (s1.pos >> word_shift))
        if shift_bits > _SHIFT_LEVELS_PER_STAGE:
            low = shift_bits // 2
            half = _shift_left(s1.data, cr, g, levels=range(low))
            s2a = _Stage(m, adv, "p2a", valid=s1.valid, data=half, cr=cr, nw=nw)
            shifted = _shift_left(s2a.data, s2a.cr, g, levels=range(low, shift_bits))
            s2 = _Stage(m, adv, "p2", valid=s2a.valid, data=shifted[:self.shifted_bits], nw=s2a.nw)
        else:
            shifted = _shift_left(s1.data, cr, g) if shift_bits else s1.data
            if shift_bits > _FOLD_SHIFT_LEVELS:
                s2 = _Stage(m, adv, "p2", valid=s1.valid, data=shifted[:self.shifted_bits], nw=nw)
            else:  # a shallow shift joins the residue in the same clock: no P2 registers
                s2 = _Wires(valid=s1.valid, data=shifted[:self.shifted_bits], nw=nw)

        # ---- P3: join with the residue, queue the full words ------------------------
        residue = Signal(W - g)
        joined = Signal(Kd * W)
        m.d.comb += joined.eq(s2.data | residue)
        words = [joined[i * W:(i + 1) * W] for i in range(Kd)]
        with m.If(adv & s2.valid):
            with m.Switch(s2.nw):  # (the last case as the default: no incomplete case)
                for i in range(K + 1):
                    with (m.Case(i) if i < K else m.Default()):
                        m.d.sync += residue.eq(words[i][:W - g] if i < Kd else 0)
        count_bits = max(1, (K).bit_length())
        queue = m.submodules.queue = SyncFIFO(width=Kd * W + count_bits, depth=self.depth)
        push = Signal()
        m.d.comb += [
            push.eq(adv & s2.valid & (s2.nw != 0)),
            queue.w_en.eq(push),
            queue.w_data.eq(Cat(joined, s2.nw)),
            self.room.eq(queue.level + push <= self.depth - 1),
        ]

        # ---- emitter: one word per clock from the head entry ------------------------
        index = Signal(range(max(2, K)))
        head_count = queue.r_data[Kd * W:]
        word = Signal(W)
        with m.Switch(index):
            for i in range(Kd):
                with m.Case(i):
                    m.d.comb += word.eq(queue.r_data[i * W:(i + 1) * W])
            with m.Default():  # the padding words past the data (index < K): zeros
                m.d.comb += word.eq(0)
        last = Signal()
        m.d.comb += [
            self.out.valid.eq(queue.r_rdy),
            self.out.payload.eq(word),
            last.eq(index == head_count - 1),
            queue.r_en.eq(self.out.ready & last),
        ]
        with m.If(self.out.valid & self.out.ready):
            m.d.sync += index.eq(Mux(last, 0, index + 1))
        return m


class Encoder(wiring.Component):
    """Streaming encoder of the Cassandra format (raw and unary exponent coding).

    Parameters
    ----------
    params : FormatParams
        The format (group size G, mantissa bits m, exponent coding, unary
        codebook size L, superblock size S). ``exponent_coding`` must be
        ``"raw"`` or ``"unary"``: mx is decode-only.
    lanes : int, keyword-only
        BF16 values per input beat: a power of two dividing G (default 8).
    word_bits : int, keyword-only
        Width of the output words, one of ``hw.common.WORD_BITS_CHOICES``
        (default 64).

    Attributes
    ----------
    cmd : In(stream.Signature(COMMAND_GROUP_BITS))
        One command = "the next N groups form one tensor". N = 0 is a no-op.
        Superblocks are counted from the start of each command; after its last
        group every stream is padded with zeros to a whole ``word_bits`` word, so
        each command produces whole words and the next one starts a fresh word.
        One command is buffered while the previous one runs, so back-to-back
        commands cost no idle cycle.
    keep : In(range(G + 1))
        Values kept per group (static configuration input; above G keeps all).
    codebook : In(data.ArrayLayout(8, L)), unary only
        Entry r is the exponent coded by rank r (entries distinct).
    values : In(stream.Signature(data.ArrayLayout(16, lanes)))
        BF16 input; lane i of beat b of a group is value ``b * lanes + i`` of the
        group. Accepted only while a command is running.
    bitmap, sign_mantissa, exponent, mantissa_low, pruned_raw : Out(stream.Signature(word_bits))
        The streams; stream bit i is bit ``i % word_bits`` of word ``i // word_bits``.
        With m = 7 the ``mantissa_low`` stream is empty and never valid.
    status : Out(encoder_status_layout())
        Registered. ``busy``: a command is running or queued (values are expected);
        ``keep_above_group``: ``keep`` > G, which no container can record (every
        value is kept, as with ``keep = G``, but the configuration is wrong).

    Notes
    -----
    **Architecture.** No comparator array: the selection finds one threshold per
    group, and every later step is a short register-to-register pipeline::

        values ─┬─► value FIFO (RAM, beats + superblock/command-end flags) ───────────┐
                │                                                                    │
                └─► TopKThreshold (hw/topk.py): bit-plane RAM + radix-select ring    │
                        │ per group: magnitude T (keep-th largest), need               │
                        ▼                                                            ▼
        O0  a beat leaves the FIFO once its group's (T, need) is known ◄─────────────┘
        M1  per lane: mag > T, mag == T
        M2  equal values before each lane in the beat; unary code lookup (codebook)
        M3  kept = mag > T  or  (mag == T and equal values before it < need left)
        T1.. per stream: compaction tree, one register stage per level (log2 lanes):
             pairs of (bits, length) joined as a | (b << length a)
        P1  stream position (+ length, superblock / command padding)
        P2  shift by the position within the word
        P3  join with the partial word; full words -> queue -> one word per clock

    The stages from O0 to P3 advance together with ``adv``, a register that is set
    when every packer's queue has room for one more entry (counting the entry it may
    take this clock); when a queue is full the pipeline holds, the value FIFO fills
    and ``values.ready`` falls. ``values.ready`` and every output ``valid`` are
    register outputs or shallow logic on registers.

    **Selection.** :class:`hw.topk.TopKThreshold` gives per group the ``keep``-th
    largest magnitude ``T`` (15-bit ``bits & 0x7FFF``) and ``need``, the number of
    values equal to ``T`` that are kept. M3 keeps value i iff its magnitude is above
    ``T``, or equal and fewer than ``need`` equal values come before it in the group
    (a count carried from beat to beat): larger magnitude first, ties to the lower
    index, as ``golden.format.select.magnitude_topk_mask``.

    **Throughput.** One input beat per clock while every stream's bits per beat
    (padding apart) are at most ``word_bits`` on average: e.g. ``lanes = 4`` with
    ``word_bits = 64``, ``lanes = 8`` with ``word_bits = 128``; the queues absorb
    beats that complete several words. Otherwise the busiest stream's queue holds the
    pipeline and the rate is ``word_bits / bits-per-beat`` of that stream.

    **Latency.** The first output word depending on a group comes about
    ``select_geometry(G, lanes)["latency"] + 12`` clocks after the group's first beat
    (the selection needs the whole group and 16 bit steps; then the output pipeline);
    measured in tests/hw/test_encoder.py. A word is emitted when full, at the latest
    at the end of the superblock.

    **Reset.** The ``sync`` domain's reset returns every register to idle (no
    command, empty FIFOs and packers); the next command encodes from scratch.
    """

    def __init__(self, params: FormatParams, *, lanes: int = 8, word_bits: int = 64):
        with parameter_checks(self):
            check_hardware_params(params, lanes=lanes, word_bits=word_bits)
            if params.exponent_coding not in ENCODER_EXPONENT_CODINGS:
                raise ValueError(
                    f"exponent_coding={params.exponent_coding!r}: the encoder supports raw and unary "
                    "exponent coding; mx is decode-only (use the golden encoder for mx)"
                )
        self.params = params
        self.lanes = lanes
        self.word_bits = word_bits
        G = params.group_size
        L = params.unary_max_code_length
        members = {
            "cmd": In(stream.Signature(COMMAND_GROUP_BITS)),
            "keep": In(range(G + 1)),
            "values": In(stream.Signature(data.ArrayLayout(BF16_BITS, lanes))),
        }
        if params.exponent_coding == "unary":
            members["codebook"] = In(data.ArrayLayout(BF16_EXPONENT_BITS, L))
        for name in STREAM_NAMES:
            members[name] = Out(stream.Signature(word_bits))
        members["status"] = Out(encoder_status_layout())
        super().__init__(members)

    # -- widths per beat ------------------------------------------------------
    @property
    def beats_per_group(self) -> int:
        return self.params.group_size // self.lanes

    def field_bits(self) -> dict:
        """Largest field of each stream, in bits (0: the stream has no fields)."""
        p = self.params
        if p.exponent_coding == "unary":
            exp_bits = p.unary_escape_bits
        else:
            exp_bits = BF16_EXPONENT_BITS
        return {
            "bitmap": 1,
            "sign_mantissa": p.sign_mantissa_bits,
            "exponent": exp_bits,
            "mantissa_low": p.truncated_bits,
            "pruned_raw": BF16_BITS,
        }

    def max_bits_per_beat(self) -> dict:
        """Most payload bits one beat adds to each stream (padding apart)."""
        return {name: bits * self.lanes for name, bits in self.field_bits().items()}

    @property
    def value_fifo_depth(self) -> int:
        """Beats the value FIFO holds: enough to cover the selection latency."""
        geo = select_geometry(self.params.group_size, self.lanes)
        return _pow2_at_least(geo["latency"] + 4)

    # -- the hardware ---------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        p = self.params
        G = p.group_size
        S = p.superblock_groups
        lanes = self.lanes
        n = self.beats_per_group
        t = p.truncated_bits
        L = p.unary_max_code_length
        beat_bits = lanes * BF16_BITS

        # ---- commands -------------------------------------------------------
        remaining = Signal(COMMAND_GROUP_BITS)  # groups left in the running command
        running = Signal()      # remaining != 0, as a register
        last_group = Signal()   # remaining == 1, as a register
        pending = Signal(COMMAND_GROUP_BITS)
        pending_valid = Signal()
        sb_count = Signal(range(max(2, S)))  # group index within the superblock
        in_beat = Signal(range(max(2, n)))
        # in_beat == n - 1 and in_beat != 0 as registers kept beside it (the accept decision
        # reads registers only: a compare of in_beat led an 8-lane ULX3S build's encoder path)
        at_last_beat = Signal(init=int(n == 1))
        mid_group = Signal()

        # with two beats a group or more, an accepted beat reaches the value FIFO and the
        # top-k a clock later, from registers loaded in every clock: `take` then enables
        # only narrow registers (its fan-out to every data bit of the FIFO write and the
        # top-k's input led an 8-lane ULX3S build's encoder paths, 1.9 ns of logic and
        # 8.9 ns of routing). The FIFO then needs room for the beat in flight too (one
        # place more), and a group start asks the top-k's registered `start_ready`.
        staged = n > 1
        vfifo = m.submodules.value_fifo = SyncFIFOBuffered(width=beat_bits + 2,
                                                           depth=self.value_fifo_depth + 1 + staged)
        topk = m.submodules.topk = TopKThreshold(group_size=G, lanes=lanes)

        in_ok = Signal()
        if staged:
            # "the FIFO holds at most depth - 2 beats" as a register, from a count of our own
            # (the FIFO's level is an adder and a compare, ahead of every accept)
            fifo_count = Signal(range(vfifo.depth + 1))
            fifo_room = Signal(init=1)
            wrote = vfifo.w_en
            read = vfifo.r_en & vfifo.r_rdy
            m.d.sync += [
                fifo_count.eq(fifo_count + wrote - read),
                fifo_room.eq(Mux(wrote, Mux(read, fifo_count <= vfifo.depth - 2, fifo_count <= vfifo.depth - 3),
                                 Mux(read, fifo_count <= vfifo.depth - 1, fifo_count <= vfifo.depth - 2))),
            ]
            topk_room = mid_group | topk.start_ready
        else:
            fifo_room, topk_room = vfifo.w_rdy, topk.in_ready
        m.d.comb += [
            self.cmd.ready.eq(~pending_valid),
            in_ok.eq(running & fifo_room & topk_room),
            self.values.ready.eq(in_ok),
        ]
        take = Signal()
        group_done = Signal()
        last_beat_in = Signal()
        sb_end_in = Signal()
        m.d.comb += [
            take.eq(self.values.valid & in_ok),
            last_beat_in.eq(at_last_beat),
            group_done.eq(take & last_beat_in),
            sb_end_in.eq((sb_count == S - 1) | last_group),
        ]
        payload = self.values.payload.as_value()
        fifo_data = Cat(payload, last_beat_in & sb_end_in, last_beat_in & last_group)
        write = take
        if staged:
            staged_take = Signal()
            staged_data = Signal(len(fifo_data), reset_less=True)
            m.d.sync += [staged_take.eq(take), staged_data.eq(fifo_data)]
            write, fifo_data, payload = staged_take, staged_data, staged_data[:beat_bits]
        m.d.comb += [
            vfifo.w_en.eq(write),
            vfifo.w_data.eq(fifo_data),
            topk.in_valid.eq(write),
            topk.in_magnitudes.eq(Cat(*(payload[BF16_BITS * i:BF16_BITS * i + MAGNITUDE_BITS]
                                        for i in range(lanes)))),
            topk.keep.eq(self.keep),
        ]
        m.d.sync += [self.status.busy.eq(running | pending_valid | (self.cmd.valid & (self.cmd.payload != 0))),
                     self.status.keep_above_group.eq(self.keep > G)]
        with m.If(take):
            with m.If(last_beat_in):
                m.d.sync += [in_beat.eq(0), at_last_beat.eq(n == 1), mid_group.eq(0), remaining.eq(remaining - 1),
                             running.eq(~last_group), last_group.eq(remaining == 2)]
                with m.If(sb_end_in):
                    m.d.sync += sb_count.eq(0)
                with m.Else():
                    m.d.sync += sb_count.eq(sb_count + 1)
            with m.Else():
                m.d.sync += [in_beat.eq(in_beat + 1), at_last_beat.eq(in_beat == n - 2), mid_group.eq(1)]
        with m.If(pending_valid & (~running | (group_done & last_group))):
            m.d.sync += [remaining.eq(pending), pending_valid.eq(0), sb_count.eq(0),
                         running.eq(pending != 0), last_group.eq(pending == 1)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [pending.eq(self.cmd.payload), pending_valid.eq(1)]

        # ---- O0: a beat leaves the FIFO once its group's threshold is known ---------
        adv = Signal(init=1)
        cur_valid = Signal()
        cur_magnitude = Signal(MAGNITUDE_BITS)
        cur_need = Signal(range(G + 1))
        out_beat = Signal(range(max(2, n)))
        issue = Signal()
        pop = Signal()
        group_last = Signal()
        m.d.comb += [
            issue.eq(cur_valid & vfifo.r_rdy),
            pop.eq(adv & issue),
            vfifo.r_en.eq(pop),
            group_last.eq(out_beat == n - 1),
            topk.threshold.ready.eq(~cur_valid | (pop & group_last)),
        ]
        with m.If(topk.threshold.ready):
            m.d.sync += [
                cur_valid.eq(topk.threshold.valid),
                cur_magnitude.eq(topk.threshold.payload.magnitude),
                cur_need.eq(topk.threshold.payload.need),
            ]
        with m.If(pop):
            m.d.sync += out_beat.eq(Mux(group_last, 0, out_beat + 1))

        # ---- M0: the beat and its group's threshold, registered -------------------------
        s0 = _Stage(m, adv, "m0", valid=issue, vals=vfifo.r_data[:beat_bits],
                    sb_end=vfifo.r_data[beat_bits], cmd_end=vfifo.r_data[beat_bits + 1],
                    first=out_beat == 0, need=cur_need, magnitude=cur_magnitude)
        mags = [s0.vals[BF16_BITS * i:BF16_BITS * i + MAGNITUDE_BITS] for i in range(lanes)]
        vals0 = data.View(data.ArrayLayout(BF16_LAYOUT, lanes), s0.vals)

        # ---- M1: compare with the threshold; codebook hits --------------------------------
        unary = p.exponent_coding == "unary"
        hits = {}
        if unary:
            hits["hits"] = [Cat(*(self.codebook[r] == vals0[lane].exponent for r in range(L)))
                            for lane in range(lanes)]
        s1 = _Stage(m, adv, "m1", valid=s0.valid, vals=s0.vals, sb_end=s0.sb_end, cmd_end=s0.cmd_end,
                    first=s0.first, need=s0.need,
                    gt=[_compare(mag, s0.magnitude)[0] for mag in mags],
                    eq=[_compare(mag, s0.magnitude)[1] for mag in mags], **hits)
        vals1 = data.View(data.ArrayLayout(BF16_LAYOUT, lanes), s1.vals)

        # ---- M2: equal values before each lane; unary codes ------------------------------
        before = [Signal(range(lanes), name=f"eq_before{lane}") for lane in range(lanes)]
        for lane in range(lanes):
            m.d.comb += before[lane].eq(_popcount(s1.eq[:lane]))
        codes_widths = {}
        if unary:
            codes, widths = [], []
            for lane in range(lanes):
                e = vals1[lane].exponent
                lane_hits = s1.hits[lane]
                code = Signal(L + BF16_EXPONENT_BITS, name=f"ucode{lane}")
                width = Signal(range(L + BF16_EXPONENT_BITS + 1), name=f"uwidth{lane}")
                with m.If(lane_hits.any()):
                    # the lowest matching rank r: code 1 << r, width r + 1 (a codebook
                    # with repeated entries still gives one valid code)
                    for r in reversed(range(L)):
                        with m.If(lane_hits[r]):
                            m.d.comb += [code.eq(1 << r), width.eq(r + 1)]
                with m.Else():
                    m.d.comb += [code.eq(e << L), width.eq(L + BF16_EXPONENT_BITS)]
                codes.append(code)
                widths.append(width)
            codes_widths = dict(codes=codes, widths=widths)
        s2 = _Stage(m, adv, "m2", valid=s1.valid, vals=s1.vals, sb_end=s1.sb_end, cmd_end=s1.cmd_end,
                    first=s1.first, need=s1.need, gt=s1.gt, eq=s1.eq, before=before,
                    equal=_popcount(s1.eq), **codes_widths)

        # ---- M3: the mask (ties: the first `need` equal values of the group) -------------
        left = Signal(range(G + 1))  # equal values still to keep in this group
        left_in = Signal(range(G + 1))
        m.d.comb += left_in.eq(Mux(s2.first, s2.need, left))
        mask = [s2.gt[lane] | (s2.eq[lane] & (s2.before[lane] < left_in)) for lane in range(lanes)]
        with m.If(adv & s2.valid):
            m.d.sync += left.eq(Mux(left_in > s2.equal, left_in - s2.equal, 0))
        extra = dict(codes=s2.codes, widths=s2.widths) if unary else {}
        s3 = _Stage(m, adv, "m3", valid=s2.valid, vals=s2.vals, sb_end=s2.sb_end, cmd_end=s2.cmd_end,
                    mask=Cat(*mask), **extra)
        vals3 = data.View(data.ArrayLayout(BF16_LAYOUT, lanes), s3.vals)

        # ---- per stream: fields, compaction tree, packer ---------------------------------
        kept = [s3.mask[lane] for lane in range(lanes)]
        pruned = [~s3.mask[lane] for lane in range(lanes)]
        v = [vals3[lane] for lane in range(lanes)]
        fields = {
            "sign_mantissa": ([Cat(v[lane].mantissa[t:], v[lane].sign) for lane in range(lanes)],
                              p.sign_mantissa_bits, kept),
            "mantissa_low": ([v[lane].mantissa[:t] for lane in range(lanes)], t, kept),
            "pruned_raw": ([v[lane].as_value() for lane in range(lanes)], BF16_BITS, pruned),
        }
        if p.exponent_coding == "raw":
            fields["exponent"] = ([v[lane].exponent for lane in range(lanes)], BF16_EXPONENT_BITS, kept)
        else:
            fields["exponent"] = (s3.codes, s3.widths, kept)

        rooms = []
        for name in STREAM_NAMES:
            port = getattr(self, name)
            if name == "bitmap":
                valid, bits, length, sb_end, cmd_end = s3.valid, s3.mask, lanes, s3.sb_end, s3.cmd_end
                max_bits, unit = lanes, lanes
            else:
                values_, width, select = fields[name]
                fixed = isinstance(width, int)
                max_width = width if fixed else L + BF16_EXPONENT_BITS
                max_bits = max_width * lanes
                if max_bits == 0:  # mantissa_low with m = 7: no fields, never valid
                    m.d.comb += [port.valid.eq(0), port.payload.eq(0)]
                    continue
                unit = width if fixed else 1
                valid, bits, length, sb_end, cmd_end = self._compact(
                    m, adv, name, s3, values_, width, select, max_width)
            granule = gcd(unit, STREAM_ALIGN_BITS)
            # queue entries: 2 when two beats in a row can never both complete a word
            # (one word at most, half a word per beat, not every beat a group end), else
            # 3, and 4 when a beat may bring more than a word
            single = max_bits * 2 <= self.word_bits and n >= 2
            packer = _Packer(max_bits=max_bits, granule=granule, word_bits=self.word_bits,
                             depth=2 if single else 3 if max_bits <= self.word_bits else 4)
            m.submodules[f"pack_{name}"] = packer
            rooms.append(packer.room)
            m.d.comb += [
                packer.adv.eq(adv),
                packer.valid.eq(valid),
                packer.data.eq(bits),
                packer.length.eq(length),
                packer.sb_end.eq(sb_end),
                packer.cmd_end.eq(cmd_end),
                port.valid.eq(packer.out.valid),
                port.payload.eq(packer.out.payload),
                packer.out.ready.eq(port.ready),
            ]
        m.d.sync += adv.eq(Cat(*rooms).all())
        return m

    def _compact(self, m, adv, name, s3, values_, width, select, max_width):
        """The compaction tree of one stream: returns (valid, bits, length, sb_end,
        cmd_end) of its root, for the packer's first register stage.

        Leaves are the lanes' fields (zero, with length 0, when not selected); each
        level joins pairs as ``a | (b << length(a))``, the shift resolved over the
        bits of a's length in field units (``width`` for fixed-width fields, 1 bit for
        unary codes), one register stage per level (two when the shift has more than
        ``_SHIFT_LEVELS_PER_STAGE`` multiplexer levels). With two levels or more the
        total length is registered one stage before the root, and the root's join is
        left unregistered: the packer registers it together with the stream position
        it computes from that length.
        """
        lanes = self.lanes
        fixed = isinstance(width, int)
        unit = width if fixed else 1
        # a node: (bits, units, length in bits or None (= units), most units)
        nodes = []
        for lane in range(lanes):
            bits = Mux(select[lane], values_[lane], 0)
            if fixed:
                nodes.append((bits, select[lane], Mux(select[lane], width, 0), 1))
            else:
                nodes.append((bits, Mux(select[lane], width[lane], 0), None, max_width))
        valid, sb_end, cmd_end = s3.valid, s3.sb_end, s3.cmd_end
        total = None  # the root's length, registered a stage ahead of the root
        level = 0
        while True:
            if len(nodes) > 1:
                root = len(nodes) == 2
                # join pairs; the shift of b by a's length is spread over register stages
                # of at most _SHIFT_LEVELS_PER_STAGE multiplexer levels each
                pairs = [(nodes[i], nodes[i + 1]) for i in range(0, len(nodes), 2)]
                partial = [b for (_, (b, *_)) in pairs]
                shift_bits = max(len(ua) for ((_, ua, _, _), _) in pairs)
                chunks = [range(i, min(i + _SHIFT_LEVELS_PER_STAGE, shift_bits))
                          for i in range(0, shift_bits, _SHIFT_LEVELS_PER_STAGE)] or [range(0)]
                for c, chunk in enumerate(chunks):
                    partial = [_shift_left(part, ua, unit, levels=[i for i in chunk if i < len(ua)])
                               for part, ((_, ua, _, _), _) in zip(partial, pairs)]
                    if c == len(chunks) - 1:
                        break
                    fields = dict(a=[a for ((a, *_), _) in pairs], part=partial,
                                  ua=[ua for ((_, ua, _, _), _) in pairs], ub=[ub for (_, (_, ub, _, _)) in pairs])
                    if fixed:
                        fields.update(la=[la for ((_, _, la, _), _) in pairs],
                                      lb=[lb for (_, (_, _, lb, _)) in pairs])
                    if total is not None:
                        fields["total"] = total
                    st = _Stage(m, adv, f"{name}_t{level}s{c}", valid=valid, sb_end=sb_end, cmd_end=cmd_end,
                                **fields)
                    valid, sb_end, cmd_end = st.valid, st.sb_end, st.cmd_end
                    if total is not None:
                        total = st.total
                    pairs = [((st.a[i], st.ua[i], st.la[i] if fixed else None, ma),
                              (None, st.ub[i], st.lb[i] if fixed else None, mb))
                             for i, ((_, _, _, ma), (_, _, _, mb)) in enumerate(pairs)]
                    partial = st.part
                joined = []
                for part, ((a, ua, la, ma), (_, ub, lb, mb)) in zip(partial, pairs):
                    size = (ma + mb) * (unit if fixed else 1)
                    joined.append(((a | part)[:size], ua + ub, None if la is None else la + lb, ma + mb))
                nodes = joined
                if root and total is not None:
                    return valid, nodes[0][0], total, sb_end, cmd_end
            fields = dict(bits=[node[0] for node in nodes], units=[node[1] for node in nodes])
            if fixed:
                fields["length"] = [node[2] for node in nodes]
            if len(nodes) == 2 and lanes >= 4:
                lengths = [node[1] if node[2] is None else node[2] for node in nodes]
                fields["total"] = lengths[0] + lengths[1]
            stage = _Stage(m, adv, f"{name}_t{level}", valid=valid, sb_end=sb_end, cmd_end=cmd_end, **fields)
            valid, sb_end, cmd_end = stage.valid, stage.sb_end, stage.cmd_end
            if "total" in fields:
                total = stage.total
            nodes = [(stage.bits[i], stage.units[i], stage.length[i] if fixed else None, node[3])
                     for i, node in enumerate(nodes)]
            level += 1
            if len(nodes) == 1:
                break
        (bits, units, length, _), = nodes
        return valid, bits, units if length is None else length, sb_end, cmd_end
