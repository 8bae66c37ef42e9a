"""Past the fixed chain, with every comparison fair (``make bench``'s policy section).

Every draft (the Cassandra split, 4-bit RTN weights symmetric and asymmetric,
layer skipping, prompt lookup with no draft model) gets the same drafting
policies (chains, adaptive length, static and dynamic token trees, lookup gated
with the draft model), the same prompts, the same harness and the same cost
model, on two workloads (HumanEval code, the built-in chat requests) and two
targets:

* **BF16 target**: the model stored in BF16; verification reads 16 bits per
  value. A draft with weights of its own (RTN, or Cassandra's speculation data)
  is a second copy beside it.
* **compressed target**: the model stored losslessly in the Cassandra format
  (for peers: 0% pruned, no truncation, about 12 bits per weight); verification
  reads those bytes. Cassandra's own draft is the speculation part of that same
  copy, so it costs no memory.

Rounds come from :meth:`bench.acceptance.AcceptanceHarness.run_policy` (the
draft drafts for real, reading its own KV in draft form; equal to real runs
round by round, tested), so they are the same on both targets (verification is
lossless); only the bytes differ. Speedups over plain BF16 decoding come from
:func:`bench.perf_model.policy_speedup` at each per-forward overhead of
:data:`bench.perf_model.OVERHEADS_US`. Policies are chosen per draft on the dev
prompts (compressed target, no overhead) and measured on the held-out prompts.
"""

from __future__ import annotations

import time

from golden.llm.drafting import DraftPolicy

from . import perf_model as pm
from .acceptance import AcceptanceHarness, Draft, cassandra_draft

__all__ = ["POLICY_MENU", "QUICK_MENU", "LOOKUP_ALONE", "TARGETS", "draft_bits", "memory_vs_bf16",
           "choose_cassandra_setting", "run_policy_comparison", "policies_markdown", "real_pipeline_check"]

#: The drafting policies every draft model is tried with on the dev prompts.
#: (The run of 2026-12-03 also tried an adaptive chain and a dynamic tree without lookup:
#: each lost to the same policy with gated lookup for every draft on both workloads.)
POLICY_MENU = (
    DraftPolicy(gamma=3),
    DraftPolicy(gamma=3, tree="2x2x2"),
    DraftPolicy(gamma=8, threshold=0.5, lookup="gated"),
    DraftPolicy(gamma=5, tree="dynamic:16", width=4, lookup="gated"),
)
QUICK_MENU = (DraftPolicy(gamma=3), DraftPolicy(gamma=2, tree="2x2"), DraftPolicy(gamma=3, lookup="gated"))
#: Prompt lookup alone: no draft model at all.
LOOKUP_ALONE = DraftPolicy(gamma=6, lookup="alone")
TARGETS = ("bf16", "compressed")
SHAPE = "smollm2-135m"


def _is_cassandra(draft: Draft | None) -> bool:
    return draft is not None and "weight_full_bits" in draft.info


def draft_bits(draft: Draft | None, target: str, lossless: dict) -> pm.StorageBits:
    """Bits per linear-weight / KV value a draft step and a verify step read.

    ``lossless``: the compressed target's ``weight_bits`` / ``kv_bits`` (the format at
    0% pruned, no truncation). ``draft=None`` is lookup alone (no draft step)."""
    full_w, full_kv = (16.0, 16.0) if target == "bf16" else (lossless["weight_bits"], lossless["kv_bits"])
    if draft is None:
        return pm.StorageBits(full_w, full_w, full_kv, full_kv)
    if _is_cassandra(draft):
        if target == "compressed":  # one copy, split
            return pm.StorageBits(draft.weight_bits, draft.info["weight_full_bits"], draft.kv_bits,
                                  draft.info["kv_full_bits"])
        return pm.StorageBits(draft.weight_bits, 16.0, draft.kv_bits, 16.0)  # a second copy beside BF16
    if draft.extra_memory_bits:  # weights of its own (RTN); the KV cache is the target's
        return pm.StorageBits(draft.weight_bits, full_w, full_kv * draft.kv_fraction, full_kv)
    # a subset of the target's own weights and KV (layer skip)
    return pm.StorageBits(full_w * draft.weight_fraction, full_w, full_kv * draft.kv_fraction, full_kv)


