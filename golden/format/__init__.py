"""The Cassandra format's bit-exact reference (docs/FORMAT.md).

* :mod:`golden.format.params`: :class:`FormatParams` and the field widths, the one
  definition shared by the golden model, the RTL (``hw/``) and the testbenches. It
  imports nothing heavy (no torch, no numpy), so ``hw/`` can use it alone.
* :mod:`golden.format.bitstream`: packing fields into 64-bit-aligned superblocks.
* :mod:`golden.format.container`: :class:`EncodedTensor` and its container bytes.
* :mod:`golden.format.codec`: ``encode``, ``decode`` (draft or full), exact bit counts.
* :mod:`golden.format.select`: which values the speculation data keeps (magnitude
  top-k with its tie rule, Wanda).

This package imports nothing outside itself. Its public names resolve lazily
(PEP 562), so ``import golden.format`` does not import torch until a name that
needs it (``encode``, ``EncodedTensor``, ...) is used.
"""

from __future__ import annotations

import importlib

#: public name -> the module that defines it
EXPORTS = {
    **dict.fromkeys(("EXPONENT_CODINGS", "SPECULATION_STREAMS", "STREAM_NAMES", "VERIFICATION_STREAMS",
                     "FormatParams", "keep_count", "mantissa_bits_kept"), "golden.format.params"),
    **dict.fromkeys(("CassandraFormatError", "EncodedTensor"), "golden.format.container"),
    **dict.fromkeys(("DECODE_MODES", "bf16_bits", "bf16_from_bits", "decode", "decode_bitmap", "encode",
                     "payload_bits", "unary_codebook"), "golden.format.codec"),
    **dict.fromkeys(("activation_l2_norm", "magnitude_topk_mask", "wanda_topk_mask"), "golden.format.select"),
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
