"""Golden (bit-exact reference) model of the Cassandra format and pipeline.

Three packages, each one idea (docs/ARCHITECTURE.md):

* :mod:`golden.format`: the format itself (parameters, bit streams, container,
  codec, selection). It imports nothing else of the project.
* :mod:`golden.llm`: a Llama forward pass, model-file readers, the tokenizer and
  the format-agnostic speculative decoding loop. It knows nothing of the format.
* :mod:`golden.pipeline`: Cassandra on an LLM: encoded weights and KV cache,
  calibration, the pipeline, statistics, test vectors and the ``cassandra-sd``
  command line.

The format's public names are re-exported here and resolved lazily, so that
``import golden`` (and ``hw/``, which needs only ``golden.format.params``) does
not import torch:

>>> import torch
>>> from golden import FormatParams, encode, decode, magnitude_topk_mask, keep_count
>>> x = torch.randn(4, 128).to(torch.bfloat16)
>>> params = FormatParams(group_size=64, mantissa_bits=3, exponent_coding="unary")
>>> mask = magnitude_topk_mask(x, keep=keep_count(64, 0.4), group_size=64)
>>> enc = encode(x, mask, params)
>>> bool((decode(enc, "full").view(torch.int16) == x.view(torch.int16)).all())
True
"""

from __future__ import annotations

from .format import EXPORTS as _FORMAT_EXPORTS
from .format import lazy_exports as _lazy_exports

__all__ = sorted(_FORMAT_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _FORMAT_EXPORTS)
