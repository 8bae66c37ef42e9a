"""A tiny random Llama checkpoint folder (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json) for fast tests of the pipeline, the
Hugging Face folder path and the statistics of speculative sampling."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from golden.llm.datasets import CALIBRATION_TEXTS

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_CONFIG = dict(
    architectures=["LlamaForCausalLM"],
    model_type="llama",
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rope_theta=10000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    max_position_embeddings=512,
    bos_token_id=1,
    eos_token_id=2,
    hidden_act="silu",
)


def _tokenizer_json(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_CONFIG["vocab_size"],
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CALIBRATION_TEXTS, trainer=trainer)
    assert tok.get_vocab_size() == TINY_CONFIG["vocab_size"], tok.get_vocab_size()
    tok.save(str(path))


def make_tiny_checkpoint(folder: Path, *, seed: int = 0, scale: float = 0.3) -> Path:
    """Write the tiny model into ``folder`` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    c = TINY_CONFIG
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=scale):
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    h, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    tensors = {
        "model.embed_tokens.weight": rand(c["vocab_size"], h, std=1.0),
        "model.norm.weight": (1 + rand(h, std=0.1).float()).to(torch.bfloat16),
        "lm_head.weight": rand(c["vocab_size"], h),
    }
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = (1 + rand(h, std=0.1).float()).to(torch.bfloat16)
        tensors[p + "post_attention_layernorm.weight"] = (1 + rand(h, std=0.1).float()).to(torch.bfloat16)
        tensors[p + "self_attn.q_proj.weight"] = rand(c["num_attention_heads"] * hd, h)
        tensors[p + "self_attn.k_proj.weight"] = rand(c["num_key_value_heads"] * hd, h)
        tensors[p + "self_attn.v_proj.weight"] = rand(c["num_key_value_heads"] * hd, h)
        tensors[p + "self_attn.o_proj.weight"] = rand(h, c["num_attention_heads"] * hd)
        tensors[p + "mlp.gate_proj.weight"] = rand(f, h)
        tensors[p + "mlp.up_proj.weight"] = rand(f, h)
        tensors[p + "mlp.down_proj.weight"] = rand(h, f)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(c, indent=2))
    _tokenizer_json(folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            dict(bos_token="<|im_start|>", eos_token="<|im_end|>", add_bos_token=False, chat_template=CHAT_TEMPLATE),
            indent=2,
        )
    )
    return folder
