"""Replicated registers (hw/pipe.py ``replicas``) survive the FPGA flows' synthesis.

Yosys merges equal flip-flops unless they carry ``keep``; the flows run
``KEEP_REPLICAS`` after reading the design. One real ``synth_ecp5`` run with it and one
without (a few seconds each): the copies stay apart only with it."""

from __future__ import annotations

import re

from amaranth.back import rtlil
from amaranth.hdl import Module, Signal

from fpga.area import _run_yosys
from hw.pipe import KEEP_REPLICAS, replicas

COPIES = 4
WIDTH = 64


def _flip_flops(tmp_path, *, keep: bool) -> int:
    m = Module()
    enable = Signal()
    data = Signal(COPIES * WIDTH)
    out = Signal(COPIES * WIDTH)
    for n, copy in enumerate(replicas(m, enable, COPIES, name="load")):
        with m.If(copy):
            m.d.sync += out[n * WIDTH:(n + 1) * WIDTH].eq(data[n * WIDTH:(n + 1) * WIDTH])
    (tmp_path / "top.il").write_text(rtlil.convert(m, name="top", ports=[enable, data, out]))
    script = tmp_path / "synth.ys"
    script.write_text("read_rtlil top.il\n" + (KEEP_REPLICAS + "\n" if keep else "")
                      + "synth_ecp5 -top top\ntee -o stat.txt stat\n")
    _run_yosys(script, tmp_path / "synth.log", "replicas")
    found = re.findall(r"^\s*(\d+)\s+TRELLIS_FF\s*$", (tmp_path / "stat.txt").read_text(), re.M)
    assert found, (tmp_path / "stat.txt").read_text()[-2000:]
    return int(found[-1])


def test_replicas_stay_apart_with_the_flows_keep(tmp_path):
    (tmp_path / "keep").mkdir()
    (tmp_path / "plain").mkdir()
    kept = _flip_flops(tmp_path / "keep", keep=True)
    merged = _flip_flops(tmp_path / "plain", keep=False)
    assert kept == COPIES * WIDTH + COPIES, kept  # the data and every copy of the enable
    assert merged == COPIES * WIDTH + 1, merged  # without it, one enable for all
