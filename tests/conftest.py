"""Shared test configuration and fixtures.

``tests/`` mirrors the source tree (``format/``, ``llm/``, ``pipeline/``, ``hw/``,
``sim/``, ``fpga/``, ``bench/``) and is a package: helpers are imported as
``tests.samples``, ``tests.tiny_model``, ``tests.format.reference``.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("default")

# the pipeline's disk cache (golden/pipeline/cache.py): one folder inside the checkout that
# every test process shares (two builds of the same pipeline in one run encode it once),
# not the user's ~/.cache; `make clean` removes it
os.environ.setdefault("CASSANDRA_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(__file__)), "build",
                                                          "test-cache"))

# pytest-xdist workers (`make test` runs two) share the machine's cores: each gets its share
# of them as torch threads (and OpenMP threads for the processes it starts). Torch's default,
# a thread per core in every worker, oversubscribes them: on the 2-core VM the suite took
# 19.6 min that way and 12.6 min with one thread per worker.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

#: the real-weight tiles the RTL suites use: tensor name -> rows, columns
SMOLLM2_TILES = {
    "blk.0.ffn_down.weight": (4, 512),
    "blk.0.attn_k.weight": (4, 512),
    "blk.0.ffn_gate.weight": (2, 512),
}


@pytest.fixture(scope="session")
def smollm2_tiles():
    """Tiles of real SmolLM2-135M weights (the default GGUF, as BF16), read once:
    tensor name -> the top-left ``SMOLLM2_TILES[name]`` corner."""
    from golden.llm.model_files import iter_model_tensors

    tiles = {}
    for tensor in iter_model_tensors():
        if tensor.name in SMOLLM2_TILES:
            rows, cols = SMOLLM2_TILES[tensor.name]
            tiles[tensor.name] = tensor.tensor[:rows, :cols].clone()
        if len(tiles) == len(SMOLLM2_TILES):
            break
    return tiles
