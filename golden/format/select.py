"""Selectors: which values go into the speculation data.

Selection is not part of the format (``encode`` takes any keep mask); these are
the two selectors the project uses, with tie rules defined on bit patterns so
hardware can reproduce them exactly.

* :func:`magnitude_topk_mask` - per group of G values, keep the ``keep`` values
  of largest magnitude. Magnitude is the 15-bit integer ``bits & 0x7FFF``
  compared unsigned, so NaN (any payload) ranks above +-Inf, which ranks above
  every finite value; +0.0 and -0.0 are equal. Ties go to the lower index.
  This is what the hardware encoder does for the KV cache.
* :func:`wanda_topk_mask` - Wanda: score ``|W| * ||X||_2`` (per input channel),
  keep the ``keep`` largest scores of every output row. The score is the
  float32 product of ``|W|`` and the float32 norm; scores compare as float32
  (a NaN score ranks first); ties go to the lower index.
"""

from __future__ import annotations

import torch

from .codec import bf16_bits
from .params import keep_count

__all__ = ["magnitude_topk_mask", "wanda_topk_mask", "activation_l2_norm", "keep_count"]


def _check_keep(keep, size: int, what: str) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int):
        raise TypeError(f"keep must be an int (values kept per {what}), got {keep!r}")
    if not 0 <= keep <= size:
        raise ValueError(f"keep={keep} is out of range: a {what} has {size} values")
    return keep


def _topk_rows(keys: torch.Tensor, keep: int) -> torch.Tensor:
    """Mask of the ``keep`` largest keys per row; keys are made unique by index."""
    rows, width = keys.shape
    index = torch.arange(width, dtype=torch.int64)
    unique = keys.to(torch.int64) * width + (width - 1 - index)
    mask = torch.zeros(rows, width, dtype=torch.bool)
    if keep:
        top = torch.topk(unique, keep, dim=1, sorted=False).indices
        mask.scatter_(1, top, True)
    return mask


def magnitude_topk_mask(x: torch.Tensor, *, keep: int, group_size: int) -> torch.Tensor:
    """Per-group magnitude top-k on BF16 bit patterns.

    Parameters
    ----------
    x : torch.Tensor
        bfloat16; the last dimension a multiple of ``group_size``.
    keep : int
        Values kept per group (``keep_count(group_size, prune_ratio)``).
    group_size : int

    Returns
    -------
    torch.Tensor
        bool mask of ``x.shape``.
    """
    if not isinstance(x, torch.Tensor) or x.dtype != torch.bfloat16:
        raise TypeError(f"x must be a torch.bfloat16 tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size={group_size!r} must be a positive int")
    if x.dim() == 0 or x.shape[-1] % group_size:
        raise ValueError(
            f"x.shape={tuple(x.shape)}: the last dimension is not a multiple of group_size={group_size}"
        )
    _check_keep(keep, group_size, "group")
    magnitude = bf16_bits(x.detach().cpu()) & 0x7FFF
    return _topk_rows(magnitude.reshape(-1, group_size), keep).reshape(x.shape)


def activation_l2_norm(activations: torch.Tensor) -> torch.Tensor:
    """Wanda's ``||X||_2`` per input channel: the L2 norm over every row of ``activations[..., in]``.

    Accumulated in float64, returned as float32.
    """
    if not isinstance(activations, torch.Tensor) or not activations.is_floating_point():
        raise TypeError("activations must be a floating-point torch.Tensor")
    flat = activations.detach().cpu().reshape(-1, activations.shape[-1]).to(torch.float64)
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("activations contain NaN or Inf; calibration data must be finite")
    return flat.pow(2).sum(0).sqrt().to(torch.float32)


def wanda_topk_mask(weight: torch.Tensor, activation_norm: torch.Tensor, *, keep: int) -> torch.Tensor:
    """Wanda top-k per output row.

    Parameters
    ----------
    weight : torch.Tensor
        ``[out_features, in_features]``, bfloat16 (or any float dtype).
    activation_norm : torch.Tensor
        ``[in_features]``, finite and non-negative (:func:`activation_l2_norm`).
    keep : int
        Values kept per output row.
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point() or weight.dim() != 2:
        raise ValueError("weight must be a 2-D floating-point tensor [out_features, in_features]")
    norm = torch.as_tensor(activation_norm).detach().cpu().to(torch.float32).reshape(-1)
    if norm.numel() != weight.shape[1]:
        raise ValueError(
            f"activation_norm has {norm.numel()} entries; weight has {weight.shape[1]} input channels"
        )
    if not bool(torch.isfinite(norm).all()) or bool((norm < 0).any()):
        raise ValueError("activation_norm must be finite and non-negative")
    _check_keep(keep, weight.shape[1], "row")
    score = weight.detach().cpu().to(torch.float32).abs() * norm
    # non-negative float32 (and positive NaN) order like their int32 bit patterns
    keys = torch.where(torch.isnan(score), 0x7FC00000, score.view(torch.int32).to(torch.int64))
    return _topk_rows(keys, keep)
