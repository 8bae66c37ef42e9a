"""Reference-vs-RTL harness for the decoder in the Amaranth simulator (ref = golden codec).

Shared by tests/test_hw_decoder.py and the throughput figures of docs/HARDWARE.md.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
from amaranth.hdl import ResetInserter, Signal, Value

from golden.codec import EncodedTensor, bf16_bits, decode, encode
from golden.params import FormatParams, STREAM_NAMES, SPECULATION_STREAMS
from golden.select import magnitude_topk_mask
from golden.bitstream import stream_words as golden_stream_words
from hw.decoder import Decoder, decoder_command

from hw_sim import Feeder, StreamMonitor, simulate


def stream_words(enc: EncodedTensor, name: str, word_bits: int) -> list[int]:
    return golden_stream_words(enc.streams[name], word_bits)


def command_payload(groups: int, full: bool) -> int:
    return decoder_command(groups, full)


@dataclass
class DecodeJob:
    """One command: an encoded tensor and the mode."""
    enc: EncodedTensor
    full: bool

    @property
    def expected(self) -> list[int]:
        return bf16_bits(decode(self.enc, "full" if self.full else "draft")).reshape(-1).tolist()

    @property
    def groups(self) -> int:
        return self.enc.num_values // self.enc.params.group_size


@dataclass
class DecodeRun:
    beats: list[int]
    values: list[int]
    lasts: list[int]
    first_out_cycle: int | None = None
    last_out_cycle: int | None = None
    consumed: dict = field(default_factory=dict)
    offered: dict = field(default_factory=dict)
    #: clock edges from the first input word taken to the first output beat valid
    latency: int | None = None

    @property
    def beats_per_cycle(self) -> float:
        """Output beats per clock between the first and the last beat."""
        span = self.last_out_cycle - self.first_out_cycle
        return (len(self.beats) - 1) / span if span else 1.0


def encode_tensor(x: torch.Tensor, params: FormatParams, *, keep: int, codebook=None) -> EncodedTensor:
    mask = magnitude_topk_mask(x, keep=keep, group_size=params.group_size)
    return encode(x, mask, params, codebook=codebook)


def run_decoder(params: FormatParams, phases: list[list[DecodeJob]], *, lanes: int, word_bits: int = 64,
                idle: float = 0.0, backpressure: float = 0.0, seed: int = 0, codebook=None,
                reset_after_beats: int | None = None, unary_window_bits: int | None = None,
                vcd: str | None = None) -> list[DecodeRun]:
    """Decode each phase's jobs back to back; return one :class:`DecodeRun` per phase.

    Between phases the clock domain is reset. With ``reset_after_beats``, every phase
    but the last is cut short by that reset once that many beats were received
    (reset in mid-stream); the last phase must then decode completely.
    """
    dut = Decoder(params, lanes=lanes, word_bits=word_bits, unary_window_bits=unary_window_bits)
    rng = random.Random(seed)
    ports = ("cmd", *STREAM_NAMES)
    feeders = {name: Feeder(getattr(dut, name), rng=rng, idle=idle) for name in ports}
    reset = Signal()  # a synchronous reset of the decoder's whole clock domain
    monitors = [StreamMonitor(name, getattr(dut, name), reset=reset) for name in (*ports, "out")]
    runs: list[DecodeRun] = []
    payload = Value.cast(dut.out.payload)
    value_mask = (1 << 16) - 1

    async def main(ctx):
        if codebook is not None:
            for rank, exponent in enumerate(codebook):
                ctx.set(dut.codebook[rank], int(exponent))
        cycle = 0
        for index, jobs in enumerate(phases):
            final = index == len(phases) - 1
            words = {name: [] for name in ports}
            for job in jobs:
                words["cmd"].append(command_payload(job.groups, job.full))
                for name in STREAM_NAMES:
                    if name in SPECULATION_STREAMS or job.full:
                        words[name] += stream_words(job.enc, name, word_bits)
            for name in ports:
                feeders[name].taken = 0
                feeders[name].queue.extend(words[name])
            beats = sum(job.enc.num_values for job in jobs) // lanes
            target = beats if final or reset_after_beats is None else min(reset_after_beats, beats)
            run = DecodeRun(beats=[], values=[], lasts=[])
            runs.append(run)
            idle_cycles = 0
            while len(run.beats) < target:
                ready = not (backpressure and rng.random() < backpressure)
                ctx.set(dut.out.ready, ready)
                _, _, valid, beat = await ctx.tick().sample(dut.out.valid, payload)
                cycle += 1
                if ready and valid:
                    run.beats.append(beat)
                    run.values += [(beat >> (16 * lane)) & value_mask for lane in range(lanes)]
                    run.lasts.append(beat >> (16 * lanes) & 1)
                    run.first_out_cycle = cycle if run.first_out_cycle is None else run.first_out_cycle
                    run.last_out_cycle = cycle
                    idle_cycles = 0
                else:
                    idle_cycles += 1
                    assert idle_cycles < 2000, (
                        f"decoder stalled: {len(run.beats)} of {target} beats, words taken "
                        f"{ {name: (feeders[name].taken, len(words[name])) for name in ports} }")
            ctx.set(dut.out.ready, 0)
            if not final:
                # reset in mid-stream (or between phases): drop what is left
                for feeder in feeders.values():
                    feeder.clear(ctx)
                ctx.set(reset, 1)
                await ctx.tick()
                ctx.set(reset, 0)
                continue
            ctx.set(dut.out.ready, 1)
            for _ in range(8):
                _, _, valid = await ctx.tick().sample(dut.out.valid)
                assert not valid, "the decoder produced more beats than the commands asked for"
            for name in ports:
                run.offered[name] = len(words[name])
                run.consumed[name] = feeders[name].taken

    simulate(ResetInserter(reset)(dut), [main], monitors=monitors, background=list(feeders.values()), vcd=vcd)
    by_name = {monitor.name: monitor for monitor in monitors}
    first_in = min(by_name[name].first_transfer_cycle for name in STREAM_NAMES
                   if by_name[name].first_transfer_cycle is not None)
    runs[0].latency = by_name["out"].first_valid_cycle - first_in
    return runs
