"""Byte / roofline model of LLM decode time per step and of speculative speedup.

An analytic model, not a measurement: one forward step takes
``max(bytes / bandwidth, flops / peak, decoded values / decoder rate)``, and a
speculative round of ``gamma`` draft steps plus one verify step of ``gamma + 1``
tokens produces ``tau`` tokens on average. Used by the ``make bench`` report to
put the format's bit counts (:class:`StorageBits`) into seconds on the paper's
platforms (:data:`PLATFORMS`) for the paper's model shapes (:data:`SHAPES`).

What one step reads and writes (:func:`step_bytes`):

* every **linear weight** (q, k, v, o, gate, up, down of every layer, and the LM
  head) once per step, whatever the batch and the number of tokens, at the
  encoded bits per value that step reads (draft: speculation data; verify: both
  parts plus bitmap);
* the **norm weights** and one **embedding row** per token of every sequence,
  in plain BF16 (not encoded);
* the **KV cache** of ``batch`` sequences of ``context`` tokens each, at the
  encoded bits per value that step reads;
* the **new tokens' KV**, written once per new token at ``bits_kv_write`` bits
  per value (default 16: the encoder writes all of a value's bits, speculation
  plus verification data; a draft step's entries are written too and then
  overwritten at verification, so they are counted, conservatively).

Ignored: activations (a few vectors of ``hidden`` per token, in caches), the
logits, kernel-launch and synchronisation overheads (which dominate very small
models on a GPU at batch 1), the growth of the context by up to ``gamma``
tokens inside one round, and any overlap of steps. Speeds are peak figures, so
absolute times are lower bounds; the ratios (speedups) are what the model is
for. Use :func:`speedup_from_steps` with measured or custom step times where
the byte model does not fit (e.g. a layer-skipping draft that does fewer
FLOPs as well as fewer bytes).

>>> r = speculative_speedup("rtx4090", "llama-3-8b", StorageBits.bf16(), gamma=4, alpha=1.0)
>>> r["speedup"] < 5.0
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Platform", "PLATFORMS", "ModelShape", "SHAPES", "StorageBits", "DecoderLimit",
    "StepTime", "step_bytes", "step_flops", "step_time", "expected_tokens",
    "speculative_speedup", "speedup_from_steps", "sweep", "best_gamma", "markdown_table",
    "policy_speedup", "plain_speedup", "OVERHEADS_US",
]

#: Per-forward fixed overheads the reports show (kernel launches and synchronisation), µs.
OVERHEADS_US = (0, 20, 50)

BF16_BITS = 16.0


# --------------------------------------------------------------------------- validation

def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, *_np_integer_types())):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value, *, positive: bool = False, nonnegative: bool = False,
                lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and x <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonnegative and x < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    if lo is not None and hi is not None and not lo <= x <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value!r}")
    if lo is not None and hi is None and x < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    return x


def _np_integer_types() -> tuple:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional
        return ()
    return (np.integer,)


# --------------------------------------------------------------------------- platforms

@dataclass(frozen=True)
class Platform:
    """A machine as the roofline sees it.

    Parameters
    ----------
    name : str
        Short label used in tables.
    bandwidth_gb_s : float
        Peak DRAM bandwidth in GB/s (1e9 bytes per second).
    peak_tflops : float
        Peak dense BF16 tensor throughput in TFLOPS (1e12 FLOP per second).
    note : str
        Where the figures come from.
    """

    name: str
    bandwidth_gb_s: float
    peak_tflops: float
    note: str = ""

    def __post_init__(self):
        _check_real("bandwidth_gb_s", self.bandwidth_gb_s, positive=True)
        _check_real("peak_tflops", self.peak_tflops, positive=True)

    @property
    def bytes_per_second(self) -> float:
        """Bandwidth in bytes per second."""
        return self.bandwidth_gb_s * 1e9

    @property
    def flops_per_second(self) -> float:
        """Peak throughput in FLOP per second."""
        return self.peak_tflops * 1e12


# Bandwidths are the vendors' (and the paper's, for the NPU). The peak TFLOPS are
# vendor dense-BF16 tensor figures taken as ASSUMPTIONS (no sparsity):
#   RTX 4090: 165.2 TFLOPS (FP16/BF16 tensor, FP16 accumulate; GeForce halves it
#             to 82.6 with FP32 accumulate).
#   Jetson AGX Orin 64GB: 42.5 TFLOPS = half the GPU's 85 dense INT8 TOPS
#             (NVIDIA quotes 170 sparse INT8 TOPS for the GPU); DLAs not counted.
#   NPU: the paper's 64 TFLOPS, 273 GB/s.
#   H100 SXM: 989 TFLOPS dense BF16 (1979 with sparsity), 3.35 TB/s HBM3.
# At batch 1-4 decoding is memory-bound on all four, so these matter little.
PLATFORMS: dict[str, Platform] = {
    "rtx4090": Platform("rtx4090", 1008.0, 165.2,
                        "GeForce RTX 4090, GDDR6X 1008 GB/s; 165.2 TFLOPS dense BF16 (assumed)"),
    "orin": Platform("orin", 204.8, 42.5,
                     "Jetson AGX Orin 64GB, LPDDR5 204.8 GB/s; 42.5 TFLOPS dense BF16 GPU (assumed)"),
    "npu": Platform("npu", 273.0, 64.0,
                    "the paper's NPU: 273 GB/s, 64 TFLOPS BF16 MAC array"),
    "h100": Platform("h100", 3350.0, 989.0,
                     "H100 SXM, HBM3 3350 GB/s; 989 TFLOPS dense BF16 (assumed)"),
}


# --------------------------------------------------------------------------- model shapes

@dataclass(frozen=True)
class ModelShape:
    """Sizes of a decoder-only (Llama-style, GQA, SwiGLU) transformer.

    Parameters
    ----------
    name : str
        Label used in tables.
    layers, hidden, intermediate, heads, kv_heads, head_dim, vocab : int
        The usual configuration numbers (``heads`` query heads, ``kv_heads``
        key/value heads, ``intermediate`` the MLP width).
    tied_embeddings : bool
        Whether the LM head is the embedding matrix.
    qk_norm : bool, default False
        Per-head RMSNorm on queries and keys (Qwen3): ``2 * head_dim`` more norm
        weights per layer.
    """

    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool
    qk_norm: bool = False

    def __post_init__(self):
        for f in ("layers", "hidden", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
            _check_int(f, getattr(self, f), minimum=1)
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")

    @property
    def layer_linear_params(self) -> int:
        """Weights of q, k, v, o, gate, up and down of one layer."""
        q_o = 2 * self.hidden * self.heads * self.head_dim
        k_v = 2 * self.hidden * self.kv_heads * self.head_dim
        mlp = 3 * self.hidden * self.intermediate
        return q_o + k_v + mlp

    @property
    def lm_head_params(self) -> int:
        """Weights of the LM head (``vocab * hidden``, tied or not)."""
        return self.vocab * self.hidden

    @property
    def embedding_params(self) -> int:
        """Weights of the embedding table (shared with the LM head when tied)."""
        return self.vocab * self.hidden

    @property
    def linear_params(self) -> int:
        """All linear weights read by one step: every layer's projections plus the LM head."""
        return self.layers * self.layer_linear_params + self.lm_head_params

    @property
    def norm_params(self) -> int:
        """RMSNorm weights: two per layer, the final norm, and q/k norms if any."""
        per_layer = 2 * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        return self.layers * per_layer + self.hidden

    @property
    def total_params(self) -> int:
        """Parameters stored (the embedding table counted once when tied)."""
        emb = 0 if self.tied_embeddings else self.embedding_params
        return self.linear_params + self.norm_params + emb

    @property
    def kv_values_per_token(self) -> int:
        """KV-cache values one token adds: ``2 * layers * kv_heads * head_dim``."""
        return 2 * self.layers * self.kv_heads * self.head_dim

    def flops_per_token(self, context: int) -> float:
        """FLOPs of one token attending to ``context`` positions.

        ``2 * linear_params`` (a multiply-add per weight) plus attention scores
        and weighted sum, ``4 * layers * heads * head_dim * context``. Norms,
        softmax and activations are ignored.

        Parameters
        ----------
        context : int
            Positions attended to (>= 0).
        """
        context = _check_int("context", context, minimum=0)
        return 2.0 * self.linear_params + 4.0 * self.layers * self.heads * self.head_dim * context


