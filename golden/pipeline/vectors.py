"""Test vectors for the RTL from a real run (``cassandra-sd export-vectors``).

Weight tiles are row slices of the model's encoded weights (same keep mask,
same codebook as the pipeline's tensors); KV tiles are one layer's keys and
values as the KV encoder saw them during a short generation. File format:
docs/VECTORS.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from golden.format.codec import EncodedTensor, bf16_bits, decode, decode_bitmap, encode
from golden.format.params import STREAM_NAMES

from .cache import file_sha256

__all__ = ["export_vectors", "write_vector", "read_vector", "check_layers", "VECTORS_FORMAT_VERSION"]

VECTORS_FORMAT_VERSION = 1


def _u16(bits: torch.Tensor) -> bytes:
    return bits.reshape(-1).numpy().astype("<u2").tobytes()


def write_vector(out_dir: Path, name: str, x: torch.Tensor, keep: torch.Tensor, enc: EncodedTensor, source: dict,
                 *, draft_rounding: str = "truncate") -> dict:
    """Write one vector's files and return its manifest entry. The draft file holds
    ``decode(enc, "draft", rounding=draft_rounding)``; every file, the stream ``.bin``
    files included, gets its SHA-256 in the entry."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "container": f"{name}.csnd",
        "input": f"{name}.input.u16",
        "mask": f"{name}.mask.u8",
        "draft": f"{name}.draft.u16",
        "full": f"{name}.full.u16",
    }
    enc.save(out_dir / files["container"])
    (out_dir / files["input"]).write_bytes(_u16(bf16_bits(x)))
    (out_dir / files["mask"]).write_bytes(keep.reshape(-1).numpy().astype(np.uint8).tobytes())
    (out_dir / files["draft"]).write_bytes(_u16(bf16_bits(decode(enc, "draft", rounding=draft_rounding))))
    full = bf16_bits(decode(enc, "full"))
    if not torch.equal(full, bf16_bits(x)):
        raise AssertionError(f"vector {name}: full decode differs from the input")
    (out_dir / files["full"]).write_bytes(_u16(full))
    streams = {}
    for stream in STREAM_NAMES:
        fname = f"{name}.{stream}.bin"
        (out_dir / fname).write_bytes(enc.streams[stream].to_bytes())
        streams[stream] = {
            "file": fname,
            "payload_bits": enc.streams[stream].payload_bits,
            "stored_bits": enc.streams[stream].stored_bits,
            "superblock_offsets_words64": enc.streams[stream].superblock_offsets.tolist(),
            "sha256": file_sha256(out_dir / fname),
        }
    entry = {
        "name": name,
        "shape": list(enc.shape),
        "params": enc.params.as_dict(),
        "codebook": enc.codebook.tolist() if enc.codebook is not None else None,
        "draft_rounding": draft_rounding,
        "num_kept": enc.num_kept,
        "source": source,
        "files": files,
        "streams": streams,
        "sha256": {k: file_sha256(out_dir / f) for k, f in files.items()},
    }
    return entry


def read_vector(out_dir: Path, entry: dict) -> dict:
    """Load one vector's arrays (for testbenches): input/draft/full as uint16, mask as bool.

    Every file is checked against the SHA-256 the manifest entry gives for it first
    (the stream ``.bin`` files too); a file that differs raises ``ValueError`` naming it."""
    out_dir = Path(out_dir)
    shape = tuple(entry["shape"])
    expected = {f: entry["sha256"][k] for k, f in entry["files"].items() if k in entry.get("sha256", {})}
    expected.update({info["file"]: info["sha256"] for info in entry["streams"].values() if "sha256" in info})
    for fname, digest in expected.items():
        if file_sha256(out_dir / fname) != digest:
            raise ValueError(f"vector {entry['name']!r}: {out_dir / fname} does not match the manifest's SHA-256 "
                             "(changed or damaged since export)")
    load16 = lambda key: np.frombuffer((out_dir / entry["files"][key]).read_bytes(), dtype="<u2").reshape(shape)  # noqa: E731
    return {
        "input": load16("input"),
        "draft": load16("draft"),
        "full": load16("full"),
        "mask": np.frombuffer((out_dir / entry["files"]["mask"]).read_bytes(), dtype=np.uint8).reshape(shape).astype(bool),
        "encoded": EncodedTensor.load(out_dir / entry["files"]["container"]),
        "streams": {s: (out_dir / entry["streams"][s]["file"]).read_bytes() for s in STREAM_NAMES},
    }


