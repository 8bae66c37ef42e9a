"""The area estimates (fpga/area.py): one small decoder synthesized with Yosys through
the command line, to generic gates and to a tiny liberty library this file writes itself
(five cells: INV, BUF, NAND2, NOR2 and a D flip-flop), its numbers checked against each
other, the mapped netlist and the report (about 25 s in all); the liberty, Yosys and
OpenSTA parsers on canned text; the first-order scaling rules; bad parameters, which
must fail before any synthesis. Nothing here needs the OSU 0.18 um library
(qflow-tech-osu018) or OpenSTA, which only `make area` installs and uses: the
standard-cell flow runs on the tiny library, OpenSTA's output is parsed from text."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from fpga import area
from golden.format.params import FormatParams

SMALL = FormatParams(group_size=16, exponent_coding="raw")

#: The tiny library's cells: area (um^2), inputs, output function (None for the flip-flop).
TINY_CELLS = {
    "INV": (16.0, ("A",), "!A"),
    "BUF": (24.0, ("A",), "A"),
    "NAND2": (24.0, ("A", "B"), "!(A&B)"),
    "NOR2": (24.0, ("A", "B"), "!(A|B)"),
    "DFF": (96.0, ("CLK", "D"), None),
}
TINY_INPUT_PF = 0.002  # every input pin's capacitance, pF (the library's capacitance unit)


def tiny_liberty(cells=TINY_CELLS) -> str:
    """A small but complete liberty library: 2x2 NLDM tables, a rising-edge D flip-flop."""
    def table(kind, base):
        return (f"        {kind} (delay_2x2) {{ index_1 (\"0.01, 0.5\"); index_2 (\"0.001, 0.1\"); "
                f"values (\"{base:.3f}, {1.5 * base:.3f}\", \"{2 * base:.3f}, {3 * base:.3f}\"); }}\n")

    lines = ["/* written by tests/fpga/test_area.py */", "library (tiny) {", "  delay_model : table_lookup;",
             '  time_unit : "1ns";', '  voltage_unit : "1V";', '  current_unit : "1uA";',
             "  capacitive_load_unit (1, pf);", "  nom_voltage : 1.8; nom_temperature : 25; nom_process : 1;",
             "  lu_table_template (delay_2x2) { variable_1 : input_net_transition;",
             "    variable_2 : total_output_net_capacitance;",
             '    index_1 ("0.01, 0.5"); index_2 ("0.001, 0.1"); }']
    for name, (cell_area, inputs, function) in cells.items():
        lines.append(f"  cell ({name}) {{\n    area : {cell_area};")
        if function is None:  # the D flip-flop
            lines.append('    ff (IQ, IQN) { next_state : "D"; clocked_on : "CLK"; }\n'
                         f"    pin (CLK) {{ direction : input; capacitance : {TINY_INPUT_PF}; clock : true; }}\n"
                         f"    pin (D) {{ direction : input; capacitance : {TINY_INPUT_PF};\n"
                         '      timing () { related_pin : "CLK"; timing_type : setup_rising;\n'
                         '        rise_constraint (scalar) { values ("0.1"); }\n'
                         '        fall_constraint (scalar) { values ("0.1"); } }\n    }\n'
                         '    pin (Q) { direction : output; function : "IQ";\n'
                         '      timing () { related_pin : "CLK"; timing_type : rising_edge;\n'
                         '        cell_rise (scalar) { values ("0.2"); } cell_fall (scalar) { values ("0.2"); }\n'
                         '        rise_transition (scalar) { values ("0.1"); }\n'
                         '        fall_transition (scalar) { values ("0.1"); } }\n    }\n  }')
            continue
        sense = "positive_unate" if function == "A" else "negative_unate"
        for pin in inputs:
            lines.append(f"    pin ({pin}) {{ direction : input; capacitance : {TINY_INPUT_PF}; }}")
        lines.append(f'    pin (Y) {{ direction : output; function : "{function}";')
        for pin in inputs:
            lines.append(f'      timing () {{ related_pin : "{pin}"; timing_sense : {sense};\n'
                         + table("cell_rise", 0.05) + table("cell_fall", 0.05)
                         + table("rise_transition", 0.03) + table("fall_transition", 0.03) + "      }")
        lines.append("    }\n  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def netlist_cells(netlist: str) -> Counter:
    """Cell instances by type in Yosys' Verilog netlist (``TYPE name (``), counted here, not by Yosys."""
    return Counter(re.findall(r"^\s*(\w+)\s+\S+\s*\($", netlist, re.MULTILINE))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """``python -m fpga.area`` on the decoder, 4 lanes, G = 16, 32-bit words, raw exponents:
    generic gates and the tiny library, OpenSTA made absent (the report must say how to get it)."""
    root = tmp_path_factory.mktemp("area")
    out, js, lib = root / "area.md", root / "area.json", root / "tiny.lib"
    lib.write_text(tiny_liberty())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(area, "sta_command", lambda: None)
        rc = area.main(["--out", str(out), "--json", str(js), "--lanes", "4", "--word-bits", "32",
                        "--group-size", "16", "--exponent", "raw", "--designs", "decoder",
                        "--workdir", str(root / "work"), "--liberty", str(lib), "--liberty-nm", "180"])
    assert rc == 0
    return json.loads(js.read_text()), out.read_text(), root / "work"