# Embedding table: one row per token is read (a lookup), never the whole table; a
# tied LM head is still read whole every step (it is the LM head's matmul), so it is
# counted in linear_params either way and the lookup row comes on top.
SHAPES: dict[str, ModelShape] = {
    "smollm2-135m": ModelShape("smollm2-135m", layers=30, hidden=576, intermediate=1536, heads=9,
                               kv_heads=3, head_dim=64, vocab=49152, tied_embeddings=True),
    "llama-3-8b": ModelShape("llama-3-8b", layers=32, hidden=4096, intermediate=14336, heads=32,
                             kv_heads=8, head_dim=128, vocab=128256, tied_embeddings=False),
    "qwen3-8b": ModelShape("qwen3-8b", layers=36, hidden=4096, intermediate=12288, heads=32,
                           kv_heads=8, head_dim=128, vocab=151936, tied_embeddings=False,
                           qk_norm=True),
}


# --------------------------------------------------------------------------- storage bits

@dataclass(frozen=True)
class StorageBits:
    """Average stored bits per value that a draft / verify step reads.

    Parameters
    ----------
    weight_draft_bits, weight_full_bits : float
        Bits per encoded linear weight read by a draft step (speculation data)
        and by a verify step (speculation + verification data + bitmap).
    kv_draft_bits, kv_full_bits : float
        The same for KV-cache values.
    """

    weight_draft_bits: float
    weight_full_bits: float
    kv_draft_bits: float
    kv_full_bits: float

    def __post_init__(self):
        for f in ("weight_draft_bits", "weight_full_bits", "kv_draft_bits", "kv_full_bits"):
            _check_real(f, getattr(self, f), positive=True)

    @classmethod
    def bf16(cls) -> StorageBits:
        """Plain BF16: 16 bits per value everywhere."""
        return cls(BF16_BITS, BF16_BITS, BF16_BITS, BF16_BITS)


