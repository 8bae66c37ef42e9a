"""Cassandra on an LLM: the format (:mod:`golden.format`) applied to a model
(:mod:`golden.llm`).

* :mod:`golden.pipeline.encoded_model`: weights and the KV cache stored only in
  Cassandra format (draft and full views), calibration (Wanda norms, KV codebooks).
* :mod:`golden.pipeline.pipeline`: :class:`Pipeline` / :class:`PipelineConfig`: a
  model in Cassandra format, speculative generation and the lossless check.
* :mod:`golden.pipeline.stats`: bits per value of a model file (``cassandra-sd stats``).
* :mod:`golden.pipeline.vectors`: RTL test vectors from a real run (``export-vectors``).
* :mod:`golden.pipeline.cli`: the ``cassandra-sd`` command line.

``Pipeline``, ``PipelineConfig`` and ``RunReport`` resolve lazily from here (so the
command line starts without importing torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = dict.fromkeys(("Pipeline", "PipelineConfig", "RunReport"), "golden.pipeline.pipeline")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