def test_small_decoder_numbers(small_run):
    report, _, _ = small_run
    assert report["params"]["group_size"] == 16 and report["params"]["exponent_coding"] == "raw"
    (r,) = report["results"]
    assert (r["design"], r["lanes"], r["word_bits"]) == ("decoder", 4, 32)
    assert r["flip_flops"] > 0
    assert r["logic_gates"] > r["flip_flops"]
    assert r["nand2_eq"] > 0
    # abc -g cmos2 leaves NAND2, NOR2 and inverters only; dfflegalize only plain DFFs
    assert set(r["gates"]) <= {"$_NAND_", "$_NOR_", "$_NOT_"}
    assert r["gates"].get("$_NAND_", 0) > 0
    assert r["flip_flop_types"] == {"$_DFF_P_": r["flip_flops"]}
    assert r["logic_gates"] == sum(r["gates"].values())
    # Yosys' transistor count = its CMOS table over the gate counts, DFF at 16
    logic = 4 * r["gates"].get("$_NAND_", 0) + 4 * r["gates"].get("$_NOR_", 0) + 2 * r["gates"].get("$_NOT_", 0)
    assert r["logic_transistors"] == logic
    assert r["transistors"] == logic + 16 * r["flip_flops"]
    assert r["nand2_eq"] == pytest.approx(logic / 4 + area.FF_NAND2_EQ * r["flip_flops"])
    assert r["kge"] == pytest.approx(r["nand2_eq"] / 1000)
    assert r["cell_area_mm2"] == pytest.approx(r["nand2_eq"] * area.NAND2_AREA_UM2 * 1e-6)
    assert r["placed_area_mm2"] == pytest.approx(r["cell_area_mm2"] / area.PLACEMENT_UTILIZATION)
    assert r["bytes_per_cycle"] == 8
    assert r["mm2_per_byte_per_cycle"] == pytest.approx(r["cell_area_mm2"] / 8)
    # a decoder of a few thousand gates: far from zero, far from a whole chip
    assert 1_000 < r["nand2_eq"] < 1_000_000
    assert report["paper"]["decoder"]["mm2_per_byte_per_cycle"] == pytest.approx(0.044 / 25.6)


def test_small_decoder_report(small_run):
    report, md, work = small_run
    (r,) = report["results"]
    row = f"| decoder | 4 | 32 | {r['flip_flops']:,} | {r['logic_gates']:,} | {r['kge']:.1f} |"
    assert row in md
    assert "| paper decoder (28 nm, Synopsys DC) |" in md
    assert "0.00172" in md  # the paper's 0.044 mm^2 / 25.6 B/cycle
    assert "encoder |" not in md  # only the decoder was asked for
    assert f"{r['transistors']:,}" in md
    assert "NAND2 = 0.5 µm²" in md and "70% placement utilization" in md
    assert "stat -tech cmos" in md
    # the files the run leaves: RTLIL, script, log with the statistics
    log = (work / "decoder_l4_w32_raw_g16.log").read_text()
    assert "Estimated number of transistors" in log
    assert area.parse_yosys_log(log)["transistors"] == r["transistors"]


