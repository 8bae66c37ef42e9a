"""`make verilog` (python -m hw.verilog): files, port maps, and a lint with only justified warnings."""

from __future__ import annotations

import json
import re

import pytest

from golden.format.params import FormatParams
from hw.verilog import JUSTIFIED_LINT, main


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


@pytest.mark.parametrize("argv,message", [
    (["--lanes", "3"], "lanes=3 must be a power of two"),
    (["--lanes", "128"], "lanes=128 is larger than group_size=64"),
    (["--truncate", "9"], "--truncate 9 is out of range"),
    (["--group-size", "48"], "group_size=48 must be a power of two"),
])
def test_bad_parameters_are_named(tmp_path, capsys, argv, message):
    assert main(["--out", str(tmp_path), "--no-lint", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--lanes", "4", "--exponent", "raw", "--word-bits", "32"],
    ["--lanes", "16", "--exponent", "mx", "--word-bits", "256", "--mx-block", "2"],
    ["--lanes", "16", "--group-size", "16", "--truncate", "7", "--superblock-groups", "1"],
    ["--lanes", "8", "--truncate", "0", "--unary-max", "1", "--word-bits", "128"],
], ids=["raw-l4-w32", "mx-l16-w256", "l16-g16-m0-s1", "unary-l8-m7-L1"])
def test_lint_other_configurations(tmp_path, argv):
    """Edge configurations (one beat per group, one group per superblock, m = 0
    and m = 7, L_max = 1) lint with justified kinds only."""
    assert main(["--out", str(tmp_path), *argv]) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["unjustified_lint"] == []
    assert config["lint"]  # the lint ran


def test_hardware_doc_has_the_default_port_tables():
    """docs/HARDWARE.md's port tables are the generator's output for the default build."""
    from pathlib import Path

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
