"""The full Cassandra pipeline on a real LLM: load, calibrate, encode, generate.

:class:`Pipeline` holds one model with its weights in Cassandra format and
runs plain BF16 decoding (the reference) and speculative decoding (draft from
the speculation data, verification from all of it) on prompts, with metrics.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from golden.format.params import DEFAULT_PRUNE_RATIO, FormatParams, check_draft_rounding, mantissa_bits_kept
from golden.llm.datasets import CALIBRATION_TEXTS
from golden.llm.drafting import DraftPolicy
from golden.llm.llama import DenseKVCache, Llama, dense_weights, load_checkpoint
from golden.llm.model_files import default_model_path
from golden.llm.speculative import GenerationResult, Sampler, generate_plain, generate_speculative

from .cache import DiskCache, default_cache_dir, model_digest
from .encoded_model import Calibration, CassandraKVCache, CassandraWeights, calibrate, kv_codebooks

__all__ = ["PipelineConfig", "Pipeline", "RunReport", "COMPUTE_DTYPES"]

COMPUTE_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}

_FORMAT_DEFAULTS = FormatParams()


@dataclass
class PipelineConfig:
    """Settings of a run (the ``cassandra-sd generate`` options)."""

    model: str | None = None
    gamma: int = 5
    prune: float = DEFAULT_PRUNE_RATIO
    truncate: int = _FORMAT_DEFAULTS.truncated_bits
    kv_prune: float = 0.0
    kv_truncate: int = _FORMAT_DEFAULTS.truncated_bits
    exponent: str = _FORMAT_DEFAULTS.exponent_coding
    group_size: int = _FORMAT_DEFAULTS.group_size
    selector: str = "wanda"
    draft_rounding: str = "truncate"  # how the draft fills truncated mantissa bits: truncate or midpoint
    sample: bool = False
    temperature: float = 1.0
    seed: int = 0
    device: str = "cpu"
    compute_dtype: str = "float32"
    verify: str = "sequential"
    calibration_samples: int = 32
    tree: str | None = None  # None: a chain; "2x2x2" or "dynamic:16" (golden.llm.drafting)
    threshold: float = 0.0  # adaptive draft length: stop expanding below this draft probability
    lookup: str = "off"  # n-gram lookup: off, alone, gated, branch
    lookup_min: int = 2
    lookup_max: int = 4
    width: int = 4  # dynamic trees: nodes expanded per level, children per node
    cache: bool = True  # keep calibration, encoded weights and decoded views on disk (golden.pipeline.cache)
    cache_dir: str | None = None  # default: $CASSANDRA_CACHE_DIR or ~/.cache/cassandra

    def policy(self) -> DraftPolicy:
        """What a round proposes (checked here, before any model work)."""
        return DraftPolicy(gamma=self.gamma, tree=self.tree, threshold=self.threshold, lookup=self.lookup,
                           lookup_min=self.lookup_min, lookup_max=self.lookup_max, width=self.width)

    def check_draft_rounding(self) -> None:
        check_draft_rounding(self.draft_rounding, self.exponent)

    def weight_params(self) -> FormatParams:
        m = mantissa_bits_kept(self.truncate, label=f"truncate={self.truncate!r}")
        return FormatParams(group_size=self.group_size, mantissa_bits=m, exponent_coding=self.exponent)

    def kv_params(self, head_dim: int) -> FormatParams:
        m = mantissa_bits_kept(self.kv_truncate, label=f"kv_truncate={self.kv_truncate!r}")
        return FormatParams(group_size=head_dim, mantissa_bits=m, exponent_coding=self.exponent, superblock_groups=1)


@dataclass
class RunReport:
    """One prompt's result: the speculative run and, if checked, the plain one."""

    prompt_tokens: int
    speculative: GenerationResult
    plain: GenerationResult | None = None
    sampled: bool = False  # sampling: the distribution is kept, not the tokens (no token-for-token check)

    @property
    def lossless(self) -> bool | None:
        """Greedy: whether the tokens equal plain decoding's. ``None`` when not checked,
        and when sampled: a sampled speculative run keeps the target's distribution,
        not a plain run's tokens (the two draw their random numbers differently); the
        statistical tests (tests/llm/test_speculative.py, tests/llm/test_drafting.py)
        check the distribution."""
        if self.plain is None or self.sampled:
            return None
        return self.speculative.tokens == self.plain.tokens

    def metrics(self) -> dict:
        s = self.speculative
        out = {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": len(s.tokens),
            "alpha": s.alpha,
            "tau": s.tau,
            "proposed": s.proposed,
            "accepted": s.accepted,
            "target_forwards": s.target_forwards,
            "draft_forwards": s.draft_forwards,
            "draft_step_bytes": s.mean_draft_bytes,
            "verify_step_bytes": s.mean_verify_bytes,
            "plain_step_bytes": s.mean_plain_bytes,
            "bytes_speedup": s.bytes_speedup,
            "wall_seconds": s.wall_seconds,
        }
        if self.plain is not None:
            out["plain_wall_seconds"] = self.plain.wall_seconds
            out["lossless"] = self.lossless
        return out