def test_parse_yosys_log():
    log = ("2.27. Printing statistics.\n     9 cells\n     9   $_AND_\n"
           "6. Printing statistics.\n\n=== top ===\n\n      12 cells\n       5   $_NAND_\n"
           "       3   $_NOT_\n       2   $_DFF_P_\n       2   $scopeinfo\n\n"
           "   Estimated number of transistors:         58\n")
    parsed = area.parse_yosys_log(log)
    assert parsed == {"cells": {"$_NAND_": 5, "$_NOT_": 3, "$_DFF_P_": 2}, "transistors": 58,
                      "transistors_partial": False}
    assert area.parse_yosys_log(log.replace("58\n", "58+\n"))["transistors_partial"] is True
    with pytest.raises(RuntimeError, match="no `stat` output"):
        area.parse_yosys_log("nothing here")
    with pytest.raises(RuntimeError, match="no transistor estimate"):
        area.parse_yosys_log("5. Printing statistics.\n       5   $_NAND_\n")


def test_default_word_bits():
    assert [area.default_word_bits(n) for n in (4, 8, 16)] == [64, 64, 128]


@pytest.mark.parametrize("design, params, lanes, word_bits, error, match", [
    ("alu", SMALL, 4, 32, ValueError, r"design='alu'"),
    ("decoder", SMALL, 3, 32, ValueError, r"lanes=3 must be a power of two dividing group_size=16"),
    ("decoder", SMALL, 32, 32, ValueError, r"lanes=32 .*group_size=16"),
    ("decoder", SMALL, 0, 32, ValueError, r"lanes=0"),
    ("encoder", SMALL, True, 32, ValueError, r"lanes=True"),
    ("decoder", SMALL, 4, 48, ValueError, r"word_bits=48 is not one of"),
    ("encoder", FormatParams(exponent_coding="mx"), 4, 64, ValueError, r"exponent_coding='mx' has no encoder"),
    ("decoder", {"group_size": 16}, 4, 32, TypeError, r"FormatParams"),
])
def test_bad_parameters(tmp_path, design, params, lanes, word_bits, error, match):
    with pytest.raises(error, match=match):
        area.estimate(design, params, lanes, word_bits, tmp_path / "work")
    assert not (tmp_path / "work").exists()  # rejected before anything was written


def test_cli_rejects_before_synthesis(tmp_path):
    out = tmp_path / "area.md"
    with pytest.raises(ValueError, match=r"lanes=128 must be a power of two dividing group_size=64"):
        area.main(["--out", str(out), "--lanes", "4", "128", "--workdir", str(tmp_path / "work")])
    with pytest.raises(ValueError, match=r"word_bits=16 is not one of"):
        area.main(["--out", str(out), "--word-bits", "16", "--workdir", str(tmp_path / "work")])
    with pytest.raises(SystemExit):
        area.main(["--out", str(out), "--exponent", "mx", "--designs", "encoder"])
    assert not out.exists() and not (tmp_path / "work").exists()


# -- real standard cells, on the tiny library --------------------------------------------------

