"""The generic-gate area estimate (fpga/area.py): one small decoder synthesized with
Yosys through the command line (about 15 s), its numbers checked against each
other and the report; the log parser; and bad parameters, which must fail before
any synthesis."""

from __future__ import annotations

import json

import pytest

from fpga import area
from golden.format.params import FormatParams

SMALL = FormatParams(group_size=16, exponent_coding="raw")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """``python -m fpga.area`` on the decoder, 4 lanes, G = 16, 32-bit words, raw exponents."""
    root = tmp_path_factory.mktemp("area")
    out, js = root / "area.md", root / "area.json"
    rc = area.main(["--out", str(out), "--json", str(js), "--lanes", "4", "--word-bits", "32",
                    "--group-size", "16", "--exponent", "raw", "--designs", "decoder",
                    "--workdir", str(root / "work")])
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