def memory_vs_bf16(draft: Draft | None, target: str, lossless: dict) -> float:
    """Stored bits per linear weight (target + any draft copy) over BF16's 16, minus 1."""
    if _is_cassandra(draft) and target == "compressed":
        stored = draft.info["weight_full_bits"]
    else:
        stored = 16.0 if target == "bf16" else lossless["weight_bits"]
        if _is_cassandra(draft):
            stored += draft.weight_bits
        elif draft is not None:
            stored += draft.extra_memory_bits
    return stored / 16.0 - 1.0


def _row(draft_name: str, draft: Draft | None, rounds, lossless: dict, *, context: int) -> dict:
    row = {"draft": draft_name, "policy": rounds.policy.describe(), **rounds.as_dict(),
           "draft_forwards_per_round": rounds.draft_forwards_per_round,
           "draft_rows_per_forward": (sum(rounds.draft_rows) / len(rounds.draft_rows)) if rounds.draft_rows else 0.0,
           "verify_rows_per_round": sum(rounds.verify_rows) / rounds.rounds if rounds.rounds else 1.0,
           "speedup": {}, "memory": {}, "compression_gain": {},
           "weight_draft_bits": draft.weight_bits if draft is not None else 0.0}
    for target in TARGETS:
        bits = draft_bits(draft, target, lossless)
        row["memory"][target] = memory_vs_bf16(draft, target, lossless)
        row["speedup"][target] = {}
        row["compression_gain"][target] = {}
        for overhead in pm.OVERHEADS_US:
            s = pm.policy_speedup("rtx4090", SHAPE, bits, tau=max(1.0, row["tau"]),
                                  draft_forwards=row["draft_forwards_per_round"],
                                  draft_rows=max(1.0, row["draft_rows_per_forward"]),
                                  verify_rows=max(1.0, row["verify_rows_per_round"]), context=context,
                                  overhead_s=overhead * 1e-6)
            row["speedup"][target][overhead] = s["speedup"]
            row["compression_gain"][target][overhead] = pm.plain_speedup(
                "rtx4090", SHAPE, weight_bits=bits.weight_full_bits, kv_bits=bits.kv_full_bits, context=context,
                overhead_s=overhead * 1e-6)
    return row


def choose_cassandra_setting(harness: AcceptanceHarness, candidates: dict, sequences, policy: DraftPolicy, *,
                             lossless: dict, context: int = 512, say=print) -> tuple[str, list[dict]]:
    """The Cassandra setting the policy section uses: of ``candidates`` (label ->
    Draft; the design-space exploration picks its settings with a fixed chain), the
    one fastest under ``policy`` on ``sequences`` (dev; compressed target, no
    overhead). Returns its label and every candidate's row."""
    rows = []
    for label, draft in candidates.items():
        row = _row(label, draft, harness.run_policy(draft, sequences, policy), lossless, context=context)
        rows.append(row)
        say(f"Cassandra setting {label}, {row['policy']}: tau {row['tau']:.2f}, "
            f"{row['speedup']['compressed'][0]:.2f}x compressed")
    best = max(rows, key=lambda r: r["speedup"]["compressed"][0])
    return best["draft"], rows


