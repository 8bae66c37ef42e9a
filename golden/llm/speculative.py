"""Plain and speculative decoding, with the metrics a user asks for.

A speculative round: the draft (the same model read through the speculation
data) proposes a tree of tokens below the last committed token (a chain of
``gamma`` tokens by default; :mod:`golden.llm.drafting` has the trees, the
adaptive stop and n-gram lookup); the target (speculation + verification data,
i.e. the exact BF16 model) scores the last committed token and every proposed
node in one forward (a tree attention mask: each node sees the context, its
ancestors and itself) and accepts a path:

* greedy: follow the target's argmax from the root while a child carries it;
  the first argmax with no child is the round's correction (a bonus token when
  the path ends at a leaf). The output equals plain greedy decoding;
* sampling: at each node, try its candidate children in order (recursive
  rejection sampling, SpecInfer's multi-draft rule): accept candidate ``x``
  drawn from ``q`` with probability ``min(1, p(x) / q(x))``; on rejection the
  target becomes ``norm(max(p - q, 0))`` for the next candidate (a deterministic
  proposal such as lookup has ``q`` = a point mass on ``x``). When every
  candidate is rejected, the correction is drawn from what is left of ``p``; a
  leaf gets a bonus token from ``p``. The output distribution is the target's.

After the round the KV cache holds the committed tokens only: the accepted
path's entries are kept (moved next to each other when the tree had branches),
the rest discarded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .drafting import DraftPolicy, DraftTree, ngram_lookup, tree_attention_mask

__all__ = ["GenerationResult", "generate_plain", "generate_speculative", "propose_tree", "Sampler", "VERIFY_MODES"]

VERIFY_MODES = ("sequential", "parallel")


@dataclass
class GenerationResult:
    """Tokens and metrics of one generation."""

    tokens: list[int]
    wall_seconds: float = 0.0
    target_forwards: int = 0  # verification forwards (prefill not counted)
    draft_forwards: int = 0
    proposed: int = 0  # draft tokens (tree nodes) verified
    accepted: int = 0
    committed: int = 0  # tokens the rounds committed (accepted + corrections and bonus tokens)
    draft_step_bytes: list[int] = field(default_factory=list)
    verify_step_bytes: list[int] = field(default_factory=list)
    plain_step_bytes: list[int] = field(default_factory=list)  # what plain BF16 decoding reads per token
    round_accepted: list[int] = field(default_factory=list)  # accepted draft tokens, per round

    @property
    def alpha(self) -> float:
        """Acceptance rate: accepted / proposed draft tokens (tree nodes)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tau(self) -> float:
        """Mean tokens committed per target (verification) forward."""
        if not self.target_forwards:
            return 0.0
        committed = self.committed or self.accepted + self.target_forwards
        return committed / self.target_forwards

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
            out.committed += r.committed or r.accepted + r.target_forwards
            out.draft_step_bytes += r.draft_step_bytes
            out.verify_step_bytes += r.verify_step_bytes
            out.plain_step_bytes += r.plain_step_bytes
            out.round_accepted += r.round_accepted
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


# ---------------------------------------------------------------------------
# One round: the draft tree
# ---------------------------------------------------------------------------
def _forward_nodes(model, weights, cache, tree: DraftTree, rows, slots: dict, *, base: int, start: int, mode: str):
    """Forward tree nodes ``rows`` into cache slots ``start ..``; ``base`` is the root's
    slot and position. A chain (each row the next position, seeing everything
    before it) runs as a plain causal forward."""
    for r, node in enumerate(rows):
        slots[node] = start + r
    positions = [base + tree.depths[n] for n in rows]
    end = start + len(rows)
    tokens = [tree.tokens[n] for n in rows]
    mask = tree_attention_mask(tree, rows, slots, base, end)
    causal = torch.ones(len(rows), end, dtype=torch.bool).tril(start)
    if positions == list(range(start, end)) and torch.equal(mask, causal):
        return model.forward(tokens, weights, cache, start=start, mode=mode)  # a chain: the plain causal forward
    return model.forward(tokens, weights, cache, start=start, mode=mode, positions=positions,
                         attention_mask=mask.to(getattr(model, "device", "cpu")))


