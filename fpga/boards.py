"""Board tops of the self-test (:mod:`fpga.selftest`) for amaranth-boards platforms.

* **ULX3S-85F** (Lattice ECP5 LFE5U-85F, speed grade 6, 25 MHz oscillator): an
  EHXPLLL makes the decoder clock (CLKOP) and the encoder clock (CLKOS), so nextpnr
  reports an Fmax per side; the stream FIFOs cross between them. LEDs 0-3 show
  ok / error / heartbeat / done, the FTDI UART (115200 8N1) prints the report, and
  the FIRE 1 button injects errors.
* **iCEBreaker** (Lattice iCE40UP5K): one 12 MHz clock (the platform's default
  ``sync`` domain, with its power-on reset for the iCE40 BRAM quirk), green LED =
  ok, red LED = error, the break-off PMOD's LEDs 2 and 3 = heartbeat and done, the
  FTDI UART prints the report, and the user button injects errors.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

from .selftest import SelfTest, SelfTestConfig

__all__ = ["BOARDS", "ecp5_pll_params", "ULX3SSelfTest", "ICEBreakerSelfTest", "platform_for"]

UART_BAUD = 115200


def ecp5_pll_params(input_hz: float, output_hz: float, secondary_hz: float) -> dict:
    """EHXPLLL dividers for CLKOP ~ ``output_hz`` and CLKOS ~ ``secondary_hz``.

    ECP5 rules (Lattice TN1263): PFD = input / CLKI_DIV in 3.125..400 MHz, VCO =
    PFD x CLKFB_DIV x CLKOP_DIV (feedback from CLKOP) in 400..800 MHz, outputs =
    VCO / CLKOx_DIV. Returns the dividers and the frequencies reached; raises
    ``ValueError`` when no setting is within 1% of both requests.
    """
    best = None
    for clki in range(1, 129):
        pfd = input_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            op_hz = pfd * clkfb
            for clkop in range(1, 129):
                vco = op_hz * clkop
                if 400e6 <= vco <= 800e6:
                    break
            else:
                continue
            clkos = max(1, min(128, round(vco / secondary_hz)))
            error = abs(op_hz - output_hz) / output_hz + abs(vco / clkos - secondary_hz) / secondary_hz
            if best is None or error < best[0]:
                best = (error, dict(CLKI_DIV=clki, CLKFB_DIV=clkfb, CLKOP_DIV=clkop, CLKOS_DIV=clkos,
                                    vco_hz=vco, clkop_hz=op_hz, clkos_hz=vco / clkos))
    if best is None or abs(best[1]["clkop_hz"] - output_hz) > 0.01 * output_hz \
            or abs(best[1]["clkos_hz"] - secondary_hz) > 0.01 * secondary_hz:
        raise ValueError(f"no ECP5 PLL setting gives {output_hz / 1e6:g} MHz and {secondary_hz / 1e6:g} MHz "
                         f"from {input_hz / 1e6:g} MHz within 1%")
    return best[1]


class ULX3SSelfTest(Elaboratable):
    """The self-test on a ULX3S: PLL, resets, LEDs, UART, fault button.

    Parameters
    ----------
    config : SelfTestConfig
        ``uart_divisor`` and ``report_cycles`` are replaced to suit the decoder clock.
    decoder_hz, encoder_hz : float
        The two PLL outputs.
    """

    input_hz = 25e6

    def __init__(self, config: SelfTestConfig, *, decoder_hz: float = 100e6, encoder_hz: float = 100e6):
        self.pll = ecp5_pll_params(self.input_hz, decoder_hz, encoder_hz)
        self.decoder_hz, self.encoder_hz = self.pll["clkop_hz"], self.pll["clkos_hz"]
        self.config = _board_config(config, self.decoder_hz)

    def elaborate(self, platform):
        m = Module()
        m.domains.dec = ClockDomain("dec")
        m.domains.enc = ClockDomain("enc")
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        locked = Signal()
        dec_clk, enc_clk = Signal(name="dec_clk"), Signal(name="enc_clk")
        m.d.comb += [ClockSignal("dec").eq(dec_clk), ClockSignal("enc").eq(enc_clk)]
        pll = self.pll
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.input_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{pll['clkop_hz'] / 1e6:g}",
            a_FREQUENCY_PIN_CLKOS=f"{pll['clkos_hz'] / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=pll["CLKI_DIV"], p_CLKFB_DIV=pll["CLKFB_DIV"], p_FEEDBK_PATH="CLKOP",
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=pll["CLKOP_DIV"],
            p_CLKOP_CPHASE=pll["CLKOP_DIV"] // 2, p_CLKOP_FPHASE=0,
            p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=pll["CLKOS_DIV"],
            p_CLKOS_CPHASE=pll["CLKOP_DIV"] // 2, p_CLKOS_FPHASE=0,
            i_RST=0, i_STDBY=0, i_CLKI=clk25.i, i_CLKFB=dec_clk,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0,
            o_CLKOP=dec_clk, o_CLKOS=enc_clk, o_LOCK=locked,
        )
        # no constraints on the PLL outputs: nextpnr derives them from the PLL's
        # parameters and the 25 MHz input's constraint (the board file sets it)
        m.submodules.reset_dec = ResetSynchronizer(~locked, domain="dec")
        m.submodules.reset_enc = ResetSynchronizer(~locked, domain="enc")

        m.submodules.selftest = selftest = SelfTest(self.config, encoder_domain="enc", decoder_domain="dec")
        m.submodules.fire = fire = io.Buffer("i", platform.request("button_fire", 1, dir="-"))
        m.submodules.fault_sync = FFSynchronizer(fire.i, selftest.fault, o_domain="dec")
        m.submodules.tx = tx = io.Buffer("o", platform.request("uart", 0, dir="-").tx)
        m.d.comb += tx.o.eq(selftest.tx)
        for index in range(4):
            m.submodules[f"led{index}"] = led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(selftest.leds[index])
        return m


class ICEBreakerSelfTest(Elaboratable):
    """The self-test on an iCEBreaker, on the 12 MHz clock."""

    clock_hz = 12e6

    def __init__(self, config: SelfTestConfig):
        self.decoder_hz = self.encoder_hz = self.clock_hz
        self.config = _board_config(config, self.clock_hz)

    def elaborate(self, platform):
        m = Module()
        platform.add_resources(platform.break_off_pmod)
        m.submodules.selftest = selftest = SelfTest(self.config)
        m.submodules.button = button = io.Buffer("i", platform.request("button", 0, dir="-"))
        m.submodules.fault_sync = FFSynchronizer(button.i, selftest.fault)
        m.submodules.tx = tx = io.Buffer("o", platform.request("uart", 0, dir="-").tx)
        m.d.comb += tx.o.eq(selftest.tx)
        for index, (name, number) in enumerate([("led_g", 0), ("led_r", 0), ("led", 2), ("led", 3)]):
            m.submodules[f"led{index}"] = led = io.Buffer("o", platform.request(name, number, dir="-"))
            m.d.comb += led.o.eq(selftest.leds[index])
        return m


def _board_config(config: SelfTestConfig, decoder_hz: float) -> SelfTestConfig:
    import dataclasses
    return dataclasses.replace(config, uart_divisor=round(decoder_hz / UART_BAUD),
                               report_cycles=int(decoder_hz // 2))


def platform_for(board: str):
    """The amaranth-boards platform of ``board``, without the programmer in its
    required tools (``make fpga`` only builds)."""
    if board == "ulx3s":
        from amaranth_boards.ulx3s import ULX3S_85F_Platform as base
    elif board == "icebreaker":
        from amaranth_boards.icebreaker import ICEBreakerPlatform as base
    else:
        raise ValueError(f"board={board!r}: choose one of {sorted(BOARDS)}")

    class BuildOnly(base):
        @property
        def required_tools(self):
            return [tool for tool in super().required_tools if tool not in ("openFPGALoader", "iceprog")]

    BuildOnly.__name__ = base.__name__
    return BuildOnly()


#: Board name -> (top class, device, default configuration knobs): the largest
#: configuration that fits each board and meets timing (docs/FPGA.md, "Measured builds").
BOARDS = {
    "ulx3s": dict(top=ULX3SSelfTest, device="LFE5U-85F-6BG381", family="ecp5",
                  lanes=8, word_bits=64, exponent="raw", group_size=64, decoder_mhz=25, encoder_mhz=20,
                  encoder=True),
    "icebreaker": dict(top=ICEBreakerSelfTest, device="iCE40UP5K-SG48", family="ice40",
                       lanes=2, word_bits=32, exponent="raw", group_size=16, decoder_mhz=12, encoder_mhz=12,
                       encoder=False),
}
