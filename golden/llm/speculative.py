"""Plain and speculative decoding, with the metrics a user asks for.

Speculative decoding (draft length ``gamma``): the draft (the same model read
through the speculation data) proposes ``gamma`` tokens one at a time; the
target (read through speculation + verification data, i.e. the exact BF16
model) scores the last committed token and all drafts in one forward and
accepts a prefix:

* greedy: accept draft ``d_i`` while it equals the target's argmax; the first
  mismatch is replaced by the target's argmax; if all are accepted the target's
  next argmax is a bonus token;
* sampling: accept ``d_i`` with probability ``min(1, p(d_i) / q(d_i))``; on
  rejection sample from ``norm(max(p - q, 0))``; a bonus token from ``p`` when
  all are accepted. The output distribution is the target's.

After a rejection the KV cache is rolled back to the committed tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

__all__ = ["GenerationResult", "generate_plain", "generate_speculative", "Sampler", "VERIFY_MODES"]

VERIFY_MODES = ("sequential", "parallel")


@dataclass
class GenerationResult:
    """Tokens and metrics of one generation."""

    tokens: list[int]
    wall_seconds: float = 0.0
    target_forwards: int = 0  # verification forwards (prefill not counted)
    draft_forwards: int = 0
    proposed: int = 0
    accepted: int = 0
    draft_step_bytes: list[int] = field(default_factory=list)
    verify_step_bytes: list[int] = field(default_factory=list)
    plain_step_bytes: list[int] = field(default_factory=list)  # what plain BF16 decoding reads per token

    @property
    def alpha(self) -> float:
        """Acceptance rate: accepted / proposed draft tokens."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tau(self) -> float:
        """Mean tokens committed per target (verification) forward."""
        return (self.accepted + self.target_forwards) / self.target_forwards if self.target_forwards else 0.0

    @staticmethod
    def _mean(values: list[int]) -> float:
        return sum(values) / len(values) if values else 0.0

    @property
    def mean_draft_bytes(self) -> float:
        return self._mean(self.draft_step_bytes)

    @property
    def mean_verify_bytes(self) -> float:
        return self._mean(self.verify_step_bytes)

    @property
    def mean_plain_bytes(self) -> float:
        return self._mean(self.plain_step_bytes)

    @classmethod
    def combine(cls, results) -> "GenerationResult":
        """Several runs as one (tokens concatenated, counts and steps pooled)."""
        out = cls(tokens=[])
        for r in results:
            out.tokens += r.tokens
            out.wall_seconds += r.wall_seconds
            out.target_forwards += r.target_forwards
            out.draft_forwards += r.draft_forwards
            out.proposed += r.proposed
            out.accepted += r.accepted
            out.draft_step_bytes += r.draft_step_bytes
            out.verify_step_bytes += r.verify_step_bytes
            out.plain_step_bytes += r.plain_step_bytes
        return out

    @property
    def bytes_speedup(self) -> float:
        """Plain BF16 bytes for the same tokens / bytes the speculative run read
        (draft + verify steps): the speedup of a purely memory-bound decoder."""
        spec = sum(self.draft_step_bytes) + sum(self.verify_step_bytes)
        return sum(self.plain_step_bytes) / spec if spec else 0.0


class Sampler:
    """Greedy (``temperature=None``) or temperature sampling with a seeded generator."""

    def __init__(self, *, sample: bool = False, temperature: float = 1.0, seed: int = 0):
        if sample and not temperature > 0:
            raise ValueError(f"temperature={temperature} must be > 0 when sampling")
        self.sample = sample
        self.temperature = temperature
        self.generator = torch.Generator().manual_seed(seed)

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.to(torch.float64).cpu() / self.temperature, dim=-1)

    def draw(self, probs: torch.Tensor) -> int:
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def choose(self, logits: torch.Tensor) -> int:
        if not self.sample:
            return int(torch.argmax(logits))
        return self.draw(self.probs(logits))

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.generator, dtype=torch.float64))


class _Verifier:
    """Target logits for the verification rows, computed all at once
    (``parallel``) or one row at a time on demand (``sequential``)."""

    def __init__(self, model, weights, cache, tokens, start, mode):
        self.model, self.weights, self.cache = model, weights, cache
        self.tokens, self.start, self.mode = tokens, start, mode
        self.rows = []
        if mode == "parallel":
            self.rows = list(model.forward(tokens, weights, cache, start=start, mode="full"))

    def __getitem__(self, i: int) -> torch.Tensor:
        while len(self.rows) <= i:
            j = len(self.rows)
            out = self.model.forward([self.tokens[j]], self.weights, self.cache, start=self.start + j, mode="full")
            self.rows.append(out[-1])
        return self.rows[i]


def _finish(tokens: list[int], eos_ids, max_new_tokens: int) -> list[int]:
    out = tokens[:max_new_tokens]
    for i, t in enumerate(out):
        if t in eos_ids:
            return out[: i + 1]
    return out


