"""A Llama model whose weights and KV cache live in Cassandra format.

* :class:`CassandraWeights` encodes every linear layer and the LM head once and
  keeps only the container bytes. The draft reads them through
  ``decode(from_bytes(data, part="speculation"), "draft")`` (it cannot touch the
  verification bytes); the target through ``decode(..., "full")``.
  RMSNorm weights (0.05% of the bytes) stay BF16 and both read them whole.
  The token embedding is looked up one row per token: for a tied head the rows
  come from the full decode of the encoded head (one 2*hidden-byte row per
  token), for an untied model from the BF16 embedding table.
* :class:`CassandraKVCache` encodes each new key/value head vector as it is
  written (per-token magnitude top-k per head vector, a fixed per-layer unary
  codebook calibrated offline, as a hardware encoder with a run-time table
  would), and serves draft or full decoded entries.

Decoding is deterministic, so decoded tensors are memoised: decoding on every
read would give the same tensors, only slower. The bytes each step reads are
counted from the exact stream sizes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from golden.format.codec import EncodedTensor, bf16_bits, decode, encode, unary_codebook
from golden.format.params import FormatParams, check_draft_rounding, keep_count
from golden.format.select import magnitude_topk_mask, wanda_topk_mask
from golden.llm.llama import LINEAR_SUFFIXES, DenseKVCache, Llama, LlamaConfig

__all__ = ["CassandraWeights", "CassandraKVCache", "TiedView", "calibrate", "Calibration", "SELECTORS", "kv_codebooks",
           "encoded_weight_names"]

SELECTORS = ("wanda", "magnitude")


def encoded_weight_names(config: LlamaConfig) -> list[str]:
    """Weights stored in Cassandra format: every linear layer, and the LM head."""
    names = [f"model.layers.{i}.{s}.weight" for i in range(config.num_hidden_layers) for s in LINEAR_SUFFIXES]
    names.append("model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight")
    return names


# ---------------------------------------------------------------------------
# Calibration: Wanda activation norms and KV exponent histograms
# ---------------------------------------------------------------------------
@dataclass
class Calibration:
    """What calibration measured on the built-in text set."""

    activation_norms: dict  # weight name -> float32 [in_features]
    kv_exponent_counts: list  # per layer: int64 [256] counts of K and V exponents
    samples: int
    tokens: int


class _RecordingCache(DenseKVCache):
    def __init__(self, config, max_len, counts, device):
        super().__init__(config, max_len, dtype=torch.bfloat16, device=device)
        self.counts = counts

    def write(self, layer, start, k, v, mode="full"):
        super().write(layer, start, k, v)
        kb = bf16_bits(k.to(torch.bfloat16).cpu())
        vb = bf16_bits(v.to(torch.bfloat16).cpu())
        self.counts[layer] += torch.bincount(torch.cat([kb.reshape(-1), vb.reshape(-1)]) >> 7 & 0xFF, minlength=256)


def calibrate(model: Llama, weights, tokenizer, texts, *, max_tokens_per_sample: int = 256,
              progress: bool = False) -> Calibration:
    """Run the full-precision model over ``texts`` (at most 128) and measure
    Wanda's ``||X||_2`` per input channel of every encoded weight, and the KV
    exponent histogram of every layer."""
    if not 1 <= len(texts) <= 128:
        raise ValueError(f"calibration takes 1..128 samples, got {len(texts)}")
    config = model.config
    sums: dict[str, torch.Tensor] = {}
    head = "model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight"

    def hook(name, x):
        sq = x.detach().to(torch.float64).pow(2).reshape(-1, x.shape[-1]).sum(0).cpu()
        sums[name] = sums[name] + sq if name in sums else sq

    counts = [torch.zeros(256, dtype=torch.int64) for _ in range(config.num_hidden_layers)]
    tokens = 0
    with torch.inference_mode():
        if progress:
            from tqdm import tqdm

            texts = tqdm(texts, desc="calibrating", unit="sample")
        for text in texts:
            ids = tokenizer.encode(text)[:max_tokens_per_sample]
            cache = _RecordingCache(config, len(ids), counts, model.device)
            model.forward(ids, weights, cache, start=0, hooks=hook)
            tokens += len(ids)
    norms = {name: s.sqrt().to(torch.float32) for name, s in sums.items()}
    assert head in norms
    return Calibration(activation_norms=norms, kv_exponent_counts=counts, samples=len(texts), tokens=tokens)


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------
class CassandraWeights:
    """Model weights in Cassandra format.

    Parameters
    ----------
    config : LlamaConfig
    checkpoint : dict
        BF16 tensors with Hugging Face names (``load_checkpoint``); the encoded
        ones are not kept.
    params : FormatParams
    prune_ratio : float
        Fraction of each output row (Wanda) or group (magnitude) pruned.
    selector : {"wanda", "magnitude"}
    calibration : Calibration, optional
        Required for ``wanda``.
    device, compute_dtype
        Where and in what dtype decoded tensors are served.
    draft_rounding : {"truncate", "midpoint"}
        How the draft view fills truncated mantissa bits (``decode(..., rounding=)``).
    """

    def __init__(
        self,
        config: LlamaConfig,
        checkpoint: dict,
        params: FormatParams,
        *,
        prune_ratio: float,
        selector: str = "wanda",
        calibration: Calibration | None = None,
        device="cpu",
        compute_dtype=torch.float32,
        progress: bool = False,
        draft_rounding: str = "truncate",
        parts: dict | None = None,
        decoded: dict | None = None,
    ):
        check_draft_rounding(draft_rounding, params.exponent_coding)
        if selector not in SELECTORS:
            raise ValueError(f"selector={selector!r} is not one of {SELECTORS}")
        if selector == "wanda" and calibration is None and parts is None:
            raise ValueError("the wanda selector needs a calibration (activation norms)")
        self.config = config
        self.params = params
        self.draft_rounding = draft_rounding
        self.prune_ratio = prune_ratio
        self.selector = selector
        self.device = torch.device(device)
        self.compute_dtype = compute_dtype
        self.containers: dict[str, bytes] = {}
        self.bits: dict[str, tuple[int, int]] = {}  # name -> (speculation bits, verification bits)
        self.raw: dict[str, torch.Tensor] = {}  # BF16 tensors read whole by both (norms; untied embedding)
        self.numel: dict[str, int] = {}  # encoded tensors' value counts
        self.progress = progress
        # BF16 copies of decoded tensors, (mode, name) -> tensor: given (from a cache), or kept when asked
        self._decoded_bf16: dict = dict(decoded or {})
        self.keep_decoded = False
        self._views: dict[str, dict] = {}
        self._full_head: torch.Tensor | None = None
        start = time.perf_counter()
        if parts is not None:  # encoded earlier (golden.pipeline.cache): the same bytes
            self.containers, self.bits = dict(parts["containers"]), dict(parts["bits"])
            self.raw, self.numel = dict(parts["raw"]), dict(parts["numel"])
            self.encode_seconds = time.perf_counter() - start
            return
        encoded = set(encoded_weight_names(config))
        names = list(checkpoint)
        if progress:
            from tqdm import tqdm

            names = tqdm(names, desc="encoding weights", unit="tensor")
        for name in names:
            w = checkpoint[name]
            if name not in encoded:
                self.raw[name] = w.to(torch.bfloat16)
                continue
            in_features = w.shape[1]
            if selector == "wanda":
                keep = wanda_topk_mask(
                    w, calibration.activation_norms[name], keep=keep_count(in_features, prune_ratio)
                )
            else:
                keep = magnitude_topk_mask(w, keep=keep_count(params.group_size, prune_ratio), group_size=params.group_size)
            enc = encode(w, keep, params)
            self.containers[name] = enc.to_bytes()
            self.bits[name] = (enc.speculation_bits, enc.verification_bits)
            self.numel[name] = w.numel()
        self.encode_seconds = time.perf_counter() - start

    def parts(self) -> dict:
        """What ``parts=`` takes back: the containers, their bits, the unencoded tensors."""
        return {"containers": self.containers, "bits": self.bits, "raw": self.raw, "numel": self.numel}

    def decoded_bf16(self) -> dict:
        """The decoded tensors kept so far (``keep_decoded``), ``(mode, name) -> BF16``."""
        return dict(self._decoded_bf16)

    @property
    def head_name(self) -> str:
        return "model.embed_tokens.weight" if self.config.tie_word_embeddings else "lm_head.weight"

    def encoded(self, name: str, mode: str) -> EncodedTensor:
        part = "speculation" if mode == "draft" else "all"
        return EncodedTensor.from_bytes(self.containers[name], part=part, check="structure")  # our own bytes

    def view(self, mode: str) -> dict:
        """Weights as the draft (``"draft"``) or the target (``"full"``) reads them."""
        if mode not in ("draft", "full"):
            raise ValueError(f"mode={mode!r} is not 'draft' or 'full'")
        if mode not in self._views:
            out = {}
            names = list(self.containers)
            if self.progress:
                from tqdm import tqdm

                names = tqdm(names, desc=f"decoding the {mode} view", unit="tensor")
            for name in names:
                if mode == "full" and name == self.head_name and self.config.tie_word_embeddings:
                    out[name] = self._embedding_rows()
                else:
                    out[name] = self._decoded(name, mode)
            for name, t in self.raw.items():
                out[name] = t.to(device=self.device, dtype=self.compute_dtype)
            if self.config.tie_word_embeddings:
                # token embedding rows come from the full decode of the (tied) head, for both readers
                out = TiedView(out, self._embedding_rows())
            self._views[mode] = out
        return self._views[mode]

    def _decoded(self, name: str, mode: str) -> torch.Tensor:
        values = self._decoded_bf16.get((mode, name))
        if values is None:
            rounding = self.draft_rounding if mode == "draft" else "truncate"
            values = decode(self.encoded(name, mode), mode, rounding=rounding)
            if self.keep_decoded:
                self._decoded_bf16[(mode, name)] = values
        return values.to(device=self.device, dtype=self.compute_dtype)

    def _embedding_rows(self) -> torch.Tensor:
        """Full decode of the tied head, made once and shared by both views."""
        if self._full_head is None:
            self._full_head = self._decoded(self.head_name, "full")
        return self._full_head

    def step_bytes(self, mode: str, tokens: int = 1) -> int:
        """Bytes of weights one forward reads: encoded tensors (speculation, or
        speculation + verification), BF16 norms, and one embedding row per token."""
        bits = sum(s + (v if mode == "full" else 0) for s, v in self.bits.values())
        bits += sum(16 * t.numel() for n, t in self.raw.items() if n != "model.embed_tokens.weight")
        bits += 16 * self.config.hidden_size * tokens
        return bits // 8

    def bf16_bytes(self, tokens: int = 1) -> int:
        """Bytes a plain BF16 forward reads: every weight, one embedding row per token."""
        n = sum(self.numel.values())
        n += sum(t.numel() for name, t in self.raw.items() if name != "model.embed_tokens.weight")
        return 2 * (n + self.config.hidden_size * tokens)

    def stored_bytes(self) -> int:
        return sum(len(b) for b in self.containers.values()) + sum(2 * t.numel() for t in self.raw.values())


class TiedView(dict):
    """Weights where the embedding lookup and the LM head are different reads of one tensor."""

    def __init__(self, weights: dict, embedding_rows: torch.Tensor):
        super().__init__(weights)
        self.embedding_rows = embedding_rows


# ---------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------
class CassandraKVCache:
    """KV cache in Cassandra format.

    Every key and value head vector (``head_dim`` values = one group) is encoded
    when it is written: magnitude top-k per vector (``kv_prune_ratio``), mantissa
    truncation and exponent coding from ``params`` with a fixed per-layer
    codebook. Keys are cached after RoPE. Entries are decoded for the draft and
    the target; the byte counts come from the exact stream sizes.
    """

    def __init__(
        self,
        config: LlamaConfig,
        params: FormatParams,
        max_len: int,
        *,
        kv_prune_ratio: float = 0.0,
        codebooks: list | None = None,
        device="cpu",
        draft_rounding: str = "truncate",
    ):
        check_draft_rounding(draft_rounding, params.exponent_coding)
        if params.group_size != config.head_dim:
            raise ValueError(
                f"KV group_size={params.group_size} must equal head_dim={config.head_dim} (one group per head vector)"
            )
        self.config = config
        self.params = params
        self.draft_rounding = draft_rounding
        self.keep = keep_count(config.head_dim, kv_prune_ratio)
        self.codebooks = codebooks
        self.max_len = max_len
        L, H, D = config.num_hidden_layers, config.num_key_value_heads, config.head_dim
        shape = (H, max_len, D)
        self.buffers = {
            (mode, kind): [torch.zeros(shape, dtype=torch.bfloat16, device=device) for _ in range(L)]
            for mode in ("draft", "full")
            for kind in ("k", "v")
        }
        # per layer: list of (start, length, speculation bits, verification bits, writer mode)
        self.chunks: list[list[tuple[int, int, int, int]]] = [[] for _ in range(L)]
        self.length = 0

    # -- writing --------------------------------------------------------------
    def encoder_input(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """What the KV encoder sees for ``[H, T, D]`` keys and values: the head
        vectors as one BF16 tensor ``[2*T*H, D]`` (keys then values, token-major),
        its keep mask (per-vector magnitude top-k) and the layer's codebook."""
        H, T, D = k.shape
        x = torch.stack([k, v]).to(torch.bfloat16).permute(0, 2, 1, 3).reshape(2 * T * H, D).cpu()
        keep = magnitude_topk_mask(x, keep=self.keep, group_size=D)
        codebook = None
        if self.params.exponent_coding == "unary" and self.codebooks is not None:
            codebook = self.codebooks[layer]
        return x, keep, codebook

    def _encode(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> EncodedTensor:
        x, keep, codebook = self.encoder_input(layer, k, v)
        return encode(x, keep, self.params, codebook=codebook)

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor, mode: str = "full") -> None:
        """Encode and store entries for positions ``start ..`` (``k, v: [kv_heads, T, head_dim]``).

        Entries the target writes (``mode="full"``) are decoded for both readers;
        entries the draft writes are read only by the draft (they are dropped
        before verification), so only their draft decode is made.
        """
        H, T, D = k.shape
        end = start + T
        if end > self.max_len:
            raise ValueError(f"KV cache full: position {end} exceeds max_len={self.max_len}")
        self._truncate_layer(layer, start)
        enc = self._encode(layer, k, v)
        for m in ("draft", "full") if mode == "full" else ("draft",):
            rounding = self.draft_rounding if m == "draft" else "truncate"
            both = decode(enc, m, rounding=rounding).reshape(2, T, H, D).permute(0, 2, 1, 3)
            self.buffers[(m, "k")][layer][:, start:end] = both[0].to(self.buffers[(m, "k")][layer].device)
            self.buffers[(m, "v")][layer][:, start:end] = both[1].to(self.buffers[(m, "v")][layer].device)
        self.chunks[layer].append((start, T, enc.speculation_bits, enc.verification_bits, mode))

    def read(self, layer: int, end: int, mode: str = "full"):
        return self.buffers[(mode, "k")][layer][:, :end], self.buffers[(mode, "v")][layer][:, :end]

    # -- rollback -------------------------------------------------------------
    def _truncate_layer(self, layer: int, length: int) -> None:
        kept = []
        for start, T, s, v, mode in self.chunks[layer]:
            if start + T <= length:
                kept.append((start, T, s, v, mode))
            elif start < length:
                # re-encode the surviving entries (exact values from the full buffers) for exact sizes
                if mode != "full":
                    raise RuntimeError("a draft-written KV chunk cannot be cut: the draft writes one token at a time")
                k = self.buffers[("full", "k")][layer][:, start:length]
                vv = self.buffers[("full", "v")][layer][:, start:length]
                enc = self._encode(layer, k, vv)
                kept.append((start, length - start, enc.speculation_bits, enc.verification_bits, mode))
        self.chunks[layer] = kept

    def truncate(self, length: int) -> None:
        """Forget entries at positions ``>= length`` (after a rejected draft)."""
        for layer in range(self.config.num_hidden_layers):
            self._truncate_layer(layer, length)
        self.length = min(self.length, length)

    def keep_slots(self, start: int, slots) -> None:
        """Keep the target-written entries of cache ``slots`` (each ``>= start``) at
        ``start, start + 1, ..`` and forget everything after (a token tree's accepted
        path). The moved entries are encoded again, so sizes stay exact."""
        index = torch.as_tensor(list(slots), dtype=torch.long)
        moved = [(self.buffers[("full", "k")][layer][:, index].clone(),
                  self.buffers[("full", "v")][layer][:, index].clone()) for layer in range(self.config.num_hidden_layers)]
        self.truncate(start)
        if len(index):
            for layer, (k, v) in enumerate(moved):
                self.write(layer, start, k, v, mode="full")
        self.length = start + len(index)

    # -- accounting -----------------------------------------------------------
    def bits(self) -> tuple[int, int]:
        """(speculation, verification) payload bits of every entry held."""
        s = sum(c[2] for chunks in self.chunks for c in chunks)
        v = sum(c[3] for chunks in self.chunks for c in chunks)
        return s, v

    def step_bytes(self, mode: str) -> int:
        """Bytes of KV a forward reads: every entry held (call after the forward's writes)."""
        s, v = self.bits()
        return (s + (v if mode == "full" else 0)) // 8


def kv_codebooks(calibration: Calibration, params: FormatParams) -> list[torch.Tensor]:
    """Per-layer unary codebooks from the calibration's KV exponent histograms."""
    books = []
    for counts in calibration.kv_exponent_counts:
        exps = torch.repeat_interleave(torch.arange(256), counts)
        books.append(unary_codebook(exps, params))
    return books