def check_layers(layers, num_layers: int) -> None:
    """Raise ``ValueError`` naming the problem unless ``layers`` is a non-empty list of
    distinct decoder-layer indices in ``0 .. num_layers - 1``."""
    layers = list(layers)
    if not layers:
        raise ValueError("layers: give at least one decoder layer")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"layers: {layer!r} is not a layer index")
    wrong = [layer for layer in layers if not 0 <= layer < num_layers]
    if wrong:
        raise ValueError(f"layers: {wrong} out of range: the model has {num_layers} decoder layers "
                         f"(0..{num_layers - 1})")
    repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if repeated:
        raise ValueError(f"layers: {repeated} given more than once")


def export_vectors(
    pipe,
    out_dir,
    *,
    layers=(0, 15, 29),
    tile_rows: int = 8,
    prompt: str = "def add(a, b):\n",
    max_new_tokens: int = 16,
    log=None,
) -> Path:
    """Write weight and KV tiles of ``pipe`` (a :class:`golden.pipeline.pipeline.Pipeline`) and a manifest."""
    log = log or (lambda msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = pipe.model_config
    check_layers(layers, config.num_hidden_layers)
    layers = list(layers)
    entries = []
    names = [n for n in pipe.weights.containers if any(f"layers.{i}." in n for i in layers)]
    names.append(pipe.weights.head_name)
    for name in names:
        enc_full = EncodedTensor.from_bytes(pipe.weights.containers[name], check="structure")  # our own bytes
        rows = min(tile_rows, enc_full.shape[0])
        x = pipe.reference[name][:rows].to(torch.bfloat16).cpu() if pipe.reference is not None else None
        if x is None:
            x = decode(enc_full, "full")[:rows]
        keep = decode_bitmap(enc_full)[:rows]
        enc = encode(x, keep, enc_full.params, codebook=enc_full.codebook)
        short = name.replace("model.", "").replace("layers.", "L").replace(".weight", "").replace(".", "_")
        entries.append(
            write_vector(out_dir, f"w_{short}", x, keep, enc,
                         {"kind": "weight", "tensor": name, "rows": [0, rows], "selector": pipe.config.selector,
                          "prune_ratio": pipe.config.prune}, draft_rounding=pipe.config.draft_rounding)
        )
    ids = pipe.tokenizer.encode(prompt)
    report = pipe.run(ids, max_new_tokens, check=False)
    cache = pipe.last_cache
    length = len(ids) + len(report.speculative.tokens) - 1  # committed positions held in the cache
    length = min(length, sum(c[1] for c in cache.chunks[0]))
    for layer in layers:
        k, v = cache.read(layer, length, "full")
        x, keep, codebook = cache.encoder_input(layer, k, v)
        enc = encode(x, keep, cache.params, codebook=codebook)
        entries.append(
            write_vector(out_dir, f"kv_L{layer}", x, keep, enc,
                         {"kind": "kv", "layer": layer, "positions": [0, length], "layout":
                          "rows = [keys, values] x positions x kv_heads, one head vector (head_dim values) per row",
                          "prompt": prompt, "kv_prune_ratio": pipe.config.kv_prune},
                         draft_rounding=pipe.config.draft_rounding)
        )
    manifest = {
        "format_version": VECTORS_FORMAT_VERSION,
        "model": pipe.config.model or "SmolLM2-135M-Instruct Q4_1 GGUF (dequantized, rounded to BF16)",
        "pipeline": pipe.summary()["config"],
        "vectors": entries,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log(f"wrote {len(entries)} vectors to {out_dir}")
    return out_dir / "manifest.json"
