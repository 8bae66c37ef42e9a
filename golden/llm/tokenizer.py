"""Tokenizer for Llama-family models, from a GGUF file or a Hugging Face folder.

Built on the Hugging Face ``tokenizers`` library (Rust).  Two sources:

* a GGUF file (:meth:`Tokenizer.from_gguf`): the vocabulary, merges, token
  types, special token ids, BOS flag and chat template are read from the
  ``tokenizer.*`` metadata with :class:`gguf.GGUFReader`;
* a Hugging Face checkpoint folder (:meth:`Tokenizer.from_folder`):
  ``tokenizer.json`` plus ``tokenizer_config.json`` / ``chat_template.jinja``.

:func:`load_tokenizer` picks between them from the path (``None`` = the
default SmolLM2-135M-Instruct GGUF).  Chat templates are rendered with jinja2
the way :meth:`transformers.PreTrainedTokenizerBase.apply_chat_template` does
(sandboxed environment, ``trim_blocks`` and ``lstrip_blocks``,
``raise_exception``, ``bos_token`` / ``eos_token`` variables, ...).

Notes on the default GGUF (SmolLM2-135M-Instruct)
-------------------------------------------------
* ``tokenizer.ggml.model = "gpt2"`` (byte-level BPE), 49152 tokens, 48900
  merges; ids 0..16 are control tokens: ``<|endoftext|>`` = 0,
  ``<|im_start|>`` = 1 (the BOS), ``<|im_end|>`` = 2 (the EOS and padding).
* ``tokenizer.ggml.add_bos_token = False``: no BOS is prepended; chat prompts
  start with ``<|im_start|>`` from the template instead.
* ``tokenizer.ggml.pre = "smollm"``: llama.cpp splits every digit on its own
  (regex ``\\p{N}``) and then applies the GPT-2 regex to each piece.  That is
  exactly SmolLM2's own ``tokenizer.json`` pre-tokenizer,
  ``Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]``, so
  that is what is used here.  (transformers 5.23's GGUF converter has no entry
  for ``"smollm"`` and falls back to plain GPT-2 ``ByteLevel``, which differs
  only where two or more whitespace characters precede a digit: ``"  1"`` is
  ``["ĠĠ", "1"]`` here and in llama.cpp / the original checkpoint, but
  ``["Ġ", "Ġ", "1"]`` in transformers' GGUF conversion.)
* The chat template inserts a default system prompt ("You are a helpful AI
  assistant named SmolLM, trained by Hugging Face") when the conversation
  does not start with a system message.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import AddedToken, Regex, decoders, pre_tokenizers
from tokenizers.models import BPE

from .model_files import open_gguf

__all__ = [
    "END_OF_TURN_TOKENS",
    "GGUF_PRE_TOKENIZERS",
    "Tokenizer",
    "load_tokenizer",
]

#: Token strings that end a turn (or a whole text) in common chat formats.
#: Any of them that is a special/control token of a vocabulary joins
#: :attr:`Tokenizer.eos_token_ids` (the same list llama.cpp uses for its
#: "end of generation" tokens).
END_OF_TURN_TOKENS: tuple[str, ...] = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "<|return|>",
    "<|call|>",
)

# GGUF token types (llama.cpp's llama_token_type)
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

# --- pre-tokenizer split regexes -------------------------------------------
# GPT-2's regex, which ByteLevel(use_regex=True) applies itself:
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: ``tokenizer.ggml.pre`` value -> pre-tokenizer family.  ``"gpt2"``: the
#: GPT-2 regex; ``"digits+gpt2"``: each digit isolated, then the GPT-2 regex
#: (llama.cpp's ``\p{N}`` + GPT-2 pair of regexes); ``"llama3"``, ``"qwen2"``:
#: those models' single split regexes.
GGUF_PRE_TOKENIZERS: dict[str, str] = {
    # llama.cpp: GPT2, MPT, OLMO, JAIS, TRILLION; "default" (no pre key) follows
    # transformers' fallback, the GPT-2 regex
    "default": "gpt2",
    "gpt-2": "gpt2",
    "gpt2": "gpt2",
    "mpt": "gpt2",
    "olmo": "gpt2",
    "jais": "gpt2",
    "trillion": "gpt2",
    # llama.cpp: STARCODER, REFACT, COMMAND_R, SMOLLM, CODESHELL, EXAONE, MINERVA
    "smollm": "digits+gpt2",
    "starcoder": "digits+gpt2",
    "refact": "digits+gpt2",
    "command-r": "digits+gpt2",
    "codeshell": "digits+gpt2",
    "exaone": "digits+gpt2",
    "minerva-7b": "digits+gpt2",
    # Llama 3 style
    "llama-bpe": "llama3",
    "llama3": "llama3",
    "llama-v3": "llama3",
    "falcon3": "llama3",
    "pixtral": "llama3",
    "dbrx": "llama3",
    "smaug-bpe": "llama3",
    # Qwen2 style
    "qwen2": "qwen2",
    "deepseek-r1-qwen": "qwen2",
    "megrez": "qwen2",
}

_SPLIT_REGEXES = {"llama3": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}


def _byte_level_pre_tokenizer(family: str) -> pre_tokenizers.PreTokenizer:
    """Pre-tokenizer for one of the families of :data:`GGUF_PRE_TOKENIZERS`."""
    if family == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if family == "digits+gpt2":
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_REGEXES[family]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map."""
    visible = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = visible[:]
    extra = 0
    for byte in range(256):
        if byte not in visible:
            visible.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(visible, codes)}


