"""UART output of the board self-test: an 8N1 transmitter and a line reporter that
prints counters in hexadecimal, plus the Python functions that read those lines back.

The report line (``report_line`` builds it in Python, :class:`LineReporter` in
hardware) is ASCII, one counter per field, fixed width, ending in CR LF::

    CSD values=000000004000 full_err=00000000 draft_err=00000000 topk_err=00000000 cycles=000000001234 done=1
"""

from __future__ import annotations

import re

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.common import parameter_checks

__all__ = ["UARTTransmitter", "LineReporter", "report_fields", "report_line", "parse_report",
           "uart_decode"]


class UARTTransmitter(wiring.Component):
    """8N1 serial transmitter: one start bit (0), 8 data bits LSB first, one stop bit (1).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (clock frequency / baud rate), at least 2.

    Attributes
    ----------
    data : In(stream.Signature(8))
        Bytes to send; one is taken when the previous one's stop bit has ended.
    tx : Out(1)
        The serial line, idle high.
    """

    def __init__(self, *, divisor: int):
        with parameter_checks(self):
            if not isinstance(divisor, int) or divisor < 2:
                raise ValueError(f"divisor={divisor!r}: need an integer of at least 2 clock cycles per bit")
        self.divisor = divisor
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))  # clocks left of the bit on the line
        shift = Signal(10)  # start bit (sent first), 8 data bits, stop bit
        bits_left = Signal(range(11))
        m.d.comb += self.data.ready.eq((timer == 0) & (bits_left == 0))
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(bits_left != 0):
            m.d.sync += [
                self.tx.eq(shift[0]),
                shift.eq(shift >> 1),
                timer.eq(self.divisor - 1),
                bits_left.eq(bits_left - 1),
            ]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.data.payload, Const(1, 1))), bits_left.eq(10)]
        return m


