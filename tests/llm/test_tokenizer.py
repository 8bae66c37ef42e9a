"""Tests for golden.llm.tokenizer against transformers' tokenizers (offline).

Ground truth
------------
* ``hf_gguf``: transformers' own tokenizer built from the default GGUF,
  ``AutoTokenizer.from_pretrained(folder, gguf_file=name)``, offline.
* ``hf_smollm2``: the same tokenizer saved with ``save_pretrained`` and
  reloaded by transformers after setting ``tokenizer.json``'s pre-tokenizer
  to the one SmolLM2's own checkpoint ships,
  ``Sequence[Digits(individual_digits=True), ByteLevel]``.  transformers 5.23's
  GGUF converter has no entry for ``tokenizer.ggml.pre = "smollm"`` and falls
  back to plain GPT-2 ``ByteLevel``; the two differ only where two or more
  whitespace characters precede a digit.  Our tokenizer follows llama.cpp /
  the original checkpoint (checked independently by
  :func:`test_pre_tokenizer_matches_llama_cpp_smollm_regex`), so it must equal
  ``hf_smollm2`` everywhere and ``hf_gguf`` everywhere else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import gguf
import pytest
import regex

from golden.llm import model_files
from golden.llm.datasets import humaneval_prompts
from golden.llm.model_files import default_model_path
from golden.llm.tokenizer import Tokenizer, load_tokenizer

IM_START, IM_END, END_OF_TEXT = 1, 2, 0

MISC_TEXTS = [
    "",
    " ",
    "hello world",
    "12345 678",
    "3.14159, 2.71828 and 1e-9; v1.2.3",
    "x  =  1\ny\t\t= 22\n  333",
    "a    b\n\n\nc\t\td \t \n   ",
    "  leading spaces and trailing spaces   ",
    "\n\n\t\r\n",
    "I'm sure they'll say it's fine, don't you think? We've seen it.",
    "Café naïve résumé façade Ångström Œuvre",
    "日本語のテキスト 你好，世界！ 한국어 텍스트",
    "emoji 🙂👍🏽 👨‍👩‍👧 🇫🇷",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n  12 + 30?<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more<repo_name>x<|im_end|>",
    "def f(x):\n    return  42 * x  # answer\n",
]

USER_ONLY = [{"role": "user", "content": "What is 2 + 2?"}]
SYSTEM_USER = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name a prime number."},
]
MULTI_TURN = [
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello. How can I help?"},
    {"role": "user", "content": "Count  to 3."},
]

# SmolLM2's own tokenizer.json pre-tokenizer (HuggingFaceTB/SmolLM2-*)
SMOLLM2_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ],
}

# where plain GPT-2 ByteLevel and Digits+ByteLevel may split differently
_WHITESPACE_BEFORE_DIGIT = re.compile(r"\s\s\d")


HUMANEVAL = [prompt for _, prompt in humaneval_prompts(0, 40)]


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_offline():
    """Import transformers with the Hugging Face hub switched off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        import transformers

        yield transformers


@pytest.fixture(scope="module")
def hf_gguf(transformers_offline):
    path = default_model_path()
    return transformers_offline.AutoTokenizer.from_pretrained(
        str(path.parent), gguf_file=path.name, local_files_only=True
    )


@pytest.fixture(scope="module")
def saved_folder(hf_gguf, tmp_path_factory) -> Path:
    """transformers' GGUF tokenizer written by save_pretrained."""
    folder = tmp_path_factory.mktemp("hf_gguf_tokenizer")
    hf_gguf.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def smollm2_folder(saved_folder, tmp_path_factory) -> Path:
    """The saved folder with SmolLM2's original pre-tokenizer in tokenizer.json."""
    folder = tmp_path_factory.mktemp("smollm2_tokenizer")
    for item in saved_folder.iterdir():
        shutil.copy(item, folder / item.name)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"] = SMOLLM2_PRE_TOKENIZER
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def hf_smollm2(transformers_offline, smollm2_folder):
    return transformers_offline.AutoTokenizer.from_pretrained(str(smollm2_folder), local_files_only=True)


@pytest.fixture(scope="module")
def ours() -> Tokenizer:
    return load_tokenizer()


@pytest.fixture(scope="module")
def texts(ours) -> list[str]:
    rendered = [
        ours.apply_chat_template(messages, add_generation_prompt=True)
        for messages in (USER_ONLY, SYSTEM_USER, MULTI_TURN)
    ]
    return HUMANEVAL + MISC_TEXTS + rendered


