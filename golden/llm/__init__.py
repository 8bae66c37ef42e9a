"""A small, format-agnostic LLM stack for the pipeline (docs/PIPELINE.md).

* :mod:`golden.llm.model_files`: GGUF and safetensors readers (tensors as BF16,
  one table of tensor names).
* :mod:`golden.llm.llama`: the Llama forward pass over a weight mapping and a KV
  cache (any object with the cache interface, so the Cassandra-encoded one too).
* :mod:`golden.llm.tokenizer`: the tokenizer and chat template from a GGUF file or
  a checkpoint folder.
* :mod:`golden.llm.speculative`: plain and speculative generation (greedy and
  lossless rejection sampling) over any draft/target pair.
* :mod:`golden.llm.datasets`: the built-in calibration texts and HumanEval prompts.

This package knows nothing of the Cassandra format: it imports nothing of
``golden.format`` or ``golden.pipeline``.
"""