@dataclass(frozen=True)
class DecoderLimit:
    """Throughput of the format decoders: ``units * lanes * clock_hz`` values/s.

    Parameters
    ----------
    units : int
        Decoder instances working in parallel.
    lanes : float
        Values each decoder emits per cycle.
    clock_hz : float
        Decoder clock.
    """

    units: int
    lanes: float
    clock_hz: float

    def __post_init__(self):
        _check_int("units", self.units, minimum=1)
        _check_real("lanes", self.lanes, positive=True)
        _check_real("clock_hz", self.clock_hz, positive=True)

    @property
    def values_per_second(self) -> float:
        """Decoded values per second."""
        return self.units * self.lanes * self.clock_hz


# --------------------------------------------------------------------------- one step

def _resolve(table: Mapping, kind: str, value, cls):
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and value in table:
        return table[value]
    raise ValueError(f"unknown {kind} {value!r}; expected a {cls.__name__} or one of {sorted(table)}")


def step_bytes(shape: ModelShape | str, *, bits_weights: float, bits_kv: float, batch: int, context: int,
               tokens: int = 1, bits_kv_write: float = BF16_BITS) -> float:
    """Bytes one forward step moves through DRAM.

    Parameters
    ----------
    shape : ModelShape or str
        The model (or a key of :data:`SHAPES`).
    bits_weights : float
        Stored bits per linear weight read by this step.
    bits_kv : float
        Stored bits per KV-cache value read by this step.
    batch : int
        Sequences in the batch (>= 1).
    context : int
        Tokens already in each sequence's KV cache (>= 0).
    tokens : int, default 1
        New tokens per sequence in this step (1 for decode/draft, ``gamma + 1``
        for verify).
    bits_kv_write : float, default 16
        Bits per KV value written for the new tokens.

    Returns
    -------
    float
        ``linear_params * bits_weights / 8`` (once per step) ``+ 2 * norm_params
        + 2 * hidden * batch * tokens`` (BF16 norms and embedding rows) ``+
        kv_values_per_token * batch * (context * bits_kv + tokens * bits_kv_write) / 8``.
    """
    shape = _resolve(SHAPES, "shape", shape, ModelShape)
    bits_weights = _check_real("bits_weights", bits_weights, positive=True)
    bits_kv = _check_real("bits_kv", bits_kv, positive=True)
    bits_kv_write = _check_real("bits_kv_write", bits_kv_write, nonnegative=True)
    batch = _check_int("batch", batch, minimum=1)
    context = _check_int("context", context, minimum=0)
    tokens = _check_int("tokens", tokens, minimum=1)
    weights = shape.linear_params * bits_weights / 8.0
    plain = 2.0 * shape.norm_params + 2.0 * shape.hidden * batch * tokens
    kv = shape.kv_values_per_token * batch * (context * bits_kv + tokens * bits_kv_write) / 8.0
    return weights + plain + kv