def test_small_decoder_standard_cells(small_run):
    report, md, work = small_run
    (r,) = report["liberty_results"]
    assert (r["design"], r["lanes"], r["word_bits"]) == ("decoder", 4, 32)
    assert r["library"] == "tiny.lib" and r["library_label"] == "tiny (tiny.lib)" and r["node_nm"] == 180
    assert set(r["cells"]) <= set(TINY_CELLS), sorted(r["cells"])
    assert r["cell_count"] == sum(r["cells"].values()) > r["flip_flops"] > 0
    assert r["flip_flops"] == r["cells"]["DFF"]
    assert r["area_um2"] > 0
    # the area is the sum of the library's cell areas over the instances of the written netlist
    counted = netlist_cells((work / "decoder_l4_w32_raw_g16_lib.v").read_text())
    assert counted == Counter(r["cells"])
    assert r["area_um2"] == pytest.approx(sum(TINY_CELLS[cell][0] * n for cell, n in counted.items()), rel=1e-9)
    assert r["sequential_area_um2"] == pytest.approx(TINY_CELLS["DFF"][0] * r["flip_flops"])
    log = (work / "decoder_l4_w32_raw_g16_lib.log").read_text()
    assert area.parse_liberty_stat(log)["area_um2"] == r["area_um2"]
    # ABC's constraints come from the library: its buffer, four of its input pins as the load
    assert r["abc_driver_cell"] == "BUF" and r["abc_load_ff"] == pytest.approx(4 * TINY_INPUT_PF * 1000)
    assert r["tie_cells"] == []  # the tiny library has none, as OSU018: no hilomap
    script = (work / "decoder_l4_w32_raw_g16_lib.ys").read_text()
    assert "dfflegalize -cell $_DFF_P_ 01\ndfflibmap -liberty tiny.lib\n" in script
    assert "insbuf -buf BUF A Y" in script and "hilomap" not in script
    # first-order scaling, 180 -> 28 nm, and the paper's 1,719 um^2 per B/cycle
    assert r["area_um2_scaled"] == pytest.approx(r["area_um2"] * (28 / 180) ** 2)
    assert r["um2_per_byte_per_cycle_scaled"] == pytest.approx(r["area_um2_scaled"] / 8)
    assert r["vs_paper"] == pytest.approx(r["um2_per_byte_per_cycle_scaled"] / (0.044e6 / 25.6))
    # OpenSTA was made absent: no timing, and the note says how to get it
    assert r["timing"] is None and r["critical_ns_scaled"] is None and r["fmax_mhz_scaled"] is None
    assert "OpenSTA not installed" in r["timing_note"] and "apt-get install opensta" in r["timing_note"]
    # the report's tables and the JSON's description of the flow
    assert "## Real standard cells (tiny (tiny.lib))" in md
    assert f"| decoder | 4 | 32 | {r['cell_count']:,} | {r['flip_flops']:,} | {r['area_um2']:,.0f} |" in md
    assert "| n/a | n/a | n/a |" in md and "n/a (no timing)" in md
    assert "(28/180)² = × 0.0242" in md and "delay × 28/180 = × 0.156" in md
    assert "| paper decoder (28 nm, Synopsys DC) | | 25.6 out | 1,719 | 1.00x | | |" in md
    assert report["liberty"]["node_nm"] == 180 and report["liberty"]["label"] == "tiny (tiny.lib)"
    assert report["liberty"]["area_scale"] == pytest.approx((28 / 180) ** 2)
    assert report["liberty"]["delay_scale"] == pytest.approx(28 / 180)


def test_report_with_timing(small_run):
    """The report's timing columns, from a canned OpenSTA report: measured and first-order 28 nm."""
    (r,) = small_run[0]["liberty_results"]
    t = {**area.parse_sta_report(OSU_STA_REPORT), "start_net": "groups_left[0]", "end_net": "level[3]"}
    scaled = area.scale_delay(t["critical_ns"])
    timed = {**r, "timing": t, "critical_ns_scaled": scaled, "fmax_mhz_scaled": 1000 / scaled,
             "sta_log": "x.sta"}
    md = area.markdown([], SMALL, liberty_results=[timed])
    # measured at 180 nm: 2.559 + 0.180 ns; first order at 28 nm: x 28/180
    sequential = f"{r['sequential_area_um2'] / r['area_um2']:.0%}"
    assert (f"| {r['area_um2']:,.0f} | {sequential} | 2.739 | 365 | 5 | {r['area_um2_scaled']:,.0f} "
            "| 0.426 | 2,347 |") in md
    assert (f"| decoder | 4 | 8 out | {r['um2_per_byte_per_cycle_scaled']:,.0f} | {r['vs_paper']:.2f}x "
            "| 365 / ≈ 2,347 | 2.9 / ≈ 18.8 |") in md
    assert "`groups_left[0]` -> `level[3]`, 5 gates, 2.559 ns arrival + 0.180 ns setup" in md