def generate_plain(model, weights, cache, prompt_ids, max_new_tokens, *, sampler=None, eos_ids=(), step_bytes=None):
    """Plain autoregressive decoding (the reference the speculative output must equal).

    ``step_bytes(context)``, if given, returns the bytes one step reads.
    """
    sampler = sampler or Sampler()
    start = time.perf_counter()
    result = GenerationResult(tokens=[])
    with torch.inference_mode():
        logits = model.forward(prompt_ids, weights, cache, start=0, mode="full")
        pos = len(prompt_ids)
        tok = sampler.choose(logits[-1])
        result.tokens.append(tok)
        while len(result.tokens) < max_new_tokens and tok not in eos_ids:
            logits = model.forward([tok], weights, cache, start=pos, mode="full")
            pos += 1
            if step_bytes is not None:
                result.plain_step_bytes.append(step_bytes(pos))
            tok = sampler.choose(logits[-1])
            result.tokens.append(tok)
    result.tokens = _finish(result.tokens, eos_ids, max_new_tokens)
    result.wall_seconds = time.perf_counter() - start
    return result


def generate_speculative(
    model,
    draft_weights,
    target_weights,
    cache,
    prompt_ids,
    max_new_tokens,
    *,
    gamma: int = 5,
    sampler=None,
    eos_ids=(),
    draft_bytes=None,
    verify_bytes=None,
    plain_bytes=None,
    verify: str = "sequential",
):
    """Speculative decoding; the draft and the target share ``cache``.

    ``verify="parallel"`` scores the last token and the drafts in one forward,
    as the hardware does. ``"sequential"`` (default) runs the same rows one
    token at a time and stops at the first rejection: on a CPU, float32
    matmul results depend on how many rows are multiplied together, and the
    BF16 rounding of the KV cache can amplify that into a different argmax at
    a near-tie; one row at a time is bitwise the computation plain decoding
    does, so the output is identical to it. The bytes are counted as one
    parallel verification either way.

    ``cache`` must serve ``read(layer, end, mode)`` in ``"draft"`` and ``"full"``
    modes and support ``truncate(length)``. ``draft_bytes(context)``,
    ``verify_bytes(tokens, context)`` and ``plain_bytes(context)``, if given,
    return the bytes a step reads (for the metrics).
    """
    if gamma < 1:
        raise ValueError(f"gamma={gamma} must be >= 1")
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify={verify!r} is not one of {VERIFY_MODES}")
    sampler = sampler or Sampler()
    start_time = time.perf_counter()
    result = GenerationResult(tokens=[])
    with torch.inference_mode():
        logits = model.forward(prompt_ids, target_weights, cache, start=0, mode="full")
        pos = len(prompt_ids)  # the cache holds positions < pos; `last` sits at pos
        last = sampler.choose(logits[-1])
        out = [last]
        while len(out) < max_new_tokens and last not in eos_ids:
            g = min(gamma, max_new_tokens - len(out))
            drafts, draft_probs = [], []
            tok = last
            for i in range(g):
                lg = model.forward([tok], draft_weights, cache, start=pos + i, mode="draft")
                result.draft_forwards += 1
                if draft_bytes is not None:
                    result.draft_step_bytes.append(draft_bytes(pos + i + 1))
                if sampler.sample:
                    q = sampler.probs(lg[-1])
                    tok = sampler.draw(q)
                    draft_probs.append(q)
                else:
                    tok = int(torch.argmax(lg[-1]))
                drafts.append(tok)
            cache.truncate(pos)
            if verify_bytes is not None:  # counted before the rows are written, the same for both verify modes
                result.verify_step_bytes.append(verify_bytes(g + 1, pos + g + 1))
            lg = _Verifier(model, target_weights, cache, [last, *drafts], pos, verify)
            result.target_forwards += 1
            accepted = 0
            correction = None
            for i in range(g):
                if sampler.sample:
                    p = sampler.probs(lg[i])
                    q = draft_probs[i]
                    d = drafts[i]
                    if sampler.uniform() < min(1.0, float(p[d] / q[d])):
                        accepted += 1
                        continue
                    residual = torch.clamp(p - q, min=0)
                    total = float(residual.sum())
                    correction = sampler.draw(residual / total) if total > 0 else sampler.draw(p)
                    break
                target_tok = int(torch.argmax(lg[i]))
                if drafts[i] == target_tok:
                    accepted += 1
                else:
                    correction = target_tok
                    break
            if correction is None:
                correction = sampler.choose(lg[g])  # bonus token
            result.proposed += g
            result.accepted += accepted
            cache.truncate(pos + 1 + accepted)
            new = drafts[:accepted] + [correction]
            if plain_bytes is not None:
                result.plain_step_bytes += [plain_bytes(pos + 1 + j) for j in range(len(new))]
            out += new
            pos += 1 + accepted
            last = correction
            if any(t in eos_ids for t in new):
                break
    result.tokens = _finish(out, eos_ids, max_new_tokens)
    result.wall_seconds = time.perf_counter() - start_time
    return result
