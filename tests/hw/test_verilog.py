"""`make verilog` (python -m hw.verilog): files, port maps, and a lint with only justified warnings."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from golden.format.params import FormatParams
from hw.verilog import JUSTIFIED_LINT, _verilator, build, main

#: a small build (4 lanes, 32-bit words, groups of 16) for tests of the generator's options
SMALL = ["--lanes", "4", "--word-bits", "32", "--group-size", "16"]


def test_default_configuration(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["params"] == FormatParams().as_dict()
    assert (config["lanes"], config["word_bits"]) == (8, 64)
    for name in ("cassandra_decoder", "cassandra_encoder"):
        text = (tmp_path / f"{name}.v").read_text()
        assert re.search(rf"^module {name}\(", text, re.M), f"{name}.v lacks module {name}"
        # every lint kind left is one docs/HARDWARE.md justifies
        assert set(config["lint"][name]) <= set(JUSTIFIED_LINT)
    assert config["unjustified_lint"] == []
    ports = (tmp_path / "cassandra_decoder.md").read_text()
    for port in ("cmd__payload", "bitmap__payload", "pruned_raw__ready", "codebook", "out__payload"):
        assert f"`{port}`" in ports
    assert "| `out__payload` | out | 129 |" in ports  # 8 lanes x 16 bits + last
    assert "`last` bits 128..128" in ports
    assert "lint:" in capsys.readouterr().out


def test_decoder_ports_in_verilog_match_the_port_map(tmp_path):
    assert main(["--out", str(tmp_path), "--lanes", "4", "--exponent", "raw", "--word-bits", "32",
                 "--no-lint"]) == 0
    text = (tmp_path / "cassandra_decoder.v").read_text()
    header = re.search(r"^module cassandra_decoder\((.*?)\);", text, re.M | re.S).group(1)
    verilog_ports = {name.strip() for name in header.split(",")}
    table = (tmp_path / "cassandra_decoder.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z_0-9]+)` \| (in|out) \|", table, re.M))
    assert verilog_ports == set(documented)
    top = text[text.index("module cassandra_decoder("):]
    top = top[:top.index("endmodule")]
    declared = dict((name, direction) for direction, name in
                    re.findall(r"^\s*(input|output)\s+(?:\[\d+:0\]\s+)?([a-z_0-9]+);", top, re.M))
    assert {name: direction[:-3] if direction == "input" else "out" for name, direction in declared.items()} \
        == documented
    assert "codebook" not in verilog_ports  # raw coding has no codebook
    assert re.search(r"input \[31:0\] bitmap__payload;", text)
    assert re.search(r"output \[64:0\] out__payload;", text)


def test_mx_is_decode_only(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--exponent", "mx", "--no-lint"]) == 0
    assert (tmp_path / "cassandra_decoder.v").exists()
    assert not (tmp_path / "cassandra_encoder.v").exists()
    out = capsys.readouterr().out
    assert "no encoder for exponent coding 'mx'" in out and "golden encoder" in out
    assert "converting cassandra_decoder ..." in out  # progress


def test_only_limits_the_designs_written(tmp_path):
    """The simulation builds ask for the designs they compile (``only``): the others
    are not converted; a name it does not write, or the mx encoder, is refused."""
    params = FormatParams(group_size=16, superblock_groups=2, exponent_coding="raw")
    summary = build(params, lanes=4, word_bits=32, out=tmp_path, run_lint=False, only=("cassandra_decoder",))
    assert list(summary["files"]) == ["cassandra_decoder"]
    assert sorted(path.name for path in tmp_path.glob("*.v")) == ["cassandra_decoder.v"]
    with pytest.raises(ValueError, match="cassandra_decodr"):
        build(params, lanes=4, word_bits=32, out=tmp_path, run_lint=False, only=("cassandra_decodr",))
    with pytest.raises(ValueError, match="no encoder for exponent coding 'mx'"):
        build(FormatParams(exponent_coding="mx"), lanes=4, word_bits=32, out=tmp_path, run_lint=False,
              only=("cassandra_encoder",))


def _modules(path):
    return re.findall(r"^module\s+(\S+?)\s*\(", path.read_text(), re.M)


def test_prefix_lets_two_builds_share_a_design(tmp_path):
    """A weights decoder (S = 64) and a KV decoder (S = 1) with prefixes: every module
    name starts with the prefix, the two sets are disjoint, and Verilator reads both
    files in one run without a duplicate module."""
    weights, kv = tmp_path / "weights", tmp_path / "kv"
    assert main(["--out", str(weights), "--prefix", "w_", "--no-lint", *SMALL]) == 0
    assert main(["--out", str(kv), "--prefix", "kv_", "--superblock-groups", "1", "--no-lint", *SMALL]) == 0
    w_modules, kv_modules = _modules(weights / "w_cassandra_decoder.v"), _modules(kv / "kv_cassandra_decoder.v")
    assert "w_cassandra_decoder" in w_modules and "kv_cassandra_decoder" in kv_modules
    assert all(name.startswith(("w_", "\\w_")) for name in w_modules), w_modules
    assert all(name.startswith(("kv_", "\\kv_")) for name in kv_modules), kv_modules
    assert not set(w_modules) & set(kv_modules)
    assert json.loads((kv / "config.json").read_text())["prefix"] == "kv_"
    assert sorted(path.name for path in kv.glob("*.v")) == [
        "kv_cassandra_decoder.v", "kv_cassandra_decoder_axis.v", "kv_cassandra_encoder.v",
        "kv_cassandra_encoder_axis.v"]
    top = tmp_path / "both.v"
    top.write_text("module both(input clk, input rst);\n"
                   "  w_cassandra_decoder weights(.clk(clk), .rst(rst));\n"
                   "  kv_cassandra_decoder kv(.clk(clk), .rst(rst));\nendmodule\n")
    result = subprocess.run([_verilator(), "--lint-only", "-Wno-fatal", "-Wno-PINMISSING", "--top-module", "both",
                             str(top), str(weights / "w_cassandra_decoder.v"), str(kv / "kv_cassandra_decoder.v")],
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "%Error" not in output, output[-2000:]
    assert "MODDUP" not in output


def test_stale_files_are_removed(tmp_path, capsys):
    """A second run into the same folder removes what the first wrote and it does not
    (here the encoder: mx has none); other files stay."""
    assert main(["--out", str(tmp_path), "--no-lint", *SMALL]) == 0
    (tmp_path / "notes.v").write_text("// the user's file\n")
    capsys.readouterr()
    assert main(["--out", str(tmp_path), "--exponent", "mx", "--no-lint", *SMALL]) == 0
    out = capsys.readouterr().out
    for name in ("cassandra_encoder.v", "cassandra_encoder.md", "cassandra_encoder_axis.v"):
        assert not (tmp_path / name).exists()
        assert f"removed {tmp_path / name}" in out
    assert (tmp_path / "notes.v").exists() and (tmp_path / "cassandra_decoder.v").exists()
    assert not (tmp_path / "lint.txt").exists()  # a --no-lint run leaves no old lint report
    assert json.loads((tmp_path / "config.json").read_text())["removed"] == [
        "cassandra_encoder.md", "cassandra_encoder.v", "cassandra_encoder_axis.md", "cassandra_encoder_axis.v"]


@pytest.mark.parametrize("argv,message", [
    (["--lanes", "3"], "lanes=3 must be a power of two"),
    (["--lanes", "128", "--group-size", "64"], "lanes=128 is not supported"),
    (["--truncate", "9"], "--truncate 9 is out of range"),
    (["--group-size", "48"], "group_size=48 must be a power of two"),
    (["--lanes", "32"], "lanes=32 is not supported"),
    (["--prefix", "9x"], "prefix='9x' must be empty or a Verilog identifier start"),
    (["--prefix", "a-b"], "prefix='a-b'"),
    (["--draft-rounding", "midpoint", "--exponent", "mx"], "not mx"),
])
def test_bad_parameters_are_named(tmp_path, capsys, argv, message):
    assert main(["--out", str(tmp_path), "--no-lint", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--lanes", "4", "--exponent", "raw", "--word-bits", "32", "--draft-rounding", "midpoint"],
    ["--lanes", "16", "--exponent", "mx", "--word-bits", "256", "--mx-block", "2"],
    pytest.param(["--lanes", "16", "--group-size", "16", "--truncate", "7", "--superblock-groups", "1"],
                 marks=pytest.mark.long),  # 2 min of lint: `make test-long`
    ["--lanes", "8", "--truncate", "0", "--unary-max", "1", "--word-bits", "128"],
], ids=["raw-l4-w32", "mx-l16-w256", "l16-g16-m0-s1", "unary-l8-m7-L1"])
def test_lint_other_configurations(tmp_path, argv):
    """Edge configurations (one beat per group, one group per superblock, m = 0
    and m = 7, L_max = 1, a midpoint-rounding decoder) lint with justified kinds only."""
    assert main(["--out", str(tmp_path), *argv]) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["unjustified_lint"] == []
    assert config["lint"]  # the lint ran


def test_hardware_doc_has_the_default_port_tables():
    """docs/HARDWARE.md's port tables are the generator's output for the default build."""
    from hw.decoder import Decoder
    from hw.encoder import Encoder
    from hw.verilog import port_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "HARDWARE.md").read_text()
    for name, component in [("cassandra_decoder", Decoder(FormatParams())),
                            ("cassandra_encoder", Encoder(FormatParams()))]:
        rows = [line for line in port_table(component, name).splitlines() if line.startswith("| `")]
        component._MustUse__silence = True  # only its signature is read
        section = doc[doc.index(f"### `{name}`"):]
        for row in rows:
            assert row in section, f"docs/HARDWARE.md lacks or differs on the row {row!r}"


PLAIN_TESTBENCH = r"""
#include <cstdio>
#include "Vcassandra_decoder.h"
#include "verilated.h"