def _draft_tree(model, draft_weights, cache, tree: DraftTree, policy: DraftPolicy, sampler: Sampler, *, pos: int,
                depth: int, result: GenerationResult, draft_bytes):
    """Grow ``tree`` with the draft model: a chain, a static shape or a dynamic tree."""
    slots: dict = {}
    next_slot = pos
    greedy_probs = policy.threshold > 0 or policy.kind == "dynamic"

    def expand(rows, width):
        nonlocal next_slot
        logits = _forward_nodes(model, draft_weights, cache, tree, rows, slots, base=pos, start=next_slot,
                                mode="draft")
        next_slot += len(rows)
        result.draft_forwards += 1
        if draft_bytes is not None:
            result.draft_step_bytes.append(draft_bytes(next_slot, len(rows)))
        made = []
        for node, lg in zip(rows, logits):
            if sampler.sample:
                q = sampler.probs(lg)
                draws = [sampler.draw(q) for _ in range(width)]
                tree.trials[node] += [(t, q) for t in draws]
                candidates = list(dict.fromkeys(draws))
            else:
                q = torch.softmax(lg.to(torch.float64).cpu(), -1) if greedy_probs else None
                candidates = ([int(torch.argmax(lg))] if width == 1 else
                              [int(t) for t in torch.topk(lg, width).indices])
                tree.trials[node] += [(t, None) for t in candidates]
            for t in candidates:
                own = float(q[t]) if q is not None else 1.0
                prob = own if policy.tree is None else tree.probs[node] * own
                made.append(tree.add(node, t, prob))
        return made

    def expandable(node):
        return node == 0 or tree.probs[node] >= policy.threshold

    if policy.kind == "dynamic":
        budget = int(policy.tree.split(":")[1])
        level = [0]
        for _ in range(depth):
            rows = sorted((n for n in level if expandable(n)), key=lambda n: -tree.probs[n])[:policy.width]
            if not rows:
                break
            level = expand(rows, policy.width)
        order = sorted(range(1, len(tree)), key=lambda n: (-tree.probs[n], tree.depths[n], n))
        return tree.prune_to(order[:budget])
    frontier = [0]
    for width in policy.widths[:depth]:
        rows = [n for n in frontier if expandable(n)]
        if not rows:
            break
        frontier = expand(rows, width)
    return tree


def propose_tree(model, draft_weights, cache, last, context, policy, sampler, *, pos, depth, result, draft_bytes):
    """One round's proposal: the draft tree below ``last`` (at cache slot and position
    ``pos``; ``context`` = every committed token), grown by ``policy``; the draft's own
    cache entries are dropped again. Counts draft forwards into ``result``."""
    tree = DraftTree.root(last)
    lookup = []
    if policy.lookup != "off":
        lookup = ngram_lookup(context, max_tokens=depth, min_match=policy.lookup_min, max_match=policy.lookup_max)
    if policy.lookup in ("off", "branch") or (policy.lookup == "gated" and not lookup):
        tree = _draft_tree(model, draft_weights, cache, tree, policy, sampler, pos=pos, depth=depth, result=result,
                           draft_bytes=draft_bytes)
        cache.truncate(pos)
    if lookup and policy.lookup != "off":
        tree.insert_chain(lookup)
    return tree


# ---------------------------------------------------------------------------
# One round: verification
# ---------------------------------------------------------------------------
class _Verifier:
    """Target logits per tree node: all nodes in one forward (``parallel``), or
    one row at a time along the path being accepted (``sequential``: bitwise the
    computation plain decoding does)."""

    def __init__(self, model, weights, cache, tree: DraftTree, pos: int, mode: str):
        self.model, self.weights, self.cache, self.tree, self.pos, self.mode = model, weights, cache, tree, pos, mode
        self.rows = {}
        self.visited = []
        if mode == "parallel":
            logits = _forward_nodes(model, weights, cache, tree, list(range(len(tree))), {}, base=pos, start=pos,
                                    mode="full")
            self.rows = dict(enumerate(logits))

    def __getitem__(self, node: int) -> torch.Tensor:
        self.visited.append(node)
        if node not in self.rows:
            depth = self.tree.depths[node]
            out = self.model.forward([self.tree.tokens[node]], self.weights, self.cache, start=self.pos + depth,
                                     mode="full")
            self.rows[node] = out[-1]
        return self.rows[node]

    def keep_path(self) -> None:
        """Leave the committed tokens' entries in the cache: the visited path."""
        if self.mode == "parallel" and self.visited != list(range(len(self.visited))):
            self.cache.keep_slots(self.pos, [self.pos + n for n in self.visited])
        else:
            self.cache.truncate(self.pos + len(self.visited))


