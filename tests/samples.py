"""Test inputs shared by the suites (one place): special BF16 patterns and
weight-like tensors. The real SmolLM2-135M tiles are the ``smollm2_tiles``
fixture in ``tests/conftest.py``; the tiny Llama checkpoint is ``tests/tiny_model.py``."""

from __future__ import annotations

import torch

from golden.format.codec import bf16_from_bits

__all__ = ["SPECIAL_PATTERNS", "special_values", "weights"]

#: BF16 patterns that stress the format: NaNs with payloads, infinities, signed
#: zeros, subnormals, the largest finite values, and repeated magnitudes (ties).
SPECIAL_PATTERNS = (
    0x7FC0, 0xFFC1, 0x7F81, 0xFFFF,  # NaN (quiet, negative with payload, signalling, all ones)
    0x7F80, 0xFF80,  # +-Inf
    0x0000, 0x8000,  # +-0
    0x0001, 0x8001, 0x007F, 0x0040, 0x00FF,  # subnormals
    0x0080, 0x8080,  # smallest normals
    0x7F7F, 0xFF7F,  # largest finite
    0x3F80, 0xBF80, 0x3F80, 0x3F81,  # 1, -1, 1 again (a tie), just above 1
)


def special_values(count: int, seed: int, *, fraction: float = 0.6) -> torch.Tensor:
    """``count`` BF16 values, each one of :data:`SPECIAL_PATTERNS` with probability
    ``fraction`` and any 16-bit pattern otherwise (1-D, reproducible from ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    random_bits = torch.randint(0, 1 << 16, (count,), generator=generator)
    pick = torch.randint(0, len(SPECIAL_PATTERNS), (count,), generator=generator)
    use_special = torch.rand(count, generator=generator) < fraction
    return bf16_from_bits(torch.where(use_special, torch.tensor(SPECIAL_PATTERNS)[pick], random_bits))


def weights(rows: int, cols: int, seed: int, scale: float = 0.05) -> torch.Tensor:
    """Weight-like BF16 values: normal with standard deviation ``scale``."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, cols, generator=generator) * scale).to(torch.bfloat16)
