"""FPGA board builds (see issue 6; not yet built)."""
