"""`cassandra-sd encode MODEL --out DIR`: every weight as a container on disk that
loads and decodes to the checkpoint's exact bits; the manifest describes it."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from golden.format.codec import bf16_bits, decode
from golden.format.container import EncodedTensor
from golden.llm.llama import load_checkpoint
from golden.pipeline.cli import main
from tests.tiny_model import make_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-encode"))


@pytest.mark.parametrize("selector", ["wanda", "magnitude"])
def test_encode_writes_containers_that_decode_to_the_checkpoint(tiny, tmp_path, capsys, selector):
    out = tmp_path / "encoded"
    rc = main(["encode", str(tiny), "--out", str(out), "--group-size", "16", "--prune", "0.25", "--truncate", "5",
               "--selector", selector, "--quiet"])
    assert rc == 0
    assert "containers" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["group_size"] == 16 and manifest["params"]["mantissa_bits"] == 2
    assert manifest["prune"] == 0.25 and manifest["selector"] == selector
    _, checkpoint = load_checkpoint(tiny)
    linear = [n for n in checkpoint if n.endswith("_proj.weight")]
    assert set(linear) <= set(manifest["tensors"])
    for name, entry in manifest["tensors"].items():
        path = out / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        enc = EncodedTensor.load(path)
        assert list(enc.shape) == entry["shape"] == list(checkpoint[name].shape)
        assert torch.equal(bf16_bits(decode(enc, "full")), bf16_bits(checkpoint[name]))
        assert (enc.speculation_bits, enc.verification_bits) == (entry["speculation_bits"],
                                                                  entry["verification_bits"])
        assert enc.num_kept == enc.num_values - (enc.num_values // 16) * 4  # 25% of each 16 pruned
    raw = load_file(str(out / manifest["unencoded"]["file"]))
    assert set(raw) == set(manifest["unencoded"]["tensors"]) and raw
    for name, t in raw.items():
        assert torch.equal(bf16_bits(t), bf16_bits(checkpoint[name]))
    assert set(raw) | set(manifest["tensors"]) == set(checkpoint)


def test_encode_errors_before_model_work(tiny, tmp_path, capsys):
    assert main(["encode", str(tiny), "--out", str(tmp_path / "x"), "--truncate", "9", "--quiet"]) == 2
    assert "--truncate 9 is out of range" in capsys.readouterr().err
    assert main(["encode", str(tiny), "--out", str(tmp_path / "x"), "--prune", "2", "--quiet"]) == 2
    assert "--prune 2.0 is out of range" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "manifest.json").write_text("{}")
    assert main(["encode", str(tiny), "--out", str(tmp_path / "done"), "--group-size", "16", "--quiet"]) == 2
    assert "already holds an export" in capsys.readouterr().err