def step_flops(shape: ModelShape | str, *, batch: int, context: int, tokens: int = 1) -> float:
    """FLOPs of one forward step.

    New token ``i`` (0-based) of a sequence attends to ``context + i + 1``
    positions (the cache plus the new tokens up to itself, causal).

    Parameters
    ----------
    shape : ModelShape or str
        The model (or a key of :data:`SHAPES`).
    batch : int
        Sequences in the batch (>= 1).
    context : int
        Tokens already in each sequence's KV cache (>= 0).
    tokens : int, default 1
        New tokens per sequence.

    Returns
    -------
    float
        ``batch * sum_i flops_per_token(context + i + 1)``.
    """
    shape = _resolve(SHAPES, "shape", shape, ModelShape)
    batch = _check_int("batch", batch, minimum=1)
    context = _check_int("context", context, minimum=0)
    tokens = _check_int("tokens", tokens, minimum=1)
    attended = tokens * context + tokens * (tokens + 1) / 2.0
    per_seq = tokens * 2.0 * shape.linear_params + 4.0 * shape.layers * shape.heads * shape.head_dim * attended
    return batch * per_seq


@dataclass(frozen=True)
class StepTime:
    """Time of one step and its three bounds (seconds); ``bound`` names the largest."""

    seconds: float
    bound: str
    memory_s: float
    compute_s: float
    decoder_s: float


def step_time(platform: Platform | str, *, bytes: float, flops: float, decoder: DecoderLimit | None = None,
              decoded_values: float = 0) -> StepTime:
    """Roofline time of one step.

    Parameters
    ----------
    platform : Platform or str
        The machine (or a key of :data:`PLATFORMS`).
    bytes : float
        Bytes moved (>= 0).
    flops : float
        Floating-point operations (>= 0).
    decoder : DecoderLimit, optional
        Format decoders; when given the step also takes at least
        ``decoded_values / decoder.values_per_second``.
    decoded_values : float, default 0
        Values that go through the decoders in this step.

    Returns
    -------
    StepTime
        ``seconds = max(memory_s, compute_s, decoder_s)``; ``bound`` is
        ``"memory"``, ``"compute"`` or ``"decoder"`` (ties go in that order).
    """
    platform = _resolve(PLATFORMS, "platform", platform, Platform)
    nbytes = _check_real("bytes", bytes, nonnegative=True)
    flops = _check_real("flops", flops, nonnegative=True)
    decoded_values = _check_real("decoded_values", decoded_values, nonnegative=True)
    if decoder is not None and not isinstance(decoder, DecoderLimit):
        raise ValueError(f"decoder must be a DecoderLimit or None, got {decoder!r}")
    memory_s = nbytes / platform.bytes_per_second
    compute_s = flops / platform.flops_per_second
    decoder_s = decoded_values / decoder.values_per_second if decoder is not None else 0.0
    seconds, bound = memory_s, "memory"
    if compute_s > seconds:
        seconds, bound = compute_s, "compute"
    if decoder_s > seconds:
        seconds, bound = decoder_s, "decoder"
    return StepTime(seconds, bound, memory_s, compute_s, decoder_s)