def _mismatches(encode_a, encode_b, texts):
    return [(text[:60], a, b) for text in texts if (a := encode_a(text)) != (b := encode_b(text))]


# --- the default GGUF vs transformers ------------------------------------------


def test_transformers_builds_gguf_tokenizer_offline(hf_gguf):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert len(hf_gguf) == 49152
    assert hf_gguf.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<|endoftext|>"]) == [
        IM_START,
        IM_END,
        END_OF_TEXT,
    ]


def test_metadata_and_special_ids(ours, hf_gguf):
    assert ours.vocab_size == len(hf_gguf) == 49152
    assert ours.bos_token_id == hf_gguf.bos_token_id == IM_START
    assert ours.eos_token_id == hf_gguf.eos_token_id == IM_END
    assert ours.unk_token_id == hf_gguf.unk_token_id == END_OF_TEXT
    assert ours.pad_token_id == hf_gguf.pad_token_id == IM_END
    assert ours.bos_token == "<|im_start|>" and ours.eos_token == "<|im_end|>"
    for token, token_id in (("<|im_start|>", IM_START), ("<|im_end|>", IM_END), ("<|endoftext|>", END_OF_TEXT)):
        assert ours.encode(token) == [token_id]
        assert ours.token_to_id(token) == token_id
    # generation stops at the end of the turn (<|im_end|>) and at <|endoftext|>
    assert ours.eos_token_ids == {IM_END, END_OF_TEXT}
    assert ours.chat_template == hf_gguf.chat_template


def test_encode_matches_transformers_with_smollm2_pre_tokenizer(ours, hf_smollm2, texts):
    """Every text, same ids as transformers running SmolLM2's own pre-tokenizer."""
    bad = _mismatches(ours.encode, lambda t: hf_smollm2(t)["input_ids"], texts)
    assert not bad, bad[:3]


def test_encode_matches_transformers_gguf_conversion(ours, hf_gguf, texts):
    """Same ids as transformers' GGUF conversion wherever the pre-tokenizers agree."""
    agreeing = [t for t in texts if not _WHITESPACE_BEFORE_DIGIT.search(t)]
    assert len(agreeing) >= 40
    bad = _mismatches(ours.encode, lambda t: hf_gguf(t)["input_ids"], agreeing)
    assert not bad, bad[:3]


def test_known_divergence_from_transformers_gguf_conversion(ours, hf_gguf):
    """Whitespace run before a digit: llama.cpp/SmolLM2 keep the run whole."""
    assert ours.encode("  1") == [ours.token_to_id("ĠĠ"), ours.token_to_id("1")]
    assert hf_gguf("  1")["input_ids"] == [ours.token_to_id("Ġ"), ours.token_to_id("Ġ"), ours.token_to_id("1")]
    assert ours.encode("a\n  2") == [ours.token_to_id(t) for t in ("a", "ĊĠĠ", "2")]
    assert ours.encode("12345 678") == hf_gguf("12345 678")["input_ids"]
    assert ours.encode("12345 678") == [ours.token_to_id(c) for c in "12345"] + [
        ours.token_to_id("Ġ")
    ] + [ours.token_to_id(c) for c in "678"]


def test_pre_tokenizer_matches_llama_cpp_smollm_regex(ours, texts):
    r"""llama.cpp's "smollm" pre-tokenizer: split on \p{N}, then the GPT-2 regex."""
    gpt2 = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)")
    byte_char = _bytes_to_unicode()

    def llama_cpp_pieces(text: str) -> list[str]:
        pieces = []
        for chunk in regex.split(r"(\p{N})", text):
            position = 0
            for match in gpt2.finditer(chunk):
                if match.start() > position:  # llama.cpp keeps unmatched text as a piece
                    pieces.append(chunk[position : match.start()])
                pieces.append(match.group())
                position = match.end()
            if position < len(chunk):
                pieces.append(chunk[position:])
        return ["".join(byte_char[b] for b in piece.encode("utf-8")) for piece in pieces if piece]

    plain = [t for t in texts if "<|" not in t and "<repo_name>" not in t]
    assert len(plain) >= 50
    for text in plain:
        ours_pieces = [piece for piece, _ in ours.backend.pre_tokenizer.pre_tokenize_str(text)]
        assert ours_pieces == llama_cpp_pieces(text), text[:60]


