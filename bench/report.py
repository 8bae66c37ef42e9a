"""``make bench``: acceptance measured on a real LLM, the design-space exploration
(DSE), the comparators, the roofline model and the hardware/software speed, in one
report (``reports/bench.md`` with PNG plots beside it).

    python -m bench.report [--out reports] [--quick] [--model PATH]
                           [--dev 0:8] [--test 8:100] [--new-tokens 48]

Every alpha here is *measured*: teacher-forced greedy acceptance (bench/acceptance.py)
of SmolLM2-135M-Instruct on HumanEval prompts, the continuation being the target's
own greedy output. The DSE picks settings on the dev prompts (HumanEval 0..7) and
checks the chosen ones on the held-out prompts (8..99). Speedups are *modeled*
(bench/perf_model.py): bytes per step from the exact stream sizes, the platform's
bandwidth (and compute peak), and the measured tau.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from golden.llm.datasets import chat_prompts, humaneval_prompts

from . import perf_model as pm
from . import policies
from .acceptance import (
    AcceptanceHarness,
    cassandra_draft,
    layer_skip_draft,
    plain_draft,
    rtn4_asym_draft,
    rtn4_draft,
)

__all__ = ["run_bench", "bench_markdown", "main"]

GAMMAS = range(1, 9)
#: display names of bench.perf_model's platform keys
PLATFORM_NAMES = {"rtx4090": "RTX 4090", "orin": "Jetson AGX Orin", "npu": "NPU (the paper's)", "h100": "H100 SXM"}
HEADLINE_PLATFORM = "rtx4090"
CONTEXT = 512  # the context the speedups are modeled at (HumanEval prompts plus answers fit in it)
# the format decoder as a possible limit: 16-lane units (one beat per clock, measured in
# simulation) at an assumed ASIC clock, and how many of them
DECODER_LANES = 16
DECODER_CLOCK_HZ = 1e9
DECODER_UNITS = (4, 12, 40)


def _machine() -> str:
    from .codec_speed import machine_info

    m = machine_info()
    return f"{m['cpu']} ({m['arch']}), {m['usable_cores']} cores, torch {m['torch']} on {m['torch_threads']} threads"


def _bits_of(draft) -> pm.StorageBits:
    """What a draft and a verify step read per linear-weight / KV value."""
    info = draft.info
    if "weight_full_bits" in info:  # Cassandra: one copy, split
        return pm.StorageBits(draft.weight_bits, info["weight_full_bits"], draft.kv_bits, info["kv_full_bits"])
    return pm.StorageBits(draft.weight_bits * draft.weight_fraction, 16.0, draft.kv_bits * draft.kv_fraction, 16.0)


def _speedups(bits: pm.StorageBits, gamma_rounds: dict, *, shape="smollm2-135m", context=CONTEXT, batch=1):
    """Modeled speedup per platform at each gamma's measured tau; best gamma per platform."""
    out = {}
    for key in pm.PLATFORMS:
        best = None
        for gamma, r in gamma_rounds.items():
            s = pm.speculative_speedup(key, shape, bits, gamma=gamma, batch=batch, context=context, tau=r["tau"])
            if best is None or s["speedup"] > best["speedup"]:
                best = s
        out[key] = best
    return out


def _objective_j(harness, draft, alpha: float) -> float:
    """The paper's J = alpha / (S_w (1 - w_p)(B - w_t) + S_kv (1 - kv_p)(B - kv_t)), with
    S the value counts of linear weights and of a 512-token KV cache, B = 16."""
    i = draft.info
    s_w = harness.linear_values()
    s_kv = 2 * harness.config.num_hidden_layers * harness.config.num_key_value_heads * harness.config.head_dim * CONTEXT
    cost = s_w * (1 - i["prune"]) * (16 - i["truncate"]) + s_kv * (1 - i["kv_prune"]) * (16 - i["kv_truncate"])
    return alpha / cost * 1e9  # per G value-bits, for readable numbers


