"""FPGA board builds of the Cassandra RTL (docs/FPGA.md).

* :mod:`fpga.selftest`: the board-independent self-test (pattern -> encoder -> FIFOs
  -> decoder full + draft -> checker, UART report, LEDs).
* :mod:`fpga.uart`: the UART transmitter and report line.
* :mod:`fpga.boards`: the ULX3S-85F and iCEBreaker tops (clocks, pins, PLL).
* :mod:`fpga.build`: ``make fpga``: bitstream and the LUT/FF/BRAM/Fmax report.
* :mod:`fpga.area`: ``make area``: generic-gate size beside the paper's 28 nm figures.
"""
