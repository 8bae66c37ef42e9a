"""cocotb tests of the AXI4-Stream wrappers with cocotbext-axi's AxiStreamSource
and AxiStreamSink (random pauses on every port), against the golden model. The
job file (``CASSANDRA_SIM_JOB``) says which wrapper and what to send."""

from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamSink, AxiStreamSource

from golden.format.params import STREAM_NAMES


def _pauses(seed: int, probability: float):
    rng = random.Random(seed)
    return (rng.random() < probability for _ in itertools.count())


def _bytes(words: list[int], width_bits: int) -> bytes:
    return b"".join(int(word).to_bytes(width_bits // 8, "little") for word in words)


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def axis_job(dut):
    job = json.loads(Path(os.environ["CASSANDRA_SIM_JOB"]).read_text())
    await _start(dut)
    if job.get("codebook") is not None:
        dut.codebook.value = sum(int(e) << (8 * r) for r, e in enumerate(job["codebook"]))
    pause = job["pause"]
    word_bits = job["word_bits"]
    seeds = itertools.count(job["seed"])
    if job["design"] == "cassandra_decoder_axis":
        cmd = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_cmd"), dut.clk, dut.rst)
        sources = {name: AxiStreamSource(AxiStreamBus.from_prefix(dut, f"s_axis_{name}"), dut.clk, dut.rst)
                   for name in STREAM_NAMES}
        sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        for port in (cmd, *sources.values(), sink):
            port.set_pause_generator(_pauses(next(seeds), pause))
        for command in job["commands"]:
            await cmd.send(int(command).to_bytes(5, "little"))
        for name, source in sources.items():
            if job["words"][name]:
                await source.send(_bytes(job["words"][name], word_bits))
        for index, expected in enumerate(job["expected_per_command"]):
            frame = await sink.recv()
            want = b"".join(int(value).to_bytes(2, "little") for value in expected)
            assert bytes(frame.tdata) == want, f"command {index}: decoded bytes differ from golden"
        for _ in range(32):
            await RisingEdge(dut.clk)
        assert sink.empty(), "more output than the commands asked for"
        assert all(source.empty() and source.idle() for source in (cmd, *sources.values())), "words left over"
    else:
        cmd = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_cmd"), dut.clk, dut.rst)
        values = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        sinks = {name: AxiStreamSink(AxiStreamBus.from_prefix(dut, f"m_axis_{name}"), dut.clk, dut.rst)
                 for name in STREAM_NAMES}
        for port in (cmd, values, *sinks.values()):
            port.set_pause_generator(_pauses(next(seeds), pause))
        dut.keep.value = job["keep"]
        for command in job["commands"]:
            await cmd.send(int(command).to_bytes(4, "little"))
        await values.send(b"".join(int(v).to_bytes(2, "little") for v in job["values"]))
        # no tlast on the encoder's outputs: collect words until each stream has its count
        for name, sink in sinks.items():
            want = _bytes(job["expected"][name], word_bits)
            got = bytearray()
            while len(got) < len(want):
                got += bytes((await sink.recv()).tdata) if not sink.empty() else b""
                if len(got) < len(want):
                    await RisingEdge(dut.clk)
            assert bytes(got) == want, f"stream {name}: encoded bytes differ from golden"
        for _ in range(64):
            await RisingEdge(dut.clk)
        assert all(sink.empty() for sink in sinks.values()), "more words than the golden encoder writes"