int main(int argc, char **argv) {
    VerilatedContext context;
    context.commandArgs(argc, argv);
    Vcassandra_decoder dut{&context};
    auto tick = [&] { dut.clk = 0; dut.eval(); dut.clk = 1; dut.eval(); };
    dut.rst = 1; tick(); dut.rst = 0; tick();
    if (dut.status != 0 || dut.out___05Fvalid) { std::printf("FAIL idle status=%d\n", dut.status); return 1; }
    dut.cmd___05Fpayload = 1;  // one group, draft; no stream word is ever offered
    dut.cmd___05Fvalid = 1;
    for (int i = 0; i < 3; i++) { tick(); if (dut.cmd___05Fready) dut.cmd___05Fvalid = 0; }
    for (int i = 0; i < 40; i++) tick();
    // busy, waiting for the bitmap (bit 0 of `waiting`, status bits 1..5)
    if (dut.status != (1 | 1 << 1) || dut.out___05Fvalid) { std::printf("FAIL status=%d\n", dut.status); return 1; }
    std::printf("PASS\n");
    return 0;
}
"""


def test_plain_cpp_testbench_builds_with_the_documented_flags(tmp_path):
    """docs/HARDWARE.md (Integration) gives the Verilator flags of a plain C++
    testbench; they build one here (the small raw configuration) that checks the
    reset state and ``status`` naming a stream that never came."""
    assert main(["--out", str(tmp_path), "--lanes", "4", "--exponent", "raw", "--word-bits", "32",
                 "--group-size", "16", "--no-lint"]) == 0
    doc = (Path(__file__).resolve().parents[2] / "docs" / "HARDWARE.md").read_text()
    flags = re.search(r"Verilator 5 needs `([^`]*)`", doc.replace("\n  ", " ")).group(1).split()
    assert "-std=c++20" in flags
    assert "`dut.out___05Fvalid`" in doc.replace("\n  ", " "), "docs/HARDWARE.md should name Verilator's C++ port names"
    (tmp_path / "tb.cpp").write_text(PLAIN_TESTBENCH)
    build = subprocess.run([_verilator(), *flags, "--top-module", "cassandra_decoder", "-Mdir", str(tmp_path / "obj"),
                            "-o", "tb", str(tmp_path / "cassandra_decoder.v"), str(tmp_path / "tb.cpp")],
                           capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, (build.stdout + build.stderr)[-3000:]
    run = subprocess.run([str(tmp_path / "obj" / "tb")], capture_output=True, text=True)
    assert run.returncode == 0 and "PASS" in run.stdout, run.stdout + run.stderr
