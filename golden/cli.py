"""The ``cassandra-sd`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .params import EXPONENT_CODINGS, FormatParams

__all__ = ["main"]


def _add_format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prune", type=float, default=0.4, help="fraction of each group pruned (default 0.4)")
    p.add_argument("--truncate", type=int, default=4, help="mantissa bits truncated, 0..7 (default 4)")
    p.add_argument("--exponent", choices=EXPONENT_CODINGS, default="unary", help="exponent coding (default unary)")
    p.add_argument("--group-size", type=int, default=64, help="values per group, power of two 8..4096 (default 64)")
    p.add_argument("--mx-block", type=int, default=16, help="kept values per shared exponent in mx coding (default 16)")
    p.add_argument("--unary-max", type=int, default=8, help="L_max, longest unary code (default 8)")
    p.add_argument("--superblock-groups", type=int, default=64, help="groups per superblock (default 64)")


def _params(args) -> FormatParams:
    if not 0 <= args.truncate <= 7:
        raise ValueError(f"--truncate {args.truncate} is out of range: BF16 has 7 mantissa bits (0..7)")
    return FormatParams(
        group_size=args.group_size,
        mantissa_bits=7 - args.truncate,
        exponent_coding=args.exponent,
        mx_block_size=args.mx_block,
        unary_max_code_length=args.unary_max,
        superblock_groups=args.superblock_groups,
    )


def _cmd_stats(args) -> int:
    from .model_files import default_model_path
    from .stats import exponent_entropy_note, float_summary, format_table, model_stats, summarize

    params = _params(args)
    path = args.model if args.model is not None else default_model_path()
    start = time.perf_counter()
    per_tensor, skipped = model_stats(
        path, params, prune_ratio=args.prune, layers=args.layers, kinds=args.kinds, progress=not args.quiet
    )
    if not per_tensor:
        print(f"error: no tensor of {path} can be encoded with group_size={params.group_size}", file=sys.stderr)
        return 1
    rows = summarize(per_tensor)
    dtypes = sorted(rows["total"].source_dtypes)
    print(f"Model: {path}")
    quantized = [d for d in dtypes if d.startswith(("Q", "IQ"))]
    if quantized:
        print(
            f"Note: the file stores {', '.join(dtypes)} tensors; quantized ones ({', '.join(quantized)}) are "
            "dequantized to float32 with gguf, then rounded to BF16 (round to nearest even). Their values "
            "lie on a coarse grid, so exponent statistics differ from a native BF16 checkpoint."
        )
    else:
        print(f"Source dtypes: {', '.join(dtypes)} (converted to BF16 where they are not)")
    print()
    print(format_table(rows, params, args.prune))
    print()
    print(exponent_entropy_note())
    print(f"Encoded {rows['total'].tensors} tensors; left out {len(skipped)} (1-D norms, shapes not a multiple "
          f"of the group, or outside --layers/--kinds; --json lists them). Time: {time.perf_counter() - start:.1f} s.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": str(path), "params": params.as_dict(), "prune_ratio": args.prune,
                       "rows": float_summary(rows), "skipped": skipped}, f, indent=2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cassandra-sd",
        description="Cassandra: lossless self-speculative decoding with a split BF16 format.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("stats", help="bits/value of a model in Cassandra format, per tensor kind")
    p.add_argument("model", nargs="?", default=None,
                   help="a .gguf file or a safetensors checkpoint folder (default: SmolLM2-135M-Instruct Q4_1 GGUF)")
    _add_format_args(p)
    p.add_argument("--layers", type=int, default=None, help="only decoder layers 0..N-1 (default all)")
    p.add_argument("--kinds", choices=("all", "linear"), default="all",
                   help="all 2-D weights (default) or only the linear layers")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_stats)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
