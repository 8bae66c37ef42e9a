"""Golden-side job files for the cocotb benches: what to feed the Verilog and what
must come out, computed with the golden codec in the pytest process (the cocotb
modules read them as JSON and need no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from golden.bitstream import stream_words
from golden.codec import EncodedTensor, bf16_bits, decode, encode
from golden.params import SPECULATION_STREAMS, STREAM_NAMES, FormatParams
from golden.select import magnitude_topk_mask
from hw.decoder import decoder_command

__all__ = ["encode_tensor", "decoder_phase", "write_job"]


def encode_tensor(x: torch.Tensor, params: FormatParams, *, keep: int, codebook=None) -> EncodedTensor:
    """Golden encoding with per-group magnitude top-k (the RTL encoder's selection)."""
    mask = magnitude_topk_mask(x, keep=keep, group_size=params.group_size)
    return encode(x, mask, params, codebook=codebook)


def decoder_phase(jobs: list[tuple[EncodedTensor, bool]], *, lanes: int, word_bits: int,
                  beats_before_reset: int | None = None) -> dict:
    """One phase of decoder commands: (encoded tensor, full) each, back to back."""
    commands, expected, command_ends = [], [], []
    words = {name: [] for name in STREAM_NAMES}
    beats = 0
    for enc, full in jobs:
        groups = enc.num_values // enc.params.group_size
        commands.append(decoder_command(groups, full))
        for name in STREAM_NAMES:
            if name in SPECULATION_STREAMS or full:
                words[name] += stream_words(enc.streams[name], word_bits)
        expected += bf16_bits(decode(enc, "full" if full else "draft")).reshape(-1).tolist()
        beats += enc.num_values // lanes
        command_ends.append(beats)
    return {"commands": commands, "words": words, "expected": expected, "beats": beats,
            "command_ends": command_ends, "beats_before_reset": beats_before_reset}


def write_job(path: Path, **job) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job))
    return path