# --- chat templates ----------------------------------------------------------


@lru_cache(maxsize=16)
def _compile_chat_template(template: str):
    """Compile a chat template the way transformers does (cached)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _GenerationTag(jinja2.ext.Extension):
        """Accept ``{% generation %}...{% endgeneration %}`` and render its body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # transformers' override: no HTML escaping, json.dumps options exposed
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


# --- the tokenizer -------------------------------------------------------------


class Tokenizer:
    """A byte-level BPE (or any ``tokenizers``) tokenizer plus chat metadata.

    Normally built with :meth:`from_gguf`, :meth:`from_folder` or
    :func:`load_tokenizer`.

    Parameters
    ----------
    backend : tokenizers.Tokenizer
        The Rust tokenizer.  Its post-processor is never used: BOS is
        prepended by :meth:`encode` itself.
    bos_token_id, eos_token_id, unk_token_id, pad_token_id : int or None
        Special token ids (None when the model has none).
    add_bos : bool
        Whether :meth:`encode` prepends BOS by default.
    chat_template : str or None
        Jinja2 chat template.
    extra_eos_token_ids : iterable of int, optional
        End-of-turn ids to add to :attr:`eos_token_ids` on top of the EOS and
        the special tokens named in :data:`END_OF_TURN_TOKENS`.
    source : str, optional
        Where the tokenizer came from (used in messages).

    Raises
    ------
    ValueError
        If a special token id is outside the vocabulary.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        unk_token_id: int | None = None,
        pad_token_id: int | None = None,
        add_bos: bool = False,
        chat_template: str | None = None,
        extra_eos_token_ids: Iterable[int] = (),
        source: str = "<memory>",
    ) -> None:
        self._backend = backend
        self._source = source
        self._vocab_size = backend.get_vocab_size(with_added_tokens=True)
        for name, value in (
            ("bos_token_id", bos_token_id),
            ("eos_token_id", eos_token_id),
            ("unk_token_id", unk_token_id),
            ("pad_token_id", pad_token_id),
        ):
            if value is not None and not 0 <= int(value) < self._vocab_size:
                raise ValueError(
                    f"{source}: {name}={value} is outside the vocabulary (size {self._vocab_size})"
                )
        self._bos = None if bos_token_id is None else int(bos_token_id)
        self._eos = None if eos_token_id is None else int(eos_token_id)
        self._unk = None if unk_token_id is None else int(unk_token_id)
        self._pad = None if pad_token_id is None else int(pad_token_id)
        self._add_bos = bool(add_bos)
        self._chat_template = chat_template or None

        special = {tok.content for tok in backend.get_added_tokens_decoder().values() if tok.special}
        eos_ids = {int(i) for i in extra_eos_token_ids}
        if self._eos is not None:
            eos_ids.add(self._eos)
        for text in END_OF_TURN_TOKENS:
            token_id = backend.token_to_id(text)
            if token_id is not None and text in special:
                eos_ids.add(token_id)
        bad = sorted(i for i in eos_ids if not 0 <= i < self._vocab_size)
        if bad:
            raise ValueError(f"{source}: end-of-turn ids {bad} are outside the vocabulary")
        self._eos_ids = frozenset(eos_ids)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(source={self._source!r}, vocab_size={self._vocab_size}, "
            f"bos={self._bos}, eos={self._eos}, add_bos={self._add_bos})"
        )

    # --- properties --------------------------------------------------------

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """tokenizers.Tokenizer : The underlying Rust tokenizer."""
        return self._backend

    @property
    def source(self) -> str:
        """str : The file or folder this tokenizer was read from."""
        return self._source

    @property
    def vocab_size(self) -> int:
        """int : Number of token ids, added/special tokens included."""
        return self._vocab_size

    @property
    def bos_token_id(self) -> int | None:
        """int or None : Beginning-of-sequence token id."""
        return self._bos

    @property
    def eos_token_id(self) -> int | None:
        """int or None : End-of-sequence token id (as the model declares it)."""
        return self._eos

    @property
    def unk_token_id(self) -> int | None:
        """int or None : Unknown token id."""
        return self._unk

    @property
    def pad_token_id(self) -> int | None:
        """int or None : Padding token id."""
        return self._pad

    @property
    def add_bos(self) -> bool:
        """bool : Whether :meth:`encode` prepends BOS by default."""
        return self._add_bos

    @property
    def eos_token_ids(self) -> set[int]:
        """set of int : Ids that end generation.

        The EOS id plus every special token of :data:`END_OF_TURN_TOKENS`
        present in the vocabulary (e.g. ``<|im_end|>`` for ChatML models), so
        that generation stops at the end of the assistant's turn.
        """
        return set(self._eos_ids)

    @property
    def chat_template(self) -> str | None:
        """str or None : The Jinja2 chat template, if the model has one."""
        return self._chat_template

    @property
    def bos_token(self) -> str | None:
        """str or None : BOS as text."""
        return None if self._bos is None else self._backend.id_to_token(self._bos)

    @property
    def eos_token(self) -> str | None:
        """str or None : EOS as text."""
        return None if self._eos is None else self._backend.id_to_token(self._eos)

    # --- encode / decode -----------------------------------------------------

    def encode(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        """Tokenize a string.

        Special tokens written in the text (``"<|im_start|>"``, ...) are
        matched whole and map to their ids.

        Parameters
        ----------
        text : str
            The text.
        add_bos : bool or None, optional
            Prepend the BOS id.  ``None`` (default) uses the model's own
            setting, :attr:`add_bos` (``tokenizer.ggml.add_bos_token`` or
            ``add_bos_token`` of ``tokenizer_config.json``).

        Returns
        -------
        list of int
            Token ids.

        Raises
        ------
        TypeError
            If ``text`` is not a ``str``.
        ValueError
            If BOS is requested but the model has no BOS token.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() expects a str, got {type(text).__name__}")
        if add_bos is None:
            add_bos = self._add_bos
        ids = self._backend.encode(text, add_special_tokens=False).ids
        if add_bos:
            if self._bos is None:
                raise ValueError(f"{self._source}: add_bos=True but the tokenizer has no BOS token")
            ids = [self._bos, *ids]
        return ids

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """Turn token ids back into text.

        Parameters
        ----------
        ids : iterable of int
            Token ids (a list, a tuple, a 1-D tensor or array, ...).
        skip_special_tokens : bool, optional
            Drop special tokens (BOS, ``<|im_end|>``, ...) from the output.

        Returns
        -------
        str
            The text.  Byte sequences that are not valid UTF-8 (e.g. a
            multi-byte character cut in half) become U+FFFD.

        Raises
        ------
        ValueError
            If an id is outside ``[0, vocab_size)``.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self._vocab_size]
        if bad:
            raise ValueError(
                f"token ids {bad[:5]} are outside the vocabulary [0, {self._vocab_size})"
            )
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of a token given in its vocabulary spelling (None if absent)."""
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Vocabulary spelling of a token id (None if out of range)."""
        return self._backend.id_to_token(int(token_id))

    # --- chat ----------------------------------------------------------------

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """Render a conversation with the model's chat template.

        Same output as transformers'
        ``apply_chat_template(messages, tokenize=False, add_generation_prompt=...)``.

        Parameters
        ----------
        messages : sequence of dict
            ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``.
        add_generation_prompt : bool, optional
            Append the header of the assistant's turn
            (``"<|im_start|>assistant\\n"`` for ChatML) so the model answers.
        **kwargs
            Extra template variables (``tools``, ``documents``, ...).  The
            special tokens ``bos_token``, ``eos_token``, ``unk_token`` and
            ``pad_token`` are provided unless overridden here.

        Returns
        -------
        str
            The prompt text (not tokenized; tokenize it with :meth:`encode`).

        Raises
        ------
        ValueError
            If the model has no chat template.
        TypeError
            If a message is not a mapping.
        jinja2.exceptions.TemplateError
            If the template rejects the conversation (``raise_exception``).
        """
        if self._chat_template is None:
            raise ValueError(f"{self._source} has no chat template")
        chat = []
        for message in messages:
            if not isinstance(message, Mapping):
                raise TypeError(f"chat messages must be dicts, got {message!r}")
            chat.append(dict(message))
        variables: dict[str, Any] = {}
        for name, token_id in (
            ("bos_token", self._bos),
            ("eos_token", self._eos),
            ("unk_token", self._unk),
            ("pad_token", self._pad),
        ):
            if token_id is not None:
                variables[name] = self._backend.id_to_token(token_id)
        variables.update(kwargs)
        variables.setdefault("tools", None)
        variables.setdefault("documents", None)
        template = _compile_chat_template(self._chat_template)
        return template.render(messages=chat, add_generation_prompt=add_generation_prompt, **variables)

    def format_prompt(self, text: str, *, chat: bool = True) -> str:
        """Turn a user's text into the prompt string to tokenize.

        Parameters
        ----------
        text : str
            The user's message (or raw prompt).
        chat : bool, optional
            If True (default) and the model has a chat template, wrap ``text``
            as a single user message with the generation prompt appended.
            Otherwise return ``text`` unchanged.

        Returns
        -------
        str
            The prompt.
        """
        if chat and self._chat_template is not None:
            return self.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)
        return text

    # --- constructors --------------------------------------------------------

    @classmethod
    def from_gguf(cls, path: str | Path) -> Tokenizer:
        """Build the tokenizer described by a GGUF file's metadata.

        Parameters
        ----------
        path : str or pathlib.Path
            A ``.gguf`` file.

        Returns
        -------
        Tokenizer

        Raises
        ------
        FileNotFoundError
            If ``path`` is not an existing file.
        ValueError
            If the file is not GGUF, or its tokenizer metadata is missing or
            inconsistent.
        NotImplementedError
            If the tokenizer model (``tokenizer.ggml.model``) is not ``"gpt2"``
            (byte-level BPE), e.g. ``"llama"`` (SentencePiece), or its
            pre-tokenizer (``tokenizer.ggml.pre``) is not one of
            :data:`GGUF_PRE_TOKENIZERS`.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file does not exist: {path}")
        reader = open_gguf(path)

        def field(key: str, default: Any = None) -> Any:
            item = reader.fields.get(key)
            return default if item is None else item.contents()

        model_type = field("tokenizer.ggml.model")
        if model_type is None:
            raise ValueError(f"{path} has no tokenizer metadata (tokenizer.ggml.model is missing)")
        if model_type != "gpt2":
            raise NotImplementedError(
                f"{path}: tokenizer.ggml.model={model_type!r} is not supported; only 'gpt2' "
                f"(byte-level BPE) GGUF tokenizers are implemented"
            )
        pre = field("tokenizer.ggml.pre", "default")
        family = GGUF_PRE_TOKENIZERS.get(pre)
        if family is None:
            raise NotImplementedError(
                f"{path}: pre-tokenizer tokenizer.ggml.pre={pre!r} is not supported; "
                f"known: {', '.join(sorted(GGUF_PRE_TOKENIZERS))}"
            )
        tokens: list[str] = field("tokenizer.ggml.tokens")
        merges: list[str] | None = field("tokenizer.ggml.merges")
        if not tokens:
            raise ValueError(f"{path}: tokenizer.ggml.tokens is missing or empty")
        if not merges:
            raise ValueError(f"{path}: tokenizer.ggml.merges is missing or empty (needed for BPE)")
        token_types: list[int] = field("tokenizer.ggml.token_type") or [1] * len(tokens)
        if len(token_types) != len(tokens):
            raise ValueError(
                f"{path}: {len(token_types)} token types for {len(tokens)} tokens"
            )

        # The vocabulary is spelled in GPT-2's byte alphabet; a token using other
        # characters is respelled byte by byte (as transformers does).
        spelling = _bytes_to_unicode()
        alphabet = set(spelling.values())
        vocab: dict[str, int] = {}
        for index, token in enumerate(tokens):
            if not set(token) <= alphabet:
                token = "".join(spelling[b] for b in token.encode("utf-8"))
            vocab.setdefault(token, index)
        pairs = []
        for rank, merge in enumerate(merges):
            parts = merge.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{path}: merge {rank} ({merge!r}) is not two symbols")
            pairs.append((parts[0], parts[1]))

        backend = tokenizers.Tokenizer(BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        backend.pre_tokenizer = _byte_level_pre_tokenizer(family)
        backend.decoder = decoders.ByteLevel()
        # control tokens (<|im_start|>, ...) are special: matched whole, skippable
        control = [
            AddedToken(token, normalized=False, special=True)
            for token, kind in zip(tokens, token_types)
            if kind == _TOKEN_TYPE_CONTROL and token in vocab
        ]
        if control:
            backend.add_special_tokens(control)
        user_defined = [
            AddedToken(token, normalized=False, special=False)
            for token, kind in zip(tokens, token_types)
            if kind == _TOKEN_TYPE_USER_DEFINED and token in vocab
        ]
        if user_defined:
            backend.add_tokens(user_defined)
        if backend.get_vocab_size(with_added_tokens=True) != len(tokens):
            raise ValueError(
                f"{path}: built a vocabulary of {backend.get_vocab_size(with_added_tokens=True)} "
                f"tokens from {len(tokens)} (duplicate tokens?)"
            )

        extra_eos = [
            field(key)
            for key in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
            if field(key) is not None
        ]
        return cls(
            backend,
            bos_token_id=field("tokenizer.ggml.bos_token_id"),
            eos_token_id=field("tokenizer.ggml.eos_token_id"),
            unk_token_id=field("tokenizer.ggml.unknown_token_id"),
            pad_token_id=field("tokenizer.ggml.padding_token_id"),
            add_bos=bool(field("tokenizer.ggml.add_bos_token", False)),
            chat_template=field("tokenizer.chat_template"),
            extra_eos_token_ids=extra_eos,
            source=str(path),
        )

    @classmethod
    def from_folder(cls, path: str | Path) -> Tokenizer:
        """Build the tokenizer of a Hugging Face checkpoint folder.

        Reads ``tokenizer.json`` and, if present, ``tokenizer_config.json``
        (``bos_token``, ``eos_token``, ``unk_token``, ``pad_token``,
        ``add_bos_token``, ``chat_template``) and the chat template files
        ``chat_template.jinja`` / ``chat_template.json`` that recent
        transformers versions write.

        When ``add_bos_token`` is not given, the BOS default is taken from
        ``tokenizer.json``'s post-processor (does it prepend BOS?).

        Parameters
        ----------
        path : str or pathlib.Path
            The folder.

        Returns
        -------
        Tokenizer

        Raises
        ------
        FileNotFoundError
            If the folder does not exist or has no ``tokenizer.json``.
        ValueError
            If a JSON file cannot be parsed or names a token that is not in
            the vocabulary.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder does not exist: {folder}")
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"no tokenizer.json in folder {folder}")
        try:
            backend = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise ValueError(f"cannot parse {tokenizer_file}: {exc}") from exc

        config: dict[str, Any] = {}
        config_file = folder / "tokenizer_config.json"
        if config_file.is_file():
            config = _read_json(config_file)
        special_map_file = folder / "special_tokens_map.json"
        special_map = _read_json(special_map_file) if special_map_file.is_file() else {}

        def token_id(name: str) -> int | None:
            value = config.get(name, special_map.get(name))
            if isinstance(value, Mapping):
                value = value.get("content")
            if value is None:
                return None
            found = backend.token_to_id(str(value))
            if found is None:
                raise ValueError(f"{folder}: {name}={value!r} is not in the vocabulary")
            return found

        bos = token_id("bos_token")
        eos = token_id("eos_token")
        add_bos = config.get("add_bos_token")
        if add_bos is None:
            # no flag: does tokenizer.json's post-processor prepend BOS?
            with_special = backend.encode("a", add_special_tokens=True).ids
            without = backend.encode("a", add_special_tokens=False).ids
            add_bos = bos is not None and with_special[:1] == [bos] and without[:1] != [bos]

        return cls(
            backend,
            bos_token_id=bos,
            eos_token_id=eos,
            unk_token_id=token_id("unk_token"),
            pad_token_id=token_id("pad_token"),
            add_bos=bool(add_bos),
            chat_template=_folder_chat_template(folder, config),
            source=str(folder),
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return value


def _folder_chat_template(folder: Path, config: Mapping[str, Any]) -> str | None:
    """Chat template of a checkpoint folder, wherever transformers put it."""
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    json_file = folder / "chat_template.json"
    if template is None and json_file.is_file():
        template = _read_json(json_file).get("chat_template")
    if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
        named = {item.get("name"): item.get("template") for item in template if isinstance(item, Mapping)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """Load a tokenizer from a GGUF file or a Hugging Face folder.

    Parameters
    ----------
    path : str or pathlib.Path or None, optional
        * ``None``: the default model's GGUF
          (:func:`golden.llm.model_files.default_model_path`);
        * a file ending in ``.gguf``: :meth:`Tokenizer.from_gguf`;
        * a folder: :meth:`Tokenizer.from_folder`.

    Returns
    -------
    Tokenizer

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist (or see the constructors).
    ValueError
        If ``path`` is neither a ``.gguf`` file nor a folder.
    """
    if path is None:
        from .model_files import default_model_path

        path = default_model_path()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer path does not exist: {path}")
    if path.is_dir():
        return Tokenizer.from_folder(path)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return Tokenizer.from_gguf(path)
    raise ValueError(
        f"unsupported tokenizer path {path}: expected a .gguf file or a Hugging Face "
        f"folder with tokenizer.json"
    )
