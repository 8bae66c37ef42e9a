"""The ``cassandra-sd`` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

from golden.format.params import (
    DEFAULT_PRUNE_RATIO,
    DRAFT_ROUNDINGS,
    FormatParams,
    add_format_arguments,
    format_params_from_arguments,
    mantissa_bits_kept,
)

__all__ = ["main"]


def _add_format_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prune", type=float, default=DEFAULT_PRUNE_RATIO,
                   help=f"fraction of each group pruned (default {DEFAULT_PRUNE_RATIO})")
    add_format_arguments(p)


def _cmd_stats(args) -> int:
    from golden.llm.model_files import default_model_path

    from .stats import exponent_entropy_note, float_summary, format_table, model_stats, summarize

    params = format_params_from_arguments(args)
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


def _fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _aggregate(reports) -> dict:
    from golden.llm.speculative import GenerationResult

    s = GenerationResult.combine(r.speculative for r in reports)
    checked = [r.lossless for r in reports if r.lossless is not None]
    return {
        "prompts": len(reports),
        "new_tokens": len(s.tokens),
        "alpha": s.alpha,
        "tau": s.tau,
        "draft_step_bytes": s.mean_draft_bytes,
        "verify_step_bytes": s.mean_verify_bytes,
        "plain_step_bytes": s.mean_plain_bytes,
        "bytes_speedup": s.bytes_speedup,
        "wall_seconds": s.wall_seconds,
        "plain_wall_seconds": sum(r.plain.wall_seconds for r in reports if r.plain is not None),
        "lossless": (all(checked) if checked else None),
        "lossless_checked": len(checked),
        "sampled": any(r.sampled for r in reports),
    }


def _print_metrics(m: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"acceptance rate alpha      {m['alpha']:.3f}  (accepted / proposed draft tokens)", file=out)
    print(f"mean accepted length tau   {m['tau']:.2f}  (tokens per target forward)", file=out)
    print(f"bytes per draft step       {_fmt_bytes(m['draft_step_bytes'])}  (weights + KV, speculation data)", file=out)
    print(f"bytes per verify step      {_fmt_bytes(m['verify_step_bytes'])}  (weights + KV, all data)", file=out)
    print(f"bytes per plain BF16 step  {_fmt_bytes(m['plain_step_bytes'])}", file=out)
    print(f"speedup in bytes moved     {m['bytes_speedup']:.2f}x  (plain BF16 bytes / draft+verify bytes)", file=out)
    wall = f"wall time                  {m['wall_seconds']:.1f} s speculative (CPU emulation)"
    if m.get("plain_wall_seconds"):
        wall += f", {m['plain_wall_seconds']:.1f} s plain"
    print(wall, file=out)
    if m.get("sampled"):
        print("lossless check             not token for token: sampled speculative decoding keeps the target's "
              "distribution, not the tokens of a plain run with the same seed (they draw their random numbers "
              "differently); the statistical tests in tests/llm/test_speculative.py and tests/llm/test_drafting.py "
              "check the distribution. Greedy runs (no --sample) are checked token for token.", file=out)
    elif m.get("lossless") is not None:
        verdict = "IDENTICAL to plain BF16 decoding" if m["lossless"] else "DIFFERENT from plain BF16 decoding"
        print(f"lossless check             {verdict}", file=out)


def _cmd_generate(args) -> int:
    from tqdm import tqdm

    from golden.llm.datasets import chat_prompts, humaneval_prompts

    from .pipeline import Pipeline

    if args.prompt is None and args.dataset is None:
        raise ValueError("give --prompt TEXT or --dataset humaneval|chat")
    if args.prompt is not None and args.dataset is not None:
        raise ValueError("give --prompt TEXT or --dataset, not both")
    if args.prompt is not None:
        for name in ("offset", "limit"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name} {getattr(args, name)} applies to --dataset only, not to --prompt")
    args.offset = 0 if args.offset is None else args.offset
    args.limit = 20 if args.limit is None else args.limit
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {args.max_new_tokens} must be >= 1")
    if args.dataset is not None and args.limit < 1:
        raise ValueError(f"--limit {args.limit} must be >= 1")
    cfg = _pipeline_config(args)
    dataset = []  # selected (and checked) before any model work
    if args.dataset == "humaneval":
        dataset = humaneval_prompts(args.offset, args.offset + args.limit, label="--offset")
    elif args.dataset == "chat":
        dataset = chat_prompts(args.offset, args.offset + args.limit, label="--offset")
    log = (lambda msg: print(f"[cassandra] {msg}", file=sys.stderr)) if not args.quiet else None
    pipe = Pipeline(cfg, keep_reference=not args.no_check, progress=not args.quiet, log=log)
    summary = pipe.summary()
    print(
        f"Weights: {summary['encoded_values']:,} values in Cassandra format, speculation "
        f"{summary['speculation_bits_per_value']:.3f} b/v, verification {summary['verification_bits_per_value']:.3f} b/v "
        f"({cfg.selector} selection, {cfg.prune:.0%} pruned, {cfg.truncate} bits truncated, {cfg.exponent}); "
        f"KV {cfg.kv_prune:.0%} pruned, {cfg.kv_truncate} bits truncated; "
        f"{'the draft reads truncated bits as their midpoint; ' if cfg.draft_rounding == 'midpoint' else ''}"
        f"{pipe.policy.describe()}; "
        f"{'sampling T=' + str(cfg.temperature) + ' seed ' + str(cfg.seed) if cfg.sample else 'greedy'}"
    )
    reports, rows = [], []
    if args.prompt is not None:
        text = pipe.tokenizer.format_prompt(args.prompt, chat=not args.no_chat)
        streamed = {"tokens": [], "text": ""}

        def show(tokens):  # the text as it is generated (decoded whole each time: merges across tokens)
            streamed["tokens"] += tokens
            now = pipe.tokenizer.decode(streamed["tokens"], skip_special_tokens=True)
            if now.startswith(streamed["text"]):
                print(now[len(streamed["text"]):], end="", flush=True)
                streamed["text"] = now

        print()
        report = pipe.run(pipe.tokenizer.encode(text), args.max_new_tokens, check=not args.no_check,
                          on_tokens=None if args.quiet else show)
        reports.append(report)
        final = pipe.tokenizer.decode(report.speculative.tokens, skip_special_tokens=True)
        if args.quiet:
            print(final)
        elif final != streamed["text"]:  # a merge changed earlier text: print the final text whole
            print("\n" + final)
        else:
            print()
        print()
        _print_metrics(_aggregate(reports))
    else:
        prompts = dataset
        if args.dataset == "chat":  # the built-in natural-language requests, through the chat template
            prompts = [(i, pipe.tokenizer.format_prompt(text, chat=not args.no_chat)) for i, text in dataset]
        bar = tqdm(prompts, desc=args.dataset, unit="prompt", disable=args.quiet, file=sys.stderr)
        for task_id, prompt in bar:
            report = pipe.run(pipe.tokenizer.encode(prompt), args.max_new_tokens, check=not args.no_check)
            reports.append(report)
            m = report.metrics()
            rows.append((task_id, m))
            agg = _aggregate(reports)
            bar.set_postfix(alpha=f"{agg['alpha']:.3f}", tau=f"{agg['tau']:.2f}")
        print()
        print("| task | new tokens | alpha | tau | draft MB/step | verify MB/step | bytes speedup | lossless |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for task_id, m in rows:
            lossless = {True: "yes", False: "**NO**", None: "-"}[m.get("lossless")]
            print(f"| {task_id} | {m['new_tokens']} | {m['alpha']:.3f} | {m['tau']:.2f} | {m['draft_step_bytes'] / 1e6:.1f} "
                  f"| {m['verify_step_bytes'] / 1e6:.1f} | {m['bytes_speedup']:.2f}x | {lossless} |")
        agg = _aggregate(reports)
        lossless = {True: "all", False: "**NO**", None: "-"}[agg["lossless"]]
        print(f"| **all {agg['prompts']}** | {agg['new_tokens']} | {agg['alpha']:.3f} | {agg['tau']:.2f} "
              f"| {agg['draft_step_bytes'] / 1e6:.1f} | {agg['verify_step_bytes'] / 1e6:.1f} | {agg['bytes_speedup']:.2f}x | {lossless} |")
        print()
        _print_metrics(agg)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pipeline": summary, "total": _aggregate(reports),
                       "runs": [dict(task=t, **m) for t, m in rows] or [reports[0].metrics()]}, f, indent=2)
    agg = _aggregate(reports)
    return 1 if agg["lossless"] is False else 0


def _add_pipeline_args(g: argparse.ArgumentParser) -> None:
    g.add_argument("--model", default=None, help="a .gguf file or a Llama checkpoint folder (default SmolLM2-135M)")
    g.add_argument("--gamma", type=int, default=5,
                   help="draft length (default 5); the longest path with --tree dynamic:N, --threshold or --lookup")
    g.add_argument("--tree", default=None, metavar="SHAPE",
                   help="token tree: a static shape such as 2x2x2 (children per level) or dynamic:N (the N most "
                        "probable nodes, depth --gamma); default a chain of --gamma tokens")
    g.add_argument("--threshold", type=float, default=0.0,
                   help="adaptive draft length: stop expanding a node whose draft probability (cumulative in a "
                        "tree) is below this (default 0: never)")
    g.add_argument("--lookup", choices=("off", "alone", "gated", "branch"), default="off",
                   help="n-gram lookup drafts from the context: alone (no draft model), gated (lookup when it "
                        "matches, else the draft model), branch (one more branch of the tree); default off")
    g.add_argument("--lookup-min", type=int, default=2, help="shortest context suffix lookup matches (default 2)")
    g.add_argument("--lookup-max", type=int, default=4, help="longest context suffix lookup matches (default 4)")
    g.add_argument("--width", type=int, default=4,
                   help="dynamic trees: nodes expanded per level and children per node (default 4)")
    g.add_argument("--prune", type=float, default=DEFAULT_PRUNE_RATIO,
                   help=f"weight pruning ratio (default {DEFAULT_PRUNE_RATIO})")
    add_format_arguments(g, ("mantissa_bits",), help_prefix="weights: ")
    g.add_argument("--kv-prune", type=float, default=0.0, help="KV pruning ratio per head vector (default 0)")
    g.add_argument("--kv-truncate", type=int, default=FormatParams().truncated_bits,
                   help=f"KV: mantissa bits truncated (default {FormatParams().truncated_bits})")
    add_format_arguments(g, ("exponent_coding",), help_prefix="weights and KV: ")
    add_format_arguments(g, ("group_size",), help_prefix="weights: ")
    g.add_argument("--selector", choices=("wanda", "magnitude"), default="wanda", help="weight selection (default wanda)")
    g.add_argument("--draft-rounding", choices=DRAFT_ROUNDINGS, default="truncate",
                   help="how the draft fills the truncated mantissa bits of weights and KV: truncate (zeros, the "
                        "paper's; default) or midpoint (the middle of the truncated interval; raw and unary coding)")
    g.add_argument("--sample", action="store_true", help="sample (rejection-sampling acceptance) instead of greedy")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    g.add_argument("--compute-dtype", choices=("float32", "float64", "bfloat16"), default="float32",
                   help="activation dtype (default float32; bfloat16 runs the model natively in BF16)")
    g.add_argument("--no-cache", action="store_true",
                   help="do not read or write the disk cache of calibration, encoded weights and decoded views")
    g.add_argument("--cache-dir", default=None,
                   help="the disk cache's folder (default $CASSANDRA_CACHE_DIR or ~/.cache/cassandra)")
    g.add_argument("--verify", choices=("sequential", "parallel"), default="sequential",
                   help="verification rows one at a time (default: bit-identical to plain decoding on any "
                        "hardware) or in one batched forward (faster on CPU)")


def _check_ratios(args, *names: str) -> None:
    for name in names:
        if not 0 <= getattr(args, name) <= 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)} is out of range [0, 1]")


def _pipeline_config(args):
    from .pipeline import PipelineConfig

    if args.gamma < 1:
        raise ValueError(f"--gamma {args.gamma} must be >= 1")
    _check_ratios(args, "prune", "kv_prune")
    cfg = PipelineConfig(
        model=args.model, gamma=args.gamma, prune=args.prune, truncate=args.truncate, kv_prune=args.kv_prune,
        kv_truncate=args.kv_truncate, exponent=args.exponent, group_size=args.group_size, selector=args.selector,
        sample=args.sample, temperature=args.temperature, seed=args.seed, device=args.device,
        compute_dtype=args.compute_dtype, verify=args.verify, tree=args.tree, threshold=args.threshold,
        lookup=args.lookup, lookup_min=args.lookup_min, lookup_max=args.lookup_max, width=args.width,
        draft_rounding=args.draft_rounding, cache=not args.no_cache, cache_dir=args.cache_dir,
    )
    cfg.policy()  # every draft option checked before any model work
    cfg.check_draft_rounding()
    cfg.weight_params()
    mantissa_bits_kept(args.kv_truncate, label=f"--kv-truncate {args.kv_truncate}")
    if not math.isfinite(args.temperature) or args.temperature <= 0:
        raise ValueError(f"--temperature {args.temperature} must be a finite number > 0")
    return cfg


def _cmd_encode(args) -> int:
    from .export import encode_checkpoint

    _check_ratios(args, "prune")
    params = format_params_from_arguments(args)  # checked before any model work
    log = (lambda msg: print(f"[cassandra] {msg}", file=sys.stderr)) if not args.quiet else None
    manifest = encode_checkpoint(args.out, model=args.model, params=params, prune=args.prune, selector=args.selector,
                                 progress=not args.quiet, log=log)
    data = json.loads(manifest.read_text())
    print(f"Wrote {len(data['tensors'])} containers ({data['speculation_bits_per_value']:.3f} + "
          f"{data['verification_bits_per_value']:.3f} bits per value) and {manifest}")
    return 0


def _cmd_export_vectors(args) -> int:
    from .pipeline import Pipeline
    from .vectors import export_vectors

    log = (lambda msg: print(f"[cassandra] {msg}", file=sys.stderr)) if not args.quiet else None
    layers = []
    for item in args.layers.split(","):
        try:
            layers.append(int(item.strip()))
        except ValueError:
            raise ValueError(f"--layers {args.layers!r}: {item.strip()!r} is not a layer number "
                             "(give a comma-separated list such as 0,15,29)") from None
    if args.rows < 1:
        raise ValueError(f"--rows {args.rows} must be >= 1")
    cfg = _pipeline_config(args)
    from golden.llm.llama import load_config

    from .vectors import check_layers

    try:
        check_layers(layers, load_config(args.model).num_hidden_layers)  # before any model work
    except ValueError as error:
        raise ValueError(f"--{error}") from None
    pipe = Pipeline(cfg, keep_reference=True, progress=not args.quiet, log=log)
    manifest = export_vectors(pipe, args.out, layers=layers, tile_rows=args.rows, log=log)
    data = json.loads(open(manifest).read())
    print(f"Wrote {len(data['vectors'])} vectors and {manifest}")
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

    g = sub.add_parser("generate", help="speculative decoding on a real LLM, with metrics and a lossless check")
    g.add_argument("--prompt", help="text to continue (formatted with the chat template unless --no-chat)")
    g.add_argument("--dataset", choices=("humaneval", "chat"),
                   help="run dataset prompts instead of --prompt: HumanEval, or the built-in chat requests")
    g.add_argument("--limit", type=int, default=None, help="prompts from the dataset (default 20)")
    g.add_argument("--offset", type=int, default=None, help="first dataset prompt (default 0)")
    _add_pipeline_args(g)
    g.add_argument("--max-new-tokens", type=int, default=64, help="new tokens per prompt (default 64)")
    g.add_argument("--no-chat", action="store_true", help="do not apply the chat template to --prompt")
    g.add_argument("--no-check", action="store_true", help="skip plain BF16 decoding (the lossless check)")
    g.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    g.add_argument("--quiet", action="store_true", help="no progress output")
    g.set_defaults(func=_cmd_generate)

    c = sub.add_parser("encode", help="write a checkpoint's weights as Cassandra containers (.csnd) and a manifest")
    c.add_argument("model", nargs="?", default=None,
                   help="a .gguf file or a Llama checkpoint folder (default SmolLM2-135M)")
    c.add_argument("--out", required=True, help="output folder (created; must not hold an earlier export)")
    c.add_argument("--prune", type=float, default=DEFAULT_PRUNE_RATIO,
                   help=f"weight pruning ratio (default {DEFAULT_PRUNE_RATIO})")
    c.add_argument("--selector", choices=("wanda", "magnitude"), default="wanda",
                   help="weight selection (default wanda, calibrated on the built-in texts)")
    add_format_arguments(c)
    c.add_argument("--quiet", action="store_true", help="no progress output")
    c.set_defaults(func=_cmd_encode)

    e = sub.add_parser("export-vectors", help="write real weight and KV tiles with their streams and expected outputs")
    e.add_argument("--out", default="build/vectors", help="output folder (default build/vectors)")
    e.add_argument("--layers", default="0,15,29", help="decoder layers to take tiles from (default 0,15,29)")
    e.add_argument("--rows", type=int, default=8, help="rows per weight tile (default 8)")
    _add_pipeline_args(e)
    e.add_argument("--quiet", action="store_true", help="no progress output")
    e.set_defaults(func=_cmd_export_vectors)
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