def _row(harness, draft, result, *, gamma_for_alpha=4) -> dict:
    bits = _bits_of(draft)
    speed = _speedups(bits, result["gamma"])
    head = speed[HEADLINE_PLATFORM]
    row = {
        "name": draft.name, **{k: v for k, v in draft.info.items() if not isinstance(v, (dict, list))},
        "agreement": result["agreement"], "alpha": result["gamma"][gamma_for_alpha]["alpha"],
        "tau": result["gamma"][head["gamma"]]["tau"], "gamma": head["gamma"],
        "weight_draft_bits": bits.weight_draft_bits, "weight_full_bits": bits.weight_full_bits,
        "kv_draft_bits": bits.kv_draft_bits, "kv_full_bits": bits.kv_full_bits,
        "draft_mb": head["bytes_draft"] / 1e6, "verify_mb": head["bytes_verify"] / 1e6,
        "plain_mb": head["bytes_plain"] / 1e6,
        "speedup": head["speedup"], "speedups": {k: v["speedup"] for k, v in speed.items()},
        "best_gamma": {k: v["gamma"] for k, v in speed.items()},
        "extra_memory": draft.extra_memory_bits / 16 if draft.extra_memory_bits else
        (bits.weight_full_bits - 16) / 16 if "weight_full_bits" in draft.info else 0.0,
        "rounds": result["gamma"],
    }
    if "prune" in draft.info:
        row["J"] = _objective_j(harness, draft, row["alpha"])
        row["per_kind"] = dict(draft.info.get("per_kind") or {})
    return row


