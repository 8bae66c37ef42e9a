"""`cassandra-sd export-vectors`: files that agree with the codec and with the run."""

import hashlib
import json

import numpy as np
import pytest
import torch

from golden.format.codec import bf16_bits, decode, decode_bitmap
from golden.format.params import STREAM_NAMES
from golden.pipeline import Pipeline, PipelineConfig
from golden.pipeline.cli import main
from golden.pipeline.vectors import export_vectors, read_vector
from tests.tiny_model import make_tiny_checkpoint


def _check_vector(out, entry):
    v = read_vector(out, entry)
    enc = v["encoded"]
    assert np.array_equal(v["input"], v["full"])
    rounding = entry["draft_rounding"]
    assert np.array_equal(bf16_bits(decode(enc, "draft", rounding=rounding)).numpy(), v["draft"])
    assert np.array_equal(bf16_bits(decode(enc, "full")).numpy(), v["full"])
    assert np.array_equal(decode_bitmap(enc).numpy(), v["mask"])
    for s in STREAM_NAMES:
        assert v["streams"][s] == enc.streams[s].to_bytes()
        assert entry["streams"][s]["payload_bits"] == enc.streams[s].payload_bits
    for key, fname in entry["files"].items():
        assert hashlib.sha256((out / fname).read_bytes()).hexdigest() == entry["sha256"][key]
    for info in entry["streams"].values():  # the stream .bin files are covered too
        assert hashlib.sha256((out / info["file"]).read_bytes()).hexdigest() == info["sha256"]
    return v


@pytest.mark.parametrize("rounding", ["truncate", "midpoint"])
def test_export_vectors_tiny(tmp_path, rounding):
    folder = make_tiny_checkpoint(tmp_path / "tiny")
    pipe = Pipeline(PipelineConfig(model=str(folder), group_size=16, kv_prune=0.25, draft_rounding=rounding))
    manifest = export_vectors(pipe, tmp_path / "vectors", layers=(0, 1), tile_rows=4, max_new_tokens=6)
    data = json.loads(manifest.read_text())
    assert data["format_version"] == 1
    kinds = [e["source"]["kind"] for e in data["vectors"]]
    assert kinds.count("weight") == 2 * 7 + 1 and kinds.count("kv") == 2
    for entry in data["vectors"]:
        v = _check_vector(tmp_path / "vectors", entry)
        if entry["source"]["kind"] == "weight":
            name = entry["source"]["tensor"]
            # the tile is the top rows of the pipeline's tensor, bit for bit, in both modes
            assert np.array_equal(v["input"], bf16_bits(pipe.reference[name][:4].to(torch.bfloat16)).numpy())
            draft_rows = bf16_bits(pipe.draft_weights[name][:4].to(torch.bfloat16)).numpy()
            assert np.array_equal(v["draft"], draft_rows)
        else:
            layer, (_, hi) = entry["source"]["layer"], entry["source"]["positions"]
            heads = pipe.model_config.num_key_value_heads
            k, val = pipe.last_cache.read(layer, hi, "draft")
            served = torch.stack([k, val]).permute(0, 2, 1, 3).reshape(-1, 16)
            # the KV tile's draft is what the draft model read during the run
            assert np.array_equal(v["draft"], bf16_bits(served).numpy())
            assert entry["shape"] == [2 * hi * heads, 16]
            assert v["mask"].sum() == 2 * hi * heads * 12  # 25% of 16 pruned per head vector


def test_export_vectors_cli(tmp_path, capsys):
    folder = make_tiny_checkpoint(tmp_path / "tiny")
    rc = main(["export-vectors", "--model", str(folder), "--out", str(tmp_path / "v"), "--layers", "1",
               "--rows", "2", "--group-size", "16", "--exponent", "mx", "--quiet"])
    assert rc == 0
    assert "Wrote 9 vectors" in capsys.readouterr().out
    data = json.loads((tmp_path / "v" / "manifest.json").read_text())
    for entry in data["vectors"]:
        assert entry["params"]["exponent_coding"] == "mx"
        _check_vector(tmp_path / "v", entry)


def test_read_vector_rejects_a_changed_file(tmp_path):
    folder = make_tiny_checkpoint(tmp_path / "tiny")
    rc = main(["export-vectors", "--model", str(folder), "--out", str(tmp_path / "v"), "--layers", "0",
               "--rows", "2", "--group-size", "16", "--quiet"])
    assert rc == 0
    entry = json.loads((tmp_path / "v" / "manifest.json").read_text())["vectors"][0]
    stream = tmp_path / "v" / entry["streams"]["exponent"]["file"]
    data = bytearray(stream.read_bytes())
    data[0] ^= 1
    stream.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{stream.name} does not match the manifest's SHA-256"):
        read_vector(tmp_path / "v", entry)


@pytest.mark.parametrize("layers, message", [
    ("0,x", "--layers '0,x': 'x' is not a layer number"),
    ("0,0", "--layers: [0] given more than once"),
    ("0,7", "--layers: [7] out of range: the model has 2 decoder layers (0..1)"),
    ("-1", "--layers: [-1] out of range"),
])
def test_export_vectors_layers_checked_before_model_work(tmp_path, capsys, layers, message):
    folder = make_tiny_checkpoint(tmp_path / "tiny")
    rc = main(["export-vectors", "--model", str(folder), "--out", str(tmp_path / "v"), "--layers", layers,
               "--group-size", "16", "--quiet"])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