def run_policy_comparison(harness: AcceptanceHarness, drafts: dict, workloads: dict, *, menu=POLICY_MENU,
                          lossless: dict, context: int = 512, ablations: dict | None = None, say=print) -> dict:
    """Every draft x every policy on each workload's dev sequences. On the held-out
    sequences: Cassandra with its best policy (compressed target, no overhead) and
    with its best fixed chain, the best peer on dev with its best policy, and lookup
    alone. ``drafts``: name -> Draft (the first is Cassandra's); ``workloads``: name
    -> (dev sequences, held-out sequences); ``ablations``: name -> Draft, each run on
    dev with Cassandra's best policy (e.g. Cassandra's draft with the paper's
    truncation)."""
    out = {"menu": [p.describe() for p in menu], "lossless": lossless, "workloads": {}}
    cassandra_name = next(iter(drafts))
    for workload, (dev, test) in workloads.items():
        dev_rows, held = [], []
        best = {}
        for name, draft in drafts.items():
            for policy in menu:
                t0 = time.perf_counter()
                row = _row(name, draft, harness.run_policy(draft, dev, policy), lossless, context=context)
                dev_rows.append(row)
                say(f"{workload} dev, {name}, {row['policy']}: tau {row['tau']:.2f}, "
                    f"{row['speedup']['compressed'][0]:.2f}x compressed / {row['speedup']['bf16'][0]:.2f}x BF16 "
                    f"({time.perf_counter() - t0:.0f} s)")
        dev_rows.append(_row("prompt lookup alone", None, harness.run_policy(None, dev, LOOKUP_ALONE), lossless,
                             context=context))
        for name in drafts:
            rows = [r for r in dev_rows if r["draft"] == name]
            best[name] = max(rows, key=lambda r: r["speedup"]["compressed"][0])["policy"]
            chains = [r for r in rows if r["policy"].startswith("chain gamma") and "stop" not in r["policy"]
                      and "lookup" not in r["policy"]]
            if name == cassandra_name and chains:
                best[f"{name}, fixed chain"] = max(chains, key=lambda r: r["speedup"]["compressed"][0])["policy"]
        by_text = {p.describe(): p for p in menu}
        for label, draft in (ablations or {}).items():
            row = _row(label, draft, harness.run_policy(draft, dev, by_text[best[cassandra_name]]), lossless,
                       context=context)
            dev_rows.append(row)
            say(f"{workload} dev, {label}, {row['policy']}: tau {row['tau']:.2f}, "
                f"{row['speedup']['compressed'][0]:.2f}x compressed")
        peer_rows = [r for r in dev_rows if r["draft"] in drafts and r["draft"] != cassandra_name]
        best_peer = max(peer_rows, key=lambda r: r["speedup"]["compressed"][0])["draft"] if peer_rows else None
        held_out = [label for label in best if label.removesuffix(", fixed chain") in (cassandra_name, best_peer)]
        for label in held_out:
            policy_text = best[label]
            name = label.removesuffix(", fixed chain")
            t0 = time.perf_counter()
            row = _row(label, drafts[name], harness.run_policy(drafts[name], test, by_text[policy_text]), lossless,
                       context=context)
            held.append(row)
            say(f"{workload} held-out, {label}, {row['policy']}: tau {row['tau']:.2f}, "
                f"{row['speedup']['compressed'][0]:.2f}x compressed ({time.perf_counter() - t0:.0f} s)")
        held.append(_row("prompt lookup alone", None, harness.run_policy(None, test, LOOKUP_ALONE), lossless,
                         context=context))
        out["workloads"][workload] = {"dev": dev_rows, "held_out": held, "best_policy": best, "best_peer": best_peer,
                                      "dev_positions": sum(s.new_tokens - 1 for s in dev),
                                      "test_positions": sum(s.new_tokens - 1 for s in test)}
    return out


def real_pipeline_check(harness: AcceptanceHarness, draft: Draft, policy: DraftPolicy, sequences, *, model=None,
                        say=print) -> dict:
    """The same mode in the real pipeline (weights and KV cache in Cassandra format,
    target forwards, sequential verification) on ``sequences``' prompts: its tau
    against the harness's on the same prompts and continuations."""
    from golden.pipeline import Pipeline, PipelineConfig

    info = draft.info
    if info.get("per_kind"):
        return {"skipped": f"the best setting has per-kind settings ({info['per_kind']}), which the pipeline's "
                           "options do not express"}
    cfg = PipelineConfig(model=model, prune=info["prune"], truncate=info["truncate"], kv_prune=info["kv_prune"],
                         kv_truncate=info["kv_truncate"], exponent=info["exponent"], selector=info["selector"],
                         draft_rounding=info.get("rounding", "truncate"),
                         gamma=policy.gamma, tree=policy.tree, threshold=policy.threshold, lookup=policy.lookup,
                         lookup_min=policy.lookup_min, lookup_max=policy.lookup_max, width=policy.width,
                         calibration_samples=harness.calibration.samples)
    t0 = time.perf_counter()
    pipe = Pipeline(cfg, keep_reference=False)
    committed = forwards = same = 0
    for seq in sequences:
        report = pipe.run(seq.tokens[:seq.start], seq.new_tokens, check=False)
        s = report.speculative
        committed += s.committed
        forwards += s.target_forwards
        same += s.tokens == seq.tokens[seq.start:]
    simulated = harness.run_policy(draft, sequences, policy)
    real_tau = committed / forwards if forwards else 0.0
    result = {"policy": policy.describe(), "prompts": len(sequences), "real_tau": real_tau,
              "harness_tau": simulated.tau, "relative_error": (simulated.tau - real_tau) / real_tau if real_tau else 0,
              "identical_continuations": same, "seconds": time.perf_counter() - t0}
    say(f"real pipeline check: tau {real_tau:.3f} real vs {simulated.tau:.3f} harness on {len(sequences)} prompts")
    return result


