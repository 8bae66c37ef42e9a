"""A disk cache for the slow steps of building a pipeline: calibration, encoding the
weights and decoding the draft and full views.

An entry's key covers everything its content depends on: the model file's SHA-256
(every file of a checkpoint folder), the settings (format parameters, pruning,
selector, calibration samples, draft rounding), and the SHA-256 of the source files
that compute it (the format, the model reader and forward pass, the calibration texts,
the pipeline's encoding), so editing the code or the model never serves a stale
entry. Entries are written to a temporary name and renamed, so two processes that
build the same entry at once leave one whole file.

The folder is ``$CASSANDRA_CACHE_DIR``, else ``~/.cache/cassandra``;
``cassandra-sd generate --cache-dir DIR`` chooses another and ``--no-cache`` turns
the cache off. ``make clean`` does not touch it; delete the folder to empty it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["CACHE_ENV", "DiskCache", "default_cache_dir", "file_sha256", "model_digest", "code_digest"]

CACHE_ENV = "CASSANDRA_CACHE_DIR"

#: Source files whose code decides what the cache holds (relative to the project root):
#: every module of the format (a new one counts without being listed), and these.
_SOURCES = (
    "golden/llm/datasets.py", "golden/llm/llama.py", "golden/llm/model_files.py", "golden/llm/tokenizer.py",
    "golden/pipeline/encoded_model.py", "golden/pipeline/cache.py",
)


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cassandra")


def _file_sha256(path: Path, digest=None):
    digest = digest or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest


def file_sha256(path) -> str:
    """SHA-256 of one file, hex (read in chunks)."""
    return _file_sha256(Path(path)).hexdigest()


def model_digest(path) -> str:
    """SHA-256 of a model file, or of every file of a checkpoint folder (names and bytes)."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(file.name.encode() + b"\0")
            _file_sha256(file, digest)
        return digest.hexdigest()
    return file_sha256(path)


def code_digest() -> str:
    root = Path(__file__).resolve().parents[2]
    names = sorted(p.relative_to(root).as_posix() for p in (root / "golden" / "format").glob("*.py"))
    digest = hashlib.sha256()
    for name in names + list(_SOURCES):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()


class DiskCache:
    """Entries by kind and key under ``folder`` (``None``: a cache that holds nothing)."""

    def __init__(self, folder=None, *, log=None):
        self.folder = None if folder is None else Path(folder)
        self.log = log or (lambda message: None)
        self._code = code_digest() if folder is not None else ""

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def key(self, **fields) -> str:
        text = json.dumps({**fields, "code": self._code}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _path(self, kind: str, key: str) -> Path:
        return self.folder / kind / f"{key}.pt"

    def load(self, kind: str, key: str):
        """The entry, or ``None`` (no entry, the cache is off, or the file does not load)."""
        if not self.enabled:
            return None
        path = self._path(kind, key)
        if not path.exists():
            return None
        import torch

        try:
            value = torch.load(path, weights_only=False)
        except Exception as error:  # a damaged entry is rebuilt, not fatal
            self.log(f"cache entry {path} does not load ({type(error).__name__}); rebuilding it")
            return None
        self.log(f"{kind}: from the cache ({path})")
        return value

    def save(self, kind: str, key: str, value) -> None:
        if not self.enabled:
            return
        import torch

        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(value, tmp)
        os.replace(tmp, path)
