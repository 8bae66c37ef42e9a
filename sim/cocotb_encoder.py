"""cocotb test of ``cassandra_encoder``: feeds the job's BF16 beats and commands,
collects the five output streams, and compares them with the golden encoder's
words, bit for bit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb

from golden.format.params import STREAM_NAMES
from sim.tb import TB, StreamMonitor, StreamSink, StreamSource


@cocotb.test()
async def encode_job(dut):
    job = json.loads(Path(os.environ["CASSANDRA_SIM_JOB"]).read_text())
    tb = TB(dut, seed=job["seed"])
    sources = {name: StreamSource(tb, name, idle=job["idle"]) for name in ("cmd", "values")}
    sinks = {name: StreamSink(tb, name, backpressure=job["backpressure"]) for name in STREAM_NAMES}
    monitors = [StreamMonitor(tb, name) for name in ("cmd", "values", *STREAM_NAMES)]
    dut.keep.value = job["keep"]
    if job.get("codebook") is not None:
        dut.codebook.value = sum(int(e) << (8 * r) for r, e in enumerate(job["codebook"]))
    await tb.reset()
    tb.start(*sources.values(), *sinks.values(), *monitors)

    for index, phase in enumerate(job["phases"]):
        for sink in sinks.values():
            sink.items.clear()
        for name, source in sources.items():
            source.sent = 0
            source.queue.extend(phase[name])
        cut = phase.get("values_before_reset")
        if cut is not None:
            # reset in mid-stream: once `cut` beats went in, whatever is in flight is dropped
            while sources["values"].sent < cut:
                await tb.cycles(1)
            await tb.cycles(3)
            for source in sources.values():
                source.clear()
            await tb.reset()
            continue
        expected = phase["expected"]
        await tb.run_until(
            lambda: all(len(sinks[name].items) >= len(expected[name]) for name in STREAM_NAMES),
            lambda: sum(len(sink.items) for sink in sinks.values()),
            describe=lambda: f"phase {index}: " + ", ".join(
                f"{name} {len(sinks[name].items)}/{len(expected[name])}" for name in STREAM_NAMES))
        await tb.cycles(3 * job["beats_per_group"] + 16)
        for name in STREAM_NAMES:
            got = sinks[name].items
            assert got == expected[name], (
                f"phase {index}, stream {name}: {len(got)} words, {len(expected[name])} expected; first "
                f"difference at {next((i for i, (a, b) in enumerate(zip(got, expected[name])) if a != b), min(len(got), len(expected[name])))}")
        assert sources["values"].sent == len(phase["values"]) and not sources["values"].queue
    tb.check_protocol()
    dut._log.info("encoded %d phases, protocol checked on %d ports over %d cycles",
                  len(job["phases"]), len(monitors), monitors[0].cycles)
