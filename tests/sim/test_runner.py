"""sim/runner.py's build folders: two builds of one design at once (two pytest-xdist
workers, two ``make sim`` runs) take turns on a lock and compile once; a folder whose
stamp matches the Verilog is not compiled again; a changed stamp is. The simulator is
replaced by a stand-in that records its calls (the Verilog is the real ``make verilog``
output), so this runs in seconds; one test compiles a small decoder for real and runs a
cocotb bench on it from a runner whose build was skipped."""

from __future__ import annotations

import threading
import time

import cocotb_tools.runner

import sim.runner as sim_runner
from golden.format.params import FormatParams, keep_count
from sim.jobs import decoder_phase, encode_tensor, write_job
from tests.samples import weights

PARAMS = FormatParams(group_size=16, superblock_groups=2, mantissa_bits=0, exponent_coding="raw")


class StandInSimulator:
    """Counts builds and how many ran at once; a build writes the executable."""

    def __init__(self):
        self.builds = 0
        self.running = 0
        self.most_at_once = 0
        self.guard = threading.Lock()

    def build(self, *, build_dir, hdl_toplevel, **_):
        with self.guard:
            self.builds += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.5)
        (build_dir / hdl_toplevel).write_text("executable")
        with self.guard:
            self.running -= 1


def test_concurrent_builds_take_turns_and_compile_once(tmp_path, monkeypatch):
    simulator = StandInSimulator()
    monkeypatch.setattr(sim_runner, "BUILD_ROOT", tmp_path)
    monkeypatch.setattr(cocotb_tools.runner, "get_runner", lambda name: simulator)
    folders = []

    def build():
        folders.append(sim_runner.build_design("cassandra_decoder", PARAMS, lanes=4, word_bits=32, waves=False,
                                               sim="verilator")[1])

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(folders) == 2 and folders[0] == folders[1]
    assert simulator.most_at_once == 1
    assert simulator.builds == 1, "the second build should have found the first one's stamp"

    stamp = folders[0] / "cassandra-build.stamp"
    assert "cassandra_decoder" in stamp.read_text()
    sim_runner.build_design("cassandra_decoder", PARAMS, lanes=4, word_bits=32, waves=False, sim="verilator")
    assert simulator.builds == 1
    stamp.write_text("compiled from other Verilog\n")
    sim_runner.build_design("cassandra_decoder", PARAMS, lanes=4, word_bits=32, waves=False, sim="verilator")
    assert simulator.builds == 2 and stamp.read_text() != "compiled from other Verilog\n"


def test_a_skipped_build_runs_a_bench(tmp_path, monkeypatch):
    """A second process (here: a second call) finds the stamp, skips the compile, and
    its runner still runs the decoder bench."""
    monkeypatch.setattr(sim_runner, "BUILD_ROOT", tmp_path)
    _, build_dir = sim_runner.build_design("cassandra_decoder", PARAMS, lanes=4, word_bits=32, waves=False)
    executable = build_dir / "cassandra_decoder"
    compiled = executable.stat().st_mtime_ns
    runner, again = sim_runner.build_design("cassandra_decoder", PARAMS, lanes=4, word_bits=32, waves=False)
    assert again == build_dir and executable.stat().st_mtime_ns == compiled
    enc = encode_tensor(weights(2, 2 * PARAMS.group_size, seed=7), PARAMS, keep=keep_count(PARAMS.group_size, 0.4))
    job = write_job(tmp_path / "job.json", lanes=4, seed=0, codebook=None, idle=0.2, backpressure=0.2,
                    phases=[decoder_phase([(enc, True), (enc, False)], lanes=4, word_bits=32)])
    sim_runner.run_cocotb(runner, build_dir, "cassandra_decoder", "sim.cocotb_decoder", job, waves=False)