def run_bench(*, model=None, quick: bool = False, dev=(0, 8), test=(8, 100), new_tokens: int = 48,
              test_new_tokens: int = 32, chat_dev=(0, 8), chat_test=(8, 48), check_prompts: int = 10,
              out_dir: Path = Path("reports"), speed: bool = True, log=print) -> dict:
    """Run everything; returns the result dict (also written as JSON)."""
    if isinstance(check_prompts, bool) or not isinstance(check_prompts, int) or check_prompts < 1:
        raise ValueError(f"check_prompts={check_prompts!r}: need at least one prompt")
    chat_prompts(*chat_dev, label="chat dev start")  # bad ranges fail before any model work
    chat_prompts(*chat_test, label="chat test start")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def say(message):
        log(f"[bench {time.perf_counter() - started:6.0f} s] {message}")

    harness = AcceptanceHarness(model, new_tokens=new_tokens, log=say)
    say(f"target continuations for dev prompts {dev[0]}..{dev[1] - 1}")
    dev_seqs = harness.sequences(humaneval_prompts(*dev))
    result = {"model": model or "SmolLM2-135M-Instruct (Q4_1 GGUF -> BF16)", "dev": list(dev), "test": list(test),
              "new_tokens": new_tokens, "quick": quick, "context": CONTEXT,
              "machine": _machine(),
              "dev_positions": sum(s.new_tokens - 1 for s in dev_seqs)}

    def evaluate(draft, seqs=dev_seqs):
        t0 = time.perf_counter()
        r = harness.evaluate(draft, seqs, gammas=GAMMAS)
        row = _row(harness, draft, r)
        say(f"{draft.name}: agreement {r['agreement']:.3f}, alpha(g=4) {row['alpha']:.3f}, "
            f"speedup {row['speedup']:.2f}x at gamma {row['gamma']} ({time.perf_counter() - t0:.0f} s)")
        return row

    kv_sample = dev_seqs[:2]
    # 1. weights: pruning x truncation (KV at the paper's default: 4 bits truncated)
    prunes, truncs = ((0.0, 0.4), (0, 4)) if quick else ((0.0, 0.2, 0.4, 0.6), (0, 2, 4, 6))
    weight_grid = []
    for p in prunes:
        for t in truncs:
            weight_grid.append(evaluate(cassandra_draft(harness, prune=p, truncate=t, kv_truncate=4,
                                                        kv_sample=kv_sample)))
    best_w = max(weight_grid, key=lambda r: r["speedup"])
    say(f"best weight setting: {best_w['name']}")
    # 2. KV: pruning x truncation at the best weight setting
    kv_prunes, kv_truncs = ((0.0, 0.5), (4,)) if quick else ((0.0, 0.25, 0.5), (0, 2, 4, 6))
    kv_grid = []
    for kp in kv_prunes:
        for kt in kv_truncs:
            kv_grid.append(evaluate(cassandra_draft(harness, prune=best_w["prune"], truncate=best_w["truncate"],
                                                    kv_prune=kp, kv_truncate=kt, kv_sample=kv_sample)))
    best = max(kv_grid + [best_w], key=lambda r: r["speedup"])
    base = dict(prune=best["prune"], truncate=best["truncate"], kv_prune=best["kv_prune"],
                kv_truncate=best["kv_truncate"])
    # 3. exponent coding (raw / unary change bytes only; mx changes values too)
    coding = [evaluate(cassandra_draft(harness, exponent=e, kv_sample=kv_sample, **base))
              for e in (("raw",) if quick else ("raw", "mx"))]
    # 4. past the paper: attention and MLP weights set apart
    per_kind = []
    if not quick:
        p, t = base["prune"], base["truncate"]
        head = "lm_head" if not harness.config.tie_word_embeddings else "embed_tokens"
        for kinds in ({"self_attn": (max(p - 0.2, 0.0), t), "mlp": (min(p + 0.2, 0.8), t)},
                      {"self_attn": (p, max(t - 2, 0)), "mlp": (p, min(t + 1, 7))},
                      {head: (max(p - 0.2, 0.0), max(t - 2, 0))}):
            per_kind.append(evaluate(cassandra_draft(harness, per_kind=kinds, kv_sample=kv_sample, **base)))
    # 5. a finer step around the best weight setting (10% pruning, 1 bit)
    refine = []
    if not quick:
        p, t = base["prune"], base["truncate"]
        for rp, rt in ((round(p - 0.1, 2), t), (round(p + 0.1, 2), t), (p, t - 1), (p, t + 1)):
            if 0.0 <= rp <= 0.8 and 0 <= rt <= 7:
                refine.append(evaluate(cassandra_draft(harness, prune=rp, truncate=rt, kv_prune=base["kv_prune"],
                                                       kv_truncate=base["kv_truncate"], kv_sample=kv_sample)))
    # 5b. the draft reads truncated mantissas as the middle of their interval, not as zeros
    if base.get("exponent", "unary") != "mx":
        p, t = base["prune"], base["truncate"]
        for rp, rt in ((p, t),) if quick else ((p, t), (round(p + 0.1, 2), t), (p, t - 1), (p, t + 1)):
            if 0.0 <= rp <= 0.8 and 1 <= rt <= 7:
                refine.append(evaluate(cassandra_draft(harness, prune=rp, truncate=rt, kv_prune=base["kv_prune"],
                                                       kv_truncate=base["kv_truncate"], kv_sample=kv_sample,
                                                       rounding="midpoint")))
    candidates = weight_grid + kv_grid + coding + per_kind + refine
    best = max(candidates, key=lambda r: r["speedup"])
    say(f"best overall: {best['name']}, {best['speedup']:.2f}x on {HEADLINE_PLATFORM}")
    best_per_platform = {k: max(candidates, key=lambda r: r["speedups"][k]) for k in pm.PLATFORMS}

    # 6. held-out check of the best setting (shorter continuations: greedy generation is the slow part)
    say(f"held-out prompts {test[0]}..{test[1] - 1}, {test_new_tokens} tokens each")
    harness.new_tokens = test_new_tokens
    test_seqs = harness.sequences(humaneval_prompts(*test))
    harness.new_tokens = new_tokens
    best_kwargs = {k: best[k] for k in ("prune", "truncate", "kv_prune", "kv_truncate", "exponent", "rounding")}
    if best.get("per_kind"):
        best_kwargs["per_kind"] = best["per_kind"]
    paper = next(r for r in weight_grid if r["prune"] == 0.4 and r["truncate"] == 4) if any(
        r["prune"] == 0.4 and r["truncate"] == 4 for r in weight_grid) else best
    held_out = {
        "best": evaluate(cassandra_draft(harness, kv_sample=kv_sample, **best_kwargs), test_seqs),
        "paper default": paper,
    }
    result["test_positions"] = sum(s.new_tokens - 1 for s in test_seqs)
    result["test_new_tokens"] = test_new_tokens

    # 7. comparators, same prompts (dev)
    say("comparators")
    comparators = {"plain BF16": evaluate(plain_draft(harness)), "Cassandra (best)": best}
    comparators["Cassandra, magnitude selector"] = evaluate(cassandra_draft(
        harness, selector="magnitude", kv_sample=kv_sample, **{k: best[k] for k in ("prune", "truncate", "kv_prune",
                                                                                      "kv_truncate", "exponent",
                                                                                      "rounding")}))
    comparators["4-bit RTN weights"] = evaluate(rtn4_draft(harness))
    search = _layer_skip_search(harness, dev_seqs[:2], quick=quick, say=say)
    layer_rows = []
    for count in search["sizes"]:
        row = evaluate(layer_skip_draft(harness, search["order"][:count]))
        layer_rows.append(row)
    comparators["layer skip (best of search)"] = max(layer_rows, key=lambda r: r["speedup"])
    best_skip = search["order"][:search["sizes"][layer_rows.index(comparators["layer skip (best of search)"])]]

    # 7b. past the chain: every draft x every drafting policy, two workloads, two targets
    say("drafting policies and fair comparators")
    chat = [(i, harness.tokenizer.format_prompt(t)) for i, t in chat_prompts(*chat_dev)]
    chat_dev_seqs = harness.sequences(chat)
    harness.new_tokens = test_new_tokens
    chat_test_seqs = harness.sequences([(i, harness.tokenizer.format_prompt(t)) for i, t in chat_prompts(*chat_test)])
    harness.new_tokens = new_tokens
    lossless = policies.lossless_bits(harness, kv_sample)
    menu = policies.QUICK_MENU if quick else policies.POLICY_MENU
    # the DSE picked its setting with a chain: under the menu's richest policy, that setting, the same with
    # midpoint draft rounding, and that with 10% more pruning
    setting_kwargs = [best_kwargs]
    if best_kwargs["exponent"] != "mx" and best_kwargs["truncate"] >= 1:
        for extra in ({"rounding": "midpoint"},
                      {"rounding": "midpoint", "prune": round(best_kwargs["prune"] + 0.1, 2)}):
            if best_kwargs["prune"] + 0.1 <= 0.8 or "prune" not in extra:
                setting_kwargs.append({**best_kwargs, **extra})
    candidates = {}
    for kwargs in setting_kwargs:
        draft = cassandra_draft(harness, kv_sample=kv_sample, **kwargs)
        candidates[draft.name] = (draft, kwargs)
    chosen, setting_rows = policies.choose_cassandra_setting(
        harness, {label: d for label, (d, _) in candidates.items()}, dev_seqs, menu[-1], lossless=lossless,
        context=CONTEXT, say=say)
    cassandra_best, cassandra_kwargs = candidates[chosen]
    drafts = {
        "Cassandra": cassandra_best,
        "4-bit RTN (g64)": rtn4_draft(harness),
        "4-bit RTN asymmetric (g32)": rtn4_asym_draft(harness),
        f"layer skip ({len(best_skip)} sublayers)": layer_skip_draft(harness, best_skip),
    }
    ablations = {}
    if cassandra_kwargs["rounding"] != "truncate":
        ablations["Cassandra, truncated draft (the paper's)"] = cassandra_draft(
            harness, kv_sample=kv_sample, **{**cassandra_kwargs, "rounding": "truncate"})
    result["policies"] = policies.run_policy_comparison(
        harness, drafts, {"HumanEval": (dev_seqs, test_seqs), "chat": (chat_dev_seqs, chat_test_seqs)},
        menu=menu, lossless=lossless, context=CONTEXT, ablations=ablations, say=say)
    result["policies"].update(setting=chosen, setting_rows=setting_rows, setting_policy=menu[-1].describe())
    best_policy = next(p for p in menu
                       if p.describe() == result["policies"]["workloads"]["HumanEval"]["best_policy"]["Cassandra"])
    result["policies"]["check"] = policies.real_pipeline_check(harness, cassandra_best, best_policy,
                                                               test_seqs[:check_prompts], model=model, say=say)

    # 8. roofline sweep at the best setting, and the Llama-3-8B / Qwen3-8B shapes
    bits = pm.StorageBits(best["weight_draft_bits"], best["weight_full_bits"], best["kv_draft_bits"],
                          best["kv_full_bits"])
    tau_by_gamma = {g: r["tau"] for g, r in best["rounds"].items()}
    shapes = {}
    for shape in pm.SHAPES:
        per = {}
        for key in pm.PLATFORMS:
            candidates_g = [pm.speculative_speedup(key, shape, bits, gamma=g, context=CONTEXT, tau=t)
                            for g, t in tau_by_gamma.items()]
            per[key] = max(candidates_g, key=lambda s: s["speedup"])
        shapes[shape] = per
    paper_default = held_out["paper default"]
    paper_bits = pm.StorageBits(paper_default["weight_draft_bits"], paper_default["weight_full_bits"],
                                paper_default["kv_draft_bits"], paper_default["kv_full_bits"])
    paper_check = {key: pm.speculative_speedup(key, "llama-3-8b", paper_bits, gamma=5, context=CONTEXT,
                                               tau=paper_default["rounds"][5]["tau"])["speedup"]
                   for key in ("rtx4090", "orin", "npu")}
    # the format decoders as a limit: 16-lane units at an ASIC clock of 1 GHz (assumed), and
    # one unit at the Fmax the ECP5 build reached (docs/FPGA.md)
    decoder_rows = []
    for key in pm.PLATFORMS:
        for shape in ("smollm2-135m", "llama-3-8b"):
            g = shapes[shape][key]["gamma"]
            free = pm.speculative_speedup(key, shape, bits, gamma=g, context=CONTEXT, tau=tau_by_gamma[g])
            row = {"platform": key, "model": shape, "gamma": g, "unlimited": free["speedup"]}
            # units that keep up with memory in the draft step (the step with the fewest bytes per value)
            values = pm.SHAPES[shape].linear_params + pm.SHAPES[shape].kv_values_per_token * CONTEXT
            draft_memory_s = free["bytes_draft"] / pm.PLATFORMS[key].bytes_per_second
            row["units_needed"] = values / draft_memory_s / (DECODER_LANES * DECODER_CLOCK_HZ)
            for units in DECODER_UNITS:
                limit = pm.DecoderLimit(units=units, lanes=DECODER_LANES, clock_hz=DECODER_CLOCK_HZ)
                row[f"units_{units}"] = pm.speculative_speedup(key, shape, bits, gamma=g, context=CONTEXT,
                                                               tau=tau_by_gamma[g], decoder=limit)["speedup"]
            decoder_rows.append(row)
    sweep = []
    for shape in pm.SHAPES:
        g = shapes[shape][HEADLINE_PLATFORM]["gamma"]
        sweep += pm.sweep(list(pm.PLATFORMS), shape, bits, tau=tau_by_gamma[g], gammas=(g,),
                          batches=(1, 2, 4), contexts=(512, 2048, 8192, 32768))

    result.update({
        "weight_grid": weight_grid, "kv_grid": kv_grid, "coding": coding, "per_kind": per_kind, "refine": refine,
        "best": best, "best_per_platform": {k: {"name": v["name"], "speedup": v["speedups"][k],
                                                 "gamma": v["best_gamma"][k]} for k, v in best_per_platform.items()},
        "held_out": held_out, "comparators": comparators, "layer_skip": {"search": search, "rows": layer_rows},
        "shapes": {s: {k: {kk: vv for kk, vv in v.items() if not isinstance(vv, dict)} for k, v in per.items()}
                   for s, per in shapes.items()},
        "paper_check_llama3_8b": paper_check, "sweep": sweep, "decoder_limit": decoder_rows,
    })
    if speed:
        from .codec_speed import measure_speed

        say("hardware and software speed")
        result["speed"] = measure_speed(quick=quick, log=say)
    result["seconds"] = time.perf_counter() - started
    (out_dir / "bench.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    _plots(result, out_dir)
    (out_dir / "bench.md").write_text(bench_markdown(result))
    say(f"wrote {out_dir / 'bench.md'}")
    return result


def _layer_skip_search(harness, seqs, *, quick, say) -> dict:
    """Draft&Verify-style search: the agreement lost by skipping each sublayer alone
    (on ``seqs``), then skip sets of the least harmful sublayers in that order."""
    c = harness.config
    layers = range(c.num_hidden_layers) if not quick else range(min(4, c.num_hidden_layers))
    scores = []
    t0 = time.perf_counter()
    for layer in layers:
        for kind in ("attn", "mlp"):
            r = harness.evaluate(layer_skip_draft(harness, [(layer, kind)]), seqs, gammas=[1])
            scores.append(((layer, kind), r["agreement"]))
    scores.sort(key=lambda item: -item[1])
    order = [sub for sub, _ in scores]
    total = len(order)
    sizes = sorted({max(1, round(total * f)) for f in ((0.25, 0.5) if quick else (0.2, 0.35, 0.5))})
    say(f"layer-skip search: {total} single-sublayer runs in {time.perf_counter() - t0:.0f} s")
    return {"order": order, "scores": scores, "sizes": sizes}


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
def _pct(x):
    return f"{100 * x:.0f}%"


def bench_markdown(r: dict) -> str:
    best = r["best"]
    lines = [
        "# Cassandra benchmark: acceptance, design space, comparators, drafting policies, roofline"
        + (", speed" if "speed" in r else ""),
        "",
        f"Model {r['model']}; acceptance measured teacher-forced on HumanEval prompts {r['dev'][0]}..{r['dev'][1] - 1} "
        f"(dev, {r['dev_positions']} draft positions) with {r['new_tokens']} greedy tokens each; held-out check on "
        f"{r['test'][0]}..{r['test'][1] - 1}. Machine: {r['machine']}. Run time {r['seconds'] / 60:.1f} min"
        + (" (quick mode: reduced grids)." if r["quick"] else "."),
        "",
        "Speedups are modeled (bench/perf_model.py: bytes per step / bandwidth, or FLOPs / peak when that is "
        f"larger) at batch 1 and a {r['context']}-token context, with the tau measured at each gamma and the best "
        "gamma per platform. Bits are per linear-weight and per KV value, exact stream payloads.",
        "",
        "## Headline",
        "",
        "| platform | best setting | gamma | modeled speedup |",
        "|---|---|---:|---:|",
    ]
    for key, v in r["best_per_platform"].items():
        lines.append(f"| {PLATFORM_NAMES.get(key, key)} ({pm.PLATFORMS[key].bandwidth_gb_s:g} GB/s) | {v['name']} | "
                     f"{v['gamma']} | **{v['speedup']:.2f}x** |")
    ho = r["held_out"]
    lines += [
        "",
        f"Best setting on the dev prompts: **{best['name']}**, alpha {best['alpha']:.3f} (gamma 4), tau "
        f"{best['tau']:.2f} at gamma {best['gamma']}, **{best['speedup']:.2f}x** modeled on the "
        f"{PLATFORM_NAMES.get(HEADLINE_PLATFORM, HEADLINE_PLATFORM)}. On the held-out prompts ({r['test_positions']} draft positions, "
        f"{r['test_new_tokens']} tokens each): alpha {ho['best']['alpha']:.3f}, tau {ho['best']['tau']:.2f}, "
        f"**{ho['best']['speedup']:.2f}x**. The paper's default (40% pruned, 4 bits truncated) on the dev "
        f"prompts: alpha {ho['paper default']['alpha']:.3f}, {ho['paper default']['speedup']:.2f}x.",
        "",
        "Llama-3-8B shape with the paper's default setting and the alpha measured here (gamma 5): "
        + ", ".join(f"{PLATFORM_NAMES.get(k, k)} {v:.2f}x" for k, v in r["paper_check_llama3_8b"].items())
        + " (the paper reports 1.78x-2.41x for 8B models with their own, higher alphas).",
        "",
        "## Design-space exploration",
        "",
        "![Pareto](bench_pareto.png)",
        "",
    ]
    cols = ["name", "agreement", "alpha", "gamma", "tau", "weight_draft_bits", "weight_full_bits", "kv_draft_bits",
            "draft_mb", "verify_mb", "J", "speedup"]
    heads = ["setting", "agree", "alpha (g=4)", "best gamma", "tau", "W bits draft", "W bits all", "KV bits draft",
             "draft MB/step", "verify MB/step", "J", f"speedup ({PLATFORM_NAMES.get(HEADLINE_PLATFORM, HEADLINE_PLATFORM)})"]

    def table(rows):
        out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for row in rows:
            cells = []
            for c in cols:
                v = row.get(c, "")
                cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
            out.append("| " + " | ".join(cells) + " |")
        return out

    lines += ["### Weights: pruning x truncation (KV 4 bits truncated)", ""] + table(r["weight_grid"])
    lines += ["", "### KV cache: pruning x truncation (best weight setting)", ""] + table(r["kv_grid"])
    lines += ["", "### Exponent coding, per-kind settings, a finer step and midpoint draft rounding (around the best "
                  "setting)", ""] + table(
        r["coding"] + r["per_kind"] + r.get("refine", []))
    lines += [
        "",
        "## Comparators (chains; each draft on its own target: Cassandra verifies from its compressed bytes, the "
        "others from BF16; the next section compares every draft on both targets with the same policies)",
        "",
        "![Comparators](bench_comparators.png)",
        "",
        "| method | alpha (g=4) | tau | gamma | draft MB/step | verify MB/step | extra memory | modeled speedup |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in r["comparators"].items():
        lines.append(f"| {name} ({row['name']}) | {row['alpha']:.3f} | {row['tau']:.2f} | {row['gamma']} | "
                     f"{row['draft_mb']:.1f} | {row['verify_mb']:.1f} | {row['extra_memory'] * 100:+.1f}% | "
                     f"{row['speedup']:.2f}x |")
    lines += [
        "",
        "Extra memory: stored bits beyond the BF16 model's, relative to its linear weights (Cassandra's split "
        "stores the bitmap but compresses exponents; 4-bit RTN keeps a second copy; layer skipping reads a "
        "subset of the same weights). The layer-skip draft skips the sublayers whose removal alone costs the "
        "least agreement on two dev prompts (a greedy ranking standing in for Draft&Verify's Bayesian search).",
        "",
    ]
    if "policies" in r:
        lines += policies.policies_markdown(r["policies"], check=r["policies"].get("check"))
    lines += [
        "## Modeled speedup by model shape and platform (best setting, measured tau)",
        "",
        "![Context](bench_context.png)",
        "",
        "| model | " + " | ".join(PLATFORM_NAMES.get(k, k) for k in pm.PLATFORMS) + " |",
        "|---|" + "---:|" * len(pm.PLATFORMS),
    ]
    for shape, per in r["shapes"].items():
        lines.append(f"| {shape} | " + " | ".join(f"{per[k]['speedup']:.2f}x (g={per[k]['gamma']})"
                                                   for k in pm.PLATFORMS) + " |")
    lines += [
        "",
        f"### The format decoder as a limit ({DECODER_LANES}-lane units, one beat per clock, at an assumed "
        f"{DECODER_CLOCK_HZ / 1e9:g} GHz)",
        "",
        "Every encoded weight and KV value a step reads passes a decoder; with too few units the decoders, not "
        "memory, set the step time. The paper puts one decoder per GPU memory partition and 40 in its NPU "
        "(1024 B/cycle). The ECP5 build of the 16-lane decoder reached 36 MHz (docs/FPGA.md): one such unit "
        f"decodes {DECODER_LANES * 36.35e6 / 1e9:.2f} G values/s.",
        "",
        "| platform | model | gamma | no limit | " + " | ".join(f"{u} units" for u in DECODER_UNITS)
        + " | units to keep up |",
        "|---|---|---:|---:|" + "---:|" * len(DECODER_UNITS) + "---:|",
    ]
    for row in r.get("decoder_limit", []):
        lines.append(f"| {PLATFORM_NAMES.get(row['platform'], row['platform'])} | {row['model']} | {row['gamma']} | "
                     f"{row['unlimited']:.2f}x | " + " | ".join(f"{row[f'units_{u}']:.2f}x" for u in DECODER_UNITS)
                     + f" | {row.get('units_needed', float('nan')):.0f} |")
    lines += [
        "",
        "A unit emits 16 values (32 B of BF16) per clock whatever the draft reads, so at about 6 bits per value "
        "a draft step needs decoders that emit 16/6 times the memory bandwidth in values: the decoder count "
        "scales with bandwidth / (bits per value), not with the bytes read.",
    ]
    lines += ["", f"Batch and context sweep (best setting, {PLATFORM_NAMES.get(HEADLINE_PLATFORM)}; every "
              "platform is in bench.json):", ""]
    lines.append(pm.markdown_table([row for row in r["sweep"] if row["platform"] == HEADLINE_PLATFORM],
                                   [("model", "model"), ("batch", "batch"),
                                                ("context", "context"), ("gamma", "gamma"),
                                                ("bound_verify", "verify bound"), ("speedup", "speedup")],
                                   floatfmt=".3g"))
    if "speed" in r:
        from .codec_speed import speed_markdown

        # the speed report's own headings, one level down, without its title
        speed = [("#" + line if line.startswith("#") else line)
                 for line in speed_markdown(r["speed"]).splitlines() if not line.startswith("# ")]
        lines += ["", "## Hardware and software speed", ""] + speed
    else:
        lines += ["", "## Hardware and software speed", "",
                  "Not in this run: `make bench-speed` measures the golden codec, the Amaranth simulator and the "
                  "Verilator loopback and writes reports/speed.md (about 5 minutes, most of it the Verilator build)."]
    lines += [
        "",
        "## Method and caveats",
        "",
        "* alpha = accepted / proposed draft tokens in simulated greedy rounds over the target's continuation "
        "(exact for greedy verification, bench/acceptance.py; tests/bench/test_acceptance.py checks it against a real speculative "
        "run). The draft reads the target-written KV cache in draft form for every earlier position.",
        "* The model is SmolLM2-135M (a Q4_1 GGUF rounded to BF16, so its weights sit on a 4-bit grid per block); "
        "8B-model rows reuse its bits per value and tau.",
        "* Outside the policy section, speedups ignore kernel launch and synchronization overheads; at 135M "
        "parameters these weigh on real GPUs, so those SmolLM2 rows are the bandwidth argument only. The policy "
        "section adds a fixed overhead per forward (0, 20 and 50 µs).",
        "* The design-space exploration and the chain comparators above use the batched teacher-forced "
        "simulation, where the draft reads the target's KV (in draft form) also for the round's own tokens; the "
        "policy section drafts every round for real (the draft reads its own KV), which real runs equal round by "
        "round. The difference for the best setting is in the policy section's fixed-chain row.",
        "",
    ]
    return "\n".join(lines)


def _plots(r: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Pareto: draft bytes vs alpha over every Cassandra setting
    rows = r["weight_grid"] + r["kv_grid"] + r["coding"] + r["per_kind"] + r.get("refine", [])
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    xs = [row["draft_mb"] / row["plain_mb"] for row in rows]
    ys = [row["alpha"] for row in rows]
    ax.scatter(xs, ys, c=[row["speedup"] for row in rows], cmap="viridis")
    front, best_y = [], -1.0
    for x, y in sorted(zip(xs, ys)):
        if y > best_y:
            front.append((x, y))
            best_y = y
    ax.plot(*zip(*front), "k--", lw=1, label="Pareto front")
    b = r["best"]
    ax.annotate(f"best: {b['name']}\n{b['speedup']:.2f}x", (b["draft_mb"] / b["plain_mb"], b["alpha"]),
                fontsize=7, xytext=(10, -30), textcoords="offset points", arrowprops={"arrowstyle": "->"})
    ax.set_xlabel("draft step bytes / plain BF16 step bytes")
    ax.set_ylabel("alpha (gamma = 4)")
    ax.set_title("Cassandra settings on SmolLM2-135M (color: modeled speedup)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "bench_pareto.png", dpi=120)
    plt.close(fig)

    if "policies" in r:
        policies.plot_policies(r["policies"], out_dir / "bench_policies.png")

    # comparators
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    names = list(r["comparators"])
    ax.barh(names, [r["comparators"][n]["speedup"] for n in names], color="tab:blue")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel(f"modeled speedup on {PLATFORM_NAMES.get(HEADLINE_PLATFORM, HEADLINE_PLATFORM)} (batch 1)")
    fig.tight_layout()
    fig.savefig(out_dir / "bench_comparators.png", dpi=120)
    plt.close(fig)

    # speedup vs context, per shape, headline platform, batch 1 and 4
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for shape in pm.SHAPES:
        for batch, style in ((1, "-"), (4, ":")):
            pts = sorted((row["context"], row["speedup"]) for row in r["sweep"]
                         if row["model"] == shape and row["batch"] == batch and row["platform"] == HEADLINE_PLATFORM)
            if pts:
                ax.plot(*zip(*pts), style, marker="o", label=f"{shape}, batch {batch}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("modeled speedup")
    ax.set_title(f"Best setting on {PLATFORM_NAMES.get(HEADLINE_PLATFORM, HEADLINE_PLATFORM)}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "bench_context.png", dpi=120)
    plt.close(fig)


def _range(text: str) -> tuple[int, int]:
    a, _, b = text.partition(":")
    return int(a), int(b)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--quick", action="store_true", help="reduced grids (a few minutes)")
    parser.add_argument("--dev", type=_range, default=(0, 8))
    parser.add_argument("--test", type=_range, default=(8, 100))
    parser.add_argument("--new-tokens", type=int, default=48, help="greedy tokens per dev prompt")
    parser.add_argument("--test-new-tokens", type=int, default=32, help="greedy tokens per held-out prompt")
    parser.add_argument("--chat-dev", type=_range, default=(0, 8), help="built-in chat prompts for policy choice")
    parser.add_argument("--chat-test", type=_range, default=(8, 48), help="held-out built-in chat prompts")
    parser.add_argument("--check-prompts", type=int, default=10,
                        help="held-out HumanEval prompts run in the real pipeline against the harness")
    parser.add_argument("--no-speed", action="store_true", help="skip the hardware/software speed section")
    args = parser.parse_args(argv)
    try:
        run_bench(model=args.model, quick=args.quick, dev=args.dev, test=args.test, new_tokens=args.new_tokens,
                  test_new_tokens=args.test_new_tokens, chat_dev=args.chat_dev, chat_test=args.chat_test,
                  check_prompts=args.check_prompts, out_dir=args.out, speed=not args.no_speed,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