def test_liberty_flow_needs_a_buffer(tmp_path):
    lib = tmp_path / "nobuf.lib"
    lib.write_text(tiny_liberty({k: v for k, v in TINY_CELLS.items() if k != "BUF"}))
    with pytest.raises(ValueError, match=r"liberty='.*nobuf.lib' has no buffer cell"):
        area.liberty_estimate("decoder", SMALL, 4, 32, liberty=lib, workdir=tmp_path / "work")
    with pytest.raises(ValueError, match=r"liberty='.*nobuf.lib' has no buffer cell"):
        area.main(["--out", str(tmp_path / "a.md"), "--liberty", str(lib), "--liberty-nm", "180",
                   "--workdir", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()


def test_liberty_node_is_checked(tmp_path, monkeypatch):
    lib = tmp_path / "tiny.lib"
    lib.write_text(tiny_liberty())
    for bad in (0, -45, True, "45"):
        with pytest.raises(ValueError, match=r"liberty_nm=.* must be a positive number of nanometres"):
            area.liberty_estimate("decoder", SMALL, 4, 32, liberty=lib, liberty_nm=bad, workdir=tmp_path / "work")
    # another library than the default one needs its feature size, before any synthesis
    monkeypatch.delenv("CASSANDRA_LIBERTY_NM", raising=False)
    with pytest.raises(SystemExit):
        area.main(["--out", str(tmp_path / "a.md"), "--liberty", str(lib), "--workdir", str(tmp_path / "work")])
    with pytest.raises(ValueError, match=r"liberty_nm=0.0 must be a positive"):
        area.main(["--out", str(tmp_path / "a.md"), "--liberty", str(lib), "--liberty-nm", "0",
                   "--workdir", str(tmp_path / "work")])
    assert not (tmp_path / "work").exists()


def test_parse_liberty():
    lib = area.parse_liberty(tiny_liberty())
    assert lib["name"] == "tiny" and lib["time_unit_ns"] == 1.0 and lib["cap_unit_ff"] == 1000.0
    assert {name: cell["area"] for name, cell in lib["cells"].items()} == {n: v[0] for n, v in TINY_CELLS.items()}
    assert lib["sequential"] == ["DFF"]
    assert lib["cells"]["NAND2"] == {"area": 24.0, "inputs": {"A": 2.0, "B": 2.0}, "outputs": {"Y": "!(A&B)"},
                                     "sequential": False}
    assert lib["cells"]["DFF"]["outputs"] == {"Q": "IQ"}
    assert lib["buffer"] == {"cell": "BUF", "input": "A", "output": "Y", "input_ff": 2.0}
    assert lib["tie_high"] is None and lib["tie_low"] is None
    # Nangate-style: quoted names, tie cells, clock buffers, ff units, ps, comments
    other = """library ("other") { /* a comment { with a brace */
      time_unit : "1ps"; capacitive_load_unit (1, ff);
      cell ("CLKBUF_X1") { area : 0.5; pin (A) { direction : input; capacitance : 0.7; }
        pin (Z) { direction : output; function : "A"; } }
      cell (BUF_X2) { area : 1.3; pin (A) { direction : input; capacitance : 1.7; }
        pin (Z) { direction : output; function : "(A)"; } }
      cell (BUF_X1) { area : 0.8; pin (A) { direction : input; capacitance : 0.97; }
        pin (Z) { direction : output; function : "A"; } }
      cell (LOGIC1_X1) { area : 0.53; pin (Z) { direction : output; function : "1"; } }
      cell (LOGIC0_X1) { area : 0.53; pin (Z) { direction : output; function : "0"; } }
      cell (DLH_X1) { area : 2.4; latch (IQ, IQN) { enable : "G"; data_in : "D"; }
        pin (D) { direction : input; capacitance : 1.1; } pin (G) { direction : input; capacitance : 1; }
        pin (Q) { direction : output; function : "IQ"; } }
    }"""
    lib = area.parse_liberty(other)
    assert lib["name"] == "other" and lib["time_unit_ns"] == 0.001 and lib["cap_unit_ff"] == 1.0
    assert lib["buffer"] == {"cell": "BUF_X1", "input": "A", "output": "Z", "input_ff": 0.97}  # not CLKBUF
    assert lib["tie_high"] == {"cell": "LOGIC1_X1", "output": "Z"}
    assert lib["tie_low"] == {"cell": "LOGIC0_X1", "output": "Z"}
    assert lib["sequential"] == ["DLH_X1"]
    with pytest.raises(ValueError, match="no library"):
        area.parse_liberty("cell (X) { area : 1; }")
    with pytest.raises(ValueError, match="has no cell"):
        area.parse_liberty("library (empty) { time_unit : \"1ns\"; }")
    with pytest.raises(ValueError, match="cell 'X' of the liberty text has no area"):
        area.parse_liberty("library (l) { cell (X) { pin (A) { direction : input; } } }")
    with pytest.raises(ValueError, match="unclosed"):
        area.parse_liberty("library (l) { cell (X) { area : 1; ")


LIBERTY_STAT_LOG = """
5. Printing statistics.

=== top ===

        +----------Local Count, excluding submodules.
        |        +-Local Area, excluding submodules.
        |        |
     7356        - wires
       23        - ports
     7237 1.18E+04 cells
       72   76.608   AND2_X1
     1073 4.85E+03   DFF_X1
      536  285.152   INV_X1

   Chip area for module '\\top': 11811.996000
     of which used for sequential elements: 4852.106000 (41.08%)
"""


def test_parse_liberty_stat():
    parsed = area.parse_liberty_stat(LIBERTY_STAT_LOG)
    assert parsed == {"cells": {"AND2_X1": 72, "DFF_X1": 1073, "INV_X1": 536}, "cell_count": 1681,
                      "area_um2": 11811.996, "sequential_area_um2": 4852.106}
    older = ("Printing statistics.\n\n=== top ===\n\n   Number of cells:   3\n     NAND2_X1   2\n"
             "     DFF_X1     1\n\n   Chip area for module '\\top': 6.118000\n")
    assert area.parse_liberty_stat(older) == {"cells": {"NAND2_X1": 2, "DFF_X1": 1}, "cell_count": 3,
                                              "area_um2": 6.118, "sequential_area_um2": None}
    with pytest.raises(RuntimeError, match="no `stat` output"):
        area.parse_liberty_stat("nothing")
    with pytest.raises(RuntimeError, match="no chip area"):
        area.parse_liberty_stat("Printing statistics.\n      5   1.2   NAND2_X1\n")


STA_REPORT = """Startpoint: _45125_ (rising edge-triggered flip-flop clocked by clk)
Endpoint: _43959_ (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max

Fanout    Delay     Time   Description
----------------------------------------------------------------
         0.000    0.000   clock clk (rise edge)
         0.000    0.000   clock network delay (ideal)
         0.000    0.000 ^ _45125_/CK (DFF_X1)
         0.084    0.084 ^ _45125_/Q (DFF_X1)
    1                     exponent_reader.read_pointer[6] (net)
         0.020    0.105 ^ _48881_/Z (BUF_X1)
    1                     _02532_ (net)
         0.080    0.185 v _35690_/Z (MUX2_X2)
    2                     _14688_ (net)
         0.000    0.185 v _43959_/D (DFF_X1)
                  0.185   data arrival time

         0.000   10.000   10.000   clock clk (rise edge)
                  0.000   10.000   clock network delay (ideal)
                  0.000   10.000   clock reconvergence pessimism
                          10.000 ^ _43959_/CK (DFF_X1)
                 -0.039    9.961   library setup time
                           9.961   data required time
----------------------------------------------------------------
                           9.961   data required time
                          -0.185   data arrival time
----------------------------------------------------------------
                           9.776   slack (MET)
"""


def test_parse_sta_report():
    t = area.parse_sta_report(STA_REPORT)
    assert t["startpoint"].startswith("_45125_") and t["endpoint"].startswith("_43959_")
    assert t["start_kind"] == "register"
    assert t["arrival_ns"] == 0.185 and t["slack_ns"] == 9.776 and t["setup_ns"] == 0.039
    assert t["critical_ns"] == pytest.approx(10 - 9.776) == pytest.approx(0.185 + 0.039)
    assert t["fmax_mhz"] == pytest.approx(1000 / 0.224)
    assert t["stages"] == 3  # the start flip-flop, BUF_X1, MUX2_X2
    assert t["nets"] == ["exponent_reader.read_pointer[6]", "_02532_", "_14688_"]
    violated = STA_REPORT.replace("9.776   slack (MET)", "-0.500   slack (VIOLATED)")
    assert area.parse_sta_report(violated)["critical_ns"] == pytest.approx(10.5)
    from_input = STA_REPORT.replace("_45125_ (rising edge-triggered flip-flop clocked by clk)",
                                    "a (input port clocked by clk)")
    assert area.parse_sta_report(from_input)["start_kind"] == "input"
    with pytest.raises(RuntimeError, match=r"no timing path \(Error: top is not linked"):
        area.parse_sta_report("Error: top is not linked.\n")



#: OpenSTA 0~20191111 (Debian's opensta) on the OSU018 mapping of a decoder, shortened.
OSU_STA_REPORT = """Startpoint: _37698_ (rising edge-triggered flip-flop clocked by clk)
Endpoint: _37729_ (rising edge-triggered flip-flop clocked by clk)
Path Group: clk
Path Type: max

Fanout    Delay     Time   Description
----------------------------------------------------------------
         0.000    0.000   clock clk (rise edge)
         0.000    0.000   clock network delay (ideal)
         0.000    0.000 ^ _37698_/CLK (DFFPOSX1)
         0.157    0.157 ^ _37698_/Q (DFFPOSX1)
    5                     groups_left[0] (net)
         0.196    0.353 v _25058_/Y (NOR2X1)
    5                     _15239_ (net)
         2.024    2.377 v _25292_/Y (NOR3X1)
    1                     _15260_ (net)
         0.119    2.496 v _25303_/Y (XNOR2X1)
    1                     _15261_ (net)
         0.063    2.559 ^ _25326_/Y (AOI21X1)
    1                     _03776_ (net)
         0.000    2.559 ^ _37729_/D (DFFPOSX1)
                  2.559   data arrival time

        10.000   10.000   clock clk (rise edge)
         0.000   10.000   clock network delay (ideal)
         0.000   10.000   clock reconvergence pessimism
                 10.000 ^ _37729_/CLK (DFFPOSX1)
        -0.180    9.820   library setup time
                  9.820   data required time
----------------------------------------------------------------
                  9.820   data required time
                 -2.559   data arrival time
----------------------------------------------------------------
                  7.261   slack (MET)

"""


def test_parse_sta_report_osu018():
    t = area.parse_sta_report(OSU_STA_REPORT)
    assert t["startpoint"].startswith("_37698_") and t["endpoint"].startswith("_37729_")
    assert t["arrival_ns"] == 2.559 and t["setup_ns"] == 0.18 and t["slack_ns"] == 7.261
    assert t["critical_ns"] == pytest.approx(2.739) and t["fmax_mhz"] == pytest.approx(1000 / 2.739)
    assert t["stages"] == 5  # DFFPOSX1, NOR2X1, NOR3X1, XNOR2X1, AOI21X1 (CLK is not a stage)
    assert t["nets"] == ["groups_left[0]", "_15239_", "_15260_", "_15261_", "_03776_"]
    # a library in ps: the same numbers are ps, the period is still given in ns
    in_ps = area.parse_sta_report(OSU_STA_REPORT.replace("7.261   slack", "9997.261   slack"),
                                  period_ns=10.0, time_unit_ns=0.001)
    assert in_ps["arrival_ns"] == pytest.approx(0.002559) and in_ps["critical_ns"] == pytest.approx(0.002739)
    for bad in ({"period_ns": 0}, {"time_unit_ns": -1.0}, {"time_unit_ns": True}):
        with pytest.raises(ValueError, match=r"(period_ns|time_unit_ns)=.* must be a positive number"):
            area.parse_sta_report(OSU_STA_REPORT, **bad)


def test_register_output():
    netlist = "  DFF_X1 _43959_ (\n    .CK(clk),\n    .D(_0001_),\n    .Q(\\bitmap_reader.level [3]),\n" \
              "    .QN(_0002_)\n  );\n"
    assert area._register_output(netlist, "_43959_") == "bitmap_reader.level[3]"
    assert area._register_output(netlist, "_1_") is None
    osu = "  DFFPOSX1 _37729_ (\n    .CLK(clk),\n    .D(_03776_),\n    .Q(\\groups_left [1] )\n  );\n"
    assert area._register_output(osu, "_37729_") == "groups_left[1]"
    assert area._register_output(netlist, "_43959_", pins=("QN",)) == "_0002_"


def test_scale_area_and_delay():
    assert area.scale_area(1.0) == pytest.approx((28 / 180) ** 2) == pytest.approx(0.0242, abs=1e-4)
    assert area.scale_area(100.0, from_nm=28, to_nm=28) == 100.0
    assert area.scale_area(4.0, from_nm=10, to_nm=5) == pytest.approx(1.0)
    assert area.scale_area(1.0, from_nm=45) == pytest.approx(0.3872, abs=1e-4)
    assert area.scale_delay(1.0) == pytest.approx(28 / 180) == pytest.approx(0.1556, abs=1e-4)
    assert area.scale_delay(9.0, from_nm=45, to_nm=15) == pytest.approx(3.0)
    for scale in (area.scale_area, area.scale_delay):
        for bad in ({"from_nm": 0}, {"to_nm": -28}, {"from_nm": True}, {"to_nm": "28"}):
            with pytest.raises(ValueError, match=r"(from_nm|to_nm)=.* must be a positive number"):
                scale(1.0, **bad)
    with pytest.raises(ValueError, match=r"area=-1.0 must be a non-negative"):
        area.scale_area(-1.0)
    with pytest.raises(ValueError, match=r"delay=-2 must be a non-negative"):
        area.scale_delay(-2)


def test_find_liberty(tmp_path, monkeypatch):
    monkeypatch.delenv("CASSANDRA_LIBERTY", raising=False)
    lib = tmp_path / "mine.lib"
    lib.write_text("library (x) { }\n")
    assert area.find_liberty(lib) == lib
    # the default: Debian's OSU018 file when it is installed, else None
    assert area.LIBERTY_FILE == area.Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")
    monkeypatch.setattr(area, "LIBERTY_FILE", tmp_path / "osu018_stdcells.lib")
    assert area.find_liberty() is None
    monkeypatch.setattr(area, "LIBERTY_FILE", lib)
    assert area.find_liberty() == lib
    monkeypatch.setenv("CASSANDRA_LIBERTY", str(tmp_path / "other.lib"))
    with pytest.raises(FileNotFoundError, match=r"liberty='.*other.lib' is not a file"):
        area.find_liberty()
    with pytest.raises(FileNotFoundError, match=r"liberty='.*missing.lib' is not a file"):
        area.find_liberty(tmp_path / "missing.lib")


def test_liberty_label(tmp_path):
    assert area.liberty_label(area.LIBERTY_FILE, {"name": "osu018_stdcells"}) == area.LIBERTY_LABEL
    assert "qflow-tech-osu018" in area.LIBERTY_LABEL
    assert area.liberty_label(tmp_path / "x.lib.gz", {"name": "NangateOpenCellLibrary"}) == \
        "NangateOpenCellLibrary (x.lib.gz)"


@pytest.mark.parametrize("value", [0, -5, True, 1.5])
def test_liberty_estimate_rejects_bad_delay(tmp_path, value):
    with pytest.raises(ValueError, match=r"abc_delay_ps=.* must be a positive integer"):
        area.liberty_estimate("decoder", SMALL, 4, 32, workdir=tmp_path / "work", abc_delay_ps=value)
    assert not (tmp_path / "work").exists()