class Pipeline:
    """Model + tokenizer + Cassandra-format weights, ready to generate.

    Parameters
    ----------
    config : PipelineConfig
    keep_reference : bool
        Keep the original BF16 weights to run plain decoding for the lossless
        check (they are not used by the speculative path).
    progress : bool
        Progress bars on stderr for the long steps.
    """

    def __init__(self, config: PipelineConfig, *, keep_reference: bool = True, progress: bool = False, log=None):
        from golden.llm.tokenizer import load_tokenizer

        self.config = config
        self.log = log or (lambda msg: None)
        dtype = COMPUTE_DTYPES.get(config.compute_dtype)
        if dtype is None:
            raise ValueError(f"compute_dtype={config.compute_dtype!r} is not one of {tuple(COMPUTE_DTYPES)}")
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={config.device!r} asked for, but torch sees no CUDA GPU")
        weight_params = config.weight_params()
        config.check_draft_rounding()
        self.policy = config.policy()
        t0 = time.perf_counter()
        self.model_config, checkpoint = load_checkpoint(config.model)
        self.tokenizer = load_tokenizer(config.model)
        self.model = Llama(self.model_config, device=config.device, compute_dtype=dtype)
        kv_params = config.kv_params(self.model_config.head_dim)
        self.log(f"loaded {config.model or 'SmolLM2-135M-Instruct (Q4_1 GGUF -> BF16)'} in {time.perf_counter() - t0:.1f} s")
        cache = DiskCache(None if not config.cache else (config.cache_dir or default_cache_dir()), log=self.log)
        self.cache = cache
        digest = model_digest(config.model or default_model_path()) if cache.enabled else ""
        reference = dense_weights(checkpoint, device=config.device, dtype=dtype)
        t0 = time.perf_counter()
        calibration_key = cache.key(kind="calibration", model=digest, samples=config.calibration_samples)
        cached = cache.load("calibration", calibration_key)
        if cached is not None:
            self.calibration = Calibration(**cached)
        else:
            self.calibration = calibrate(
                self.model, reference, self.tokenizer, CALIBRATION_TEXTS[: config.calibration_samples],
                progress=progress,
            )
            cache.save("calibration", calibration_key, asdict(self.calibration))
        self.log(
            f"calibrated on {self.calibration.samples} built-in samples ({self.calibration.tokens} tokens) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        self.reference = reference if keep_reference else None
        if not keep_reference:
            del reference
        t0 = time.perf_counter()
        weights_key = cache.key(kind="weights", model=digest, params=weight_params.as_dict(), prune=config.prune,
                                selector=config.selector,
                                calibration=calibration_key if config.selector == "wanda" else None)
        views_key = cache.key(kind="views", weights=weights_key, rounding=config.draft_rounding,
                              device=config.device, dtype=config.compute_dtype)
        parts = cache.load("weights", weights_key)
        decoded = cache.load("views", views_key) if parts is not None else None
        self.weights = CassandraWeights(
            self.model_config,
            checkpoint,
            weight_params,
            prune_ratio=config.prune,
            selector=config.selector,
            calibration=self.calibration,
            device=config.device,
            compute_dtype=dtype,
            progress=progress,
            draft_rounding=config.draft_rounding,
            parts=parts,
            decoded=decoded,
        )
        if parts is None:
            cache.save("weights", weights_key, self.weights.parts())
        del checkpoint
        self.kv_params = kv_params
        self.kv_codebooks = kv_codebooks(self.calibration, kv_params) if kv_params.exponent_coding == "unary" else None
        self.log(f"encoded {len(self.weights.containers)} weight tensors in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        self.weights.keep_decoded = cache.enabled and decoded is None
        self.draft_weights = self.weights.view("draft")
        self.target_weights = self.weights.view("full")
        if self.weights.keep_decoded:
            cache.save("views", views_key, self.weights.decoded_bf16())
            self.weights.keep_decoded = False
        self.log(f"decoded draft and full views in {time.perf_counter() - t0:.1f} s")

    # -- one prompt -----------------------------------------------------------
    def kv_cache(self, max_len: int) -> CassandraKVCache:
        return CassandraKVCache(
            self.model_config,
            self.kv_params,
            max_len,
            kv_prune_ratio=self.config.kv_prune,
            codebooks=self.kv_codebooks,
            device=self.config.device,
            draft_rounding=self.config.draft_rounding,
        )

    def plain_bytes(self, context: int) -> int:
        """Bytes a plain BF16 decoding step reads: all weights and the BF16 KV of ``context`` positions."""
        c = self.model_config
        kv = 2 * 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * context
        return self.weights.bf16_bytes() + kv

    def run(self, prompt_ids: list[int], max_new_tokens: int, *, check: bool = True, on_tokens=None) -> RunReport:
        """Speculative decoding of one prompt, and plain decoding to compare if ``check``.
        ``on_tokens(tokens)`` hears the speculative run's tokens as they are committed."""
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        cfg = self.config
        max_len = len(prompt_ids) + max_new_tokens + self.policy.max_nodes() + 2
        eos = self.tokenizer.eos_token_ids
        cache = self.kv_cache(max_len)
        spec = generate_speculative(
            self.model,
            self.draft_weights,
            self.target_weights,
            cache,
            prompt_ids,
            max_new_tokens,
            policy=self.policy,
            sampler=Sampler(sample=cfg.sample, temperature=cfg.temperature, seed=cfg.seed),
            eos_ids=eos,
            draft_bytes=lambda ctx, rows: self.weights.step_bytes("draft", rows) + cache.step_bytes("draft"),
            verify_bytes=lambda n, ctx: self.weights.step_bytes("full", n) + cache.step_bytes("full"),
            plain_bytes=self.plain_bytes,
            verify=cfg.verify,
            on_tokens=on_tokens,
        )
        plain = None
        if check:
            if self.reference is None:
                raise ValueError("this pipeline was built without the reference weights; run with check=False")
            plain = generate_plain(
                self.model,
                self.reference,
                DenseKVCache(self.model_config, max_len, device=cfg.device),
                prompt_ids,
                max_new_tokens,
                sampler=Sampler(sample=cfg.sample, temperature=cfg.temperature, seed=cfg.seed),
                eos_ids=eos,
            )
        self.last_cache = cache
        return RunReport(prompt_tokens=len(prompt_ids), speculative=spec, plain=plain, sampled=cfg.sample)

    def summary(self) -> dict:
        w = self.weights
        spec_bits = sum(s for s, _ in w.bits.values())
        ver_bits = sum(v for _, v in w.bits.values())
        n = sum(w.numel.values())
        return {
            "config": asdict(self.config),
            "encoded_values": n,
            "speculation_bits_per_value": spec_bits / n,
            "verification_bits_per_value": ver_bits / n,
            "calibration_samples": self.calibration.samples,
            "calibration_tokens": self.calibration.tokens,
        }
