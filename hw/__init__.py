"""Amaranth HDL streaming encoder and decoder of the Cassandra format (docs/HARDWARE.md).

* :mod:`hw.decoder`: speculation (+ verification) streams -> BF16 beats, draft or
  exact per command; :mod:`hw.field_reader`: its per-stream readers;
  :mod:`hw.unary`: its parallel unary exponent decoder.
* :mod:`hw.encoder`: BF16 beats -> the five streams (per-group magnitude top-k);
  :mod:`hw.topk`: its per-group threshold by radix select.
* :mod:`hw.pipe`: skid buffer and queue with registered handshakes.
* :mod:`hw.axis`: AXI4-Stream wrappers of both.
* :mod:`hw.common`: hardware parameters and helpers shared by the above.
* :mod:`hw.verilog`: ``make verilog``: Verilog, port maps and the Verilator lint.
* :mod:`hw.simulation`: Amaranth-simulator stream helpers, the protocol monitor and
  the decoder/encoder run harnesses (used by ``tests/hw/`` and ``bench/``).

``hw/`` imports only ``golden.format.params`` from the rest of the project (no
torch, no numpy): the RTL elaborates with Amaranth alone.
"""
