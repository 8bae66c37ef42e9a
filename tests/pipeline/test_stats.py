"""`cassandra-sd stats` on the real SmolLM2 file (one layer) and on a small
safetensors folder, checked against the sizes formula of docs/FORMAT.md."""

import json

import pytest
import torch
from safetensors.torch import save_file

from golden.pipeline.cli import main


def _run(capsys, tmp_path, *args):
    out_json = tmp_path / "stats.json"
    assert main(["stats", *args, "--quiet", "--json", str(out_json)]) == 0
    return capsys.readouterr().out, json.loads(out_json.read_text())


def test_stats_default_model_one_layer(capsys, tmp_path):
    text, data = _run(capsys, tmp_path, "--layers", "1", "--kinds", "linear")
    assert "dequantized to float32 with gguf, then rounded to BF16" in text
    assert "| **total** | 7 |" in text
    total = data["rows"]["total"]
    n, k = total["values"], total["kept"]
    assert n == 576 * 576 + 2 * 192 * 576 + 576 * 576 + 3 * 1536 * 576
    assert k == n // 64 * 38  # 40% of 64 pruned: 38 kept per group
    bits = total["stream_bits"]
    assert bits["bitmap"] == n and bits["sign_mantissa"] == 4 * k and bits["mantissa_low"] == 4 * k
    assert bits["pruned_raw"] == 16 * (n - k)
    # unary codes: at least 1 bit, and on real weights far below raw 8 bits
    assert k <= bits["exponent"] < 3 * k
    assert 0 < total["exponent_entropy_bits"] <= total["exponent_bits_per_kept"]
    assert total["source_dtypes"] == ["Q4_1"]


@pytest.mark.parametrize("coding", ["raw", "mx"])
def test_stats_safetensors_folder(capsys, tmp_path, coding):
    g = torch.Generator().manual_seed(0)
    folder = tmp_path / "model"
    folder.mkdir()
    save_file(
        {
            "model.layers.0.mlp.up_proj.weight": torch.randn(64, 128, generator=g).to(torch.bfloat16),
            "model.layers.0.input_layernorm.weight": torch.ones(128, dtype=torch.bfloat16),
            "lm_head.weight": torch.randn(32, 128, generator=g).to(torch.bfloat16),
        },
        str(folder / "model.safetensors"),
    )
    text, data = _run(capsys, tmp_path, str(folder), "--exponent", coding, "--truncate", "2", "--prune", "0.5")
    assert "Source dtypes: BF16" in text
    rows = data["rows"]
    assert set(rows) == {"up_proj", "lm_head", "total"}
    assert data["skipped"] == ["model.layers.0.input_layernorm.weight (shape (128,) not 2-D with a multiple of 64)"]
    total = rows["total"]
    k = total["kept"]
    assert k == (64 * 128 + 32 * 128) // 2
    assert total["stream_bits"]["sign_mantissa"] == k * (6 if coding == "raw" else 7)


def test_stats_bad_arguments(capsys, tmp_path):
    assert main(["stats", str(tmp_path / "missing.gguf"), "--quiet"]) == 2
    assert "missing.gguf" in capsys.readouterr().err
    assert main(["stats", "--truncate", "9", "--quiet"]) == 2
    assert "--truncate 9 is out of range" in capsys.readouterr().err
    assert main(["stats", "--group-size", "48", "--quiet"]) == 2
    assert "group_size=48" in capsys.readouterr().err
