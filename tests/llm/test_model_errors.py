"""Model files that cannot be read (empty, truncated, corrupt, random bytes; GGUF and
safetensors; a broken config.json) give one ModelFileError naming the file and what
is wrong, never a traceback from gguf, safetensors or numpy; the CLI prints it as one
line and exits 2."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from golden.llm.llama import load_checkpoint, load_config
from golden.llm.model_files import ModelFileError, default_model_path
from golden.llm.tokenizer import load_tokenizer
from golden.pipeline.cli import main
from tests.tiny_model import make_tiny_checkpoint


@pytest.fixture(scope="module")
def gguf_bytes() -> bytes:
    return default_model_path().read_bytes()


def _gguf(tmp_path, name, content) -> Path:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(content)
    return path


GGUF_CASES = {
    "empty": (lambda data: b"", r"is empty \(0 bytes\): not a GGUF file"),
    "random": (lambda data: bytes(range(256)) * 64, "is not a GGUF file: it starts with"),
    "header cut": (lambda data: data[:1000], "is a truncated or corrupt GGUF file"),
    "last bytes cut": (lambda data: data[:-100], "is a truncated or corrupt GGUF file"),
    "magic then junk": (lambda data: b"GGUF" + bytes(range(7, 255)) * 8, "is a truncated or corrupt GGUF file"),
}


@pytest.mark.parametrize("case", GGUF_CASES)
def test_bad_gguf(tmp_path, gguf_bytes, case, capsys):
    make, message = GGUF_CASES[case]
    path = _gguf(tmp_path, case.replace(" ", "_"), make(gguf_bytes))
    # a whole header takes seconds to parse (49,152 tokenizer strings): one reader then
    for read in (load_config, load_checkpoint, load_tokenizer) if case != "last bytes cut" else (load_config,):
        with pytest.raises(ModelFileError, match=message) as info:
            read(path)
        assert str(path) in str(info.value)
    assert main(["generate", "--model", str(path), "--prompt", "hi", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model file") and str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bad"))


SAFETENSORS_CASES = {
    "empty": (lambda data: b"", r"is empty \(0 bytes\): not a safetensors file"),
    "random": (lambda data: os.urandom(4096), "is not a readable safetensors file"),
    "header cut": (lambda data: data[:20], "is not a readable safetensors file"),
    "data cut": (lambda data: data[:len(data) // 2], "is not a readable safetensors file"),
}


@pytest.mark.parametrize("case", SAFETENSORS_CASES)
def test_bad_safetensors(tmp_path, tiny, case, capsys):
    make, message = SAFETENSORS_CASES[case]
    folder = tmp_path / "model"
    shutil.copytree(tiny, folder)
    file = next(folder.glob("*.safetensors"))
    file.write_bytes(make(file.read_bytes()))
    with pytest.raises(ModelFileError, match=message) as info:
        load_checkpoint(folder)
    assert str(file) in str(info.value)
    assert main(["generate", "--model", str(folder), "--prompt", "hi", "--group-size", "16", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: model file {file}") and "Traceback" not in err


@pytest.mark.parametrize("content", ["{ not json", '{"hidden_size": 64}', ""])
def test_bad_config_json(tmp_path, tiny, content):
    folder = tmp_path / "model"
    shutil.copytree(tiny, folder)
    (folder / "config.json").write_text(content)
    with pytest.raises(ModelFileError, match="config.json: not a readable Llama config.json"):
        load_config(folder)


def test_a_rewritten_gguf_is_read_again(tmp_path, gguf_bytes):
    """open_gguf shares a reader between the model, its config and its tokenizer, but
    never for a file that changed since: a cut copy in place of a whole one fails."""
    from golden.llm.model_files import open_gguf

    path = _gguf(tmp_path, "model", gguf_bytes)
    first = open_gguf(path)
    assert open_gguf(path) is first
    assert load_config(path).num_hidden_layers == 30
    path.write_bytes(gguf_bytes[:-100])
    with pytest.raises(ModelFileError, match="truncated"):
        open_gguf(path)
    path.write_bytes(gguf_bytes)
    assert open_gguf(path) is not first  # a new file (new mtime), read again