def report_fields(counters: dict[str, int]) -> list[tuple[str, int]]:
    """``(name, hex digits)`` of the report line, in order, from counter widths in bits."""
    return [(name, (bits + 3) // 4) for name, bits in counters.items()]


def report_line(values: dict[str, int], counters: dict[str, int]) -> str:
    """The report line for ``values``, as :class:`LineReporter` prints it."""
    fields = " ".join(f"{name}={values[name]:0{digits}X}" for name, digits in report_fields(counters))
    return f"CSD {fields}\r\n"


_FIELD = re.compile(r"(\w+)=([0-9A-F]+)")


def parse_report(line: str) -> dict[str, int]:
    """Counters of one report line; raises ``ValueError`` on a line that is not one."""
    if not line.startswith("CSD "):
        raise ValueError(f"not a self-test report line: {line!r}")
    fields = dict((name, int(value, 16)) for name, value in _FIELD.findall(line))
    if not fields:
        raise ValueError(f"no counters in report line {line!r}")
    return fields


def uart_decode(samples, divisor: int) -> bytes:
    """Bytes of an 8N1 line sampled once per clock (``samples``: a sequence of 0/1),
    ``divisor`` clocks per bit. A frame with a bad stop bit raises ``ValueError``."""
    out = bytearray()
    i, n = 0, len(samples)
    while i < n:
        if samples[i]:
            i += 1
            continue
        middle = i + divisor // 2  # middle of the start bit
        if middle + 9 * divisor >= n:
            break  # frame not finished at the end of the samples
        if samples[middle]:
            i += 1  # a glitch, not a start bit
            continue
        byte = 0
        for bit in range(8):
            byte |= samples[middle + (bit + 1) * divisor] << bit
        if not samples[middle + 9 * divisor]:
            raise ValueError(f"UART framing error at sample {i}: stop bit is 0")
        out.append(byte)
        i = middle + 9 * divisor
    return bytes(out)


class LineReporter(wiring.Component):
    """Sends one report line (see the module docstring) per ``trigger``.

    Parameters
    ----------
    counters : dict[str, int]
        Field names and widths in bits, in print order; one input port per field.

    Attributes
    ----------
    trigger : In(1)
        Pulse: copy every counter input and print them (ignored while a line is
        being sent).
    busy : Out(1)
        A line is being sent.
    out : Out(stream.Signature(8))
        The line's bytes, to a :class:`UARTTransmitter`.
    <name> : In(width)
        One port per counter.
    """

    def __init__(self, counters: dict[str, int]):
        with parameter_checks(self):
            for name, bits in counters.items():
                if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in ("trigger", "busy", "out"):
                    raise ValueError(f"counter name {name!r}: need a lower-case identifier other than a port name")
                if not isinstance(bits, int) or bits < 1:
                    raise ValueError(f"counter {name!r} width {bits!r}: need a positive integer")
        self.counters = dict(counters)
        super().__init__({
            "trigger": In(1), "busy": Out(1), "out": Out(stream.Signature(8)),
            **{name: In(bits) for name, bits in counters.items()},
        })

    def _template(self) -> bytes:
        """The line with a 0 byte where each hex digit goes."""
        text = "CSD" + "".join(f" {name}=" + "\0" * digits for name, digits in report_fields(self.counters))
        return (text + "\r\n").encode()

    def elaborate(self, platform):
        m = Module()
        template = self._template()
        # the characters come from a ROM (a block RAM on FPGAs); digits from the
        # snapshot, one nibble at a time, first printed digit first
        m.submodules.rom = rom = Memory(shape=8, depth=len(template), init=list(template),
                                        attrs={"rom_style": "block"})  # a block RAM, not LUTs
        read = rom.read_port()
        nibbles = []
        snapshot = []
        for name, digits in report_fields(self.counters):
            copy = Signal(4 * digits, name=f"snapshot_{name}")
            snapshot.append((copy, getattr(self, name)))
            nibbles += [copy.word_select(digits - 1 - i, 4) for i in range(digits)]
        digit = Signal(range(max(len(nibbles), 2)))
        position = Signal(range(len(template)))
        char = Signal(8)
        # the ROM's data in a register: a block RAM's output without its own register is
        # slow (5.6 ns clock-to-out on the ECP5), and it led a 16-lane ULX3S build's paths
        rom_char = Signal(8)
        m.d.sync += rom_char.eq(read.data)
        m.d.comb += [read.addr.eq(position), self.out.payload.eq(char)]
        # the digit's nibble in two registered steps (eight nibbles by the digit's high bits,
        # then one by its low bits): a wide multiplexer was a 16-lane ULX3S build's longest
        # path. `digit` moves in LOAD and is next read in LOAD four clocks later at the
        # earliest (SEND, FETCH, HOLD), after both steps.
        nibbles += [Const(0, 4)] * (-len(nibbles) % 8)
        octets = [Cat(*nibbles[i:i + 8]) for i in range(0, len(nibbles), 8)]
        octet = Signal(32)
        nibble = Signal(4)
        m.d.sync += [octet.eq(Array(octets)[digit[3:]] if len(octets) > 1 else octets[0]),
                     nibble.eq(octet.word_select(digit[:3], 4))]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.trigger):
                    m.d.sync += [position.eq(0), digit.eq(0)]
                    m.d.sync += [copy.eq(value) for copy, value in snapshot]
                    m.next = "FETCH"
            with m.State("FETCH"):  # the ROM's output follows `position` one clock later
                m.d.comb += self.busy.eq(1)
                m.next = "HOLD"
            with m.State("HOLD"):  # and `rom_char` one more
                m.d.comb += self.busy.eq(1)
                m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.busy.eq(1)
                with m.If(rom_char == 0):
                    m.d.sync += [char.eq(Mux(nibble < 10, nibble + ord("0"), nibble + (ord("A") - 10))),
                                 digit.eq(digit + 1)]
                with m.Else():
                    m.d.sync += char.eq(rom_char)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.busy.eq(1), self.out.valid.eq(1)]
                with m.If(self.out.ready):
                    m.d.sync += position.eq(position + 1)
                    with m.If(position == len(template) - 1):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "FETCH"
        return m