# --------------------------------------------------------------------------- speculation

def _check_gamma(gamma) -> int:
    return _check_int("gamma", gamma, minimum=1)


def expected_tokens(alpha: float, gamma: int) -> float:
    """Expected tokens per draft+verify round with i.i.d. acceptance.

    ``tau = (1 - alpha**(gamma + 1)) / (1 - alpha)``, ``gamma + 1`` at
    ``alpha = 1``: the accepted draft tokens plus the verifier's own token.

    Parameters
    ----------
    alpha : float
        Probability that each draft token is accepted, in [0, 1].
    gamma : int
        Draft tokens per round (>= 1).
    """
    alpha = _check_real("alpha", alpha, lo=0.0, hi=1.0)
    gamma = _check_gamma(gamma)
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def speedup_from_steps(t_plain: float, t_draft: float, t_verify: float, tau: float, gamma: int) -> float:
    """Speedup of speculative decoding over plain decoding from step times.

    ``tau * t_plain / (gamma * t_draft + t_verify)``.

    Parameters
    ----------
    t_plain : float
        Time of one plain decode step (> 0).
    t_draft : float
        Time of one draft step (>= 0).
    t_verify : float
        Time of the verify step of ``gamma + 1`` tokens (> 0).
    tau : float
        Tokens produced per round, in [1, gamma + 1].
    gamma : int
        Draft steps per round (>= 1).
    """
    t_plain = _check_real("t_plain", t_plain, positive=True)
    t_draft = _check_real("t_draft", t_draft, nonnegative=True)
    t_verify = _check_real("t_verify", t_verify, positive=True)
    gamma = _check_gamma(gamma)
    tau = _check_real("tau", tau, lo=1.0, hi=gamma + 1.0)
    return tau * t_plain / (gamma * t_draft + t_verify)


def _forward_time(platform, shape, *, bits_weights, bits_kv, context, batch, rows, overhead_s) -> float:
    tokens = max(1, int(round(rows)))
    nbytes = step_bytes(shape, bits_weights=bits_weights, bits_kv=bits_kv, batch=batch, context=context,
                        tokens=tokens)
    flops = step_flops(shape, batch=batch, context=context, tokens=tokens)
    return step_time(platform, bytes=nbytes, flops=flops).seconds + overhead_s


def plain_speedup(platform: Platform | str, shape: ModelShape | str, *, weight_bits: float, kv_bits: float,
                  batch: int = 1, context: int = 512, overhead_s: float = 0.0) -> float:
    """Plain decoding that reads ``weight_bits`` / ``kv_bits`` per value (e.g. the lossless
    compressed format) over plain BF16 decoding: the compression gain alone."""
    platform = _resolve(PLATFORMS, "platform", platform, Platform)
    shape = _resolve(SHAPES, "shape", shape, ModelShape)
    overhead_s = _check_real("overhead_s", overhead_s, nonnegative=True)
    common = dict(context=context, batch=batch, rows=1, overhead_s=overhead_s)
    return (_forward_time(platform, shape, bits_weights=BF16_BITS, bits_kv=BF16_BITS, **common)
            / _forward_time(platform, shape, bits_weights=weight_bits, bits_kv=kv_bits, **common))


