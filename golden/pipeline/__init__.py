"""Cassandra on an LLM: the format (:mod:`golden.format`) applied to a model
(:mod:`golden.llm`).

* :mod:`golden.pipeline.encoded_model`: weights and the KV cache stored only in
  Cassandra format (draft and full views), calibration (Wanda norms, KV codebooks).
* :mod:`golden.pipeline.pipeline`: :class:`Pipeline` / :class:`PipelineConfig`: a
  model in Cassandra format, speculative generation and the lossless check.
* :mod:`golden.pipeline.stats`: bits per value of a model file (``cassandra-sd stats``).
* :mod:`golden.pipeline.vectors`: RTL test vectors from a real run (``export-vectors``).
* :mod:`golden.pipeline.export`: a checkpoint's weights as containers on disk (``encode``).
* :mod:`golden.pipeline.cli`: the ``cassandra-sd`` command line.

``Pipeline``, ``PipelineConfig`` and ``RunReport`` resolve lazily from here (so the
command line starts without importing torch).
"""

from __future__ import annotations

from golden.format import lazy_exports as _lazy_exports

_EXPORTS = dict.fromkeys(("Pipeline", "PipelineConfig", "RunReport"), "golden.pipeline.pipeline")

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
