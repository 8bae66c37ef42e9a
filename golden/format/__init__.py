"""The Cassandra format's bit-exact reference (docs/FORMAT.md).

* :mod:`golden.format.params`: :class:`FormatParams` and the field widths, the one
  definition shared by the golden model, the RTL (``hw/``) and the testbenches. It
  imports nothing heavy (no torch, no numpy), so ``hw/`` can use it alone.
* :mod:`golden.format.bitstream`: packing fields into 64-bit-aligned superblocks.
* :mod:`golden.format.layout`: where each stream's fields lie, read and checked
  (unary exponent codes, mx low bits); :class:`CassandraFormatError`.
* :mod:`golden.format.container`: :class:`EncodedTensor` and its container bytes
  (its strict reader checks the structure with ``layout``).
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
    **dict.fromkeys(("DRAFT_ROUNDINGS", "EXPONENT_CODINGS", "SPECULATION_STREAMS", "STREAM_NAMES",
                     "VERIFICATION_STREAMS", "FormatParams", "keep_count", "mantissa_bits_kept"), "golden.format.params"),
    "CassandraFormatError": "golden.format.layout",
    "EncodedTensor": "golden.format.container",
    **dict.fromkeys(("DECODE_MODES", "bf16_bits", "bf16_from_bits", "decode", "decode_bitmap",
                     "encode", "payload_bits", "round_draft_bits", "unary_codebook"), "golden.format.codec"),
    **dict.fromkeys(("activation_l2_norm", "magnitude_topk_mask", "wanda_topk_mask"), "golden.format.select"),
}

__all__ = sorted(EXPORTS)


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for a package that re-exports ``exports`` (name ->
    defining module) lazily, as PEP 562 allows: a name's module is imported on the
    name's first use. ``golden``, ``golden.format`` and ``golden.pipeline`` use it."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__


__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