def policy_speedup(platform: Platform | str, shape: ModelShape | str, bits: StorageBits, *, tau: float,
                   draft_forwards: float, draft_rows: float = 1.0, verify_rows: float, batch: int = 1,
                   context: int = 512, overhead_s: float = 0.0) -> dict:
    """Modelled speedup over plain BF16 decoding of rounds measured with any drafting
    policy (chain, tree, adaptive length, lookup).

    A round is ``draft_forwards`` draft forwards (on average; 0 for lookup alone) of
    ``draft_rows`` rows each, reading the draft bits, and one verification forward of
    ``verify_rows`` rows (tree nodes + the root) reading the full bits; it commits
    ``tau`` tokens. Every forward, plain ones included, costs ``overhead_s`` on top of
    its roofline time (kernel launches, synchronisation), so tree verification and
    extra draft forwards are not free.

    Returns a dict: ``t_plain``, ``t_draft``, ``t_verify``, ``t_round`` (s) and ``speedup``.
    """
    platform = _resolve(PLATFORMS, "platform", platform, Platform)
    shape = _resolve(SHAPES, "shape", shape, ModelShape)
    if not isinstance(bits, StorageBits):
        raise ValueError(f"bits must be a StorageBits, got {bits!r}")
    tau = _check_real("tau", tau, lo=1.0)
    draft_forwards = _check_real("draft_forwards", draft_forwards, nonnegative=True)
    draft_rows = _check_real("draft_rows", draft_rows, lo=1.0)
    verify_rows = _check_real("verify_rows", verify_rows, lo=1.0)
    overhead_s = _check_real("overhead_s", overhead_s, nonnegative=True)
    common = dict(context=context, batch=batch, overhead_s=overhead_s)
    t_plain = _forward_time(platform, shape, bits_weights=BF16_BITS, bits_kv=BF16_BITS, rows=1, **common)
    t_draft = _forward_time(platform, shape, bits_weights=bits.weight_draft_bits, bits_kv=bits.kv_draft_bits,
                            rows=draft_rows, **common)
    t_verify = _forward_time(platform, shape, bits_weights=bits.weight_full_bits, bits_kv=bits.kv_full_bits,
                             rows=verify_rows, **common)
    t_round = draft_forwards * t_draft + t_verify
    return {"t_plain": t_plain, "t_draft": t_draft, "t_verify": t_verify, "t_round": t_round,
            "speedup": tau * t_plain / t_round}


def _tau(alpha, tau, gamma) -> tuple[float | None, float]:
    if (alpha is None) == (tau is None):
        raise ValueError(f"give exactly one of alpha and tau, got alpha={alpha!r}, tau={tau!r}")
    if alpha is not None:
        return float(alpha), expected_tokens(alpha, gamma)
    return None, _check_real("tau", tau, lo=1.0, hi=gamma + 1.0)