def _accept(tree: DraftTree, logits: _Verifier, sampler: Sampler):
    """Walk the tree from the root; returns (accepted tokens, correction or None)."""
    node, accepted = 0, []
    while True:
        row = logits[node]
        if not sampler.sample:
            token = int(torch.argmax(row))
            child = tree.child(node, token)
            if child is None:
                return accepted, token
            accepted.append(token)
            node = child
            continue
        p = sampler.probs(row)
        chosen = None
        for token, q in tree.trials[node]:
            ratio = float(p[token]) if q is None else float(p[token] / q[token])
            if sampler.uniform() < min(1.0, ratio):
                chosen = token
                break
            if q is None:  # a point mass: what is left of p is p without the token
                residual = p.clone()
                residual[token] = 0.0
            else:
                residual = torch.clamp(p - q, min=0)
            total = float(residual.sum())
            if total > 0:
                p = residual / total
        if chosen is None:
            return accepted, sampler.draw(p)
        accepted.append(chosen)
        child = tree.child(node, chosen)
        if child is None:  # a candidate the tree did not verify: the round ends on it
            return accepted, None
        node = child


def generate_speculative(
    model,
    draft_weights,
    target_weights,
    cache,
    prompt_ids,
    max_new_tokens,
    *,
    gamma: int = 5,
    policy: DraftPolicy | None = None,
    sampler=None,
    eos_ids=(),
    draft_bytes=None,
    verify_bytes=None,
    plain_bytes=None,
    verify: str = "sequential",
    on_tokens=None,
):
    """Speculative decoding; the draft and the target share ``cache``.

    ``on_tokens(tokens)``, if given, hears the new tokens as they are committed
    (a list each time: the first token, then each round's), none past ``eos_ids``
    or ``max_new_tokens``.

    ``policy`` (:class:`golden.llm.drafting.DraftPolicy`) says what a round
    proposes; without one, a chain of ``gamma`` draft tokens.

    ``verify="parallel"`` scores the last token and every node in one forward,
    as the hardware does. ``"sequential"`` (default) runs the accepted path's
    rows one token at a time and stops at the first rejection: on a CPU, float32
    matmul results depend on how many rows are multiplied together, and the
    BF16 rounding of the KV cache can amplify that into a different argmax at
    a near-tie; one row at a time is bitwise the computation plain decoding
    does, so the output is identical to it. The bytes are counted as one
    parallel verification either way.

    ``cache`` must serve ``read(layer, end, mode)`` in ``"draft"`` and ``"full"``
    modes and support ``truncate(length)`` (and ``keep_slots(start, slots)`` for trees
    verified in parallel). ``draft_bytes(context, rows)``, ``verify_bytes(tokens,
    context)`` and ``plain_bytes(context)``, if given, return the bytes a step reads.
    """
    if policy is None:
        if not isinstance(gamma, int) or gamma < 1:
            raise ValueError(f"gamma={gamma} must be >= 1")
        policy = DraftPolicy(gamma=gamma)
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
        emitted = 0

        def emit():
            nonlocal emitted
            if on_tokens is not None:
                final = _finish(out, eos_ids, max_new_tokens)
                if len(final) > emitted:
                    on_tokens(final[emitted:])
                    emitted = len(final)

        emit()
        while len(out) < max_new_tokens and last not in eos_ids:
            depth = min(policy.depth, max_new_tokens - len(out))
            tree = propose_tree(model, draft_weights, cache, last, list(prompt_ids) + out, policy, sampler, pos=pos,
                            depth=depth, result=result, draft_bytes=draft_bytes)
            if verify_bytes is not None:  # counted before the rows are written, the same for both verify modes
                result.verify_step_bytes.append(verify_bytes(len(tree), pos + len(tree)))
            rows = _Verifier(model, target_weights, cache, tree, pos, verify)
            result.target_forwards += 1
            accepted, correction = _accept(tree, rows, sampler)
            rows.keep_path()
            new = accepted + ([correction] if correction is not None else [])
            result.proposed += tree.proposed
            result.accepted += len(accepted)
            result.committed += len(new)
            result.round_accepted.append(len(accepted))
            if plain_bytes is not None:
                result.plain_step_bytes += [plain_bytes(pos + 1 + j) for j in range(len(new))]
            out += new
            pos += len(new)
            last = new[-1]
            emit()
            if any(t in eos_ids for t in new):
                break
    result.tokens = _finish(out, eos_ids, max_new_tokens)
    result.wall_seconds = time.perf_counter() - start_time
    return result
