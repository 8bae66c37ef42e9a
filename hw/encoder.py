"""Streaming Cassandra encoder (Amaranth 0.5), bit-exact with ``golden.format.codec.encode``.

The encoder takes BF16 values ``lanes`` per beat, selects the ``keep`` values of
largest magnitude in every group of ``G`` values (the tie rule of
``golden.format.select.magnitude_topk_mask``) and writes the five streams of
docs/FORMAT.md as ``word_bits``-bit little-endian words. See :class:`Encoder`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format.params import (
    BF16_BITS,
    BF16_EXPONENT_BITS,
    STREAM_ALIGN_BITS,
    STREAM_NAMES,
    FormatParams,
)

from .common import BF16_LAYOUT, COMMAND_GROUP_BITS, check_hardware_params, parameter_checks, popcount

__all__ = ["Encoder", "ENCODER_EXPONENT_CODINGS"]

#: Exponent codings the encoder produces (mx is decode-only).
ENCODER_EXPONENT_CODINGS = ("raw", "unary")

#: BF16 magnitude: the 15 bits below the sign, compared as an unsigned integer.
_MAGNITUDE_BITS = BF16_BITS - 1


class _BitPacker(Elaboratable):
    """Appends up to ``max_bits`` bits per cycle and emits ``word_bits``-bit words.

    Parameters
    ----------
    max_bits : int
        Largest number of payload bits appended by one beat (``>= 1``).
    word_bits : int
        Width of the output words.

    Attributes
    ----------
    data : Signal(max_bits)
        Bits to append, bit 0 first; bits at and above ``length`` must be zero.
    length : Signal
        Number of bits of ``data`` to append.
    sb_end, cmd_end : Signal
        After appending, pad with zeros to the next 64-bit boundary of the stream
        (``sb_end``), or to the next ``max(64, word_bits)`` boundary (``cmd_end``,
        the end of a command, after which the stream position restarts at 0).
    append : Signal
        Strobe: append this cycle (only while ``can_accept``).
    can_accept : Signal
        A beat may be appended (depends on registers only).
    out : stream.Signature(word_bits)
        The words.

    Notes
    -----
    ``buf`` holds the ``cnt`` bits not yet emitted (bit 0 = oldest); every bit at
    and above ``cnt`` is zero, so padding only adds to ``cnt``. A beat is accepted
    while ``cnt <= T`` with ``T = word_bits + max_bits + pad_max - 1``; the bits
    then land below ``T + max_bits`` (the physical width of ``buf``); padding may
    make ``cnt`` larger, the bits above ``buf`` being implicit zeros. With every
    beat adding at most ``word_bits`` bits (padding apart) ``cnt`` stays at or
    below ``T`` and the packer never stalls its input.
    """

    def __init__(self, max_bits: int, word_bits: int):
        self.max_bits = max_bits
        self.word_bits = word_bits
        self.period = max(STREAM_ALIGN_BITS, word_bits)
        pad_max = self.period - 1
        self.threshold = word_bits + max_bits + pad_max - 1
        self.buf_bits = self.threshold + max_bits

        self.data = Signal(max_bits)
        self.length = Signal(range(max_bits + 1))
        self.sb_end = Signal()
        self.cmd_end = Signal()
        self.append = Signal()
        self.can_accept = Signal()
        self.out = stream.Signature(word_bits).create()

    def elaborate(self, platform):
        m = Module()
        W = self.word_bits
        P = self.period
        pbits = P.bit_length() - 1

        buf = Signal(self.buf_bits)
        cnt = Signal(range(self.threshold + self.max_bits + P))
        pos = Signal(pbits)  # stream position in this command, modulo P

        m.d.comb += [
            self.out.valid.eq(cnt >= W),
            self.out.payload.eq(buf[:W]),
            self.can_accept.eq(cnt <= self.threshold),
        ]
        emit = Signal()
        base = Signal(self.buf_bits)
        c0 = Signal.like(cnt)
        m.d.comb += [
            emit.eq(self.out.valid & self.out.ready),
            base.eq(Mux(emit, buf >> W, buf)),
            c0.eq(Mux(emit, cnt - W, cnt)),
        ]

        p1 = Signal(pbits)
        pad = Signal(pbits)
        m.d.comb += p1.eq(pos + self.length)
        with m.If(self.cmd_end):
            m.d.comb += pad.eq(-p1)
        with m.Elif(self.sb_end):
            m.d.comb += pad.eq((-p1)[:6])

        with m.If(self.append):
            shifted = (self.data << c0)[:self.buf_bits]
            m.d.sync += [
                buf.eq(base | shifted),
                cnt.eq(c0 + self.length + pad),
                pos.eq(Mux(self.cmd_end, 0, p1 + pad)),
            ]
        with m.Else():
            m.d.sync += [buf.eq(base), cnt.eq(c0)]
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
        Values kept per group (static configuration input).
    codebook : In(data.ArrayLayout(8, L)), unary only
        Entry r is the exponent coded by rank r (entries distinct).
    values : In(stream.Signature(data.ArrayLayout(16, lanes)))
        BF16 input; lane i of beat b of a group is value ``b * lanes + i`` of the
        group. Accepted only while a command is running.
    bitmap, sign_mantissa, exponent, mantissa_low, pruned_raw : Out(stream.Signature(word_bits))
        The streams; stream bit i is bit ``i % word_bits`` of word ``i // word_bits``.
        With m = 7 the ``mantissa_low`` stream is empty and never valid.

    Notes
    -----
    **Architecture.** Four steps, each a register stage:

    1. *Group buffer* (double-buffered, 2 x G x 16 bit registers): beats are
       written into the bank being filled; ``values.ready`` depends on registers
       only (a command is running and the bank is free).
    2. *Selection*: a full bank is read one beat per cycle. For the beat's
       ``lanes`` values the rank against all G stored values is computed with
       ``lanes * G`` 15-bit comparators (value i beats j iff its magnitude is
       larger, or equal and ``i < j``) and a popcount per lane; value j is kept iff
       ``rank_j < keep``. This ranks a beat in the cycle it leaves the buffer
       instead of accumulating ranks as beats arrive (which would need G rank
       counters updated every cycle and the same ``lanes * G`` comparators): the
       comparator count is the same and the state is only the values. While one
       bank is selected (G/lanes cycles) the other is filled (G/lanes cycles),
       so one beat per clock is accepted in steady state.
    3. *Field split*: the registered beat (values, mask, end-of-superblock and
       end-of-command flags) is cut combinationally into each stream's bits:
       kept values' fields are compacted with offsets = prefix sums of the field
       widths of the kept (or, for ``pruned_raw``, pruned) lanes before them.
    4. *Bit packers*, one per stream: append the beat's bits at the fill level,
       emit a word when at least ``word_bits`` bits are buffered, pad with zeros
       at superblock and command ends (docs/FORMAT.md section 4). All packers take
       a beat together, when each has room.

    **Throughput.** One input beat per clock while every stream's bits per beat
    (padding apart) are at most ``word_bits``: e.g. ``lanes = 4`` with
    ``word_bits = 64`` (``pruned_raw`` worst case 4 x 16 = 64 bits, unary
    exponents with L <= 8 at most 4 x 16 bits), or ``lanes = 8`` with
    ``word_bits = 128``. Otherwise the packer of the busiest stream applies
    back-pressure and the sustained rate is ``word_bits / bits-per-beat`` of that
    stream (averaged over the data: pruned_raw carries ``16 * lanes * (1 - keep/G)``
    bits per beat on average). Superblock padding adds at most 63 bits per stream
    every S groups. Measured in tests/hw/test_encoder.py: 1.0 beat per clock.

    **Latency.** With outputs ready, the first word depending on a group is
    valid ``G / lanes + 2`` cycles after the group's first beat is accepted
    (G/lanes cycles to receive the group, one cycle to select the first beat,
    one cycle in the packer); measured in tests/hw/test_encoder.py. A word is
    emitted only when full, i.e. at the latest at the end of the superblock.

    **Reset.** The ``sync`` domain's reset returns every register to idle (no
    command, empty banks and packers); the next command encodes from scratch.
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
        pending = Signal(COMMAND_GROUP_BITS)
        pending_valid = Signal()
        sb_count = Signal(range(max(2, S)))  # >= 1 bit: no zero-width wires  # group index within the superblock

        # ---- group buffer (two banks) --------------------------------------
        banks = [Signal(G * BF16_BITS, name=f"bank{i}") for i in range(2)]
        full = [Signal(name=f"full{i}") for i in range(2)]
        bank_sb_end = [Signal(name=f"sb_end{i}") for i in range(2)]
        bank_cmd_end = [Signal(name=f"cmd_end{i}") for i in range(2)]
        wbank = Signal()
        wbeat = Signal(range(max(2, n)))
        rbank = Signal()
        rbeat = Signal(range(max(2, n)))

        # ---- command bookkeeping and input --------------------------------
        in_ok = Signal()
        m.d.comb += [
            self.cmd.ready.eq(~pending_valid),
            in_ok.eq((remaining != 0) & ~Mux(wbank, full[1], full[0])),
            self.values.ready.eq(in_ok),
        ]
        take = Signal()
        group_done = Signal()
        last_group = Signal()
        m.d.comb += [
            take.eq(self.values.valid & self.values.ready),
            group_done.eq(take & (wbeat == n - 1)),
            last_group.eq(remaining == 1),
        ]
        with m.If(take):
            payload = self.values.payload.as_value()
            for b in range(2):
                with m.If(wbank == b):
                    if n == 1:
                        m.d.sync += banks[b].eq(payload)
                    else:
                        m.d.sync += banks[b].word_select(wbeat, beat_bits).eq(payload)
            with m.If(group_done):
                m.d.sync += wbeat.eq(0)
                m.d.sync += wbank.eq(~wbank)
                for b in range(2):
                    with m.If(wbank == b):
                        m.d.sync += [
                            full[b].eq(1),
                            bank_sb_end[b].eq((sb_count == S - 1) | last_group),
                            bank_cmd_end[b].eq(last_group),
                        ]
                m.d.sync += remaining.eq(remaining - 1)
                with m.If((sb_count == S - 1) | last_group):
                    m.d.sync += sb_count.eq(0)
                with m.Else():
                    m.d.sync += sb_count.eq(sb_count + 1)
            with m.Else():
                m.d.sync += wbeat.eq(wbeat + 1)

        with m.If(pending_valid & ((remaining == 0) | (group_done & last_group))):
            m.d.sync += [remaining.eq(pending), pending_valid.eq(0), sb_count.eq(0)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [pending.eq(self.cmd.payload), pending_valid.eq(1)]

        # ---- selection: rank one beat against the whole group -------------
        rvals = Signal(G * BF16_BITS)
        rfull = Signal()
        beat_vals = Signal(beat_bits)
        m.d.comb += [
            rvals.eq(Mux(rbank, banks[1], banks[0])),
            rfull.eq(Mux(rbank, full[1], full[0])),
        ]
        if n == 1:
            m.d.comb += beat_vals.eq(rvals)
        else:
            m.d.comb += beat_vals.eq(rvals.word_select(rbeat, beat_bits))

        mags = [rvals[BF16_BITS * i:BF16_BITS * i + _MAGNITUDE_BITS] for i in range(G)]
        # rbeat > b and rbeat >= b, per beat b of the group
        after = [Signal(name=f"after{b}") for b in range(n)]
        from_ = [Signal(name=f"from{b}") for b in range(n)]
        for b in range(n):
            # constant where the comparison is (no always-true/false comparators in the Verilog)
            m.d.comb += [after[b].eq(rbeat > b if b < n - 1 else 0), from_[b].eq(rbeat >= b if b > 0 else 1)]
        mask = Signal(lanes)
        for lane in range(lanes):
            mine = Signal(_MAGNITUDE_BITS, name=f"mag{lane}")
            m.d.comb += mine.eq(beat_vals[BF16_BITS * lane:BF16_BITS * lane + _MAGNITUDE_BITS])
            beaters = []
            for i in range(G):
                ib, il = divmod(i, lanes)
                # index i < index j (= rbeat * lanes + lane)
                before = from_[ib] if il < lane else after[ib]
                beaters.append((mags[i] > mine) | ((mags[i] == mine) & before))
            rank = Signal(range(G + 1), name=f"rank{lane}")
            m.d.comb += [rank.eq(popcount(beaters)), mask[lane].eq(rank < self.keep)]

        # ---- stage register: one beat with its mask -----------------------
        s_valid = Signal()
        s_vals = Signal(data.ArrayLayout(BF16_LAYOUT, lanes))
        s_mask = Signal(lanes)
        s_sb_end = Signal()
        s_cmd_end = Signal()
        s_consume = Signal()
        advance = Signal()
        m.d.comb += advance.eq(rfull & (~s_valid | s_consume))
        last_beat = rbeat == n - 1
        with m.If(advance):
            m.d.sync += [
                s_valid.eq(1),
                s_vals.eq(beat_vals),
                s_mask.eq(mask),
                s_sb_end.eq(last_beat & Mux(rbank, bank_sb_end[1], bank_sb_end[0])),
                s_cmd_end.eq(last_beat & Mux(rbank, bank_cmd_end[1], bank_cmd_end[0])),
            ]
            with m.If(last_beat):
                m.d.sync += [rbeat.eq(0), rbank.eq(~rbank)]
                for b in range(2):
                    with m.If(rbank == b):
                        m.d.sync += full[b].eq(0)
            with m.Else():
                m.d.sync += rbeat.eq(rbeat + 1)
        with m.Elif(s_consume):
            m.d.sync += s_valid.eq(0)

        # ---- field split ----------------------------------------------------
        kept = [s_mask[lane] for lane in range(lanes)]
        pruned = [~s_mask[lane] for lane in range(lanes)]
        v = [s_vals[lane] for lane in range(lanes)]
        mant_hi = [v[lane].mantissa[t:] for lane in range(lanes)]
        fields = {
            "bitmap": ([s_mask[lane] for lane in range(lanes)], 1, None),
            "sign_mantissa": ([Cat(mant_hi[lane], v[lane].sign) for lane in range(lanes)],
                              p.sign_mantissa_bits, kept),
            "mantissa_low": ([v[lane].mantissa[:t] for lane in range(lanes)], t, kept),
            "pruned_raw": ([v[lane].as_value() for lane in range(lanes)], BF16_BITS, pruned),
        }
        if p.exponent_coding == "raw":
            fields["exponent"] = ([v[lane].exponent for lane in range(lanes)], BF16_EXPONENT_BITS, kept)
        else:
            codes, widths = [], []
            for lane in range(lanes):
                e = v[lane].exponent
                hits = [self.codebook[r] == e for r in range(L)]
                code = Signal(L + BF16_EXPONENT_BITS, name=f"ucode{lane}")
                width = Signal(range(L + BF16_EXPONENT_BITS + 1), name=f"uwidth{lane}")
                with m.If(Cat(*hits).any()):
                    # the lowest matching rank r: code 1 << r, width r + 1 (a codebook
                    # with repeated entries still gives one valid code)
                    for r in reversed(range(L)):
                        with m.If(hits[r]):
                            m.d.comb += [code.eq(1 << r), width.eq(r + 1)]
                with m.Else():
                    m.d.comb += [code.eq(e << L), width.eq(L + BF16_EXPONENT_BITS)]
                codes.append(code)
                widths.append(width)
            fields["exponent"] = (codes, widths, kept)

        packers = {}
        can_accept = []
        for name in STREAM_NAMES:
            port = getattr(self, name)
            values_, width, select = fields[name]
            max_width = width if isinstance(width, int) else L + BF16_EXPONENT_BITS
            max_bits = max_width * lanes
            if max_bits == 0:  # mantissa_low with m = 7: no fields, never valid
                m.d.comb += [port.valid.eq(0), port.payload.eq(0)]
                continue
            packer = _BitPacker(max_bits, self.word_bits)
            m.submodules[f"pack_{name}"] = packer
            packers[name] = packer
            can_accept.append(packer.can_accept)
            m.d.comb += [
                port.valid.eq(packer.out.valid),
                port.payload.eq(packer.out.payload),
                packer.out.ready.eq(port.ready),
                packer.sb_end.eq(s_sb_end),
                packer.cmd_end.eq(s_cmd_end),
                packer.append.eq(s_consume),
            ]
            # compaction: each selected lane's field at the prefix sum of the
            # widths of the selected lanes before it
            offset = Const(0, 1)
            chunk = []
            for lane in range(lanes):
                w = Const(width, range(width + 1)) if isinstance(width, int) else width[lane]
                if select is None:
                    w_sel = w
                else:
                    w_sel = Mux(select[lane], w, 0)
                off = Signal(range(max_bits + 1), name=f"{name}_off{lane}")
                m.d.comb += off.eq(offset)
                if select is None:
                    chunk.append((values_[lane] << off))
                else:
                    chunk.append(Mux(select[lane], values_[lane] << off, 0))
                offset = off + w_sel
            acc = chunk[0]
            for c in chunk[1:]:
                acc = acc | c
            m.d.comb += [packer.data.eq(acc[:max_bits]), packer.length.eq(offset)]

        all_accept = Signal()
        m.d.comb += [
            all_accept.eq(Cat(*can_accept).all()),
            s_consume.eq(s_valid & all_accept),
        ]
        return m