def speculative_speedup(platform: Platform | str, shape: ModelShape | str, bits: StorageBits, *, gamma: int,
                        batch: int = 1, context: int = 512, alpha: float | None = None,
                        tau: float | None = None, decoder: DecoderLimit | None = None) -> dict:
    """Modelled speedup of self-speculative decoding over plain BF16 decoding.

    A round is ``gamma`` draft steps (1 token per sequence, reading
    ``bits.weight_draft_bits`` / ``bits.kv_draft_bits``) and one verify step
    (``gamma + 1`` tokens per sequence, reading the full bits); it yields
    ``tau`` tokens per sequence. Plain decoding reads BF16 and never uses the
    decoders. With ``decoder``, every encoded linear weight and every KV value
    read goes through it in both draft and verify steps.

    Parameters
    ----------
    platform : Platform or str
        The machine (or a key of :data:`PLATFORMS`).
    shape : ModelShape or str
        The model (or a key of :data:`SHAPES`).
    bits : StorageBits
        Bits per value the draft and verify steps read.
    gamma : int
        Draft tokens per round (>= 1).
    batch : int, default 1
        Sequences decoded together.
    context : int, default 512
        Tokens in each sequence's KV cache.
    alpha : float, optional
        i.i.d. acceptance rate in [0, 1]; ``tau`` follows from it.
    tau : float, optional
        Tokens per round, in [1, gamma + 1]. Exactly one of ``alpha`` and
        ``tau`` must be given.
    decoder : DecoderLimit, optional
        Decoder throughput bound for draft and verify steps.

    Returns
    -------
    dict
        ``platform, model, gamma, batch, context, alpha, tau``; per step kind
        (``plain``, ``draft``, ``verify``): ``t_*`` (s), ``bytes_*``,
        ``flops_*``, ``bound_*``; ``t_round`` (s), ``speedup``, and
        ``tokens_per_s_plain`` / ``tokens_per_s_spec`` (all sequences).
    """
    platform = _resolve(PLATFORMS, "platform", platform, Platform)
    shape = _resolve(SHAPES, "shape", shape, ModelShape)
    if not isinstance(bits, StorageBits):
        raise ValueError(f"bits must be a StorageBits, got {bits!r}")
    gamma = _check_gamma(gamma)
    batch = _check_int("batch", batch, minimum=1)
    context = _check_int("context", context, minimum=0)
    alpha, tau = _tau(alpha, tau, gamma)

    b_plain = step_bytes(shape, bits_weights=BF16_BITS, bits_kv=BF16_BITS, batch=batch, context=context)
    f_plain = step_flops(shape, batch=batch, context=context)
    b_draft = step_bytes(shape, bits_weights=bits.weight_draft_bits, bits_kv=bits.kv_draft_bits,
                         batch=batch, context=context)
    f_draft = f_plain
    b_verify = step_bytes(shape, bits_weights=bits.weight_full_bits, bits_kv=bits.kv_full_bits,
                          batch=batch, context=context, tokens=gamma + 1)
    f_verify = step_flops(shape, batch=batch, context=context, tokens=gamma + 1)
    decoded = shape.linear_params + shape.kv_values_per_token * batch * context

    s_plain = step_time(platform, bytes=b_plain, flops=f_plain)
    s_draft = step_time(platform, bytes=b_draft, flops=f_draft, decoder=decoder, decoded_values=decoded)
    s_verify = step_time(platform, bytes=b_verify, flops=f_verify, decoder=decoder, decoded_values=decoded)
    t_round = gamma * s_draft.seconds + s_verify.seconds
    speedup = speedup_from_steps(s_plain.seconds, s_draft.seconds, s_verify.seconds, tau, gamma)
    return {
        "platform": platform.name, "model": shape.name, "gamma": gamma, "batch": batch, "context": context,
        "alpha": alpha, "tau": tau,
        "t_plain": s_plain.seconds, "t_draft": s_draft.seconds, "t_verify": s_verify.seconds,
        "t_round": t_round,
        "bytes_plain": b_plain, "bytes_draft": b_draft, "bytes_verify": b_verify,
        "flops_plain": f_plain, "flops_draft": f_draft, "flops_verify": f_verify,
        "bound_plain": s_plain.bound, "bound_draft": s_draft.bound, "bound_verify": s_verify.bound,
        "speedup": speedup,
        "tokens_per_s_plain": batch / s_plain.seconds,
        "tokens_per_s_spec": batch * tau / t_round,
    }


def _as_list(value, table: Mapping, kind: str, cls) -> list:
    if isinstance(value, str | cls):
        value = [value]
    return [_resolve(table, kind, v, cls) for v in value]


