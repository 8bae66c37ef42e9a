"""cocotb + Verilator testbenches of the emitted Verilog (see issue 5; not yet built)."""
