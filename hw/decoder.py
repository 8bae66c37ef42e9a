"""Streaming Cassandra decoder: format streams in, BF16 lanes out, one beat per clock.

See docs/HARDWARE.md for the block diagram, ports, timing and integration, and
docs/FORMAT.md for the bit layout it reads.

Microarchitecture (every stream is decoupled from the others by queues; the only
place streams meet is a join of registered ``valid`` flags)::

    cmd ─► skid ─► sequencer: groups, superblocks, beats of the command
                      │ per beat: bitmap descriptor, control (mode, ends)
                      ▼
    bitmap ───────► FieldReader ─► fan-out: kept count, prefix counts, mx blocks
                                    │ per beat, one descriptor to each stream
         ┌──────────────┬───────────┼──────────────┬──────────────┐
         ▼              ▼           ▼              ▼              ▼
    sign_mantissa    exponent    (unary:        mantissa_low   pruned_raw
    FieldReader      FieldReader  UnaryDecoder)  FieldReader    FieldReader
         │              │           │              │              │
         └──────────────┴─────► join ◄─────────────┴──────────────┘
                                 │ lanes: fields through spreading networks, BF16 built
                                 ▼
                               skid ─► out

In mx coding the ``mantissa_low`` field widths depend on the decoded values, so the
join is in two steps: the speculation streams first (draft values and widths), then
``mantissa_low`` and ``pruned_raw`` through a queue of pending beats.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.format.params import (
    BF16_EXPONENT_BITS,
    BF16_MANTISSA_BITS,
    MX_ESCAPE_BITS,
    STREAM_NAMES,
    FormatParams,
    check_draft_rounding,
)

from .common import (
    COMMAND_GROUP_BITS,
    check_hardware_params,
    parameter_checks,
    popcount,
    prefix_tree,
    spread,
    spread_controls,
)
from .field_reader import FieldReader
from .pipe import Queue, SkidBuffer, flag_fifo
from .unary import UnaryDecoder

__all__ = ["Decoder", "decoder_command", "decoder_command_layout", "decoder_output_layout", "decoder_status_layout"]


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


def decoder_status_layout() -> data.StructLayout:
    """The decoder's ``status`` output (registered): ``busy`` (a command is accepted
    and its last beat not yet delivered) and ``waiting`` (bit ``i`` for stream
    ``STREAM_NAMES[i]``: the decoder waits for words that stream has not delivered;
    a bit that stays set while ``busy`` names a stream that ran out)."""
    return data.StructLayout({"busy": 1, "waiting": len(STREAM_NAMES)})


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _prefix_counts(bits: list) -> list:
    """``[popcount(bits[:j]) for j in 0..len(bits)]``."""
    return [popcount(bits[:j]) for j in range(len(bits) + 1)]


class Decoder(wiring.Component):
    """Cassandra decoder, one beat of ``lanes`` BF16 values per clock.

    Parameters
    ----------
    params : FormatParams
        The format (group size, kept mantissa bits, exponent coding, mx block
        size, unary codebook length); fixed at elaboration. The superblock size
        is also taken from it.
    lanes : int
        BF16 values per output beat: 1, 2, 4, 8 or 16, at most ``group_size``.
    word_bits : int
        Width of every input stream's words (32, 64, 128 or 256).
    unary_window_bits : int, optional
        Unary coding: exponent-stream bits the code parser looks at per clock, a
        multiple of 64. Default ``max(64, 8 * lanes)`` rounded up to 64: a beat of
        all-kept values runs at full rate while its codes average at most 8 bits.
    draft_rounding : {"truncate", "midpoint"}
        Raw and unary coding: how draft commands fill a kept value's truncated
        mantissa bits (docs/FORMAT.md, section 8): zeros, or the highest of them set
        in a normal value (one constant bit behind a mux). Full commands are exact
        either way.

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
    status : Out(decoder_status_layout())
        ``busy``, and per stream ``waiting``: the decoder needs words the stream has
        not delivered (for a few clocks in normal flow; held while ``busy`` and no
        output moves, it names a stream that ran out). Registered.
    """

    def __init__(self, params: FormatParams, *, lanes: int = 8, word_bits: int = 64,
                 unary_window_bits: int | None = None, draft_rounding: str = "truncate"):
        with parameter_checks(self):
            self._check(params, lanes, word_bits, unary_window_bits)
            check_draft_rounding(draft_rounding, params.exponent_coding)
        self.draft_rounding = draft_rounding
        self.params = params
        self.lanes = lanes
        self.word_bits = word_bits
        if unary_window_bits is None:
            unary_window_bits = _ceil_div(max(64, 8 * lanes), 64) * 64
        self.unary_window_bits = unary_window_bits
        signature = {"cmd": In(stream.Signature(decoder_command_layout()))}
        for name in STREAM_NAMES:
            signature[name] = In(stream.Signature(word_bits))
        if params.exponent_coding == "unary":
            signature["codebook"] = In(data.ArrayLayout(BF16_EXPONENT_BITS, params.unary_max_code_length))
        signature["out"] = Out(stream.Signature(decoder_output_layout(lanes)))
        signature["status"] = Out(decoder_status_layout())
        super().__init__(signature)

    @staticmethod
    def _check(params, lanes, word_bits, unary_window_bits):
        check_hardware_params(params, lanes=lanes, word_bits=word_bits)
        if unary_window_bits is not None and (
                isinstance(unary_window_bits, bool) or not isinstance(unary_window_bits, int)
                or not 64 <= unary_window_bits <= 1024 or unary_window_bits % 64):
            raise ValueError(
                f"unary_window_bits={unary_window_bits!r} must be a multiple of 64 in 64..1024")

    # -- widths of what each stream gives per beat ------------------------------
    @property
    def _mx_blocks_per_beat(self) -> int:
        return _ceil_div(self.lanes, self.params.mx_block_size)

    def _max_bits(self, name: str) -> int:
        p, lanes = self.params, self.lanes
        return {
            "bitmap": lanes,
            "sign_mantissa": lanes * p.sign_mantissa_bits,
            "exponent": {"raw": 8 * lanes, "unary": 8 * lanes, "mx": 8 * self._mx_blocks_per_beat}[p.exponent_coding],
            "mantissa_low": lanes * (MX_ESCAPE_BITS if p.exponent_coding == "mx" else p.truncated_bits),
            "pruned_raw": lanes * 16,
        }[name]

    def elaborate(self, platform):
        m = Module()
        p, lanes = self.params, self.lanes
        coding = p.exponent_coding
        beats_per_group = p.group_size // lanes

        # ---- stream readers --------------------------------------------------------
        readers = {}
        for name in STREAM_NAMES:
            if name == "exponent" and coding == "unary":
                continue
            max_bits = self._max_bits(name)
            if max_bits == 0:  # no mantissa_low fields when nothing is truncated
                m.d.comb += getattr(self, name).ready.eq(0)
                continue
            later = coding == "mx" and name in ("mantissa_low", "pruned_raw")  # read at the second join
            reader = readers[name] = FieldReader(word_bits=self.word_bits, max_bits=max_bits,
                                                 out_depth=8 if later else 2, desc_depth=8 if later else 4)
            m.submodules[f"{name}_reader"] = reader
            wiring.connect(m, wiring.flipped(getattr(self, name)), reader.words)
        if coding == "unary":
            unary = UnaryDecoder(p, lanes=lanes, word_bits=self.word_bits, window_bits=self.unary_window_bits)
            m.submodules.unary = unary
            wiring.connect(m, wiring.flipped(self.exponent), unary.words)
            m.d.comb += unary.codebook.as_value().eq(self.codebook.as_value())
            exponents = unary.out
        else:
            exponents = readers["exponent"].out

        # ---- sequencer: the command's beats --------------------------------------
        m.submodules.cmd_skid = cmd_skid = SkidBuffer(decoder_command_layout())
        wiring.connect(m, wiring.flipped(self.cmd), cmd_skid.i)
        control_layout = data.StructLayout({"full": 1, "group_start": 1, "superblock_end": 1, "command_end": 1})
        m.submodules.control_queue = control_queue = Queue(control_layout, depth=8)
        bitmap = readers["bitmap"]

        active = Signal()
        full_mode = Signal()
        groups_left = Signal(COMMAND_GROUP_BITS)
        last_group = Signal()  # groups_left == 1, registered
        group_in_superblock = Signal(range(max(2, p.superblock_groups)))
        last_group_of_superblock = Signal()  # registered
        beat_in_group = Signal(range(max(2, beats_per_group)))
        last_beat = beat_in_group == beats_per_group - 1
        superblock_end = last_beat & (last_group | last_group_of_superblock)
        command_end = last_beat & last_group
        emit = Signal()
        m.d.comb += [
            emit.eq(active & bitmap.desc.ready & control_queue.i.ready),
            bitmap.desc.valid.eq(emit),
            bitmap.desc.payload.delta.eq(lanes),
            bitmap.desc.payload.align_superblock.eq(superblock_end),
            bitmap.desc.payload.align_command.eq(command_end),
            control_queue.i.valid.eq(emit),
            control_queue.i.payload.full.eq(full_mode),
            control_queue.i.payload.group_start.eq(beat_in_group == 0),
            control_queue.i.payload.superblock_end.eq(superblock_end),
            control_queue.i.payload.command_end.eq(command_end),
            cmd_skid.o.ready.eq(~active | (emit & command_end)),
        ]
        with m.If(emit):
            with m.If(last_beat):
                m.d.sync += [
                    beat_in_group.eq(0),
                    groups_left.eq(groups_left - 1),
                    last_group.eq(groups_left == 2),
                    group_in_superblock.eq(Mux(last_group_of_superblock, 0, group_in_superblock + 1)),
                    last_group_of_superblock.eq(Mux(last_group_of_superblock, p.superblock_groups == 1,
                                                    group_in_superblock == p.superblock_groups - 2)),
                ]
                with m.If(last_group):
                    m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += beat_in_group.eq(beat_in_group + 1)
        with m.If(cmd_skid.o.valid & cmd_skid.o.ready & (cmd_skid.o.payload.groups != 0)):
            m.d.sync += [
                active.eq(1),
                full_mode.eq(cmd_skid.o.payload.full),
                groups_left.eq(cmd_skid.o.payload.groups),
                last_group.eq(cmd_skid.o.payload.groups == 1),
                group_in_superblock.eq(0),
                last_group_of_superblock.eq(p.superblock_groups == 1),
                beat_in_group.eq(0),
            ]

        # ---- fan-out: per beat, what every stream gives ------------------------------
        # F1: mask and control; F1b: partial counts; F2: counts; F3: descriptors pushed to every stream
        kept_bits = range(lanes + 1)
        join_layout = data.StructLayout({
            "mask": lanes,
            "kept_before": data.ArrayLayout(kept_bits, lanes),
            "full": 1,
            "last": 1,
            "group_start": 1,
            "superblock_end": 1,
            "blocks_upto": data.ArrayLayout(kept_bits, lanes),  # mx: blocks started at lanes 0..j
            "blocks": kept_bits,
        })
        # raw and unary: the lanes take their fields through spreading networks (hw/common.py,
        # ``spread``), whose controls F3 computes from the counts
        network_layout = data.ArrayLayout(lanes, max(1, (lanes - 1).bit_length()))
        lanes_layout = data.StructLayout({
            "mask": lanes,
            "full": 1,
            "last": 1,
            "kept_network": network_layout,  # kept values: sign_mantissa, exponent, mantissa_low fields
            "pruned_network": network_layout,  # pruned values: pruned_raw fields
        })
        m.submodules.join_queue = join_queue = Queue(join_layout if coding == "mx" else lanes_layout, depth=8)
        # the fan-out moves when every destination queue has room, known a clock ahead:
        # a register of their registered "two free" flags (no AND of readies in the loop)
        spares = [join_queue.spare] + [reader.desc_spare for name, reader in readers.items() if name != "bitmap"]
        if coding == "unary":
            spares += [unary.beats_spare]
        fan_advance = Signal(init=1)
        m.d.sync += fan_advance.eq(Cat(*spares).all())

        f1_valid = Signal()
        f1_mask = Signal(lanes, reset_less=True)  # data registers (read with a valid flag): no reset
        f1_control = Signal(control_layout, reset_less=True)
        take_beat = bitmap.out.valid & control_queue.o.valid & (fan_advance | ~f1_valid)
        m.d.comb += [bitmap.out.ready.eq(take_beat), control_queue.o.ready.eq(take_beat)]
        f1_load = fan_advance | ~f1_valid
        with m.If(f1_load):
            m.d.sync += [f1_valid.eq(take_beat), f1_mask.eq(bitmap.out.payload[:lanes]),
                         f1_control.eq(control_queue.o.payload)]

        # F1b: the prefix counts in two halves: kept lanes before each lane inside its
        # quad of 4 lanes, and kept lanes before each quad; F2 adds them
        quad = min(4, lanes)
        quads = lanes // quad
        f1b_valid = Signal()
        f1b_mask = Signal(lanes, reset_less=True)
        f1b_control = Signal(control_layout, reset_less=True)
        f1b_local = [Signal(range(quad), name=f"f1b_local{j}", reset_less=True) for j in range(lanes)]
        f1b_quad_before = [Signal(kept_bits, name=f"f1b_quad_before{q}", reset_less=True) for q in range(quads + 1)]
        # and the same for the pruned lanes (the spreading network of pruned_raw)
        f1b_pruned_local = [Signal(range(quad), name=f"f1b_pruned_local{j}", reset_less=True) for j in range(lanes)]
        f1b_pruned_quad_before = [Signal(kept_bits, name=f"f1b_pruned_quad_before{q}", reset_less=True)
                                  for q in range(quads)]
        with m.If(fan_advance):
            m.d.sync += [f1b_valid.eq(f1_valid), f1b_mask.eq(f1_mask), f1b_control.eq(f1_control)]
            m.d.sync += [f1b_local[j].eq(popcount(f1_mask[j - j % quad:j])) for j in range(lanes)]
            m.d.sync += [f1b_quad_before[q].eq(popcount(f1_mask[:q * quad])) for q in range(quads + 1)]
            if coding != "mx":
                m.d.sync += [f1b_pruned_local[j].eq(popcount(~f1_mask[j - j % quad:j])) for j in range(lanes)]
                m.d.sync += [f1b_pruned_quad_before[q].eq(popcount(~f1_mask[:q * quad])) for q in range(quads)]

        f2_valid = Signal()
        f2 = Signal(join_layout, reset_less=True)
        f2_kept = Signal(kept_bits, reset_less=True)
        kept = [f1b_mask[j] for j in range(lanes)]
        kept_before = [f1b_quad_before[j // quad] + f1b_local[j] for j in range(lanes)] + [f1b_quad_before[quads]]
        mx_starts = None
        if coding == "mx":
            # the rank of each kept value in its group decides where a block starts
            block = p.mx_block_size
            kept_in_group = Signal(range(p.group_size + 1))
            base = Mux(f1b_control.group_start, 0, kept_in_group)
            mx_starts = [kept[j] & ((base + kept_before[j])[:block.bit_length() - 1] == 0) for j in range(lanes)]
            with m.If(fan_advance & f1b_valid):
                m.d.sync += kept_in_group.eq(base + kept_before[lanes])
        with m.If(fan_advance):
            m.d.sync += [
                f2_valid.eq(f1b_valid),
                f2.mask.eq(f1b_mask),
                f2.full.eq(f1b_control.full),
                f2.last.eq(f1b_control.command_end),
                f2.group_start.eq(f1b_control.group_start),
                f2.superblock_end.eq(f1b_control.superblock_end),
                f2_kept.eq(kept_before[lanes]),
            ]
            m.d.sync += [f2.kept_before[j].eq(kept_before[j]) for j in range(lanes)]
            if mx_starts is not None:
                starts_upto = _prefix_counts(mx_starts)
                m.d.sync += [f2.blocks_upto[j].eq(starts_upto[j + 1]) for j in range(lanes)]
                m.d.sync += f2.blocks.eq(starts_upto[lanes])

        f2_pruned = lanes - f2_kept
        join_valid, join_entry = f2_valid, f2
        if coding != "mx":
            # F3: the spreading networks' controls (from F2's registers), into the join queue;
            # the streams' descriptors leave at F2, and their windows come later than this
            f2_pruned_before = [Signal(kept_bits, name=f"f2_pruned_before{j}", reset_less=True)
                                for j in range(lanes)]
            with m.If(fan_advance):
                m.d.sync += [f2_pruned_before[j].eq(f1b_pruned_quad_before[j // quad] + f1b_pruned_local[j])
                             for j in range(lanes)]
            f3_valid = Signal()
            f3 = Signal(lanes_layout, reset_less=True)
            kept_controls = spread_controls([f2.mask[j] for j in range(lanes)], f2_pruned_before)
            pruned_controls = spread_controls([~f2.mask[j] for j in range(lanes)],
                                              [f2.kept_before[j] for j in range(lanes)])
            with m.If(fan_advance):
                m.d.sync += [f3_valid.eq(f2_valid), f3.mask.eq(f2.mask), f3.full.eq(f2.full), f3.last.eq(f2.last)]
                for t in range(len(kept_controls)):
                    m.d.sync += [f3.kept_network[t].eq(Cat(*kept_controls[t])),
                                 f3.pruned_network[t].eq(Cat(*pruned_controls[t]))]
            join_valid, join_entry = f3_valid, f3
        m.d.comb += [join_queue.i.valid.eq(join_valid & fan_advance), join_queue.i.payload.eq(join_entry)]

        def push(reader_name, delta, condition=1):
            desc = readers[reader_name].desc
            m.d.comb += [
                desc.valid.eq(f2_valid & fan_advance & condition),
                desc.payload.delta.eq(delta),
                desc.payload.align_superblock.eq(f2.superblock_end),
                desc.payload.align_command.eq(f2.last),
            ]

        push("sign_mantissa", f2_kept * p.sign_mantissa_bits)
        if coding == "raw":
            push("exponent", f2_kept * 8)
        elif coding == "mx":
            push("exponent", f2.blocks * 8)
        else:
            m.d.comb += [
                unary.beats.valid.eq(f2_valid & fan_advance),
                unary.beats.payload.kept.eq(f2_kept),
                unary.beats.payload.superblock_end.eq(f2.superblock_end),
                unary.beats.payload.command_end.eq(f2.last),
            ]
        if "mantissa_low" in readers and coding != "mx":
            push("mantissa_low", f2_kept * p.truncated_bits, f2.full)
        push("pruned_raw", f2_pruned * 16, f2.full)

        # ---- join and lanes ----------------------------------------------------------
        m.submodules.out_skid = out_skid = SkidBuffer(decoder_output_layout(lanes))
        wiring.connect(m, out_skid.o, wiring.flipped(self.out))
        if coding == "mx":
            self._mx_lanes(m, readers, join_queue, exponents, out_skid)
        else:
            self._lanes(m, readers, join_queue, exponents, out_skid)

        # ---- status ------------------------------------------------------------------
        waiting = []
        for name in STREAM_NAMES:
            if name in readers:
                waiting.append(readers[name].starved)
            elif name == "exponent":  # unary: a beat at the join waits on codes, no word offered
                unary_waiting = Signal()
                m.d.sync += unary_waiting.eq(join_queue.o.valid & ~exponents.valid & ~unary.words.valid)
                waiting.append(unary_waiting)
            else:
                waiting.append(Const(0, 1))
        # commands taken at the input (into the skid buffer), last beat not delivered; counted at
        # the port so that the count is not behind the sequencer's handshake (< 256 fit inside)
        in_flight = Signal(range(256))
        accepted = Signal()
        delivered = Signal()
        m.d.sync += [
            accepted.eq(self.cmd.valid & self.cmd.ready & (self.cmd.payload.groups != 0)),
            delivered.eq(self.out.valid & self.out.ready & self.out.payload.last),
            in_flight.eq(in_flight + accepted - delivered),
            self.status.busy.eq(in_flight + accepted - delivered != 0),
            self.status.waiting.eq(Cat(*waiting)),
        ]
        return m

    # ------------------------------------------------------------------------------
    def _lanes(self, m, readers, join_queue, exponents, out_skid):
        """raw and unary: one join of every stream, then the lanes (2 stages).

        The beat is taken (``fire``) when its entry and every window it needs are at
        their queue heads and the output has room: an AND of registers (the head beat's
        ``full`` flag is a register of its own, see ``flag_fifo``). Each lane's fields
        come through two spreading networks (``hw/common.py``), their upper stages
        before L2 and the lower ones after it."""
        p, lanes = self.params, self.lanes
        mant_keep, trunc, smw = p.mantissa_bits, p.truncated_bits, p.sign_mantissa_bits
        sm, pr = readers["sign_mantissa"], readers["pruned_raw"]
        ml = readers.get("mantissa_low")
        advance = out_skid.i.ready
        fire = Signal()
        # the beats at the join: their ``full`` flags, the head's in a register (not a
        # multiplexer of the join queue's entries by its read pointer inside the loop)
        _, head_full = flag_fifo(m, "join_full", depth=join_queue.depth,
                                 push=join_queue.i.valid & join_queue.i.ready,
                                 value=join_queue.i.payload.full, pop=fire)
        verification_ready = pr.out.valid & (ml.out.valid if ml is not None else 1)
        m.d.comb += fire.eq(join_queue.o.valid & sm.out.valid & exponents.valid
                            & (~head_full | verification_ready) & advance)
        m.d.comb += [join_queue.o.ready.eq(fire), sm.out.ready.eq(fire), exponents.ready.eq(fire),
                     pr.out.ready.eq(fire & head_full)]
        if ml is not None:
            m.d.comb += ml.out.ready.eq(fire & head_full)

        # L1: the beat's windows
        desc = join_queue.o.payload
        l1_valid = Signal()
        l1 = Signal(desc.shape(), reset_less=True)
        l1_sm = Signal(len(sm.out.payload), reset_less=True)
        l1_exp = Signal(len(exponents.payload), reset_less=True)
        l1_ml = Signal(len(ml.out.payload), reset_less=True) if ml is not None else None
        l1_pr = Signal(len(pr.out.payload), reset_less=True)
        with m.If(advance):
            m.d.sync += [l1_valid.eq(fire), l1.eq(desc), l1_sm.eq(sm.out.payload), l1_exp.eq(exponents.payload),
                         l1_pr.eq(pr.out.payload)]
            if ml is not None:
                m.d.sync += l1_ml.eq(ml.out.payload)

        # L2 and the output: each lane's fields through the spreading networks, their upper
        # stages before L2 and the lower ones after it (2:1 multiplexers between lanes
        # 2**t apart: short wires, and no 16:1 field multiplexer per lane)
        stages = (lanes - 1).bit_length()
        upper, lower = range(stages // 2, stages), range(stages // 2)
        ml_width = trunc if ml is not None else 0
        kept_fields = [Cat(l1_sm.word_select(k, smw), l1_exp.word_select(k, 8),
                           l1_ml.word_select(k, trunc) if ml is not None else Const(0, 0)) for k in range(lanes)]
        pruned_fields = [l1_pr.word_select(k, 16) for k in range(lanes)]
        kept_controls = [l1.kept_network[t] for t in range(stages)]
        pruned_controls = [l1.pruned_network[t] for t in range(stages)]
        l2_valid = Signal()
        l2 = Signal(l1.shape(), reset_less=True)
        l2_kept = [Signal(smw + 8 + ml_width, name=f"lane{j}_kept", reset_less=True) for j in range(lanes)]
        l2_pruned = [Signal(16, name=f"lane{j}_pruned", reset_less=True) for j in range(lanes)]
        with m.If(advance):
            m.d.sync += [l2_valid.eq(l1_valid), l2.eq(l1)]
            m.d.sync += [a.eq(b) for a, b in zip(l2_kept, spread(kept_fields, kept_controls, upper))]
            m.d.sync += [a.eq(b) for a, b in zip(l2_pruned, spread(pruned_fields, pruned_controls, upper))]
        kept_lanes = spread(l2_kept, [l2.kept_network[t] for t in range(stages)], lower)
        pruned_lanes = spread(l2_pruned, [l2.pruned_network[t] for t in range(stages)], lower)

        values = []
        for j in range(lanes):
            sm_field, exponent = kept_lanes[j][:smw], kept_lanes[j][smw:smw + 8]
            high = sm_field[:mant_keep] if mant_keep else Const(0, 0)
            sign = sm_field[mant_keep]
            low = kept_lanes[j][smw + 8:] if ml is not None else Const(0, 0)
            fill = Const(0, trunc)
            if self.draft_rounding == "midpoint" and trunc:
                normal = (exponent != 0) & (exponent != 0xFF)
                fill = Mux(normal, Const(1 << (trunc - 1), trunc), fill)
            draft = Cat(fill, high, exponent, sign)
            exact = Cat(low, high, exponent, sign)
            values.append(Mux(l2.mask[j], Mux(l2.full, exact, draft), Mux(l2.full, pruned_lanes[j], 0)))
        m.d.comb += [
            out_skid.i.valid.eq(l2_valid),
            out_skid.i.payload.values.as_value().eq(Cat(*values)),
            out_skid.i.payload.last.eq(l2.last),
        ]

    # ------------------------------------------------------------------------------
    def _mx_lanes(self, m, readers, join_queue, exponents, out_skid):
        """mx (Cassandra-2): shared exponents per block of ``mx_block_size`` kept
        values of a group; exact full decode from the dropped bits (FORMAT.md 7).
        Join 1 takes the speculation streams and gives the draft values and the
        ``mantissa_low`` field widths; join 2 takes ``mantissa_low`` and ``pruned_raw``."""
        p, lanes = self.params, self.lanes
        mant_keep, trunc, smw = p.mantissa_bits, p.truncated_bits, p.sign_mantissa_bits
        sm, ml, pr = readers["sign_mantissa"], readers["mantissa_low"], readers["pruned_raw"]
        blocks_per_beat = self._mx_blocks_per_beat
        block_index_bits = max(1, (blocks_per_beat - 1).bit_length())

        pending_layout = data.StructLayout({
            "draft": data.ArrayLayout(16, lanes),
            "kept": lanes,
            "full": 1,
            "last": 1,
            "kept_before": data.ArrayLayout(range(lanes + 1), lanes),
            "offset": data.ArrayLayout(range(lanes * MX_ESCAPE_BITS + 1), lanes),
            "width": data.ArrayLayout(range(MX_ESCAPE_BITS + 1), lanes),
            "shifted": data.ArrayLayout(BF16_MANTISSA_BITS, lanes),  # (A << D)[:7]
            "exponent": data.ArrayLayout(8, lanes),  # e (0 when the value was subnormal)
            "nonzero": lanes,
            "sign": lanes,
        })
        m.submodules.pending = pending = fifo.SyncFIFOBuffered(width=pending_layout.size, depth=16)
        pending_in = data.View(pending_layout, pending.w_data)
        ml_desc = ml.desc
        # join 1 advances while the pending queue and mantissa_low's descriptors have room
        advance1 = Signal()
        m.d.comb += advance1.eq((pending.level < 12) & ml_desc.ready)

        desc = join_queue.o.payload
        fire1 = Signal()
        m.d.comb += [
            fire1.eq(join_queue.o.valid & sm.out.valid & exponents.valid & advance1),
            join_queue.o.ready.eq(fire1), sm.out.ready.eq(fire1), exponents.ready.eq(fire1),
        ]
        # M1: the beat's speculation windows
        m1_valid = Signal()
        m1 = Signal(desc.shape())
        m1_sm = Signal(len(sm.out.payload))
        m1_exp = Signal(len(exponents.payload))
        with m.If(advance1):
            m.d.sync += [m1_valid.eq(fire1), m1.eq(desc), m1_sm.eq(sm.out.payload), m1_exp.eq(exponents.payload)]

        # M2: per lane, the shared exponent, q, e', D and the draft value
        current_exponent = Signal(8)  # shared exponent of the block in progress
        with m.If(advance1 & m1_valid & (m1.blocks != 0)):
            m.d.sync += current_exponent.eq(
                m1_exp.word_select((m1.blocks - 1)[:block_index_bits], 8) if blocks_per_beat > 1 else m1_exp[:8])
        m2_valid = Signal()
        m2 = Signal(pending_layout)
        m2_superblock_end = Signal()
        with m.If(advance1):
            m.d.sync += [m2_valid.eq(m1_valid), m2.kept.eq(m1.mask), m2.full.eq(m1.full), m2.last.eq(m1.last),
                         m2_superblock_end.eq(m1.superblock_end)]
            m.d.sync += [m2.kept_before[j].eq(m1.kept_before[j]) for j in range(lanes)]
        widths = []
        for j in range(lanes):
            kept_j = m1.mask[j]
            index = m1.kept_before[j][:max(1, (lanes - 1).bit_length())]
            field = m1_sm.word_select(index, smw) if lanes > 1 else m1_sm[:smw]
            started = m1.blocks_upto[j]
            shared = Signal(8, name=f"mx{j}_shared")
            m.d.comb += shared.eq(Mux(started == 0, current_exponent,
                                      m1_exp.word_select((started - 1)[:block_index_bits], 8)
                                      if blocks_per_beat > 1 else m1_exp[:8]))
            aligned = Signal(mant_keep + 1, name=f"mx{j}_aligned")
            sign = Signal(name=f"mx{j}_sign")
            m.d.comb += [aligned.eq(field[:mant_keep + 1]), sign.eq(field[mant_keep + 1])]
            top = Signal(range(mant_keep + 1), name=f"mx{j}_top")  # msb(A)
            for q in range(mant_keep + 1):
                with m.If(aligned[q]):
                    m.d.comb += top.eq(q)
            recovered = Signal(range(-mant_keep, 256 + 1), name=f"mx{j}_exponent")  # e' = E_s - m + q
            m.d.comb += recovered.eq(shared - mant_keep + top)
            normal = recovered >= 1
            nonzero = aligned != 0
            dropped = Signal(range(16), name=f"mx{j}_dropped")  # D
            m.d.comb += dropped.eq(Mux(normal, (mant_keep - top) + trunc, shared - 1 + trunc))
            width = Signal(range(MX_ESCAPE_BITS + 1), name=f"mx{j}_width")
            m.d.comb += width.eq(Mux(kept_j, Mux(nonzero, dropped, MX_ESCAPE_BITS), 0))
            widths.append(width)
            shifted = (aligned << dropped)[:15]
            draft = Signal(16, name=f"mx{j}_draft")
            with m.If(~kept_j | ~nonzero):
                m.d.comb += draft.eq(Mux(kept_j, sign << 15, 0))
            with m.Elif(normal):
                m.d.comb += draft.eq(Cat(shifted[:BF16_MANTISSA_BITS], recovered[:8], sign))
            with m.Else():
                m.d.comb += draft.eq(Cat(shifted, sign))  # D = E_s - 1 + t here
            with m.If(advance1):
                m.d.sync += [
                    m2.draft[j].eq(draft),
                    m2.width[j].eq(width),
                    m2.shifted[j].eq(shifted[:BF16_MANTISSA_BITS]),
                    m2.exponent[j].eq(Mux(normal, recovered[:8], 0)),
                    m2.nonzero[j].eq(nonzero),
                    m2.sign[j].eq(sign),
                ]
        # M3: offsets of the mantissa_low fields (prefix sums of the widths)
        m3_valid = Signal()
        m3 = Signal(pending_layout)
        m3_total = Signal(range(lanes * MX_ESCAPE_BITS + 1))
        m3_superblock_end = Signal()
        # exclusive prefix sums of the widths by a parallel-prefix tree (log2(lanes) adder levels)
        offsets = [Const(0, 1)] + prefix_tree([m2.width[j] for j in range(lanes)])
        with m.If(advance1):
            m.d.sync += [m3_valid.eq(m2_valid), m3.eq(m2), m3_total.eq(offsets[lanes]),
                         m3_superblock_end.eq(m2_superblock_end)]
            m.d.sync += [m3.offset[j].eq(offsets[j]) for j in range(lanes)]
        m.d.comb += [
            pending.w_en.eq(m3_valid & advance1),
            pending_in.eq(m3),
            ml_desc.valid.eq(m3_valid & advance1 & m3.full),
            ml_desc.payload.delta.eq(m3_total),
            ml_desc.payload.align_superblock.eq(m3_superblock_end),
            ml_desc.payload.align_command.eq(m3.last),
        ]

        # join 2: a pending beat with its verification windows
        advance2 = out_skid.i.ready
        entry = data.View(pending_layout, pending.r_data)
        fire2 = Signal()
        m.d.comb += [
            fire2.eq(pending.r_rdy & (~entry.full | (ml.out.valid & pr.out.valid)) & advance2),
            pending.r_en.eq(fire2),
            ml.out.ready.eq(fire2 & entry.full),
            pr.out.ready.eq(fire2 & entry.full),
        ]
        # N1: the beat and its windows; N2: each lane's low field; then the values
        n1_valid = Signal()
        n1 = Signal(pending_layout)
        n1_ml = Signal(len(ml.out.payload))
        n1_pr = Signal(len(pr.out.payload))
        with m.If(advance2):
            m.d.sync += [n1_valid.eq(fire2), n1.eq(entry), n1_ml.eq(ml.out.payload), n1_pr.eq(pr.out.payload)]
        n2_valid = Signal()
        n2 = Signal(pending_layout)
        n2_low = [Signal(MX_ESCAPE_BITS, name=f"mx{j}_low") for j in range(lanes)]
        n2_pr = [Signal(16, name=f"mx{j}_pruned") for j in range(lanes)]
        with m.If(advance2):
            m.d.sync += [n2_valid.eq(n1_valid), n2.eq(n1)]
            for j in range(lanes):
                raw = n1_ml.bit_select(n1.offset[j], MX_ESCAPE_BITS)
                pruned_index = Signal(range(lanes), name=f"mx{j}_pruned_index")
                m.d.comb += pruned_index.eq(j - n1.kept_before[j])
                m.d.sync += [
                    n2_low[j].eq(raw & ((1 << n1.width[j]) - 1)[:MX_ESCAPE_BITS]),
                    n2_pr[j].eq(n1_pr.word_select(pruned_index, 16) if lanes > 1 else n1_pr[:16]),
                ]
        values = []
        for j in range(lanes):
            low = n2_low[j]
            mantissa = (n2.shifted[j] | low[:BF16_MANTISSA_BITS])
            exact = Mux(n2.nonzero[j], Cat(mantissa, n2.exponent[j], n2.sign[j]), Cat(low, n2.sign[j]))
            values.append(Mux(n2.kept[j], Mux(n2.full, exact, n2.draft[j]), Mux(n2.full, n2_pr[j], 0)))
        m.d.comb += [
            out_skid.i.valid.eq(n2_valid),
            out_skid.i.payload.values.as_value().eq(Cat(*values)),
            out_skid.i.payload.last.eq(n2.last),
        ]