def _fmt_speedups(row, target):
    return " / ".join(f"{row['speedup'][target][o]:.2f}x" for o in pm.OVERHEADS_US)


def policies_markdown(r: dict, *, check: dict | None = None) -> list[str]:
    """The report section (markdown lines)."""
    over = " / ".join(f"{o} µs" for o in pm.OVERHEADS_US)
    lossless = r["lossless"]
    lines = [
        "## Past the chain: token trees, adaptive length, lookup, and peers on equal footing",
        "",
        "Every draft gets the same drafting policies, prompts, harness (rounds drafted for real, the draft "
        "reading its own KV cache in draft form) and cost model (RTX 4090, batch 1, 512-token context; a fixed "
        f"overhead per forward of {over}). Two targets: **BF16** (verification reads 16 bits per value; a draft "
        "with its own weights is a second copy) and **compressed** (the model stored losslessly in the Cassandra "
        f"format: {lossless['weight_bits']:.2f} bits per weight and {lossless['kv_bits']:.2f} per KV value for "
        "the peers; Cassandra's draft is the speculation part of its own copy). Speedups are over plain BF16 "
        "decoding. The policy of each draft is chosen on the dev prompts (compressed target, 0 µs) and measured "
        "on the held-out prompts.",
        "",
        "![Policies](bench_policies.png)",
        "",
    ]
    if r.get("setting_rows"):
        lines += [f"Cassandra's setting: the design-space exploration picks its settings with a fixed chain, so the "
                  f"policy section takes the fastest of these under {r['setting_policy']} on the HumanEval dev "
                  f"prompts (compressed target, 0 µs): **{r['setting']}**.", "",
                  "| setting | tau | draft bits per weight | compressed target (0 µs) |", "|---|---:|---:|---:|"]
        for row in r["setting_rows"]:
            lines.append(f"| {row['draft']} | {row['tau']:.2f} | {row.get('weight_draft_bits', float('nan')):.2f} | "
                         f"{row['speedup']['compressed'][0]:.2f}x |")
        lines.append("")
    for workload, w in r["workloads"].items():
        lines += [f"### {workload}: held-out ({w['test_positions']} draft positions)", "",
                  f"| draft | policy | tau | alpha | draft forwards / round | verify rows | memory vs BF16 (BF16 / "
                  f"compressed target) | BF16 target ({over}) | compressed target ({over}) | of which compression |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in sorted(w["held_out"], key=lambda x: -x["speedup"]["compressed"][0]):
            gain = row["compression_gain"]["compressed"][0]
            lines.append(
                f"| {row['draft']} | {row['policy']} | {row['tau']:.2f} | {row['alpha']:.3f} | "
                f"{row['draft_forwards_per_round']:.2f} | {row['verify_rows_per_round']:.1f} | "
                f"{row['memory']['bf16'] * 100:+.0f}% / {row['memory']['compressed'] * 100:+.0f}% | "
                f"{_fmt_speedups(row, 'bf16')} | **{_fmt_speedups(row, 'compressed')}** | "
                f"{gain:.2f}x x {row['speedup']['compressed'][0] / gain:.2f}x |")
        best = max(w["held_out"], key=lambda x: x["speedup"]["compressed"][0])
        if w.get("best_peer"):
            lines += ["", f"Held out: Cassandra (its best policy and its best fixed chain), the peer that was best on "
                          f"the dev prompts ({w['best_peer']}) and prompt lookup alone; every draft and policy is in "
                          "the dev table below."]
        cassandra = [x for x in w["held_out"] if x["draft"].startswith("Cassandra")]
        peers = [x for x in w["held_out"] if not x["draft"].startswith("Cassandra")]
        lines.append("")
        if cassandra and peers:
            c = max(cassandra, key=lambda x: x["speedup"]["compressed"][0])
            p = max(peers, key=lambda x: x["speedup"]["compressed"][0])
            pb = max(peers, key=lambda x: x["speedup"]["bf16"][0])
            cb = max(cassandra, key=lambda x: x["speedup"]["bf16"][0])
            gain = c["compression_gain"]["compressed"][0]
            lines += [
                f"Winner on the compressed target: **{best['draft']}, {best['policy']}** "
                f"({best['speedup']['compressed'][0]:.2f}x). Best Cassandra mode: {c['policy']}, "
                f"{c['speedup']['compressed'][0]:.2f}x = {gain:.2f}x lossless compression x "
                f"{c['speedup']['compressed'][0] / gain:.2f}x speculation; best peer: {p['draft']} "
                f"({p['policy']}), {p['speedup']['compressed'][0]:.2f}x. On the BF16 target: Cassandra "
                f"{cb['speedup']['bf16'][0]:.2f}x ({cb['policy']}), best peer {pb['draft']} "
                f"{pb['speedup']['bf16'][0]:.2f}x.",
                "",
            ]
        lines += [f"Dev prompts ({w['dev_positions']} draft positions), every draft and policy:", "",
                  f"| draft | policy | tau | alpha | draft forwards / round | verify rows | compressed target ({over}) "
                  f"| BF16 target (0 µs) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in w["dev"]:
            lines.append(f"| {row['draft']} | {row['policy']} | {row['tau']:.2f} | {row['alpha']:.3f} | "
                         f"{row['draft_forwards_per_round']:.2f} | {row['verify_rows_per_round']:.1f} | "
                         f"{_fmt_speedups(row, 'compressed')} | {row['speedup']['bf16'][0]:.2f}x |")
        lines.append("")
    if check and "skipped" in check:
        lines += [f"Harness vs real pipeline: not run ({check['skipped']}).", ""]
    elif check:
        lines += [
            f"**Harness vs real pipeline** ({check['policy']}, {check['prompts']} held-out HumanEval prompts, weights "
            f"and KV cache in Cassandra format, target forwards, sequential verification): tau "
            f"{check['real_tau']:.3f} real vs {check['harness_tau']:.3f} in the harness "
            f"({check['relative_error'] * 100:+.1f}%); {check['identical_continuations']} of {check['prompts']} "
            f"continuations identical to plain BF16 decoding's.",
            "",
        ]
    lines += [
        "alpha counts every tree node as proposed, so trees show low alpha and high tau. \"of which compression\" "
        "splits the compressed-target speedup (0 µs) into plain decoding from the stored bytes over BF16 and the "
        "speculation gain on top.",
        "",
    ]
    return lines


def plot_policies(r: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(r["workloads"])
    fig, axes = plt.subplots(1, len(workloads), figsize=(6.5 * len(workloads), 4), squeeze=False)
    for ax, workload in zip(axes[0], workloads):
        rows = sorted(r["workloads"][workload]["held_out"], key=lambda x: x["speedup"]["compressed"][0])
        names = [f"{x['draft']}\n{x['policy']}" for x in rows]
        y = range(len(rows))
        for target, offset, color in (("bf16", -0.2, "tab:gray"), ("compressed", 0.2, "tab:blue")):
            ax.barh([i + offset for i in y], [x["speedup"][target][0] for x in rows], height=0.4, color=color,
                    label=f"{target} target, 0 µs")
            ax.scatter([x["speedup"][target][pm.OVERHEADS_US[-1]] for x in rows], [i + offset for i in y],
                       marker="|", color="k", s=80)
        ax.set_yticks(list(y))
        ax.set_yticklabels(names, fontsize=6)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xlabel(f"modeled speedup over BF16, RTX 4090 (| = {pm.OVERHEADS_US[-1]} µs per forward)")
        ax.set_title(f"{workload}, held-out")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def lossless_bits(harness: AcceptanceHarness, kv_sample) -> dict:
    """The compressed target's bits: the format at 0% pruned, no truncation."""
    d = cassandra_draft(harness, prune=0.0, truncate=0, kv_prune=0.0, kv_truncate=0, kv_sample=kv_sample)
    return {"weight_bits": d.info["weight_full_bits"], "kv_bits": d.info["kv_full_bits"]}
