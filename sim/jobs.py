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

__all__ = ["encode_tensor", "decoder_phase", "encoder_phase", "beats", "write_job"]


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


def beats(x: torch.Tensor, lanes: int) -> list[int]:
    """A tensor's BF16 patterns as beats of ``lanes`` values (lane i in bits 16i..16i+15)."""
    flat = bf16_bits(x).reshape(-1).tolist()
    return [sum((flat[i + lane] & 0xFFFF) << (16 * lane) for lane in range(lanes))
            for i in range(0, len(flat), lanes)]


def encoder_phase(tensors: list[torch.Tensor], params: FormatParams, *, keep: int, lanes: int, word_bits: int,
                  codebook=None, values_before_reset: int | None = None) -> dict:
    """One phase of encoder commands, one per tensor, and the golden words per stream."""
    commands, values = [], []
    expected = {name: [] for name in STREAM_NAMES}
    for x in tensors:
        commands.append(x.numel() // params.group_size)
        values += beats(x, lanes)
        enc = encode_tensor(x, params, keep=keep, codebook=codebook)
        for name in STREAM_NAMES:
            expected[name] += stream_words(enc.streams[name], word_bits)
    return {"cmd": commands, "values": values, "expected": expected, "values_before_reset": values_before_reset}


def write_job(path: Path, **job) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job))
    return path