def test_bos_convention(ours, hf_gguf):
    # SmolLM2's GGUF says add_bos_token = False; transformers agrees (no BOS added)
    assert ours.add_bos is False
    assert getattr(hf_gguf, "add_bos_token", False) is False
    assert hf_gguf("hello")["input_ids"] == ours.encode("hello") == ours.encode("hello", add_bos=False)
    assert ours.encode("hello", add_bos=True) == [IM_START, *ours.encode("hello")]


def test_decode_round_trip(ours, hf_gguf, texts):
    for text in texts:
        ids = ours.encode(text)
        assert ours.decode(ids) == text, text[:60]
    ids = ours.encode("<|im_start|>user\nhi<|im_end|>")
    assert ours.decode(ids, skip_special_tokens=True) == "user\nhi"
    assert ours.decode(ids, skip_special_tokens=True) == hf_gguf.decode(ids, skip_special_tokens=True)
    assert ours.decode(tuple(ids)) == ours.decode(ids)


@pytest.mark.parametrize(
    "messages", [USER_ONLY, SYSTEM_USER, MULTI_TURN], ids=["user", "system+user", "multi-turn"]
)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_transformers(ours, hf_gguf, messages, add_generation_prompt):
    expected = hf_gguf.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    got = ours.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    assert got == expected
    assert got.endswith("<|im_start|>assistant\n") == add_generation_prompt


BLOCKY_TEMPLATE = """{{ bos_token }}
{% set ns = namespace(count=0) %}
{% for message in messages %}
    {% if message['role'] == 'system' %}
        {% continue %}
    {% endif %}
    {% set ns.count = ns.count + 1 %}
    <{{ message['role'] }} n="{{ ns.count }}">
    {{ message | tojson }}
    </{{ message['role'] }}>
{% endfor %}
{% if add_generation_prompt %}
    <assistant>
{% endif %}
{{ eos_token }}"""


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_whitespace_control_matches_transformers(ours, hf_gguf, add_generation_prompt):
    """trim_blocks / lstrip_blocks, loop controls, namespace and tojson as in transformers."""
    messages = [*SYSTEM_USER, {"role": "assistant", "content": 'Say "<b>2</b>" & café'}]
    expected = hf_gguf.apply_chat_template(
        messages, chat_template=BLOCKY_TEMPLATE, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    tok = Tokenizer(ours.backend, bos_token_id=IM_START, eos_token_id=IM_END, chat_template=BLOCKY_TEMPLATE)
    assert tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt) == expected
    # indentation inside blocks is kept; tojson neither HTML-escapes nor ASCII-escapes
    assert '\n    <user n="1">\n' in expected
    assert 'Say \\"<b>2</b>\\" & café' in expected


def test_chat_template_default_system_prompt(ours):
    user_only = ours.apply_chat_template(USER_ONLY)
    assert user_only == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    )
    with_system = ours.apply_chat_template(SYSTEM_USER)
    assert with_system.startswith("<|im_start|>system\nYou are a terse assistant.<|im_end|>\n")
    assert "SmolLM" not in with_system


def test_format_prompt(ours):
    assert ours.format_prompt("What is 2 + 2?") == ours.apply_chat_template(USER_ONLY)
    assert ours.format_prompt("def f():", chat=False) == "def f():"
    ids = ours.encode(ours.format_prompt("hi"))
    assert ids[0] == IM_START and ids[-3:] == ours.encode("<|im_start|>assistant\n")[-3:]


def test_chat_template_raise_exception_helper(ours):
    import jinja2

    tok = Tokenizer(
        ours.backend,
        eos_token_id=IM_END,
        chat_template="{% if messages|length == 0 %}{{ raise_exception('empty chat') }}{% endif %}{{ eos_token }}",
    )
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "<|im_end|>"
    with pytest.raises(jinja2.exceptions.TemplateError, match="empty chat"):
        tok.apply_chat_template([])


# --- Hugging Face folders --------------------------------------------------------


def test_from_folder_matches_transformers(saved_folder, hf_gguf, texts):
    folder_tok = Tokenizer.from_folder(saved_folder)
    assert folder_tok.bos_token_id == IM_START and folder_tok.eos_token_id == IM_END
    assert folder_tok.add_bos is False
    assert IM_END in folder_tok.eos_token_ids
    bad = _mismatches(folder_tok.encode, lambda t: hf_gguf(t)["input_ids"], texts)
    assert not bad, bad[:3]
    for messages in (USER_ONLY, SYSTEM_USER):
        assert folder_tok.apply_chat_template(messages) == hf_gguf.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )


def test_from_folder_with_smollm2_pre_tokenizer_equals_gguf(smollm2_folder, ours, texts):
    folder_tok = load_tokenizer(smollm2_folder)
    assert folder_tok.source == str(smollm2_folder)
    bad = _mismatches(folder_tok.encode, ours.encode, texts)
    assert not bad, bad[:3]


def test_from_folder_config_chat_template_and_add_bos(saved_folder, tmp_path):
    for item in saved_folder.iterdir():
        if item.name != "chat_template.jinja":
            shutil.copy(item, tmp_path / item.name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    config["add_bos_token"] = True
    config["bos_token"] = {"content": "<|endoftext|>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    tok = Tokenizer.from_folder(tmp_path)
    assert tok.chat_template == config["chat_template"]
    assert tok.apply_chat_template([{"role": "user", "content": "x"}]) == "[user]x"
    assert tok.bos_token_id == END_OF_TEXT and tok.add_bos is True
    assert tok.encode("hi") == [END_OF_TEXT, *tok.encode("hi", add_bos=False)]


def test_load_tokenizer_none_uses_default_model_path(saved_folder, monkeypatch):
    calls = []

    def fake_default():
        calls.append(1)
        return saved_folder

    monkeypatch.setattr(model_files, "default_model_path", fake_default)
    tok = load_tokenizer(None)
    assert calls == [1] and tok.source == str(saved_folder)


# --- other GGUF tokenizers ---------------------------------------------------------


def _write_gguf(path: Path, *, model: str, pre: str | None = "gpt2", add_bos: bool = True) -> Path:
    tokens = ["<s>", "</s>", "<|eot_id|>", "<think>", "a", "b", "ab", "Ġ", "Ġab"]
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 3, 4, 1, 1, 1, 1, 1])
    writer.add_token_merges(["a b", "Ġ ab"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_eot_token_id(2)
    writer.add_add_bos_token(add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_tiny_gguf_bos_user_defined_and_eot(tmp_path):
    tok = load_tokenizer(_write_gguf(tmp_path / "tiny.gguf", model="gpt2"))
    assert tok.vocab_size == 9 and tok.chat_template is None
    assert tok.add_bos is True
    assert tok.encode("ab ab") == [0, 6, 8]
    assert tok.encode("ab<think>b</s>", add_bos=False) == [6, 3, 5, 1]
    assert tok.decode([0, 6, 3, 8, 1], skip_special_tokens=True) == "ab<think> ab"
    assert tok.eos_token_ids == {1, 2}
    assert tok.format_prompt("ab") == "ab"
    with pytest.raises(ValueError, match="no chat template"):
        tok.apply_chat_template(USER_ONLY)


# --- errors ----------------------------------------------------------------------


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        load_tokenizer(missing)
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        Tokenizer.from_gguf(missing)
    with pytest.raises(FileNotFoundError, match="nope_dir"):
        Tokenizer.from_folder(tmp_path / "nope_dir")


def test_non_gguf_file(tmp_path):
    text_file = tmp_path / "weights.bin"
    text_file.write_text("not a model")
    with pytest.raises(ValueError, match="weights.bin"):
        load_tokenizer(text_file)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"this is not GGUF data at all" * 8)
    with pytest.raises(ValueError, match="fake.gguf"):
        load_tokenizer(fake)


def test_folder_without_tokenizer_json(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        load_tokenizer(tmp_path)


def test_unsupported_gguf_tokenizers(tmp_path):
    with pytest.raises(NotImplementedError, match="'llama'"):
        Tokenizer.from_gguf(_write_gguf(tmp_path / "spm.gguf", model="llama"))
    with pytest.raises(NotImplementedError, match="'no-such-pre'"):
        Tokenizer.from_gguf(_write_gguf(tmp_path / "pre.gguf", model="gpt2", pre="no-such-pre"))


def test_bad_arguments(ours):
    with pytest.raises(TypeError, match="str"):
        ours.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="49152"):
        ours.decode([49152])
    with pytest.raises(ValueError, match="49152"):
        ours.decode([-1])


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table (printable bytes map to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table
