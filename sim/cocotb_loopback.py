"""cocotb test of ``cassandra_loopback`` (encoder -> decoder): BF16 beats in, and out
of the decoder the job's expected values: the inputs themselves in full mode, the
golden draft in draft mode. Writes ``<job>.stats.json`` with the wall-clock speed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb

from sim.tb import TB, StreamMonitor, StreamSink, StreamSource


@cocotb.test()
async def loopback_job(dut):
    path = Path(os.environ["CASSANDRA_SIM_JOB"])
    job = json.loads(path.read_text())
    lanes = job["lanes"]
    tb = TB(dut, seed=job["seed"])
    sources = {name: StreamSource(tb, name, idle=job["idle"]) for name in ("enc_cmd", "dec_cmd", "values")}
    sink = StreamSink(tb, "out", backpressure=job["backpressure"])
    monitors = [StreamMonitor(tb, name) for name in ("enc_cmd", "dec_cmd", "values", "out")]
    dut.keep.value = job["keep"]
    dut.draft_only.value = int(job.get("draft_only", False))
    if job.get("codebook") is not None:
        dut.codebook.value = sum(int(e) << (8 * r) for r, e in enumerate(job["codebook"]))
    await tb.reset()
    tb.start(*sources.values(), sink, *monitors)
    for name, source in sources.items():
        source.queue.extend(job[name])
    expected = job["expected"]
    beats = len(expected) // lanes
    value_mask = (1 << (16 * lanes)) - 1
    started = time.perf_counter()
    checked = 0

    def check_new_beats():
        # check as the beats come, so a long run fails at the first wrong value
        nonlocal checked
        while checked < len(sink.items):
            beat = sink.items[checked] & value_mask
            for lane in range(lanes):
                got, want = (beat >> (16 * lane)) & 0xFFFF, expected[checked * lanes + lane]
                assert got == want, f"value {checked * lanes + lane}: rtl {got:#06x} ref {want:#06x}"
            checked += 1

    await tb.run_until(lambda: len(sink.items) >= beats, lambda: len(sink.items), each_cycle=check_new_beats,
                       describe=lambda: f"{len(sink.items)} of {beats} beats")
    seconds = time.perf_counter() - started
    await tb.cycles(16)
    assert len(sink.items) == beats, "more beats came out than went in"
    assert all(source.sent == len(job[name]) for name, source in sources.items())
    tb.check_protocol()
    stats = {"values": len(expected), "seconds": seconds, "values_per_second": len(expected) / seconds,
             "cycles": monitors[0].cycles}
    path.with_suffix(".stats.json").write_text(json.dumps(stats))
    dut._log.info("loopback: %d values in %.1f s (%.0f values/s)", len(expected), seconds, stats["values_per_second"])
