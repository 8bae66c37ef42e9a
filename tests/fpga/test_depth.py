"""The logic-depth check (fpga/depth.py): the graph walk on small hand-made Yosys JSON
netlists (a LUT chain between flip-flops, a carry chain, wide-LUT muxes, a loop through
a register, a combinational loop, port paths), and one real ``synth_ecp5`` run on a
small component (the UART transmitter, a few seconds). Bounds on the decoder and
encoder (``fpga.depth.BOUNDS``) are checked by one test that loops over them: it always
runs, and passes with nothing to check while the lead has not set any."""

from __future__ import annotations

import pytest

from fpga import depth

FF_PINS = {"CLK": "input", "LSR": "input", "CE": "input", "DI": "input", "Q": "output"}
LUT_PINS = {"A": "input", "B": "input", "C": "input", "D": "input", "Z": "output"}
CCU2C_PINS = {**{p: "input" for p in ("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1", "CIN")},
              "S0": "output", "S1": "output", "COUT": "output"}


def ff(d, q, clk=1):
    return {"type": "TRELLIS_FF", "port_directions": FF_PINS,
            "connections": {"CLK": [clk], "LSR": ["0"], "CE": ["1"], "DI": [d], "Q": [q]},
            "attributes": {"src": "/x/hw/decoder.py:7|/share/lattice/cells_map_trellis.v:83"}}


def lut(z, a, b="0", c="0", d="0"):
    return {"type": "LUT4", "port_directions": LUT_PINS,
            "connections": {"A": [a], "B": [b], "C": [c], "D": [d], "Z": [z]},
            "attributes": {"src": "/share/lattice/cells_map_trellis.v:119"}}


def ccu2c(cin, cout, s0, s1, a0="0", a1="0"):
    return {"type": "CCU2C", "port_directions": CCU2C_PINS,
            "connections": {"A0": [a0], "B0": ["0"], "C0": ["1"], "D0": ["1"], "A1": [a1], "B1": ["0"],
                            "C1": ["1"], "D1": ["1"], "CIN": [cin], "COUT": [cout], "S0": [s0], "S1": [s1]},
            "attributes": {"src": "/x/hw/bitreader.py:127|/share/lattice/arith_map_ccu2c.v:74"}}


def netlist(cells, ports=None, names=None):
    ports = ports or {"clk": {"direction": "input", "bits": [1]}}
    netnames = {"clk": {"hide_name": 0, "bits": [1], "attributes": {}}}
    for name, bits in (names or {}).items():
        netnames[name] = {"hide_name": 0, "bits": bits, "attributes": {"src": "/x/hw/decoder.py:1"}}
    return {"modules": {"top": {"ports": ports, "cells": cells, "netnames": netnames}}}


def test_three_luts_between_two_flip_flops():
    cells = {"r0": ff(10, 2), "l1": lut(3, 2), "l2": lut(4, 3), "l3": lut(5, 4), "r1": ff(5, 6),
             "r0d": lut(10, 6)}  # r1 -> 1 LUT -> r0: a shorter path that closes a loop through registers
    result = depth.longest_paths(netlist(cells, names={"count": [2], "total": [6], "sum": [5]}))
    assert result["levels"] == 3.0 and result["kind"] == "reg->reg"
    assert [step["type"] for step in result["path"]] == ["LUT4"] * 3
    assert [step["level"] for step in result["path"]] == [1.0, 2.0, 3.0]
    assert result["start"]["name"] == "count" and result["start"]["cell"] == "r0"
    assert result["end"]["cell"] == "r1" and result["end"]["pin"] == "DI"
    assert result["end"]["name"] == "total (DI)"  # the endpoint register, named after its output
    assert result["path"][-1]["net"] == "sum"
    assert result["domains"] == {"clk": 3.0}
    assert result["by_kind"] == {"reg->reg": 3.0}
    assert result["cells"] == {"TRELLIS_FF": 2, "LUT4": 4}
    assert result["boundary_types"] == ["TRELLIS_FF"]
    assert "+1     LUT4" in depth.path_text(result)


def test_a_loop_through_a_flip_flop_is_cut():
    # q -> LUT -> d of the same register: one level, no loop error
    result = depth.longest_paths(netlist({"r": ff(3, 2), "inc": lut(3, 2)}))
    assert result["levels"] == 1.0


def test_a_combinational_loop_is_an_error():
    cells = {"a": lut(3, 2), "b": lut(2, 3)}
    with pytest.raises(ValueError, match=r"loop through 2 net bits"):
        depth.longest_paths(netlist(cells))


def test_carry_chain():
    # FF -> LUT -> CCU2C (enter through A0) -> 3 more CCU2C through CIN -> top sum -> FF
    cells = {"r0": ff(99, 2), "l": lut(3, 2),
             "c0": ccu2c("0", 10, 20, 21, a0=3), "c1": ccu2c(10, 11, 22, 23), "c2": ccu2c(11, 12, 24, 25),
             "c3": ccu2c(12, 13, 26, 27), "r1": ff(27, 30), "z": lut(99, 30)}
    result = depth.longest_paths(netlist(cells))
    # LUT 1 + entering the chain 1 + three CIN hops to c3's COUT... the top sum S1 of c3: 3 hops
    assert result["levels"] == pytest.approx(1 + 1 + 3 * depth.CARRY_WEIGHT)
    assert [step["pin_in"] for step in result["path"]] == ["A", "A0", "CIN", "CIN", "CIN"]
    assert result["path"][-1]["pin_out"] == "S1"
    assert result["path"][1]["src"] == "hw/bitreader.py:127"


