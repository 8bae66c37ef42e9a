"""``cassandra-sd encode``: a checkpoint's weights as Cassandra containers on disk.

Each encoded weight (every linear layer and the embedding / LM head) becomes one
``.csnd`` container (docs/FORMAT.md, section 9) named after its Hugging Face name;
the tensors a decoder reads whole (norms) go into ``unencoded.safetensors``; a
``manifest.json`` lists every file with its shape, format parameters, payload bits
and SHA-256. The selection is the pipeline's (Wanda on its built-in calibration
texts, or per-group magnitude), so the containers are the bytes ``cassandra-sd
generate`` runs on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from golden.format.params import FormatParams, keep_count

from .cache import file_sha256

__all__ = ["encode_checkpoint", "MANIFEST_VERSION"]

MANIFEST_VERSION = 1


def encode_checkpoint(out_dir, *, model=None, params: FormatParams | None = None, prune: float = 0.4,
                      selector: str = "wanda", calibration_samples: int = 32, progress: bool = False,
                      log=None) -> Path:
    """Encode ``model`` (a ``.gguf`` file or a Hugging Face folder; default
    SmolLM2-135M) into ``out_dir``; return the manifest's path.

    ``out_dir`` is created; it must not hold a ``manifest.json`` already (an earlier
    export is not overwritten)."""
    import torch
    from safetensors.torch import save_file

    from golden.llm.datasets import CALIBRATION_TEXTS
    from golden.llm.llama import Llama, dense_weights, load_checkpoint
    from golden.llm.tokenizer import load_tokenizer

    from .encoded_model import SELECTORS, CassandraWeights, calibrate

    log = log or (lambda message: None)
    params = params or FormatParams()
    keep_count(params.group_size, prune)  # the prune ratio's check, before any model work
    if selector not in SELECTORS:
        raise ValueError(f"selector={selector!r} is not one of {SELECTORS}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if (out / "manifest.json").exists():
        raise ValueError(f"--out {out} already holds an export (manifest.json): choose an empty folder")
    started = time.perf_counter()
    config, checkpoint = load_checkpoint(model)
    calibration = None
    if selector == "wanda":
        tokenizer = load_tokenizer(model)
        llama = Llama(config)
        calibration = calibrate(llama, dense_weights(checkpoint), tokenizer, CALIBRATION_TEXTS[:calibration_samples])
        log(f"calibrated on {calibration.samples} built-in samples ({calibration.tokens} tokens)")
    shapes = {name: list(t.shape) for name, t in checkpoint.items()}
    weights = CassandraWeights(config, checkpoint, params, prune_ratio=prune, selector=selector,
                               calibration=calibration, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, data in weights.containers.items():
        path = out / f"{name}.csnd"
        path.write_bytes(data)
        speculation, verification = weights.bits[name]
        tensors[name] = {"file": path.name, "shape": shapes[name],
                         "speculation_bits": speculation, "verification_bits": verification,
                         "sha256": file_sha256(path)}
    unencoded = None
    if weights.raw:
        unencoded = out / "unencoded.safetensors"
        save_file({name: t.to(torch.bfloat16).contiguous() for name, t in weights.raw.items()}, str(unencoded))
    values = sum(weights.numel.values())
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model": str(model) if model else "SmolLM2-135M-Instruct Q4_1 GGUF (dequantized, rounded to BF16)",
        "params": params.as_dict(), "prune": prune, "selector": selector,
        "calibration_samples": calibration.samples if calibration else 0,
        "encoded_values": values,
        "speculation_bits_per_value": sum(b[0] for b in weights.bits.values()) / values,
        "verification_bits_per_value": sum(b[1] for b in weights.bits.values()) / values,
        "tensors": tensors,
        "unencoded": None if unencoded is None else {"file": unencoded.name, "tensors": sorted(weights.raw),
                                                     "sha256": file_sha256(unencoded)},
    }
    path = out / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {len(tensors)} containers to {out} in {time.perf_counter() - started:.1f} s")
    return path
