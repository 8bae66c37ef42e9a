"""What a speculative round proposes: token trees, adaptive stops and n-gram lookup.

A round starts from the last committed token (the *root*, not yet in the KV
cache) and proposes a tree of draft tokens below it. A chain of ``gamma`` tokens
is the tree whose every level has one child.

* :class:`DraftPolicy` says how the tree is grown: a static shape
  (``"2x2x2"``: two children per node on each of three levels), a dynamic tree
  (``"dynamic:16"``: the most probable nodes, EAGLE-2 style, up to a node
  budget), an adaptive stop (a node is not expanded once its probability falls
  below ``threshold``), and n-gram lookup (prompt lookup: the longest suffix of
  the context that occurred before proposes what followed it), alone, gated
  (lookup when it finds a match, else the draft model) or as one more branch.
* :class:`DraftTree` holds the nodes and, per node, its *trials*: the candidate
  tokens in the order the verifier tries them, each with the distribution it was
  drawn from (a draft model's, or ``None`` for a deterministic proposal such as
  lookup or greedy top-k). Sampling verification runs recursive rejection
  sampling over a node's trials, which is lossless when each trial is an
  independent draw from its distribution (SpecInfer's multi-draft rule).
* :func:`ngram_lookup` and :func:`tree_attention_mask` are the building blocks.

Nothing here runs a model; :mod:`golden.llm.speculative` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

__all__ = ["DraftPolicy", "DraftTree", "ngram_lookup", "parse_tree", "tree_attention_mask", "LOOKUP_MODES"]

#: ``off``: the draft model only; ``alone``: lookup only (no draft model); ``gated``:
#: lookup when it finds a match, else the draft model; ``branch``: lookup's proposal
#: as one more branch of the draft model's tree.
LOOKUP_MODES = ("off", "alone", "gated", "branch")


def parse_tree(text: str) -> tuple[str, tuple[int, ...] | int]:
    """``"2x2x2"`` -> ``("static", (2, 2, 2))``; ``"dynamic:16"`` -> ``("dynamic", 16)``.

    Raises ``ValueError`` naming the text for anything else.
    """
    text = str(text).strip()
    m = re.fullmatch(r"dynamic:(\d+)", text)
    if m:
        budget = int(m.group(1))
        if not 1 <= budget <= 256:
            raise ValueError(f"tree={text!r}: the node budget must be 1..256")
        return "dynamic", budget
    if re.fullmatch(r"\d+(x\d+)*", text):
        widths = tuple(int(w) for w in text.split("x"))
        if any(not 1 <= w <= 16 for w in widths) or len(widths) > 16:
            raise ValueError(f"tree={text!r}: each level needs 1..16 children, at most 16 levels")
        nodes, level = 0, 1
        for w in widths:
            level *= w
            nodes += level
        if nodes > 256:
            raise ValueError(f"tree={text!r} has {nodes} nodes; at most 256")
        return "static", widths
    raise ValueError(f"tree={text!r}: expected a shape such as '2x2x2' (children per level) or 'dynamic:N' "
                     f"(a budget of N nodes)")


@dataclass(frozen=True)
class DraftPolicy:
    """How a round's draft tree is grown.

    Parameters
    ----------
    gamma : int
        The longest path (draft tokens per round): the chain length, the depth of a
        dynamic tree, the longest lookup proposal. A static tree's depth is its shape's.
    tree : str or None
        ``None``: a chain. ``"2x2x2"``: a static tree. ``"dynamic:N"``: up to N nodes,
        grown from the most probable ones (``width`` nodes expanded per level, each
        with ``width`` children).
    threshold : float
        Adaptive stop: a node is not expanded when its probability is below this
        (the draft's probability of the token in a chain, the product along the path
        in a tree). 0 never stops early.
    lookup : str
        One of :data:`LOOKUP_MODES`.
    lookup_min, lookup_max : int
        The shortest and longest context suffix lookup matches.
    width : int
        Dynamic trees: nodes expanded per level and children per expanded node.
    """

    gamma: int = 5
    tree: str | None = None
    threshold: float = 0.0
    lookup: str = "off"
    lookup_min: int = 2
    lookup_max: int = 4
    width: int = 4

    def __post_init__(self):
        if not isinstance(self.gamma, int) or not 1 <= self.gamma <= 64:
            raise ValueError(f"gamma={self.gamma!r} must be an integer 1..64")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold!r} must be in [0, 1)")
        if self.lookup not in LOOKUP_MODES:
            raise ValueError(f"lookup={self.lookup!r} is not one of {LOOKUP_MODES}")
        if not 1 <= self.lookup_min <= self.lookup_max <= 64:
            raise ValueError(f"lookup_min={self.lookup_min}, lookup_max={self.lookup_max}: need 1 <= min <= max <= 64")
        if not 1 <= self.width <= 16:
            raise ValueError(f"width={self.width!r} must be 1..16")
        if self.tree is not None:
            parse_tree(self.tree)

    @property
    def kind(self) -> str:
        return "chain" if self.tree is None else parse_tree(self.tree)[0]

    @property
    def widths(self) -> tuple[int, ...]:
        """Children per level of a chain or static tree."""
        if self.tree is None:
            return (1,) * self.gamma
        kind, shape = parse_tree(self.tree)
        if kind != "static":
            raise ValueError(f"tree={self.tree!r} has no fixed shape")
        return shape

    @property
    def depth(self) -> int:
        """The longest path a round proposes."""
        return len(self.widths) if self.kind == "static" else self.gamma

    def max_nodes(self) -> int:
        """The most draft tokens a round can propose (KV slots to reserve)."""
        if self.lookup == "alone":
            return self.gamma
        if self.tree is None:
            nodes = self.gamma
        else:
            kind, shape = parse_tree(self.tree)
            if kind == "dynamic":
                nodes = max(shape, self.width * self.width * self.gamma)
            else:
                nodes, level = 0, 1
                for w in shape:
                    level *= w
                    nodes += level
        return nodes + (self.gamma if self.lookup in ("branch", "gated") else 0)

    def describe(self) -> str:
        parts = [f"chain gamma {self.gamma}" if self.tree is None else f"tree {self.tree}"]
        if self.tree is not None and self.kind == "dynamic":
            parts.append(f"depth {self.gamma}, width {self.width}")
        if self.threshold:
            parts.append(f"stop below p {self.threshold:g}")
        if self.lookup != "off":
            parts.append(f"lookup {self.lookup} (n {self.lookup_min}..{self.lookup_max})")
        return ", ".join(parts)


def ngram_lookup(context, *, max_tokens: int, min_match: int = 2, max_match: int = 4) -> list[int]:
    """Prompt lookup: the continuation after the most recent earlier occurrence of the
    longest suffix of ``context`` (``max_match`` down to ``min_match`` tokens).

    Returns ``max_tokens`` tokens, or ``[]`` when no suffix of at least
    ``min_match`` tokens occurred before. A continuation that reaches the end of
    the context goes on with the tokens it proposed (an LZ77-style overlapping
    copy), so a repeating pattern is proposed as far as asked.
    """
    ctx = list(context)
    n_ctx = len(ctx)
    for n in range(min(max_match, n_ctx - 1), min_match - 1, -1):
        suffix = ctx[n_ctx - n:]
        # the most recent occurrence that ends before the suffix itself starts repeating at the end
        for end in range(n_ctx - 1, n - 1, -1):
            if ctx[end - n:end] == suffix:
                out = []
                for i in range(max_tokens):
                    j = end + i
                    out.append(ctx[j] if j < n_ctx else out[j - n_ctx])
                return out
    return []


@dataclass
class DraftTree:
    """Nodes below the root (node 0, the last committed token).

    ``trials[i]`` lists node ``i``'s candidate children in the order the verifier
    tries them: ``(token, distribution)``, the distribution the token was drawn
    from (a float64 probability vector) or ``None`` for a deterministic proposal.
    A trial's token is a node of the tree (``child(i, token)``) when it is to be
    verified; a trial without a node can still be accepted (the round then ends
    without a bonus token).
    """

    tokens: list[int]
    parents: list[int] = field(default_factory=lambda: [-1])
    depths: list[int] = field(default_factory=lambda: [0])
    probs: list[float] = field(default_factory=lambda: [1.0])  # cumulative draft probability
    trials: list[list] = field(default_factory=lambda: [[]])
    children: list[dict] = field(default_factory=lambda: [{}])

    @classmethod
    def root(cls, token: int) -> "DraftTree":
        return cls(tokens=[int(token)])

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def proposed(self) -> int:
        """Draft tokens to verify (nodes below the root)."""
        return len(self.tokens) - 1

    def child(self, node: int, token: int) -> int | None:
        return self.children[node].get(int(token))

    def add(self, parent: int, token: int, prob: float = 0.0) -> int:
        """The child of ``parent`` with ``token`` (made if new); returns its index."""
        token = int(token)
        existing = self.children[parent].get(token)
        if existing is not None:
            self.probs[existing] = max(self.probs[existing], prob)
            return existing
        index = len(self.tokens)
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1)
        self.probs.append(prob)
        self.trials.append([])
        self.children.append({})
        self.children[parent][token] = index
        return index

    def path(self, node: int) -> list[int]:
        """Nodes from the root's first child down to ``node``."""
        out = []
        while node > 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def ancestors_or_self(self, node: int) -> set[int]:
        return set(self.path(node)) | {0}

    def prune_to(self, keep) -> "DraftTree":
        """A tree of the root and ``keep`` (closed under parents), trials kept whole
        (a trial whose node is dropped stays a trial without a node)."""
        keep = set(keep)
        for node in list(keep):
            keep |= self.ancestors_or_self(node)
        out = DraftTree.root(self.tokens[0])
        index = {0: 0}
        for node in range(1, len(self.tokens)):  # parents come before children
            if node in keep:
                index[node] = out.add(index[self.parents[node]], self.tokens[node], self.probs[node])
        for node, new in index.items():
            out.trials[new] = list(self.trials[node])
        return out

    def insert_chain(self, tokens) -> None:
        """Add a deterministic proposal (lookup) as a branch from the root, tried first."""
        node = 0
        for token in tokens:
            if all(t != token or d is not None for t, d in self.trials[node]):
                self.trials[node].insert(0, (int(token), None))
            node = self.add(node, token, self.probs[node] if node else 1.0)


def tree_attention_mask(tree: DraftTree, rows, slots: dict, context: int, end: int, device="cpu") -> torch.Tensor:
    """Attention mask ``[len(rows), end]`` for a forward over tree nodes ``rows``: every
    key before ``context`` (the committed cache), and among the round's keys
    (``slots[node]`` = cache slot of a node written earlier in the round or in this
    forward) the node's ancestors and itself."""
    mask = torch.zeros(len(rows), end, dtype=torch.bool)
    mask[:, :context] = True
    for r, node in enumerate(rows):
        for a in tree.ancestors_or_self(node):
            if a in slots:
                mask[r, slots[a]] = True
    return mask.to(device)