def test_wide_lut_muxes():
    mux = {"ALUT": "input", "BLUT": "input", "C0": "input", "Z": "output"}
    l6 = {"D0": "input", "D1": "input", "SD": "input", "Z": "output"}
    cells = {"r0": ff(99, 2), "a": lut(3, 2), "b": lut(4, 2),
             "m": {"type": "PFUMX", "port_directions": mux, "connections": {"ALUT": [3], "BLUT": [4], "C0": [2],
                                                                             "Z": [5]}},
             "m6": {"type": "L6MUX21", "port_directions": l6, "connections": {"D0": [5], "D1": [5], "SD": [2],
                                                                               "Z": [6]}},
             "r1": ff(6, 7), "z": lut(99, 7)}
    result = depth.longest_paths(netlist(cells))
    assert result["levels"] == pytest.approx(1 + 2 * depth.MUX_DATA_WEIGHT)  # a LUT6: 1.5 levels
    assert [step["type"] for step in result["path"]] == ["LUT4", "PFUMX", "L6MUX21"]


def test_ports_start_and_end_paths():
    ports = {"clk": {"direction": "input", "bits": [1]}, "a": {"direction": "input", "bits": [2, 3]},
             "y": {"direction": "output", "bits": [6]}}
    cells = {"l1": lut(4, 2, 3), "l2": lut(5, 4), "r": ff(5, 8), "o": lut(6, 8)}
    result = depth.longest_paths(netlist(cells, ports=ports))
    assert result["levels"] == 2.0 and result["kind"] == "port->reg"
    assert result["start"]["kind"] == "port" and result["start"]["name"] in ("a[0]", "a[1]")
    assert result["by_kind"] == {"port->reg": 2.0, "reg->port": 1.0}


def test_unknown_cells_cut_the_graph():
    ram = {"type": "DP16KD", "port_directions": {"DIA0": "input", "DOA0": "output", "CLKA": "input"},
           "connections": {"DIA0": [3], "DOA0": [4], "CLKA": [1]}}
    cells = {"r0": ff(99, 2), "l1": lut(3, 2), "ram": ram, "l2": lut(5, 4), "l3": lut(6, 5), "r1": ff(6, 7),
             "z": lut(99, 7)}
    result = depth.longest_paths(netlist(cells))
    assert result["levels"] == 2.0  # RAM out -> 2 LUTs -> r1; r0 -> 1 LUT -> RAM in
    assert result["start"]["type"] == "DP16KD"
    assert result["boundary_types"] == ["DP16KD", "TRELLIS_FF"]


def test_no_paths():
    result = depth.longest_paths(netlist({"r": ff("0", 2)}))
    assert result["levels"] == 0.0 and result["path"] == [] and result["start"] is None
    assert "no register-to-register" in depth.path_text(result)


def test_bad_netlist():
    with pytest.raises(ValueError, match=r"top='top' is not a module"):
        depth.longest_paths({"modules": {}})


def test_bad_component(tmp_path):
    with pytest.raises(TypeError, match=r"must be an amaranth.lib.wiring.Component, not int"):
        depth.logic_depth(5, workdir=tmp_path)
    from fpga.uart import UARTTransmitter
    transmitter = UARTTransmitter(divisor=4)
    transmitter._MustUse__silence = True  # rejected before elaboration, on purpose
    with pytest.raises(ValueError, match=r"name='a b'"):
        depth.logic_depth(transmitter, name="a b", workdir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_uart_transmitter_depth(tmp_path):
    """One real synth_ecp5 run (a few seconds): a small serial transmitter has a few levels."""
    from fpga.uart import UARTTransmitter

    result = depth.logic_depth(UARTTransmitter(divisor=217), name="uart_tx", workdir=tmp_path)
    assert 1 <= result["levels"] <= 8, depth.path_text(result)
    assert result["kind"] in ("reg->reg", "port->reg")
    assert result["lut4"] > 0 and result["cells"]["TRELLIS_FF"] > 0
    assert result["path"] and result["path"][-1]["level"] == result["levels"]
    assert set(result["domains"]) == {"clk"}
    assert result["ns_estimate"] == pytest.approx(result["levels"] * depth.NS_PER_LEVEL)
    assert result["seconds"]["synth"] > 0 and (tmp_path / "uart_tx.json").exists()


def test_bounds_are_keyed_like_the_report():
    """Every bound names a configuration ``make depth`` reports and is a positive number of levels;
    every measurement, too; at least one bound guards each design."""
    assert isinstance(depth.BOUNDS, dict) and isinstance(depth.MEASURED, dict)
    for key, bound in depth.BOUNDS.items():
        assert key in depth.REPORT_CONFIGS, key
        assert isinstance(bound, (int, float)) and not isinstance(bound, bool) and bound > 0, (key, bound)
    for key, measured in depth.MEASURED.items():
        assert key in depth.REPORT_CONFIGS, key
        assert measured["levels"] > 0, key
    assert {key[0] for key in depth.BOUNDS} == set(depth.DESIGNS)


def test_bounds(tmp_path):
    """Each configuration of ``BOUNDS`` within its bound (one ``synth_ecp5`` run per bound, about
    2 minutes for the three)."""
    from golden.format.params import FormatParams

    over = []
    for key, bound in sorted(depth.BOUNDS.items()):
        design, coding, lanes, word_bits, group_size = key
        params = FormatParams(exponent_coding=coding, group_size=group_size)
        result = depth.design_depth(design, params, lanes, word_bits, tmp_path / "_".join(map(str, key)))
        if result["levels"] > bound:
            over.append(f"{key}: {result['levels']:g} levels > bound {bound:g}\n"
                        + depth.path_text(result, limit=40))
    assert not over, "\n".join(over)
