"""cocotb test of ``cassandra_decoder``: drives the job file named by the
environment variable ``CASSANDRA_SIM_JOB`` (written by sim/jobs.py) and compares
every output value with the golden decode, bit for bit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb

from golden.format.params import STREAM_NAMES
from sim.tb import TB, StreamMonitor, StreamSink, StreamSource


@cocotb.test()
async def decode_job(dut):
    job = json.loads(Path(os.environ["CASSANDRA_SIM_JOB"]).read_text())
    lanes = job["lanes"]
    tb = TB(dut, seed=job["seed"])
    sources = {name: StreamSource(tb, name, idle=job["idle"]) for name in ("cmd", *STREAM_NAMES)}
    sink = StreamSink(tb, "out", backpressure=job["backpressure"])
    monitors = [StreamMonitor(tb, name) for name in ("cmd", *STREAM_NAMES, "out")]
    if job.get("codebook") is not None:
        dut.codebook.value = sum(int(e) << (8 * r) for r, e in enumerate(job["codebook"]))
    await tb.reset()
    tb.start(*sources.values(), sink, *monitors)

    for index, phase in enumerate(job["phases"]):
        for name, source in sources.items():
            source.sent = 0
            source.queue.extend(phase["commands"] if name == "cmd" else phase["words"][name])
        sink.items.clear()
        target = phase["beats_before_reset"] if phase.get("beats_before_reset") is not None else phase["beats"]
        await tb.run_until(lambda: len(sink.items) >= target, lambda: len(sink.items),
                           describe=lambda: f"phase {index}: {len(sink.items)} of {target} beats")
        values = [(beat >> (16 * lane)) & 0xFFFF for beat in sink.items[:target] for lane in range(lanes)]
        expected = phase["expected"][:len(values)]
        mismatches = [i for i, (a, b) in enumerate(zip(values, expected)) if a != b]
        assert not mismatches, (f"phase {index}: {len(mismatches)} values differ from golden, first at "
                                f"{mismatches[0]}: rtl {values[mismatches[0]]:#06x} ref {expected[mismatches[0]]:#06x}")
        lasts = [i + 1 for i, beat in enumerate(sink.items[:target]) if beat >> (16 * lanes) & 1]
        assert lasts == [end for end in phase["command_ends"] if end <= target]
        if phase.get("beats_before_reset") is not None:
            # reset in mid-stream: drop what is in flight, then the next phase starts afresh
            for source in sources.values():
                source.clear()
            await tb.reset()
            continue
        await tb.cycles(16)
        assert len(sink.items) == target, "the decoder produced more beats than the commands asked for"
        for name, source in sources.items():
            offered = len(phase["commands"] if name == "cmd" else phase["words"][name])
            assert source.sent == offered and not source.queue, (
                f"{name}: {source.sent} of {offered} words taken (left over or over-read)")
    tb.check_protocol()
    dut._log.info("decoded %d phases, protocol checked on %d ports over %d cycles",
                  len(job["phases"]), len(monitors), monitors[0].cycles)
