"""The board self-test: pattern generator -> encoder -> stream FIFOs -> decoder ->
checker, with LEDs and a UART report. Board independent; ``fpga/boards.py`` adds the
clocks and pins.

What it does, pass after pass (a *pass* is one command of ``groups_per_pass``
groups):

1. A pattern generator (one xorshift32 per lane, :func:`pattern_value` maps its state
   to weight-like BF16: 15 of 16 values with one of 8 exponents, the rest any 16-bit
   pattern, NaN, Inf, zeros and subnormals included) feeds the encoder one beat per
   clock. Every pass is generated twice: the first time the decoder rebuilds it in
   **full** mode, the second time (the generator rewinds) in **draft** mode.
2. The encoder's five streams go through FIFOs standing in for memory (clock-domain
   crossing FIFOs when encoder and decoder run on different clocks). During a draft
   pass the verification streams (``mantissa_low``, ``pruned_raw``) are dropped, word
   for word: their length per pass is fixed by ``keep``, so it is computed here with
   the golden encoder.
3. The checker regenerates the same pattern. Full pass: every value must equal the
   pattern (``full_err`` counts mismatching values). Draft pass: every value must be
   0 (pruned) or the pattern with its truncated mantissa bits cleared (kept), else
   ``draft_err`` counts it; and in each group the values kept must be exactly the
   ``keep`` of largest magnitude, ties to the lower index (the golden selection
   rule, :func:`golden.format.select.magnitude_topk_mask`): the checker verifies that the
   smallest kept key is above the largest pruned key, key = (magnitude, G - 1 -
   index), and counts bad groups in ``topk_err``. (The pattern never produces a
   value whose draft would be 0 when kept - +0 and tiny positive values get their
   sign bit set - so "kept" can be read off the draft value.) ``last_err`` counts
   ``last`` flags that do not mark a pass's final beat.
4. Counters go out on the UART (:mod:`fpga.uart`), and to LEDs: 0 = running with no
   error, 1 = an error was seen, 2 = heartbeat, 3 = done (finite runs only).

``fault`` (a button on the boards) flips bit 0 of lane 0 of every decoder output
beat before the checker, so a board shows that the checker does catch errors.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import torch
from amaranth.hdl import Cat, Const, DomainRenamer, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.format.bitstream import stream_words
from golden.format.codec import encode
from golden.format.params import STREAM_NAMES, VERIFICATION_STREAMS, FormatParams
from golden.format.select import magnitude_topk_mask
from hw.common import check_hardware_params, popcount, stream_fifo_depth
from hw.decoder import Decoder
from hw.encoder import Encoder
from hw.pipe import Queue

from .uart import LineReporter, UARTTransmitter

__all__ = ["SelfTestConfig", "SelfTest", "pattern_value", "pattern_beats", "lane_seeds", "COUNTERS"]

#: The report's counters and their widths in bits (docs/FPGA.md).
COUNTERS = {
    "values": 48,     # values checked (full and draft passes)
    "full_err": 32,   # values wrong in full mode
    "draft_err": 32,  # values neither 0 nor the truncated pattern in draft mode
    "topk_err": 32,   # draft-mode groups whose kept set is not the magnitude top-k
    "last_err": 32,   # `last` flags not on a pass's final beat
    "cycles": 48,     # decoder-clock cycles from reset to done (or to now)
    "done": 4,        # 1 once the requested passes are all checked
}

_MASK32 = 0xFFFFFFFF
_PATTERN_EXPONENT = 117  # the 8 common exponents: 117..124 (magnitudes 2^-10 .. 2^-3)


def lane_seeds(seed: int, lanes: int) -> list[int]:
    """Initial xorshift32 state of each lane (never 0)."""
    return [((seed + (lane + 1) * 0x9E3779B9) & _MASK32) or 1 for lane in range(lanes)]


def _xorshift32(x: int) -> int:
    x ^= (x << 13) & _MASK32
    x ^= x >> 17
    x ^= (x << 5) & _MASK32
    return x


def pattern_value(state: int, truncated_bits: int) -> int:
    """The BF16 pattern of one lane for xorshift32 state ``state``."""
    if state >> 28 == 0:
        value = state & 0xFFFF
    else:
        value = ((state >> 19) & 1) << 15 | (_PATTERN_EXPONENT + ((state >> 16) & 7)) << 7 | (state & 0x7F)
    if value >> truncated_bits == 0:
        value |= 0x8000  # keep the draft of a kept value nonzero
    return value


def pattern_beats(seed: int, lanes: int, beats: int, truncated_bits: int) -> list[list[int]]:
    """``beats`` beats of ``lanes`` values from the start of the pattern (no rewinds)."""
    states = lane_seeds(seed, lanes)
    out = []
    for _ in range(beats):
        out.append([pattern_value(s, truncated_bits) for s in states])
        states = [_xorshift32(s) for s in states]
    return out


def _hw_xorshift32(x):
    x = x ^ (x << 13)[:32]
    x = x ^ (x >> 17)
    return x ^ (x << 5)[:32]


def _hw_pattern_value(state, truncated_bits: int):
    normal = Cat(state[0:7], (state[16:19] + _PATTERN_EXPONENT)[:8], state[19])
    value = Mux(state[28:32] == 0, state[0:16], normal)
    tiny = value[truncated_bits:16] == 0 if truncated_bits < 16 else Const(1)
    return Mux(tiny, value | 0x8000, value)


@dataclasses.dataclass(frozen=True)
class SelfTestConfig:
    """Parameters of the self-test.

    Parameters
    ----------
    params : FormatParams
        The format (raw or unary exponent coding: the encoder has no mx).
    lanes, word_bits : int
        Encoder and decoder width (values per beat, stream word bits).
    keep : int
        Values kept per group (0..G).
    groups_per_pass : int
        Groups per encoder/decoder command.
    passes : int
        Passes to run, counting full and draft passes; 0 runs forever. Must be even
        (a full pass and its draft pass) unless 0.
    uart_divisor : int
        Decoder-clock cycles per UART bit.
    report_cycles : int
        A report line every ``report_cycles`` decoder-clock cycles, and one when done.
    seed : int
        Pattern seed.
    codebook : tuple of int, optional
        Unary codebook; default: the pattern's 8 exponents, then other exponents.
    encoder : bool
        True: the encoder formats fresh pattern data every pass. False (decoder
        only, for FPGAs too small for both): the streams of one pass, encoded by
        the golden model at build time, play from ROMs, and every pass decodes
        that same block (the checker's pattern restarts each pass).
    """

    params: FormatParams
    lanes: int = 4
    word_bits: int = 64
    keep: int = 38
    groups_per_pass: int = 64
    passes: int = 0
    uart_divisor: int = 104
    report_cycles: int = 1 << 22
    seed: int = 0x5EED
    codebook: tuple[int, ...] | None = None
    encoder: bool = True

    def __post_init__(self):
        p = self.params
        if p.exponent_coding not in ("raw", "unary"):
            raise ValueError(f"exponent_coding={p.exponent_coding!r}: the self-test needs the encoder, "
                             "which codes 'raw' or 'unary' (mx is decode-only)")
        check_hardware_params(p, lanes=self.lanes, word_bits=self.word_bits)
        if not isinstance(self.keep, int) or not 0 <= self.keep <= p.group_size:
            raise ValueError(f"keep={self.keep!r}: need 0..{p.group_size} (the group size)")
        if not isinstance(self.groups_per_pass, int) or not 1 <= self.groups_per_pass < 1 << 24:
            raise ValueError(f"groups_per_pass={self.groups_per_pass!r}: need 1..2^24-1")
        if not isinstance(self.passes, int) or self.passes < 0 or self.passes % 2:
            raise ValueError(f"passes={self.passes!r}: need 0 (forever) or an even count (full + draft)")
        if not isinstance(self.uart_divisor, int) or self.uart_divisor < 2:
            raise ValueError(f"uart_divisor={self.uart_divisor!r}: need at least 2 clock cycles per bit")
        if not isinstance(self.report_cycles, int) or self.report_cycles < 16:
            raise ValueError(f"report_cycles={self.report_cycles!r}: need at least 16")
        if p.exponent_coding == "unary":
            book = self.unary_codebook
            if len(set(book)) != len(book) or any(not 0 <= e <= 255 for e in book):
                raise ValueError(f"codebook={book!r}: need {p.unary_max_code_length} distinct exponents 0..255")

    @property
    def unary_codebook(self) -> tuple[int, ...]:
        if self.codebook is not None:
            return tuple(self.codebook)
        common = list(range(_PATTERN_EXPONENT + 7, _PATTERN_EXPONENT - 1, -1))
        rest = [e for e in range(256) if e not in common]
        return tuple((common + rest)[:self.params.unary_max_code_length])

    @property
    def beats_per_pass(self) -> int:
        return self.groups_per_pass * self.params.group_size // self.lanes

    @cached_property
    def block_words(self) -> dict[str, list[int]]:
        """Each stream's words for the first pass's data, golden-encoded."""
        p = self.params
        values = [v for beat in pattern_beats(self.seed, self.lanes, self.beats_per_pass, p.truncated_bits)
                  for v in beat]
        x = torch.tensor(values, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).reshape(1, -1)
        mask = magnitude_topk_mask(x, keep=self.keep, group_size=p.group_size)
        codebook = list(self.unary_codebook) if p.exponent_coding == "unary" else None
        enc = encode(x, mask, p, codebook=codebook)
        return {name: stream_words(enc.streams[name], self.word_bits) for name in STREAM_NAMES}

    @property
    def verification_words_per_pass(self) -> dict[str, int]:
        """Words of each verification stream per pass: fixed by ``keep`` (every kept
        value has ``7 - m`` low mantissa bits, every pruned one 16 bits), so one
        golden encoding of any data gives them."""
        return {name: len(self.block_words[name]) for name in VERIFICATION_STREAMS}


class _PatternSource(wiring.Component):
    """The pattern as a stream of beats, with the pass structure: every pass is sent
    twice (``draft`` = 0 then 1) from the same start state."""

    def __init__(self, config: SelfTestConfig):
        self.config = config
        super().__init__({
            "values": Out(stream.Signature(data.ArrayLayout(16, config.lanes))),
            "draft": Out(1),
            "beat": Out(range(config.beats_per_pass)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        t = cfg.params.truncated_bits
        seeds = lane_seeds(cfg.seed, cfg.lanes)
        state = [Signal(32, init=s, name=f"state{i}") for i, s in enumerate(seeds)]
        saved = [Signal(32, init=s, name=f"saved{i}") for i, s in enumerate(seeds)]
        passes = Signal(range(max(cfg.passes, 1) + 1))
        m.d.comb += self.done.eq(passes == cfg.passes if cfg.passes else 0)
        m.d.comb += self.values.valid.eq(~self.done)
        for lane in range(cfg.lanes):
            m.d.comb += self.values.payload[lane].eq(_hw_pattern_value(state[lane], t))
        with m.If(self.values.valid & self.values.ready):
            with m.If(self.beat == cfg.beats_per_pass - 1):
                m.d.sync += [self.beat.eq(0), self.draft.eq(~self.draft)]
                if cfg.passes:
                    m.d.sync += passes.eq(passes + 1)
                with m.If(~self.draft | (not cfg.encoder)):  # rewind for the draft pass (every pass: ROM mode)
                    m.d.sync += [s.eq(v) for s, v in zip(state, saved)]
                with m.Else():  # fresh data for the next full pass
                    m.d.sync += [s.eq(_hw_xorshift32(s)) for s in state]
                    m.d.sync += [v.eq(_hw_xorshift32(s)) for s, v in zip(state, saved)]
            with m.Else():
                m.d.sync += [self.beat.eq(self.beat + 1)]
                m.d.sync += [s.eq(_hw_xorshift32(s)) for s in state]
        return m


def _tree(m, items, combine, name, stages_per_register=2):
    """Reduce ``items`` pairwise with ``combine``; a register after every
    ``stages_per_register`` levels. Returns (result, registers on the way)."""
    level, depth, registers = list(items), 0, 0
    while len(level) > 1:
        level = [combine(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        depth += 1
        if depth % stages_per_register == 0 and len(level) > 1:
            registered = []
            for j, item in enumerate(level):
                r = Signal(len(item), name=f"{name}_r{depth}_{j}", reset_less=True)  # data: no reset
                m.d.sync += r.eq(item)
                registered.append(r)
            level, registers = registered, registers + 1
    return level[0], registers


def _delay(m, value, cycles, name):
    for i in range(cycles):
        r = Signal.like(value, name=f"{name}_d{i}")
        m.d.sync += r.eq(value)
        value = r
    return value


class _Checker(wiring.Component):
    """Checks decoder output beats against the pattern (module docstring, step 3)."""

    def __init__(self, config: SelfTestConfig):
        self.config = config
        super().__init__({
            "beat": In(stream.Signature(data.StructLayout({
                "values": data.ArrayLayout(16, config.lanes), "last": 1}))),
            "fault": In(1),
            **{name: Out(bits) for name, bits in COUNTERS.items()},
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        p, lanes, G = cfg.params, cfg.lanes, cfg.params.group_size
        index_bits = (G - 1).bit_length()
        m.submodules.pattern = pattern = _PatternSource(cfg)
        m.d.comb += [self.beat.ready.eq(1), pattern.values.ready.eq(self.beat.valid)]

        # stage 1: the beat beside its expected values
        s1_valid = Signal()
        s1_out = [Signal(16, name=f"s1_out{i}", reset_less=True) for i in range(lanes)]  # data: no reset
        s1_expected = [Signal(16, name=f"s1_expected{i}", reset_less=True) for i in range(lanes)]
        s1_draft, s1_last, s1_pass_end, s1_group_end = Signal(), Signal(), Signal(), Signal()
        s1_group_beat = Signal(range(max(G // lanes, 2)))
        m.d.sync += s1_valid.eq(self.beat.valid)
        with m.If(self.beat.valid):
            m.d.sync += [
                s1_draft.eq(pattern.draft),
                s1_last.eq(self.beat.payload.last),
                s1_pass_end.eq(pattern.beat == cfg.beats_per_pass - 1),
                s1_group_beat.eq(pattern.beat % (G // lanes) if G // lanes > 1 else 0),
                s1_group_end.eq((pattern.beat % (G // lanes)) == G // lanes - 1),
            ]
            for i in range(lanes):
                value = self.beat.payload.values[i]
                if i == 0:
                    value = value ^ self.fault
                m.d.sync += [s1_out[i].eq(value), s1_expected[i].eq(pattern.values.payload[i])]

        # stage 1b: per-lane compares a nibble at a time (one LUT each), the rest delayed; the
        # whole 16-bit compares were a 16-lane ULX3S build's longest path
        truncate_mask = (0xFFFF << p.truncated_bits) & 0xFFFF
        s1b_valid, s1b_draft, s1b_last, s1b_pass_end, s1b_group_end = (Signal(name=f"s1b_{n}") for n in (
            "valid", "draft", "last", "pass_end", "group_end"))
        s1b_group_beat = Signal(len(s1_group_beat))
        s1b_expected = [Signal(16, name=f"s1b_expected{i}", reset_less=True) for i in range(lanes)]
        s1b_full_differs = [Signal(4, name=f"s1b_full_differs{i}", reset_less=True) for i in range(lanes)]
        s1b_draft_differs = [Signal(4, name=f"s1b_draft_differs{i}", reset_less=True) for i in range(lanes)]
        s1b_nonzero = [Signal(4, name=f"s1b_nonzero{i}", reset_less=True) for i in range(lanes)]
        m.d.sync += [s1b_valid.eq(s1_valid), s1b_draft.eq(s1_draft), s1b_last.eq(s1_last),
                     s1b_pass_end.eq(s1_pass_end), s1b_group_end.eq(s1_group_end), s1b_group_beat.eq(s1_group_beat)]
        for i in range(lanes):
            out, expected = s1_out[i], s1_expected[i]
            draft_expected = expected & truncate_mask
            m.d.sync += [s1b_expected[i].eq(expected)]
            m.d.sync += [s1b_full_differs[i][n].eq(out[4 * n:4 * n + 4] != expected[4 * n:4 * n + 4])
                         for n in range(4)]
            m.d.sync += [s1b_draft_differs[i][n].eq(out[4 * n:4 * n + 4] != draft_expected[4 * n:4 * n + 4])
                         for n in range(4)]
            m.d.sync += [s1b_nonzero[i][n].eq(out[4 * n:4 * n + 4] != 0) for n in range(4)]

        # stage 2: per-lane verdicts (bits) and keys
        s2_valid, s2_draft, s2_last_bad, s2_group_end = Signal(), Signal(), Signal(), Signal()
        s2_full_bad = Signal(lanes, reset_less=True)
        s2_draft_bad = Signal(lanes, reset_less=True)
        s2_kept_lanes = Signal(lanes, reset_less=True)
        key_bits = 1 + index_bits + 15
        s2_min_kept = [Signal(key_bits, name=f"s2_min_kept{i}", reset_less=True) for i in range(lanes)]
        s2_max_pruned = [Signal(key_bits, name=f"s2_max_pruned{i}", reset_less=True) for i in range(lanes)]
        m.d.sync += [s2_valid.eq(s1b_valid), s2_draft.eq(s1b_draft), s2_group_end.eq(s1b_group_end),
                     s2_last_bad.eq(s1b_valid & (s1b_last != s1b_pass_end))]
        for i in range(lanes):
            expected = s1b_expected[i]
            kept = s1b_nonzero[i].any()
            index = s1b_group_beat * lanes + i
            # ordering key: larger magnitude first, then lower index; the constant 1 makes every key nonzero
            key = Cat(Const(1, 1), (G - 1 - index)[:index_bits] if index_bits else Const(0, 0), expected[:15])
            m.d.sync += [
                s2_full_bad[i].eq(s1b_full_differs[i].any()),
                s2_draft_bad[i].eq(kept & s1b_draft_differs[i].any()),
                s2_kept_lanes[i].eq(kept),
                s2_min_kept[i].eq(Mux(kept, key, (1 << key_bits) - 1)),
                s2_max_pruned[i].eq(Mux(kept, 0, key)),
            ]
        # stage 2b: the counts of bad and kept lanes (the compares and the popcounts were one
        # path, the critical path of a 16-lane ULX3S build)
        s2b_bad = Signal(range(lanes + 1))
        s2b_kept = Signal(range(lanes + 1))
        m.d.sync += [
            s2b_bad.eq(Mux(s2_draft, popcount(s2_draft_bad), popcount(s2_full_bad))),
            s2b_kept.eq(popcount(s2_kept_lanes)),
        ]

        # stage 3..: the beat's smallest kept and largest pruned key (pipelined trees)
        # (a register after every compare-and-select level and after the root, so that the
        # group accumulation below is the only compare-and-select between two registers)
        min_kept, tree_registers = _tree(m, s2_min_kept, lambda a, b: Mux(a < b, a, b), "min_kept", 1)
        max_pruned, _ = _tree(m, s2_max_pruned, lambda a, b: Mux(a > b, a, b), "max_pruned", 1)
        min_kept, max_pruned = _delay(m, min_kept, 1, "min_kept_root"), _delay(m, max_pruned, 1, "max_pruned_root")
        tree_registers += 1
        t_valid = _delay(m, s2_valid, tree_registers, "valid")
        t_draft = _delay(m, s2_draft, tree_registers, "draft")
        t_group_end = _delay(m, s2_group_end, tree_registers, "group_end")
        t_last_bad = _delay(m, s2_last_bad, tree_registers, "last_bad")
        t_bad = _delay(m, s2b_bad, tree_registers - 1, "bad")  # s2b is the first of those registers
        t_kept = _delay(m, s2b_kept, tree_registers - 1, "kept")

        # last stage: per-group accumulation and the counters
        group_kept = Signal(range(G + 1))
        group_min = Signal(key_bits, init=(1 << key_bits) - 1)
        group_max = Signal(key_bits)
        all_kept = Signal(range(G + 1))
        all_min = Signal(key_bits)
        all_max = Signal(key_bits)
        m.d.comb += [
            all_kept.eq(group_kept + t_kept),
            all_min.eq(Mux(min_kept < group_min, min_kept, group_min)),
            all_max.eq(Mux(max_pruned > group_max, max_pruned, group_max)),
        ]
        # a draft group's verdict one stage later, from registers (the accumulation's compare
        # and select, the verdict's compare and the counter's add were one path before)
        verdict_valid = Signal()
        verdict_kept = Signal(range(G + 1))
        verdict_min = Signal(key_bits)
        verdict_max = Signal(key_bits)
        m.d.sync += verdict_valid.eq(0)
        with m.If(t_valid):
            m.d.sync += self.values.eq(self.values + lanes)
            with m.If(t_draft):
                m.d.sync += self.draft_err.eq(self.draft_err + t_bad)
            with m.Else():
                m.d.sync += self.full_err.eq(self.full_err + t_bad)
            m.d.sync += self.last_err.eq(self.last_err + t_last_bad)
            with m.If(t_group_end):
                m.d.sync += [group_kept.eq(0), group_min.eq((1 << key_bits) - 1), group_max.eq(0),
                             verdict_valid.eq(t_draft), verdict_kept.eq(all_kept), verdict_min.eq(all_min),
                             verdict_max.eq(all_max)]
            with m.Else():
                m.d.sync += [group_kept.eq(all_kept), group_min.eq(all_min), group_max.eq(all_max)]
        verdict_bad = Signal()  # the compare, then the count a clock later
        m.d.sync += verdict_bad.eq(verdict_valid & ((verdict_kept != cfg.keep) | (verdict_min <= verdict_max)))
        with m.If(verdict_bad):
            m.d.sync += self.topk_err.eq(self.topk_err + 1)

        # done: every pass checked (the pipeline has drained when `values` says so)
        expected_values = cfg.passes * cfg.beats_per_pass * lanes
        if cfg.passes:
            reached = Signal()  # then one more clock for the last group's top-k count
            m.d.sync += [reached.eq(self.values == expected_values), self.done.eq(reached)]
        with m.If(~self.done[0]):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        return m


class _RomPlayer(wiring.Component):
    """Plays ``words`` as a stream, over and over (a block RAM with a registered read, then a
    two-entry queue whose registers take the block RAM's data with no logic before them:
    its output is slow, 5.6 ns clock-to-out on the ECP5, and with a route and a LUT to the
    decoder's skid it led 16-lane ULX3S builds)."""

    def __init__(self, words: list[int], word_bits: int):
        self.words_init = list(words)
        self.word_bits = word_bits
        super().__init__({"words": Out(stream.Signature(word_bits))})

    def elaborate(self, platform):
        m = Module()
        if not self.words_init:
            return m  # an empty stream (m = 7 has no mantissa_low): never valid
        count = len(self.words_init)
        m.submodules.rom = rom = Memory(shape=self.word_bits, depth=count, init=self.words_init,
                                        attrs={"rom_style": "block"})  # a block RAM, not LUTs
        read = rom.read_port()
        address = Signal(range(count))
        m.submodules.out = out = Queue(self.word_bits, depth=2)
        wiring.connect(m, out.o, wiring.flipped(self.words))
        load = ~out.i.valid | out.i.ready
        m.d.comb += [read.en.eq(load), read.addr.eq(address), out.i.payload.eq(read.data)]
        with m.If(load):
            m.d.sync += [out.i.valid.eq(1), address.eq(Mux(address == count - 1, 0, address + 1))]
        return m


class SelfTest(wiring.Component):
    """The self-test core (module docstring) in two clock domains.

    Parameters
    ----------
    config : SelfTestConfig
    encoder_domain, decoder_domain : str
        Clock domains of the generator + encoder and of the decoder + checker + UART.
        Different names: the stream FIFOs cross domains (``AsyncFIFOBuffered``); the
        same name: one clock, plain FIFOs.

    Attributes
    ----------
    fault : In(1)
        Inject errors (decoder domain, synchronized by the caller).
    tx : Out(1)
        UART output (idle high).
    leds : Out(4)
        0: checked values and no error so far; 1: an error was seen; 2: heartbeat;
        3: done (finite runs only).
    <counter> : Out(width)
        The :data:`COUNTERS`, for simulation.
    """

    def __init__(self, config: SelfTestConfig, *, encoder_domain: str = "sync", decoder_domain: str = "sync"):
        self.config = config
        self.encoder_domain = encoder_domain
        self.decoder_domain = decoder_domain
        super().__init__({
            "fault": In(1),
            "tx": Out(1),
            "leds": Out(4),
            **{name: Out(bits) for name, bits in COUNTERS.items()},
        })

    @property
    def fifo_depth(self) -> int:
        return stream_fifo_depth(self.config.params, self.config.word_bits)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        p = cfg.params
        enc_domain, dec_domain = self.encoder_domain, self.decoder_domain
        on_enc = DomainRenamer({"sync": enc_domain})
        on_dec = DomainRenamer({"sync": dec_domain})

        # decoder side
        m.submodules.decoder = decoder = on_dec(Decoder(p, lanes=cfg.lanes, word_bits=cfg.word_bits))
        dec_commands = Signal(range(max(cfg.passes, 1) + 1))
        dec_draft = Signal()  # the next command is a draft pass
        dec_more = (dec_commands != cfg.passes) if cfg.passes else Const(1)
        m.d.comb += [decoder.cmd.valid.eq(dec_more), decoder.cmd.payload.groups.eq(cfg.groups_per_pass),
                     decoder.cmd.payload.full.eq(~dec_draft)]
        with m.If(decoder.cmd.valid & decoder.cmd.ready):
            m.d[dec_domain] += dec_draft.eq(~dec_draft)
            if cfg.passes:
                m.d[dec_domain] += dec_commands.eq(dec_commands + 1)

        if cfg.encoder:
            # encoder side
            m.submodules.source = source = on_enc(_PatternSource(cfg))
            m.submodules.encoder = encoder = on_enc(Encoder(p, lanes=cfg.lanes, word_bits=cfg.word_bits))
            wiring.connect(m, source.values, encoder.values)
            enc_commands = Signal(range(max(cfg.passes, 1) + 1))
            enc_more = (enc_commands != cfg.passes) if cfg.passes else Const(1)
            m.d.comb += [encoder.cmd.valid.eq(enc_more), encoder.cmd.payload.eq(cfg.groups_per_pass),
                         encoder.keep.eq(cfg.keep)]
            if cfg.passes:
                with m.If(encoder.cmd.valid & encoder.cmd.ready):
                    m.d[enc_domain] += enc_commands.eq(enc_commands + 1)

            # the streams, through FIFOs; verification words of draft passes are dropped
            words_per_pass = cfg.verification_words_per_pass
            for name in STREAM_NAMES:
                if enc_domain == dec_domain:
                    queue = on_enc(fifo.SyncFIFOBuffered(width=cfg.word_bits, depth=self.fifo_depth))
                else:
                    queue = fifo.AsyncFIFOBuffered(width=cfg.word_bits, depth=self.fifo_depth,
                                                   r_domain=dec_domain, w_domain=enc_domain)
                m.submodules[f"{name}_fifo"] = queue
                out, inp = getattr(encoder, name), getattr(decoder, name)
                m.d.comb += [queue.w_data.eq(out.payload), inp.payload.eq(queue.r_data),
                             inp.valid.eq(queue.r_rdy), queue.r_en.eq(inp.ready)]
                words = words_per_pass.get(name, 0)
                if words:
                    word_index = Signal(range(2 * words), name=f"{name}_word_index")
                    dropping = word_index >= words
                    m.d.comb += [queue.w_en.eq(out.valid & ~dropping), out.ready.eq(queue.w_rdy | dropping)]
                    with m.If(out.valid & out.ready):
                        m.d[enc_domain] += word_index.eq(Mux(word_index == 2 * words - 1, 0, word_index + 1))
                else:
                    m.d.comb += [queue.w_en.eq(out.valid), out.ready.eq(queue.w_rdy)]

        else:
            # decoder only: each stream's words of one pass loop in a ROM; the decoder
            # reads the verification streams in full passes only, one block per pass
            for name in STREAM_NAMES:
                player = m.submodules[f"{name}_rom"] = on_dec(_RomPlayer(cfg.block_words[name], cfg.word_bits))
                wiring.connect(m, player.words, getattr(decoder, name))

        if p.exponent_coding == "unary":
            for rank, exponent in enumerate(cfg.unary_codebook):
                m.d.comb += decoder.codebook[rank].eq(exponent)
                if cfg.encoder:
                    m.d.comb += encoder.codebook[rank].eq(exponent)

        # checker, report, LEDs
        m.submodules.checker = checker = on_dec(_Checker(cfg))
        wiring.connect(m, decoder.out, checker.beat)
        m.d.comb += checker.fault.eq(self.fault)
        m.d.comb += [getattr(self, name).eq(getattr(checker, name)) for name in COUNTERS]
        m.submodules.reporter = reporter = on_dec(LineReporter(COUNTERS))
        m.submodules.uart = uart = on_dec(UARTTransmitter(divisor=cfg.uart_divisor))
        wiring.connect(m, reporter.out, uart.data)
        m.d.comb += [getattr(reporter, name).eq(getattr(checker, name)) for name in COUNTERS]
        m.d.comb += self.tx.eq(uart.tx)
        timer = Signal(range(cfg.report_cycles))
        done_seen = Signal()
        m.d[dec_domain] += timer.eq(Mux(timer == cfg.report_cycles - 1, 0, timer + 1))
        report_done = checker.done[0] & ~done_seen
        with m.If(report_done & ~reporter.busy):
            m.d[dec_domain] += done_seen.eq(1)
        # the trigger in a register: the timer's compare and the reporter's snapshot enables
        # (every counter's copy) were one path, the longest of a 16-lane ULX3S build
        trigger = Signal()
        m.d[dec_domain] += trigger.eq((timer == cfg.report_cycles - 1) | report_done)
        m.d.comb += reporter.trigger.eq(trigger)
        errors = Cat(checker.full_err != 0, checker.draft_err != 0, checker.topk_err != 0, checker.last_err != 0)
        heartbeat_bit = min(max(cfg.report_cycles.bit_length() - 1, 0), COUNTERS["cycles"] - 1)
        m.d.comb += [
            self.leds[0].eq((checker.values != 0) & ~errors.any()),
            self.leds[1].eq(errors.any()),
            self.leds[2].eq(checker.cycles[heartbeat_bit]),
            self.leds[3].eq(checker.done[0]),
        ]
        return m