def sweep(platforms: Iterable[Platform | str] | Platform | str, shapes: Iterable[ModelShape | str] | ModelShape | str,
          bits: StorageBits | Mapping[str, StorageBits], *, alpha: float | None = None, tau: float | None = None,
          gammas: Iterable[int] = (4,), batches: Iterable[int] = (1, 2, 4),
          contexts: Iterable[int] = (512, 2048, 8192, 32768), decoder: DecoderLimit | None = None) -> list[dict]:
    """:func:`speculative_speedup` over a grid, one row (dict) per point.

    Loops nest platform, model, bits, gamma, batch, context (outermost first).

    Parameters
    ----------
    platforms : Platform, str or iterable of them
        Machines (keys of :data:`PLATFORMS` allowed).
    shapes : ModelShape, str or iterable of them
        Models (keys of :data:`SHAPES` allowed).
    bits : StorageBits or mapping of label to StorageBits
        Formats; a single one is labelled ``"bits"``.
    alpha, tau : float, optional
        Exactly one; ``alpha`` gives each gamma its own ``tau``, a fixed ``tau``
        is used for every gamma.
    gammas, batches, contexts : iterable of int
        Grid values.
    decoder : DecoderLimit, optional
        Decoder bound, as in :func:`speculative_speedup`.

    Returns
    -------
    list of dict
        The rows of :func:`speculative_speedup`, each with a ``bits`` label.
    """
    if (alpha is None) == (tau is None):
        raise ValueError(f"give exactly one of alpha and tau, got alpha={alpha!r}, tau={tau!r}")
    plats = _as_list(platforms, PLATFORMS, "platform", Platform)
    models = _as_list(shapes, SHAPES, "shape", ModelShape)
    if isinstance(bits, StorageBits):
        formats = {"bits": bits}
    elif isinstance(bits, Mapping):
        formats = dict(bits)
        for label, b in formats.items():
            if not isinstance(b, StorageBits):
                raise ValueError(f"bits[{label!r}] must be a StorageBits, got {b!r}")
    else:
        raise ValueError(f"bits must be a StorageBits or a mapping of them, got {bits!r}")
    gammas = [_check_gamma(g) for g in gammas]
    batches = [_check_int("batch", b, minimum=1) for b in batches]
    contexts = [_check_int("context", c, minimum=0) for c in contexts]
    if not (plats and models and formats and gammas and batches and contexts):
        raise ValueError("platforms, shapes, bits, gammas, batches and contexts must all be non-empty")
    rows = []
    for p in plats:
        for m in models:
            for label, b in formats.items():
                for g in gammas:
                    for n in batches:
                        for c in contexts:
                            row = speculative_speedup(p, m, b, gamma=g, batch=n, context=c, alpha=alpha,
                                                      tau=tau, decoder=decoder)
                            rows.append({"bits": label, **row})
    return rows


def best_gamma(platform: Platform | str, shape: ModelShape | str, bits: StorageBits, *, alpha: float,
               batch: int = 1, context: int = 512, decoder: DecoderLimit | None = None,
               gammas: Iterable[int] = range(1, 9)) -> int:
    """The draft length in ``gammas`` (default 1..8) with the largest modelled speedup.

    Ties go to the smaller gamma.

    Parameters
    ----------
    platform, shape, bits, batch, context, decoder
        As in :func:`speculative_speedup`.
    alpha : float
        i.i.d. acceptance rate in [0, 1].
    gammas : iterable of int, default 1..8
        Candidates.
    """
    alpha = _check_real("alpha", alpha, lo=0.0, hi=1.0)
    gammas = sorted({_check_gamma(g) for g in gammas})
    if not gammas:
        raise ValueError("gammas must be non-empty")
    best, best_speedup = None, -math.inf
    for g in gammas:
        s = speculative_speedup(platform, shape, bits, gamma=g, batch=batch, context=context, alpha=alpha,
                                decoder=decoder)["speedup"]
        if s > best_speedup:
            best, best_speedup = g, s
    return best


# --------------------------------------------------------------------------- tables

def markdown_table(rows: Sequence[Mapping], columns: Sequence[str | tuple[str, str]], *,
                   floatfmt: str = ".4g") -> str:
    """A Markdown pipe table of ``rows``.

    Parameters
    ----------
    rows : sequence of mappings
        One per table row; a missing key prints empty.
    columns : sequence of str or (key, header)
        Keys to print, optionally with their header text.
    floatfmt : str, default ".4g"
        Format spec for floats.

    Returns
    -------
    str
        Header, separator and one line per row, newline-terminated.
    """
    if not columns:
        raise ValueError("columns must be non-empty")
    keys, headers = [], []
    for c in columns:
        if isinstance(c, str):
            keys.append(c)
            headers.append(c)
        elif isinstance(c, tuple) and len(c) == 2:
            keys.append(c[0])
            headers.append(str(c[1]))
        else:
            raise ValueError(f"a column must be a key or a (key, header) pair, got {c!r}")

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            text = format(v, floatfmt)
        else:
            text = str(v)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"
