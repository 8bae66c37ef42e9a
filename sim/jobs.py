"""Golden-side jobs for the RTL: what to feed the decoder and the encoder and what
must come out, computed with the golden codec.

The cocotb benches read them as JSON job files (:func:`write_job`; the cocotb
modules need no torch); the Amaranth-simulator harness of ``hw/simulation.py``
takes :class:`DecodeJob` commands directly (``tests/hw/``, ``bench/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from golden.format.bitstream import stream_words
from golden.format.codec import EncodedTensor, bf16_bits, decode, encode
from golden.format.params import SPECULATION_STREAMS, STREAM_NAMES, FormatParams
from golden.format.select import magnitude_topk_mask
from hw.decoder import decoder_command
from hw.simulation import DecoderCommand, lane_beats

__all__ = ["encode_tensor", "DecodeJob", "decoder_phase", "encoder_phase", "beats", "write_job"]


def encode_tensor(x: torch.Tensor, params: FormatParams, *, keep: int, codebook=None) -> EncodedTensor:
    """Golden encoding with per-group magnitude top-k (the RTL encoder's selection)."""
    mask = magnitude_topk_mask(x, keep=keep, group_size=params.group_size)
    return encode(x, mask, params, codebook=codebook)


@dataclass
class DecodeJob:
    """One decoder command from the golden model: an encoded tensor and the mode."""

    enc: EncodedTensor
    full: bool
    rounding: str = "truncate"  # draft commands: the decoder's draft_rounding

    @property
    def groups(self) -> int:
        return self.enc.num_values // self.enc.params.group_size

    @property
    def expected(self) -> list[int]:
        """The 16-bit patterns the decoder must put out (golden ``decode``)."""
        if self.full:
            return bf16_bits(decode(self.enc, "full")).reshape(-1).tolist()
        return bf16_bits(decode(self.enc, "draft", rounding=self.rounding)).reshape(-1).tolist()

    def words(self, word_bits: int) -> dict[str, list[int]]:
        """The words each stream carries for this command (verification streams in full mode only)."""
        return {name: stream_words(self.enc.streams[name], word_bits) for name in STREAM_NAMES
                if name in SPECULATION_STREAMS or self.full}

    def command(self, word_bits: int) -> DecoderCommand:
        """This job for ``hw.simulation.run_decoder``."""
        return DecoderCommand(self.groups, self.full, self.words(word_bits))


def decoder_phase(jobs: list[tuple[EncodedTensor, bool]], *, lanes: int, word_bits: int,
                  beats_before_reset: int | None = None) -> dict:
    """One phase of decoder commands: (encoded tensor, full) each, back to back."""
    commands, expected, command_ends = [], [], []
    words = {name: [] for name in STREAM_NAMES}
    beats = 0
    for enc, full in jobs:
        job = DecodeJob(enc, full)
        commands.append(decoder_command(job.groups, full))
        for name, stream in job.words(word_bits).items():
            words[name] += stream
        expected += job.expected
        beats += enc.num_values // lanes
        command_ends.append(beats)
    return {"commands": commands, "words": words, "expected": expected, "beats": beats,
            "command_ends": command_ends, "beats_before_reset": beats_before_reset}


def beats(x: torch.Tensor, lanes: int) -> list[int]:
    """A tensor's BF16 patterns as beats of ``lanes`` values (lane i in bits 16i..16i+15)."""
    return lane_beats(bf16_bits(x).reshape(-1).tolist(), lanes)


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
