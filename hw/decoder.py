"""Streaming Cassandra decoder: format streams in, BF16 lanes out.

See docs/HARDWARE.md for the block diagram, ports, timing and integration, and
docs/FORMAT.md for the bit layout it reads.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format.params import BF16_EXPONENT_BITS, BF16_MANTISSA_BITS, MX_ESCAPE_BITS, STREAM_NAMES, FormatParams

from .bitreader import BitReader
from .common import COMMAND_GROUP_BITS, check_hardware_params, parameter_checks, popcount

__all__ = ["Decoder", "decoder_command", "decoder_command_layout", "decoder_output_layout"]


def decoder_command_layout() -> data.StructLayout:
    """One decode command: ``groups`` groups from the start of each stream's
    current position (superblocks of ``superblock_groups`` counted from the
    command's first group), in ``full`` (1) or draft (0) mode."""
    return data.StructLayout({"groups": COMMAND_GROUP_BITS, "full": 1})


def decoder_command(groups: int, full: bool) -> int:
    """The command payload as an integer (``groups | full << 32``)."""
    if not 0 <= groups < 1 << COMMAND_GROUP_BITS:
        raise ValueError(f"groups={groups} does not fit the command's {COMMAND_GROUP_BITS} bits")
    return groups | int(bool(full)) << COMMAND_GROUP_BITS


def decoder_output_layout(lanes: int) -> data.StructLayout:
    """One output beat: ``lanes`` BF16 patterns (lane ``i`` in bits ``16i..16i+15``)
    and ``last`` (bit ``16 * lanes``), set on the command's final beat."""
    return data.StructLayout({"values": data.ArrayLayout(16, lanes), "last": 1})


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Decoder(wiring.Component):
    """Cassandra decoder, one beat of ``lanes`` BF16 values per clock.

    Parameters
    ----------
    params : FormatParams
        The format (group size, kept mantissa bits, exponent coding, mx block
        size, unary codebook length); fixed at elaboration. The superblock size
        is also taken from it.
    lanes : int
        BF16 values per output beat: a power of two dividing ``group_size``.
    word_bits : int
        Width of every input stream's words (32, 64, 128 or 256).
    unary_window_bits : int, optional
        Unary coding: exponent-stream bits the code parser looks at per clock.
        Default ``max(8 * lanes, L_max + 8)``: a beat of all-kept values runs at
        full rate while its codes average at most 8 bits.

    Ports
    -----
    cmd : In(stream.Signature(decoder_command_layout()))
        ``groups`` (32 bits) to decode and the mode (``full``: 1 exact, 0 draft).
    bitmap, sign_mantissa, exponent, mantissa_low, pruned_raw : In(stream.Signature(word_bits))
        The five streams of docs/FORMAT.md, as words. Draft commands read only
        the first three.
    codebook : In(data.ArrayLayout(8, L_max))
        Unary coding only: exponent of rank ``r`` (the container's codebook).
    out : Out(stream.Signature(decoder_output_layout(lanes)))
        Decoded values in index order; ``last`` marks a command's final beat.
    """

    def __init__(self, params: FormatParams, *, lanes: int = 8, word_bits: int = 64,
                 unary_window_bits: int | None = None):
        with parameter_checks(self):
            self._check(params, lanes, word_bits, unary_window_bits)
        self.params = params
        self.lanes = lanes
        self.word_bits = word_bits
        if unary_window_bits is None:
            unary_window_bits = max(8 * lanes, params.unary_escape_bits)
        self.unary_window_bits = unary_window_bits
        signature = {"cmd": In(stream.Signature(decoder_command_layout()))}
        for name in STREAM_NAMES:
            signature[name] = In(stream.Signature(word_bits))
        if params.exponent_coding == "unary":
            signature["codebook"] = In(data.ArrayLayout(BF16_EXPONENT_BITS, params.unary_max_code_length))
        signature["out"] = Out(stream.Signature(decoder_output_layout(lanes)))
        super().__init__(signature)

    @staticmethod
    def _check(params, lanes, word_bits, unary_window_bits):
        check_hardware_params(params, lanes=lanes, word_bits=word_bits)
        minimum_window = params.unary_escape_bits
        if unary_window_bits is not None and (
                isinstance(unary_window_bits, bool) or not isinstance(unary_window_bits, int)
                or not minimum_window <= unary_window_bits <= 4096):
            raise ValueError(
                f"unary_window_bits={unary_window_bits!r} must be an int in {minimum_window}..4096 "
                f"(at least one escaped code, L_max + 8 bits)")

    # -- widths of what each stream can give per beat ------------------------
    @property
    def _mx_blocks_per_beat(self) -> int:
        return _ceil_div(self.lanes, self.params.mx_block_size)

    def _window_bits(self, name: str) -> int:
        p, lanes = self.params, self.lanes
        if name == "bitmap":
            return lanes
        if name == "sign_mantissa":
            return lanes * p.sign_mantissa_bits
        if name == "exponent":
            return {"raw": 8 * lanes, "unary": self.unary_window_bits,
                    "mx": 8 * self._mx_blocks_per_beat}[p.exponent_coding]
        if name == "mantissa_low":
            return lanes * (MX_ESCAPE_BITS if p.exponent_coding == "mx" else p.truncated_bits)
        if name == "pruned_raw":
            return lanes * 16
        raise AssertionError(name)

    def elaborate(self, platform):
        m = Module()
        p, lanes = self.params, self.lanes
        coding = p.exponent_coding
        mant_keep, trunc = p.mantissa_bits, p.truncated_bits
        beats_per_group = p.group_size // lanes

        readers = {}
        for name in STREAM_NAMES:
            width = self._window_bits(name)
            if width == 0:  # no mantissa_low fields when nothing is truncated
                m.d.comb += getattr(self, name).ready.eq(0)
                continue
            reader = readers[name] = BitReader(word_bits=self.word_bits, window_bits=width)
            m.submodules[f"{name}_reader"] = reader
            wiring.connect(m, wiring.flipped(getattr(self, name)), reader.words)

        # ---- stage 1: commands and the bitmap ------------------------------
        active = Signal()
        full_mode = Signal()
        groups_left = Signal(COMMAND_GROUP_BITS)
        group_in_superblock = Signal(range(max(2, p.superblock_groups)))  # >= 1 bit: no zero-width wires
        beat_in_group = Signal(range(max(2, beats_per_group)))
        last_beat_of_group = beat_in_group == beats_per_group - 1
        last_group_of_command = groups_left == 1
        last_group_of_superblock = (group_in_superblock == p.superblock_groups - 1) | last_group_of_command

        bitmap = readers["bitmap"]
        # stage 1 -> stage 2 register
        a_valid, a_ready = Signal(), Signal()
        a_mask = Signal(lanes)
        a_group_start, a_superblock_end, a_command_end, a_full = Signal(), Signal(), Signal(), Signal()
        a_free = ~a_valid | a_ready
        front_fire = Signal()
        m.d.comb += [
            bitmap.consume.eq(lanes),
            bitmap.align_superblock.eq(last_beat_of_group & last_group_of_superblock),
            bitmap.align_command.eq(last_beat_of_group & last_group_of_command),
            front_fire.eq(active & bitmap.ok & a_free),
            bitmap.advance.eq(front_fire),
        ]
        with m.If(front_fire):
            m.d.sync += [
                a_valid.eq(1),
                a_mask.eq(bitmap.window[:lanes]),
                a_group_start.eq(beat_in_group == 0),
                a_superblock_end.eq(last_beat_of_group & last_group_of_superblock),
                a_command_end.eq(last_beat_of_group & last_group_of_command),
                a_full.eq(full_mode),
            ]
            with m.If(last_beat_of_group):
                m.d.sync += [
                    beat_in_group.eq(0),
                    groups_left.eq(groups_left - 1),
                    group_in_superblock.eq(Mux(last_group_of_superblock, 0, group_in_superblock + 1)),
                ]
                with m.If(last_group_of_command):
                    m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += beat_in_group.eq(beat_in_group + 1)
        with m.Elif(a_ready):
            m.d.sync += a_valid.eq(0)
        m.d.comb += self.cmd.ready.eq(~active | (front_fire & last_beat_of_group & last_group_of_command))
        with m.If(self.cmd.valid & self.cmd.ready & (self.cmd.payload.groups != 0)):
            m.d.sync += [
                active.eq(1),
                full_mode.eq(self.cmd.payload.full),
                groups_left.eq(self.cmd.payload.groups),
                group_in_superblock.eq(0),
                beat_in_group.eq(0),
            ]

        # ---- stage 2 (unary only): the exponent code parser ----------------
        if coding == "unary":
            b_valid, b_ready = Signal(), Signal()
            b_mask = Signal(lanes)
            b_group_start, b_superblock_end, b_command_end, b_full = Signal(), Signal(), Signal(), Signal()
            b_exponents = Signal(8 * lanes)
            self._unary_parser(m, readers["exponent"],
                               a_valid, a_ready, a_mask, a_superblock_end, a_command_end,
                               b_valid, b_ready, b_exponents)
            with m.If(a_valid & a_ready):
                m.d.sync += [b_mask.eq(a_mask), b_group_start.eq(a_group_start),
                             b_superblock_end.eq(a_superblock_end), b_command_end.eq(a_command_end),
                             b_full.eq(a_full)]
            c_valid, c_ready, c_mask = b_valid, b_ready, b_mask
            c_group_start, c_superblock_end, c_command_end, c_full = \
                b_group_start, b_superblock_end, b_command_end, b_full
        else:
            c_valid, c_ready, c_mask = a_valid, a_ready, a_mask
            c_group_start, c_superblock_end, c_command_end, c_full = \
                a_group_start, a_superblock_end, a_command_end, a_full
            b_exponents = None

        # ---- stage 3: fields -> BF16 ---------------------------------------
        kept = [c_mask[j] for j in range(lanes)]
        kept_before = [popcount(kept[:j]) for j in range(lanes + 1)]  # index among the beat's kept values
        kept_count = kept_before[lanes]
        values = [Signal(16, name=f"value{j}") for j in range(lanes)]
        sign_mantissa = readers["sign_mantissa"]
        smw = p.sign_mantissa_bits
        streams_ok = [sign_mantissa.ok]
        m.d.comb += sign_mantissa.consume.eq(kept_count * smw)
        verification_ok = []

        def field(reader, index, width):
            return reader.window.word_select(index, width)

        if coding in ("raw", "unary"):
            if coding == "raw":
                exponent = readers["exponent"]
                m.d.comb += exponent.consume.eq(kept_count * 8)
                streams_ok.append(exponent.ok)
            low_reader = readers.get("mantissa_low")
            if low_reader is not None:
                m.d.comb += low_reader.consume.eq(kept_count * trunc)
                verification_ok.append(low_reader.ok)
            for j in range(lanes):
                sm = field(sign_mantissa, kept_before[j], smw)
                if coding == "raw":
                    exp = field(readers["exponent"], kept_before[j], 8)
                else:
                    exp = b_exponents.word_select(kept_before[j], 8)
                high = sm[:mant_keep] if mant_keep else Const(0, 0)
                sign = sm[mant_keep]
                low = field(low_reader, kept_before[j], trunc) if low_reader is not None else Const(0, 0)
                draft = Cat(Const(0, trunc), high, exp, sign)
                exact = Cat(low, high, exp, sign)
                m.d.comb += values[j].eq(Mux(c_full, exact, draft))
        else:
            self._mx_lanes(m, readers, c_valid, c_ready, c_group_start, c_full, kept, kept_before,
                           values, streams_ok, verification_ok)

        pruned = readers["pruned_raw"]
        m.d.comb += pruned.consume.eq((lanes - kept_count) * 16)
        verification_ok.append(pruned.ok)
        full_values = []
        for j in range(lanes):
            pruned_index = Signal(range(lanes), name=f"pruned_index{j}")
            m.d.comb += pruned_index.eq(j - kept_before[j])
            raw = field(pruned, pruned_index, 16)
            full_values.append(Mux(kept[j], values[j], Mux(c_full, raw, 0)))

        out_free = ~self.out.valid | self.out.ready
        all_ok = Signal()
        m.d.comb += all_ok.eq(Cat(*streams_ok).all() & (~c_full | Cat(*verification_ok).all()))
        fire = Signal()
        m.d.comb += [
            fire.eq(c_valid & out_free & all_ok),
            c_ready.eq(fire),
        ]
        speculation_readers = [readers[name] for name in ("sign_mantissa", "exponent") if name in readers
                               and not (name == "exponent" and coding == "unary")]
        verification_readers = [readers[name] for name in ("mantissa_low", "pruned_raw") if name in readers]
        for reader in speculation_readers + verification_readers:
            m.d.comb += [
                reader.align_superblock.eq(c_superblock_end),
                reader.align_command.eq(c_command_end),
            ]
        for reader in speculation_readers:
            m.d.comb += reader.advance.eq(fire)
        for reader in verification_readers:
            m.d.comb += reader.advance.eq(fire & c_full)
        with m.If(fire):
            m.d.sync += [
                self.out.valid.eq(1),
                self.out.payload.values.as_value().eq(Cat(*full_values)),
                self.out.payload.last.eq(c_command_end),
            ]
        with m.Elif(self.out.ready):
            m.d.sync += self.out.valid.eq(0)
        return m

    # ------------------------------------------------------------------------
    def _unary_parser(self, m, reader, a_valid, a_ready, a_mask, a_superblock_end, a_command_end,
                      b_valid, b_ready, b_exponents):
        """Decode the head beat's unary codes, up to ``lanes`` per clock within
        ``unary_window_bits`` stream bits; a beat whose codes do not fit takes more
        clocks (its decoded exponents wait in ``held``)."""
        p, lanes = self.params, self.lanes
        max_code = p.unary_max_code_length
        window_bits = self.unary_window_bits
        level = reader.level
        window = reader.window
        needed = popcount(a_mask[j] for j in range(lanes))
        done = Signal(range(lanes + 1))  # codes of the head beat decoded in earlier clocks
        held = Signal(8 * lanes)
        remaining = Signal(range(lanes + 1))
        m.d.comb += remaining.eq(needed - done)

        starts = [Const(0, range(window_bits + 1))]
        exps = []
        fits = []
        for i in range(lanes):
            start = starts[i]
            bits = Signal(max_code + 8, name=f"code{i}_bits")
            m.d.comb += bits.eq(window.bit_select(start, max_code + 8))
            zeros = Signal(range(max_code + 1), name=f"code{i}_zeros")
            m.d.comb += zeros.eq(max_code)
            for z in reversed(range(max_code)):
                with m.If(bits[z]):
                    m.d.comb += zeros.eq(z)
            escaped = zeros == max_code
            length = Mux(escaped, max_code + 8, zeros + 1)
            exponent = Signal(8, name=f"code{i}_exponent")
            m.d.comb += exponent.eq(Mux(escaped, bits[max_code:max_code + 8],
                                         self.codebook.as_value().word_select(zeros[:max(1, (max_code - 1).bit_length())], 8)
                                         if max_code > 1 else self.codebook[0]))
            end = Signal(range(window_bits + max_code + 9), name=f"code{i}_end")
            m.d.comb += end.eq(start + length)
            fit = Signal(name=f"code{i}_fits")
            m.d.comb += fit.eq((end <= window_bits) & (end <= level) & (i < remaining) & (fits[-1] if fits else 1))
            fits.append(fit)
            next_start = Signal(range(window_bits + 1), name=f"code{i + 1}_start")
            m.d.comb += next_start.eq(Mux(fit, end, start))
            starts.append(next_start)
            exps.append(exponent)
        decoded = popcount(fits)
        used = starts[lanes]

        merged = Signal(8 * lanes)
        for j in range(lanes):
            slot = merged.word_select(j, 8)
            m.d.comb += slot.eq(held.word_select(j, 8))
            for i in range(lanes):
                with m.If((done + i == j) & fits[i]):
                    m.d.comb += slot.eq(exps[i])

        b_free = ~b_valid | b_ready
        complete = Signal()
        m.d.comb += [
            reader.consume.eq(used),
            reader.align_superblock.eq(a_superblock_end),
            reader.align_command.eq(a_command_end),
            complete.eq(a_valid & (decoded == remaining) & reader.ok & b_free),
            reader.advance.eq(complete | (a_valid & (decoded != 0))),
            # the padding after the beat's last code goes only when the beat completes
            reader.hold_padding.eq(~complete),
            a_ready.eq(complete),
        ]
        with m.If(complete):
            m.d.sync += [done.eq(0), b_valid.eq(1), b_exponents.eq(merged)]
        with m.Else():
            with m.If(a_valid):
                m.d.sync += [done.eq(done + decoded), held.eq(merged)]
            with m.If(b_ready):
                m.d.sync += b_valid.eq(0)

    # ------------------------------------------------------------------------
    def _mx_lanes(self, m, readers, c_valid, c_ready, c_group_start, c_full, kept, kept_before,
                  values, streams_ok, verification_ok):
        """mx (Cassandra-2): shared exponents per block of ``mx_block_size`` kept
        values of a group; exact full decode from the dropped bits (FORMAT.md 7)."""
        p, lanes = self.params, self.lanes
        mant_keep, trunc = p.mantissa_bits, p.truncated_bits
        block = p.mx_block_size
        smw = p.sign_mantissa_bits
        sign_mantissa, exponent = readers["sign_mantissa"], readers["exponent"]
        low_reader = readers["mantissa_low"]

        kept_in_group = Signal(range(p.group_size + 1))  # kept values of the group in earlier beats
        current_exponent = Signal(8)  # shared exponent of the block in progress
        base = Mux(c_group_start, 0, kept_in_group)
        starts = []
        for j in range(lanes):
            rank = base + kept_before[j]
            starts.append(kept[j] & ((rank % block) == 0))
        starts_upto = [popcount(starts[:j + 1]) for j in range(lanes)]
        block_count = starts_upto[-1]
        m.d.comb += exponent.consume.eq(block_count * 8)
        streams_ok.append(exponent.ok)

        widths = []
        lows = []
        draft_values = []
        for j in range(lanes):
            shared = Signal(8, name=f"mx{j}_shared")
            m.d.comb += shared.eq(Mux(starts_upto[j] == 0, current_exponent,
                                      exponent.window.word_select((starts_upto[j] - 1)[:max(1, (self._mx_blocks_per_beat - 1).bit_length())], 8)
                                      if self._mx_blocks_per_beat > 1 else exponent.window[:8]))
            sm = sign_mantissa.window.word_select(kept_before[j], smw)
            aligned = Signal(mant_keep + 1, name=f"mx{j}_aligned")
            sign = Signal(name=f"mx{j}_sign")
            m.d.comb += [aligned.eq(sm[:mant_keep + 1]), sign.eq(sm[mant_keep + 1])]
            top = Signal(range(mant_keep + 1), name=f"mx{j}_top")  # msb(A)
            for q in range(mant_keep + 1):
                with m.If(aligned[q]):
                    m.d.comb += top.eq(q)
            # e' = E_s - m + q, as a signed value
            recovered = Signal(range(-mant_keep, 256 + 1), name=f"mx{j}_exponent")
            m.d.comb += recovered.eq(shared - mant_keep + top)
            normal = recovered >= 1
            nonzero = aligned != 0
            dropped = Signal(range(16), name=f"mx{j}_dropped")  # D
            m.d.comb += dropped.eq(Mux(normal, (mant_keep - top) + trunc, shared - 1 + trunc))
            width = Signal(range(MX_ESCAPE_BITS + 1), name=f"mx{j}_width")
            m.d.comb += width.eq(Mux(kept[j], Mux(nonzero, dropped, MX_ESCAPE_BITS), 0))
            widths.append(width)
            # draft value (FORMAT.md section 8)
            draft = Signal(16, name=f"mx{j}_draft")
            normal_mantissa = Signal(BF16_MANTISSA_BITS, name=f"mx{j}_normal_mantissa")
            m.d.comb += normal_mantissa.eq((aligned << dropped)[:BF16_MANTISSA_BITS])  # D = 7 - q: hidden bit shifted out
            with m.If(~nonzero):
                m.d.comb += draft.eq(sign << 15)
            with m.Elif(normal):
                m.d.comb += draft.eq(Cat(normal_mantissa, recovered[:8], sign))
            with m.Else():
                m.d.comb += draft.eq(Cat((aligned << dropped)[:15], sign))  # D = E_s - 1 + t here
            draft_values.append(draft)
            lows.append((j, width, dropped, aligned, recovered, normal, nonzero, sign))

        offsets = [Const(0, 1)]
        for j in range(lanes):
            offsets.append(offsets[-1] + widths[j])
        m.d.comb += low_reader.consume.eq(offsets[lanes])
        verification_ok.append(low_reader.ok)
        for j, width, dropped, aligned, recovered, normal, nonzero, sign in lows:
            raw = Signal(MX_ESCAPE_BITS, name=f"mx{j}_low")
            m.d.comb += raw.eq(low_reader.window.bit_select(offsets[j], MX_ESCAPE_BITS))
            low = Signal(MX_ESCAPE_BITS, name=f"mx{j}_low_masked")
            m.d.comb += low.eq(raw & ((1 << width) - 1))
            exact = Signal(16, name=f"mx{j}_exact")
            mantissa = ((aligned << dropped) | low)[:BF16_MANTISSA_BITS]
            with m.If(nonzero):
                m.d.comb += exact.eq(Cat(mantissa, Mux(normal, recovered[:8], 0), sign))
            with m.Else():
                m.d.comb += exact.eq(Cat(low, sign))
            m.d.comb += values[j].eq(Mux(c_full, exact, draft_values[j]))

        fire = c_valid & c_ready
        with m.If(fire):
            m.d.sync += kept_in_group.eq(base + kept_before[lanes])
            with m.If(block_count != 0):
                m.d.sync += current_exponent.eq(
                    exponent.window.word_select((block_count - 1)[:max(1, (self._mx_blocks_per_beat - 1).bit_length())], 8)
                    if self._mx_blocks_per_beat > 1 else exponent.window[:8])
