"""`make bench`'s report (bench/report.py) end to end on the tiny model, quick
grids, no hardware speed section (`make bench-speed`): every section and plot is written."""

from __future__ import annotations

import json

import pytest

from bench.report import main, run_bench
from tests.tiny_model import make_tiny_checkpoint


def test_bench_report_quick(tmp_path):
    folder = make_tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "reports"
    result = run_bench(model=str(folder), quick=True, dev=(0, 2), test=(2, 4), new_tokens=12, out_dir=out,
                       chat_dev=(0, 2), chat_test=(2, 3), check_prompts=2, speed=False, log=lambda message: None)
    text = (out / "bench.md").read_text()
    for heading in ("## Headline", "## Design-space exploration", "## Comparators", "Batch and context sweep",
                    "The format decoder as a limit", "## Past the chain", "### HumanEval: held-out",
                    "### chat: held-out", "Harness vs real pipeline"):
        assert heading in text
    for plot in ("bench_pareto.png", "bench_comparators.png", "bench_context.png", "bench_policies.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "bench.json").read_text())
    assert saved["best"]["name"] == result["best"]["name"]
    assert set(result["best_per_platform"]) == {"rtx4090", "orin", "npu", "h100"}
    assert result["comparators"]["plain BF16"]["alpha"] == 1.0
    # the plain draft reads everything the target reads: no speedup possible
    assert result["comparators"]["plain BF16"]["speedup"] < 1.0
    for row in result["decoder_limit"]:  # more decoder units never slow a step down, none beats no limit
        speeds = [row["units_4"], row["units_12"], row["units_40"], row["unlimited"]]
        assert speeds == sorted(speeds)
    pol = result["policies"]
    for workload in ("HumanEval", "chat"):
        w = pol["workloads"][workload]
        drafts = {row["draft"] for row in w["held_out"]}
        # held out: Cassandra (best policy, best chain), the best peer on dev, lookup alone
        peers = [r for r in w["dev"] if r["draft"] not in ("prompt lookup alone",) and not r["draft"].startswith("Cassandra")]
        best_peer = max(peers, key=lambda r: r["speedup"]["compressed"][0])["draft"]
        assert w["best_peer"] == best_peer
        assert drafts == {"Cassandra", "Cassandra, fixed chain", best_peer, "prompt lookup alone"}
        # four drafts x the quick menu, lookup alone, and the truncated draft when a midpoint one was chosen
        ablations = 1 if "midpoint" in pol["setting"] else 0
        assert len(w["dev"]) == 4 * 3 + 1 + ablations
        assert [r["draft"] for r in w["dev"]].count("Cassandra, truncated draft (the paper's)") == ablations
        for row in w["held_out"]:
            # verification is lossless: the same rounds on both targets; the compressed target reads fewer bytes
            assert row["speedup"]["compressed"][0] > row["speedup"]["bf16"][0]
            by_overhead = row["speedup"]["compressed"]
            assert by_overhead[0] >= by_overhead[20] >= by_overhead[50]
    # the Cassandra setting: the chain DSE's best and its midpoint variants, the fastest under the richest policy
    assert [r["draft"] for r in pol["setting_rows"]][0] == result["best"]["name"]
    assert len(pol["setting_rows"]) == 3 and pol["setting"] == max(
        pol["setting_rows"], key=lambda r: r["speedup"]["compressed"][0])["draft"]
    assert "Cassandra's setting" in text
    check = pol["check"]
    assert check["prompts"] == 2 and check["identical_continuations"] == 2
    assert abs(check["relative_error"]) < 0.2
    for row in result["weight_grid"]:
        assert 0.0 <= row["alpha"] <= 1.0 and row["weight_draft_bits"] <= row["weight_full_bits"]


def test_bench_bad_range():
    with pytest.raises(SystemExit):
        main(["--dev", "x"])
