"""bench/codec_speed.py: the report, the codec throughput on a small tensor (its decodes
bit for bit against golden ``decode``), small Amaranth-simulator runs, argument
checks. Verilator is not run here."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch

from bench import codec_speed as bench_speed
from bench.codec_speed import (
    benchmark_tensor,
    codec_throughput,
    machine_info,
    measure_speed,
    rtl_decoder_speed,
    rtl_encoder_speed,
    speed_markdown,
)
from golden.format.codec import decode, encode
from golden.format.params import FormatParams, keep_count
from golden.format.select import magnitude_topk_mask


def _synthetic_result() -> dict:
    machine = {"cpu": "Test CPU 9000", "arch": "x86_64", "cores": 2, "usable_cores": 2, "torch_threads": 2,
               "torch": "2.13.0+cpu", "python": "3.11.9", "system": "Linux 6.0"}
    codec_rows = [{"coding": "-", "operation": "select (magnitude top-k)", "seconds": 0.01, "gb_per_s": 0.2,
                   "mvalues_per_s": 100.0}]
    for coding in ("raw", "unary", "mx"):
        for operation in ("encode", "decode draft", "decode full"):
            codec_rows.append({"coding": coding, "operation": operation, "seconds": 1.5, "gb_per_s": 0.0056,
                               "mvalues_per_s": 2.8})
    rtl_row = dict(block="decoder", coding="unary", lanes=8, word_bits=64, mode="full", values=4096, beats=512,
                   cycles=512, beats_per_clock=1.0, values_per_clock=8.0, latency_cycles=4, simulated_cycles=516,
                   elaborate_s=1.0, run_s=2.0, sim_values_per_s=2048.0, sim_cycles_per_s=258.0)
    encoder_row = dict(rtl_row, block="encoder", mode="-", latency_cycles=11, beats_per_clock=0.5, cycles=1024,
                       values_per_clock=4.0)
    verilator = dict(design="cassandra_loopback", coding="unary", lanes=8, word_bits=64,
                     tag="unary-l8-w64-g64-m3-s64-L8-B16", values=65536, groups_per_command=64, build_s=20.5,
                     build_was_cached=True, build_dir="build/sim/x", run_s=2.0, values_per_s=32768.0, cycles=8234,
                     cycles_per_s=4117.0, values_per_clock=7.96, beats_per_clock=0.995, process_s=3.0, job="j")
    return {"quick": True, "machine": machine, "total_s": 95.0,
            "codec": {"values": 1 << 20, "shape": [1024, 1024], "std": 0.02, "prune_ratio": 0.4, "keep": 38,
                      "group_size": 64, "mantissa_bits": 3, "repeats": 3, "torch_threads": 2, "lossless": True,
                      "rows": codec_rows},
            "rtl": {"rows": [rtl_row, encoder_row]},
            "verilator": verilator}


def test_speed_markdown_has_the_rows():
    text = speed_markdown(_synthetic_result())
    assert "Test CPU 9000" in text and "2 cores" in text and "2 threads" in text
    assert "Quick run" in text and "took 95 s" in text
    assert "| - | select (magnitude top-k) | 10.0 ms | 0.2 | 100.00 |" in text
    for coding in ("raw", "unary", "mx"):
        for operation in ("encode", "decode draft", "decode full"):
            assert f"| {coding} | {operation} | 1.50 s | 0.0056 | 2.80 |" in text
    assert "| decoder | unary | 8 | 64 | full | 4,096 | 512 | 1.000 | 8.00 | 4 | 1.00 s | 2,048 | 258 |" in text
    assert "| encoder | unary | 8 | 64 | - | 4,096 | 1,024 | 0.500 | 4.00 | 11 |" in text
    assert ("| cassandra_loopback | unary-l8-w64-g64-m3-s64-L8-B16 | 65,536 | 8,234 | 0.995 | 20.50 s (cached) "
            "| 2.00 s | 32,768 | 4,117 | 3.00 s |") in text
    # every table row has as many cells as its header
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, block


def test_speed_markdown_with_some_parts_only():
    result = _synthetic_result()
    del result["verilator"], result["rtl"]
    text = speed_markdown(result)
    assert "Golden codec" in text and "Verilator" not in text and "Amaranth" not in text


def test_codec_throughput_small_tensor_matches_golden_decode():
    result = codec_throughput(8192, repeats=1, keep_outputs=True)
    assert result["values"] == 8192 and result["lossless"]
    assert result["torch_threads"] == torch.get_num_threads()
    operations = [(row["coding"], row["operation"]) for row in result["rows"]]
    assert operations[0] == ("-", "select (magnitude top-k)")
    assert operations[1:] == [(c, op) for c in ("raw", "unary", "mx")
                              for op in ("encode", "decode draft", "decode full")]
    for row in result["rows"]:
        assert row["seconds"] > 0 and row["gb_per_s"] > 0 and row["mvalues_per_s"] > 0
        assert row["gb_per_s"] == pytest.approx(2 * 8192 / row["seconds"] / 1e9)
    x = result["tensor"]
    assert torch.equal(x.view(torch.int16), benchmark_tensor(8192).view(torch.int16))
    mask = magnitude_topk_mask(x, keep=keep_count(64, 0.4), group_size=64)
    assert torch.equal(result["mask"], mask)
    for coding in ("raw", "unary", "mx"):
        enc = encode(x, mask, FormatParams(group_size=64, mantissa_bits=3, exponent_coding=coding))
        for mode in ("draft", "full"):
            got = result["outputs"][coding][mode]
            want = decode(enc, mode)
            assert got.dtype == torch.bfloat16 and got.shape == x.shape
            assert bool((got.view(torch.int16) == want.view(torch.int16)).all()), (coding, mode)
        assert bool((result["outputs"][coding]["full"].view(torch.int16) == x.view(torch.int16)).all())


def test_benchmark_tensor_is_weight_like():
    x = benchmark_tensor(1 << 16)
    assert x.dtype == torch.bfloat16 and x.shape == (64, 1024)
    assert float(x.float().std()) == pytest.approx(0.02, rel=0.05)


def test_rtl_decoder_and_encoder_small_runs():
    decoder = rtl_decoder_speed(1024, coding="unary", lanes=8, word_bits=64, mode="full")
    encoder = rtl_encoder_speed(1024, coding="raw", lanes=8, word_bits=64)
    for row in (decoder, encoder):
        assert row["values"] == 1024 and row["beats"] == 128
        assert 0 < row["beats_per_clock"] <= 1.0
        assert row["beats_per_clock"] == pytest.approx(row["values"] / row["lanes"] / row["cycles"])
        assert row["latency_cycles"] > 0 and row["simulated_cycles"] >= row["cycles"]
        assert row["sim_values_per_s"] > 0 and row["sim_cycles_per_s"] > 0 and row["elaborate_s"] > 0
    assert (decoder["block"], decoder["mode"], encoder["block"]) == ("decoder", "full", "encoder")


def test_machine_info():
    info = machine_info()
    assert info["cpu"] and info["cores"] >= 1 and info["torch_threads"] == torch.get_num_threads()


@pytest.mark.parametrize("call", [
    lambda: codec_throughput(1000, repeats=1),           # not whole rows
    lambda: codec_throughput(0),
    lambda: codec_throughput(1024, repeats=0),
    lambda: codec_throughput(1024, repeats=1, codings=("foo",)),
    lambda: codec_throughput(1024, repeats=1, codings=()),
    lambda: codec_throughput(1024, repeats=1, prune_ratio=1.5),
    lambda: codec_throughput(1024, repeats=1, mantissa_bits=9),
    lambda: benchmark_tensor(-1024),
    lambda: benchmark_tensor(1024, std=0),
    lambda: rtl_decoder_speed(1024, mode="exact"),
    lambda: rtl_decoder_speed(1000),
    lambda: rtl_encoder_speed(1024, coding="mx"),
    lambda: measure_speed(quick="yes"),
    lambda: measure_speed(workdir=3),
    lambda: measure_speed(log="print"),
    lambda: speed_markdown({}),
    lambda: speed_markdown({"machine": {}}),
    lambda: speed_markdown([]),
], ids=["values-not-rows", "values-zero", "repeats-zero", "coding-unknown", "codings-empty", "prune-ratio",
        "mantissa-bits", "tensor-negative", "tensor-std", "decoder-mode", "decoder-values", "encoder-mx",
        "quick-not-bool", "workdir", "log", "markdown-empty", "markdown-no-parts", "markdown-not-dict"])
def test_bad_arguments_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_missing_verilator_says_make_venv(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(FileNotFoundError, match="make venv"):
        measure_speed(quick=True, log=lambda message: None)


def test_main_writes_the_report(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_measure_speed(*, quick, workdir, log):
        calls.append((quick, workdir))
        return _synthetic_result()

    monkeypatch.setattr(bench_speed, "measure_speed", fake_measure_speed)
    out = tmp_path / "reports" / "speed.md"
    assert bench_speed.main(["--quick", "--out", str(out), "--workdir", str(tmp_path / "w"),
                             "--json", str(tmp_path / "speed.json")]) == 0
    assert calls == [(True, tmp_path / "w")]
    assert out.read_text() == speed_markdown(_synthetic_result())
    assert (tmp_path / "speed.json").exists()
    assert "Verilator" in capsys.readouterr().out
