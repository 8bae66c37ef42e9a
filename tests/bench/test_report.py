"""`make bench`'s report (bench/report.py) end to end on the tiny model, quick
grids, no hardware speed section: every section and plot is written."""

from __future__ import annotations

import json

import pytest

from bench.report import main, run_bench
from tests.tiny_model import make_tiny_checkpoint


def test_bench_report_quick(tmp_path):
    folder = make_tiny_checkpoint(tmp_path / "tiny")
    out = tmp_path / "reports"
    result = run_bench(model=str(folder), quick=True, dev=(0, 2), test=(2, 4), new_tokens=12, out_dir=out,
                       speed=False, log=lambda message: None)
    text = (out / "bench.md").read_text()
    for heading in ("## Headline", "## Design-space exploration", "## Comparators", "Batch and context sweep",
                    "The format decoder as a limit"):
        assert heading in text
    for plot in ("bench_pareto.png", "bench_comparators.png", "bench_context.png"):
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
    for row in result["weight_grid"]:
        assert 0.0 <= row["alpha"] <= 1.0 and row["weight_draft_bits"] <= row["weight_full_bits"]


def test_bench_bad_range():
    with pytest.raises(SystemExit):
        main(["--dev", "x"])
