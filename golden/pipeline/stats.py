"""Bits per value of a real model in Cassandra format (``cassandra-sd stats``).

Every 2-D weight whose input dimension is a multiple of the group size is
selected (per-group magnitude top-k), encoded with the golden codec, and the
exact stream sizes are summed per tensor kind. Beside the unary code's average
length it reports the exponent entropy of the kept values (per tensor, since
each tensor has its own codebook), the bound a per-tensor entropy coder could
reach.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from golden.format.codec import bf16_bits, encode
from golden.format.params import SPECULATION_STREAMS, STREAM_NAMES, VERIFICATION_STREAMS, FormatParams, keep_count
from golden.format.select import magnitude_topk_mask
from golden.llm.model_files import LINEAR_KINDS, iter_model_tensors

__all__ = ["TensorStats", "model_stats", "summarize", "format_table"]


@dataclass
class TensorStats:
    """Sizes of one encoded tensor (or a sum of them)."""

    kind: str
    tensors: int = 0
    values: int = 0
    kept: int = 0
    stream_bits: dict = field(default_factory=lambda: {n: 0 for n in STREAM_NAMES})
    stored_bits: int = 0
    entropy_bits: float = 0.0  # sum over tensors of kept * H(exponent of kept values)
    entropy_all_bits: float = 0.0  # sum over tensors of values * H(exponent of all values)
    escapes: int = 0
    source_dtypes: set = field(default_factory=set)

    def add(self, other: "TensorStats") -> None:
        self.tensors += other.tensors
        self.values += other.values
        self.kept += other.kept
        for n in STREAM_NAMES:
            self.stream_bits[n] += other.stream_bits[n]
        self.stored_bits += other.stored_bits
        self.entropy_bits += other.entropy_bits
        self.entropy_all_bits += other.entropy_all_bits
        self.escapes += other.escapes
        self.source_dtypes |= other.source_dtypes

    @property
    def speculation_bpv(self) -> float:
        return sum(self.stream_bits[n] for n in SPECULATION_STREAMS) / self.values

    @property
    def verification_bpv(self) -> float:
        return sum(self.stream_bits[n] for n in VERIFICATION_STREAMS) / self.values

    @property
    def exponent_entropy(self) -> float:
        return self.entropy_bits / self.kept if self.kept else 0.0

    @property
    def exponent_entropy_all(self) -> float:
        return self.entropy_all_bits / self.values if self.values else 0.0

    @property
    def exponent_bits_per_kept(self) -> float:
        return self.stream_bits["exponent"] / self.kept if self.kept else 0.0


def _entropy(exponents: torch.Tensor) -> float:
    counts = torch.bincount(exponents, minlength=256).to(torch.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * torch.log2(p)).sum())


def tensor_stats(kind: str, x: torch.Tensor, params: FormatParams, prune_ratio: float) -> TensorStats:
    """Select, encode and measure one BF16 tensor."""
    keep = magnitude_topk_mask(x, keep=keep_count(params.group_size, prune_ratio), group_size=params.group_size)
    enc = encode(x, keep, params)
    all_exponents = (bf16_bits(x) >> 7) & 0xFF
    exponents = all_exponents[keep]
    s = TensorStats(kind=kind, tensors=1, values=x.numel(), kept=enc.num_kept)
    for n in STREAM_NAMES:
        s.stream_bits[n] = enc.payload_bits(n)
    s.stored_bits = enc.speculation_stored_bits + enc.verification_stored_bits
    s.entropy_bits = _entropy(exponents) * enc.num_kept
    s.entropy_all_bits = _entropy(all_exponents.reshape(-1)) * x.numel()
    if params.exponent_coding == "unary":
        in_codebook = torch.isin(exponents, enc.codebook)
        s.escapes = int((~in_codebook).sum())
    return s


def model_stats(
    path=None,
    params: FormatParams | None = None,
    *,
    prune_ratio: float = 0.4,
    layers: int | None = None,
    kinds: str = "all",
    progress: bool = True,
) -> tuple[list[TensorStats], list[str]]:
    """Measure every eligible tensor of a model file.

    Returns the per-tensor stats and the names of the tensors left out (with why).
    """
    from tqdm import tqdm

    params = FormatParams() if params is None else params
    if kinds not in ("all", "linear"):
        raise ValueError(f"kinds={kinds!r} must be 'all' or 'linear'")
    out, skipped = [], []
    bar = tqdm(iter_model_tensors(path), desc="encoding tensors", unit="tensor", disable=not progress, file=sys.stderr)
    for mt in bar:
        if layers is not None and mt.layer is not None and mt.layer >= layers:
            skipped.append(f"{mt.name} (outside --layers {layers})")
            continue
        if kinds == "linear" and mt.kind not in LINEAR_KINDS:
            skipped.append(f"{mt.name} (not a linear layer)")
            continue
        if mt.tensor.dim() != 2 or mt.tensor.shape[-1] % params.group_size:
            skipped.append(f"{mt.name} (shape {tuple(mt.tensor.shape)} not 2-D with a multiple of {params.group_size})")
            continue
        bar.set_postfix_str(mt.name)
        s = tensor_stats(mt.kind, mt.tensor, params, prune_ratio)
        s.source_dtypes.add(mt.source_dtype)
        out.append(s)
    return out, skipped


def summarize(per_tensor: list[TensorStats]) -> "OrderedDict[str, TensorStats]":
    """Sum per kind, in a fixed kind order, plus a ``total`` row."""
    order = ("embed_tokens", *LINEAR_KINDS, "lm_head")
    rows: OrderedDict[str, TensorStats] = OrderedDict()
    for kind in sorted({s.kind for s in per_tensor}, key=lambda k: (order.index(k) if k in order else 99, k)):
        rows[kind] = TensorStats(kind=kind)
    total = TensorStats(kind="total")
    for s in per_tensor:
        rows[s.kind].add(s)
        total.add(s)
    rows["total"] = total
    return rows


def format_table(rows, params: FormatParams, prune_ratio: float) -> str:
    coding = params.exponent_coding
    lines = [
        "| kind | tensors | values | speculation b/v | verification b/v | total b/v | draft reads vs BF16 "
        f"| exponent entropy, kept (all) | {coding} exponent bits/kept | escapes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, s in rows.items():
        name = f"**{kind}**" if kind == "total" else kind
        escapes = f"{100 * s.escapes / s.kept:.3f}%" if coding == "unary" and s.kept else "-"
        lines.append(
            f"| {name} | {s.tensors} | {s.values:,} | {s.speculation_bpv:.3f} | {s.verification_bpv:.3f} "
            f"| {s.speculation_bpv + s.verification_bpv:.3f} | {100 * s.speculation_bpv / 16:.1f}% "
            f"| {s.exponent_entropy:.3f} ({s.exponent_entropy_all:.3f}) | {s.exponent_bits_per_kept:.3f} | {escapes} |"
        )
    total = rows["total"]
    lines.append("")
    lines.append(
        f"Parameters: {prune_ratio:.0%} pruned (per-group magnitude top-k, {keep_count(params.group_size, prune_ratio)}"
        f" of {params.group_size} kept), {params.truncated_bits} mantissa bits truncated "
        f"(m={params.mantissa_bits} kept), exponent coding {coding}"
        + (f" (L_max={params.unary_max_code_length})" if coding == "unary" else "")
        + (f" (block {params.mx_block_size})" if coding == "mx" else "")
        + f", superblock {params.superblock_groups} groups."
    )
    lines.append(
        "b/v = payload bits per original value (exact stream sizes, no padding); with container padding "
        f"and offsets the total is {total.stored_bits / total.values:.3f} b/v of streams."
    )
    return "\n".join(lines)


def exponent_entropy_note() -> str:
    return (
        "Exponent entropy: Shannon entropy of the kept values' exponents (in brackets: of all values' "
        "exponents), per tensor, averaged weighted by the number of exponents; the paper reports ~2.6 bits (weights, 8B models) and ~2.85 "
        "bits/exponent for unary."
    )


def float_summary(rows) -> dict:
    """Machine-readable summary (for --json)."""
    return {
        kind: {
            "tensors": s.tensors,
            "values": s.values,
            "kept": s.kept,
            "stream_bits": dict(s.stream_bits),
            "speculation_bits_per_value": s.speculation_bpv,
            "verification_bits_per_value": s.verification_bpv,
            "exponent_entropy_bits": s.exponent_entropy,
            "exponent_entropy_all_values_bits": s.exponent_entropy_all,
            "exponent_bits_per_kept": s.exponent_bits_per_kept,
            "escape_fraction": s.escapes / s.kept if s.kept else 0.0,
            "source_dtypes": sorted(s.source_dtypes),
        }
        for kind, s in rows.items()
    }
