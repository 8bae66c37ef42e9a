"""The board self-test (fpga/selftest.py) in simulation: its UART bytes decoded and
its counts checked, fault injection, the pattern against its Python reference, the
UART pieces, the board tops' elaboration, and bad parameters."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from fpga.boards import BOARDS, ICEBreakerSelfTest, ULX3SSelfTest, ecp5_pll_params, platform_for
from fpga.selftest import COUNTERS, SelfTest, SelfTestConfig, _PatternSource, pattern_beats
from fpga.uart import LineReporter, UARTTransmitter, parse_report, report_line, uart_decode
from golden.format.params import FormatParams

DIVISOR = 4  # UART clocks per bit in simulation


def small_config(coding="unary", **overrides):
    params = FormatParams(group_size=16, superblock_groups=2, exponent_coding=coding, mantissa_bits=3,
                          unary_max_code_length=overrides.pop("unary_max", 8))
    settings = dict(lanes=4, word_bits=32, keep=10, groups_per_pass=5, passes=4, uart_divisor=DIVISOR,
                    report_cycles=1 << 20)
    settings.update(overrides)
    return SelfTestConfig(params, **settings)


def run_selftest(config, *, fault=0, two_clocks=False, max_cycles=40_000):
    """Simulate until done, then until the final report line is out; returns
    (report counters decoded from the UART, counter ports at the end)."""
    if two_clocks:
        dut = SelfTest(config, encoder_domain="enc", decoder_domain="dec")
        top = Module()
        top.domains.enc = ClockDomain()
        top.domains.dec = ClockDomain()
        top.submodules.dut = dut
        sim = Simulator(top)
        sim.add_clock(13e-9, domain="enc")
        sim.add_clock(10e-9, domain="dec")
        domain = "dec"
    else:
        dut = SelfTest(config)
        sim = Simulator(dut)
        sim.add_clock(10e-9)
        domain = "sync"
    line_cycles = (len(report_line({k: 0 for k in COUNTERS}, COUNTERS)) + 2) * 10 * (DIVISOR + 1)
    samples, final = [], {}

    async def testbench(ctx):
        ctx.set(dut.fault, fault)
        cycles = 0
        async for _ in ctx.tick(domain):
            samples.append(ctx.get(dut.tx))
            cycles += 1
            if ctx.get(dut.done):
                break
            assert cycles < max_cycles, f"self-test not done after {max_cycles} cycles"
        for _ in range(line_cycles):
            await ctx.tick(domain)
            samples.append(ctx.get(dut.tx))
        final.update({name: ctx.get(getattr(dut, name)) for name in COUNTERS})

    sim.add_testbench(testbench)
    sim.run()
    text = uart_decode(samples, DIVISOR).decode("ascii")
    lines = [line for line in text.split("\r\n") if line]
    assert lines, f"no UART line in {text!r}"
    return parse_report(lines[-1]), final


@pytest.mark.parametrize("encoder", [True, False], ids=["encoder+decoder", "decoder-only"])
@pytest.mark.parametrize("coding", ["raw", "unary"])
def test_uart_report_counts(coding, encoder):
    config = small_config(coding, encoder=encoder)
    report, final = run_selftest(config)
    expected_values = config.passes * config.groups_per_pass * config.params.group_size
    assert report["values"] == expected_values == 320
    assert report["full_err"] == report["draft_err"] == report["topk_err"] == report["last_err"] == 0
    assert report["done"] == 1
    # one beat per clock after the pipeline fills; each pass waits for the previous one to
    # leave the pipeline (the encoder's selection, ~30 clocks at G = 16, and the decoder's 17)
    beats = config.passes * config.beats_per_pass
    assert beats <= report["cycles"] < beats + config.passes * 70, report["cycles"]
    assert report == final


def test_uart_report_two_clocks_escapes():
    """Encoder and decoder on different clocks (async FIFOs), and a 2-entry unary
    codebook so most exponents are escapes."""
    config = small_config("unary", unary_max=2, passes=6, lanes=8, word_bits=64)
    report, final = run_selftest(config, two_clocks=True)
    assert report["values"] == 6 * 5 * 16
    assert report["full_err"] == report["draft_err"] == report["topk_err"] == report["last_err"] == 0
    assert report == final


@pytest.mark.parametrize("encoder", [True, False], ids=["encoder+decoder", "decoder-only"])
def test_fault_is_counted(encoder):
    config = small_config("raw", encoder=encoder)
    report, _ = run_selftest(config, fault=1)
    full_beats = config.passes // 2 * config.beats_per_pass
    # bit 0 of lane 0 flipped on every beat: every full-mode beat has one wrong value,
    # and in draft mode the value is neither 0 nor the truncated pattern (bit 0 is truncated)
    assert report["full_err"] == full_beats
    assert report["draft_err"] == full_beats
    assert report["topk_err"] > 0  # pruned values now look kept
    assert report["values"] == 320


def test_pattern_source_matches_reference_and_rewinds():
    config = small_config("raw", groups_per_pass=2)
    source = _PatternSource(config)
    sim = Simulator(source)
    sim.add_clock(1e-8)
    beats_per_pass = config.beats_per_pass
    seen = []

    async def testbench(ctx):
        ctx.set(source.values.ready, 1)
        for _ in range(4 * beats_per_pass):  # the beat offered, then its transfer
            seen.append((ctx.get(source.draft), [ctx.get(source.values.payload[i]) for i in range(config.lanes)]))
            await ctx.tick()

    sim.add_testbench(testbench)
    sim.run()
    reference = pattern_beats(config.seed, config.lanes, 2 * beats_per_pass, config.params.truncated_bits)
    first_pass, second_pass = reference[:beats_per_pass], reference[beats_per_pass:]
    # every pass twice: full, then draft from the same start (the source rewinds)
    assert [v for _, v in seen] == first_pass + first_pass + second_pass + second_pass
    assert [d for d, _ in seen] == ([0] * beats_per_pass + [1] * beats_per_pass) * 2


def test_pattern_values_cover_special_cases():
    values = [v for beat in pattern_beats(1, 4, 20_000, 4) for v in beat]
    exponents = {(v >> 7) & 0xFF for v in values}
    assert 0xFF in exponents and 0 in exponents  # NaN/Inf and zero/subnormal patterns occur
    assert all(v >> 4 != 0 for v in values)  # no kept value would have a zero draft
    common = sum(117 <= (v >> 7) & 0xFF <= 124 for v in values) / len(values)
    assert 0.9 < common < 0.97


def test_uart_transmitter_roundtrip_with_gaps():
    uart = UARTTransmitter(divisor=5)
    sim = Simulator(uart)
    sim.add_clock(1e-8)
    message = bytes(range(0, 256, 7)) + b"\x00\xff"
    samples = []
    rng = random.Random(3)

    async def sender(ctx):
        for byte in message:
            while rng.random() < 0.5:
                await ctx.tick()
            ctx.set(uart.data.payload, byte)
            ctx.set(uart.data.valid, 1)
            await ctx.tick().until(uart.data.ready)
            ctx.set(uart.data.valid, 0)

    async def sampler(ctx):
        for _ in range(len(message) * 10 * 6 + 200):
            await ctx.tick()
            samples.append(ctx.get(uart.tx))

    sim.add_testbench(sender, background=True)
    sim.add_testbench(sampler)
    sim.run()
    assert uart_decode(samples, 5) == message


def test_report_line_roundtrip_and_errors():
    values = {name: (1 << bits) - 1 for name, bits in COUNTERS.items()}
    line = report_line(values, COUNTERS)
    assert parse_report(line) == values
    with pytest.raises(ValueError, match="not a self-test report line"):
        parse_report("hello")
    with pytest.raises(ValueError, match="stop bit"):
        uart_decode([1] * 4 + [0] * 60, 4)
    with pytest.raises(ValueError, match="counter name"):
        LineReporter({"busy": 8})


@pytest.mark.parametrize("bad, message", [
    (dict(coding="mx"), "mx is decode-only"),
    (dict(passes=3), "passes=3"),
    (dict(keep=17), "keep=17"),
    (dict(uart_divisor=1), "uart_divisor=1"),
    (dict(lanes=3), "lanes"),
    (dict(groups_per_pass=0), "groups_per_pass=0"),
    (dict(codebook=(1, 1, 2, 3, 4, 5, 6, 7)), "distinct"),
])
def test_bad_config(bad, message):
    coding = bad.pop("coding", "unary")
    with pytest.raises(ValueError, match=message):
        small_config(coding, **bad)


def test_pll_search():
    pll = ecp5_pll_params(25e6, 100e6, 50e6)
    assert pll["clkop_hz"] == 100e6 and pll["clkos_hz"] == 50e6
    assert 400e6 <= pll["vco_hz"] <= 800e6
    assert pll["vco_hz"] == 25e6 / pll["CLKI_DIV"] * pll["CLKFB_DIV"] * pll["CLKOP_DIV"]
    with pytest.raises(ValueError, match="no ECP5 PLL setting"):
        ecp5_pll_params(25e6, 1e9, 100e6)
    with pytest.raises(ValueError, match="UART clocks|divisor"):
        UARTTransmitter(divisor=1)


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_top_elaborates(board, tmp_path):
    """The board top through Amaranth's build preparation (RTLIL, pin constraints and
    scripts; no synthesis): pins of UART, LEDs and clock are constrained."""
    spec = BOARDS[board]
    params = FormatParams(group_size=16, exponent_coding="raw")
    config = SelfTestConfig(params, lanes=4, word_bits=32, keep=10, groups_per_pass=4)
    top = ULX3SSelfTest(config) if board == "ulx3s" else ICEBreakerSelfTest(config)
    assert top.config.uart_divisor == round(top.decoder_hz / 115200)
    plan = platform_for(board).prepare(top, name="selftest")
    files = plan.files
    constraints = files["selftest.lpf"] if spec["family"] == "ecp5" else files["selftest.pcf"]
    constraints = constraints if isinstance(constraints, str) else constraints.decode()
    tx_pin = "L4" if board == "ulx3s" else " 9"
    assert tx_pin in constraints
    if board == "ulx3s":
        assert "EHXPLLL" in files["selftest.il"] and "FREQUENCY PORT" in constraints


@pytest.mark.parametrize("bad, message", [
    (dict(router="router3"), "router='router3'"),
    (dict(seed=-1), "seed=-1"),
    (dict(seed=True), "seed=True"),
])
def test_build_rejects_bad_nextpnr_options_before_any_work(bad, message, tmp_path):
    from fpga.build import build

    with pytest.raises(ValueError, match=message):
        build("ulx3s", out=tmp_path, **bad)
    assert list(tmp_path.iterdir()) == []
