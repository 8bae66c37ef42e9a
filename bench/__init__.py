"""Benchmarks: what Cassandra buys, measured and modeled (``make bench``, docs/BENCH.md).

* :mod:`bench.acceptance`: the teacher-forced acceptance harness (exact for greedy
  verification) and the draft kinds it compares: Cassandra, layer skipping, 4-bit RTN.
* :mod:`bench.perf_model`: the roofline model of a decoding step (bytes, FLOPs,
  platforms, model shapes) and the speculative speedup it implies.
* :mod:`bench.report`: ``make bench``: the design-space exploration, comparators and
  the report (``reports/bench.md`` and plots).
* :mod:`bench.codec_speed`: the speed of the format's encoder and decoder: the golden
  codec on the CPU, the RTL in the Amaranth simulator and on Verilator.
* :mod:`bench.decode_speed`: ``make bench-decode``: this project's forward pass
  against transformers' ``generate``.

The benchmarks sit above everything else: they import ``golden``, ``hw`` and ``sim``;
nothing imports them.
"""
