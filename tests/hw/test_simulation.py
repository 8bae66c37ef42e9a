"""hw/simulation.py's own pieces: the stream rules every monitor applies (Amaranth and
cocotb alike), and the beat packing the harnesses and sim/jobs.py share."""

from __future__ import annotations

import random

import pytest

from hw.simulation import StreamRules, beat_values, codebook_word, lane_beats


def _feed(rules: StreamRules, edges):
    for valid, ready, payload, *reset in edges:
        rules.edge(valid=valid, ready=ready, payload=payload if valid else None, in_reset=bool(reset and reset[0]))
    return rules


def test_stream_rules_accept_a_legal_stream():
    rules = _feed(StreamRules("s"), [(0, 1, 0), (1, 0, 5), (1, 0, 5), (1, 1, 5), (1, 1, 6), (0, 0, 0), (1, 1, 7)])
    assert rules.errors == []
    assert rules.transfers == 3
    assert (rules.first_valid_cycle, rules.first_transfer_cycle, rules.cycles) == (2, 4, 7)


def test_stream_rules_flag_valid_dropped_and_payload_changed():
    dropped = _feed(StreamRules("a"), [(1, 0, 5), (0, 0, 0)])
    assert dropped.errors == ["a: valid dropped before the transfer (cycle 2)"]
    changed = _feed(StreamRules("b"), [(1, 0, 5), (1, 1, 6)])
    assert changed.errors == ["b: payload changed from 0x5 to 0x6 before the transfer (cycle 2)"]


def test_stream_rules_exempt_reset():
    rules = _feed(StreamRules("r"), [(1, 0, 5), (0, 0, 0, True), (1, 0, 9), (1, 1, 9)])
    assert rules.errors == [] and rules.transfers == 1


def test_lane_beats_round_trip():
    rng = random.Random(1)
    values = [rng.getrandbits(16) for _ in range(64)]
    for lanes in (1, 2, 4, 8, 16):
        beats = lane_beats(values, lanes)
        assert len(beats) == 64 // lanes
        assert [v for beat in beats for v in beat_values(beat, lanes)] == values
    assert lane_beats([0x1234, 0xABCD], 2) == [0xABCD1234]
    with pytest.raises(ValueError, match="3 values do not fill beats of 2 lanes"):
        lane_beats([1, 2, 3], 2)


def test_codebook_word():
    assert codebook_word([0x7F, 0x80, 0x01]) == 0x01807F
