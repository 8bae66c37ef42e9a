"""The pipeline on the real SmolLM2-135M: weights and KV cache in Cassandra
format, draft and verify from the same bytes, output identical to plain BF16
decoding. And the `cassandra-sd generate` command on a tiny checkpoint folder."""

import json

import pytest
import torch

from golden.format.codec import EncodedTensor, bf16_bits, decode
from golden.llm.drafting import DraftPolicy
from golden.llm.llama import DenseKVCache
from golden.llm.speculative import GenerationResult, generate_plain
from golden.pipeline import Pipeline, PipelineConfig
from golden.pipeline.cli import main
from tests.tiny_model import make_tiny_checkpoint


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(PipelineConfig())  # the paper's defaults: wanda 40%, 4 bits, KV 4 bits, gamma 5


def test_weights_live_only_in_cassandra_format(pipe):
    w = pipe.weights
    assert len(w.containers) == 30 * 7 + 1  # every linear layer and the tied head
    assert set(w.raw) == {n for n in w.raw if n.endswith("norm.weight")}  # only RMSNorm weights stay BF16
    name = "model.layers.3.mlp.down_proj.weight"
    data = w.containers[name]
    prefix = len(data) - sum(spec_len for spec_len in _verification_lengths(data))
    draft_from_prefix = decode(EncodedTensor.from_bytes(data[:prefix], part="speculation"), "draft")
    assert torch.equal(bf16_bits(draft_from_prefix).float(), bf16_bits(pipe.draft_weights[name].to(torch.bfloat16)).float())
    assert torch.equal(pipe.target_weights[name], pipe.reference[name])  # full decode is the original
    assert w.stored_bytes() < w.bf16_bytes()  # smaller than the BF16 model


def _verification_lengths(data):
    enc = EncodedTensor.from_bytes(data)
    return [enc.streams[n].stored_bits // 8 for n in ("mantissa_low", "pruned_raw")]


def test_greedy_lossless_on_real_prompts(pipe):
    tok = pipe.tokenizer
    prompts = [
        tok.encode(tok.format_prompt("What is the capital of France?")),
        tok.encode("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
        tok.encode(tok.format_prompt("Write a haiku about the sea.")),
    ]
    for ids in prompts:
        report = pipe.run(ids, 32)
        assert report.lossless, (tok.decode(report.speculative.tokens), tok.decode(report.plain.tokens))
        m = report.metrics()
        assert 0 < m["alpha"] <= 1 and 1 <= m["tau"] <= pipe.config.gamma + 1
        # the draft reads the speculation data only: about 28% of BF16 at these settings
        assert m["draft_step_bytes"] < 0.35 * m["plain_step_bytes"]
        assert m["draft_step_bytes"] < m["verify_step_bytes"] < m["plain_step_bytes"]


DRAFTING_MODES = [
    DraftPolicy(gamma=3, tree="2x2x2"),
    DraftPolicy(gamma=4, tree="dynamic:12", width=3),
    DraftPolicy(gamma=6, threshold=0.6),
    DraftPolicy(gamma=5, lookup="alone"),
    DraftPolicy(gamma=5, lookup="gated"),
    DraftPolicy(gamma=3, tree="2x2", lookup="branch", threshold=0.1),
]


@pytest.fixture(scope="module")
def drafting_prompts(pipe):
    """Two prompts and plain BF16 decoding's 20 tokens for each."""
    tok = pipe.tokenizer
    prompts = [
        tok.encode("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\n"
                   "def mul(a, b):\n    return"),
        tok.encode(tok.format_prompt("Name three colours.")),
    ]
    plains = [generate_plain(pipe.model, pipe.reference, DenseKVCache(pipe.model_config, 128), ids, 20,
                             eos_ids=tok.eos_token_ids).tokens for ids in prompts]
    return prompts, plains


@pytest.mark.parametrize("policy", DRAFTING_MODES, ids=lambda p: p.describe())
def test_greedy_lossless_in_every_drafting_mode(pipe, drafting_prompts, policy):
    """Trees, adaptive length and lookup on the real model: the output equals plain
    BF16 decoding, with weights and KV cache in Cassandra format. (One test per mode,
    so that the two test workers share them.)"""
    prompts, plains = drafting_prompts
    default = pipe.policy
    try:
        pipe.policy = policy
        reports = [pipe.run(ids, 20, check=False) for ids in prompts]
    finally:
        pipe.policy = default
    for report, plain in zip(reports, plains):
        assert report.speculative.tokens == plain, policy.describe()
    combined = GenerationResult.combine(r.speculative for r in reports)
    assert combined.tau > 1.2, policy.describe()  # each mode accepts drafts on these prompts
    if policy.lookup == "alone":
        assert combined.draft_forwards == 0 and combined.mean_draft_bytes == 0


def test_sampling_runs_on_real_model(pipe):
    pipe.config.sample, pipe.config.temperature = True, 0.8
    try:
        report = pipe.run(pipe.tokenizer.encode("The sea is"), 16, check=False)
    finally:
        pipe.config.sample = False
    s = report.speculative
    assert 1 <= len(s.tokens) <= 16 and all(0 <= t < 49152 for t in s.tokens)
    assert s.proposed > 0 and 0 <= s.alpha <= 1


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-cli"))


def test_generate_cli_prompt(tiny_folder, tmp_path, capsys):
    out = tmp_path / "m.json"
    rc = main(["generate", "--model", str(tiny_folder), "--prompt", "hello", "--max-new-tokens", "8",
               "--group-size", "16", "--quiet", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "acceptance rate alpha" in text and "IDENTICAL to plain BF16 decoding" in text
    data = json.loads(out.read_text())
    assert data["total"]["lossless"] is True and data["total"]["prompts"] == 1


def test_generate_cli_sampling_is_not_a_lossless_failure(tiny_folder, tmp_path, capsys):
    """Sampling keeps the distribution, not a plain run's tokens: no token-for-token
    verdict, exit 0, the tests that check the distribution named."""
    rc = main(["generate", "--model", str(tiny_folder), "--prompt", "hello", "--max-new-tokens", "12",
               "--group-size", "16", "--quiet", "--sample", "--temperature", "1.5", "--seed", "3",
               "--json", str(tmp_path / "s.json")])
    text = capsys.readouterr().out
    assert rc == 0
    assert "DIFFERENT" not in text and "IDENTICAL" not in text
    assert "keeps the target's distribution" in text and "tests/llm/test_speculative.py" in text
    total = json.loads((tmp_path / "s.json").read_text())["total"]
    assert total["sampled"] is True and total["lossless"] is None


def test_generate_cli_tree_and_lookup(tiny_folder, capsys):
    rc = main(["generate", "--model", str(tiny_folder), "--prompt", "hello hello hello", "--max-new-tokens", "8",
               "--group-size", "16", "--quiet", "--tree", "2x2", "--lookup", "branch", "--threshold", "0.1",
               "--draft-rounding", "midpoint"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "tree 2x2, stop below p 0.1, lookup branch (n 2..4)" in text and "IDENTICAL to plain BF16 decoding" in text
    assert "the draft reads truncated bits as their midpoint" in text


def test_generate_cli_chat(tiny_folder, capsys):
    rc = main(["generate", "--model", str(tiny_folder), "--dataset", "chat", "--offset", "3", "--limit", "2",
               "--max-new-tokens", "6", "--group-size", "16", "--lookup", "gated", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "| chat/3 |" in text and "| chat/4 |" in text and "| **all 2** |" in text


def test_generate_cli_humaneval(tiny_folder, capsys):
    rc = main(["generate", "--model", str(tiny_folder), "--dataset", "humaneval", "--limit", "2",
               "--max-new-tokens", "6", "--group-size", "16", "--gamma", "3", "--selector", "magnitude",
               "--exponent", "mx", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "| HumanEval/0 |" in text and "| HumanEval/1 |" in text and "| **all 2** |" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "x", "--gamma", "0"], "--gamma 0 must be >= 1"),
        (["--prompt", "x", "--truncate", "9"], "truncate=9 is out of range"),
        (["--prompt", "x", "--kv-prune", "1.5"], "--kv-prune 1.5 is out of range"),
        ([], "give --prompt TEXT or --dataset humaneval|chat"),
        (["--dataset", "chat", "--offset", "48"], "--offset 48 is out of range: the chat set has 48 prompts"),
        (["--dataset", "humaneval", "--offset", "500"], "--offset 500 is out of range"),
        (["--prompt", "x", "--tree", "2x0"], "tree='2x0'"),
        (["--prompt", "x", "--threshold", "1.5"], "threshold=1.5"),
        (["--prompt", "x", "--lookup-min", "3", "--lookup-max", "2"], "lookup_min=3"),
        (["--prompt", "x", "--width", "0"], "width=0"),
        (["--prompt", "x", "--draft-rounding", "midpoint", "--exponent", "mx"], "not mx"),
        (["--prompt", "x", "--kv-truncate", "8"], "--kv-truncate 8 is out of range"),
        (["--prompt", "x", "--temperature", "0"], "--temperature 0.0 must be a finite number > 0"),
        (["--prompt", "x", "--temperature", "nan"], "--temperature nan must be a finite number > 0"),
        (["--prompt", "x", "--offset", "3"], "--offset 3 applies to --dataset only"),
        (["--prompt", "x", "--limit", "2"], "--limit 2 applies to --dataset only"),
        (["--prompt", "x", "--dataset", "chat"], "not both"),
    ],
)
def test_generate_cli_errors(tiny_folder, capsys, args, message):
    rc = main(["generate", "--model", str(tiny_folder), "--group-size", "16", "--quiet", *args])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_disk_cache_serves_a_second_build(tiny_folder, tmp_path):
    """A second pipeline with the same model and settings loads calibration, containers
    and decoded views from the cache, bit for bit what the first computed; other
    settings and --no-cache build afresh."""
    from golden.pipeline import Pipeline, PipelineConfig

    logs = []
    cfg = dict(model=str(tiny_folder), group_size=16, cache_dir=str(tmp_path / "cache"))
    first = Pipeline(PipelineConfig(**cfg), log=logs.append)
    assert not any("from the cache" in m for m in logs)
    assert {p.name for p in (tmp_path / "cache").iterdir()} == {"calibration", "weights", "views"}
    logs.clear()
    second = Pipeline(PipelineConfig(**cfg), log=logs.append)
    assert sum("from the cache" in m for m in logs) == 3
    assert first.weights.containers == second.weights.containers
    for mode in ("draft", "full"):
        a, b = first.weights.view(mode), second.weights.view(mode)
        assert all(torch.equal(a[n].view(torch.int32), b[n].view(torch.int32)) for n in first.weights.containers)
    prompt = second.tokenizer.encode("def f(x):")
    assert second.run(prompt, 8).lossless is True
    logs.clear()
    Pipeline(PipelineConfig(**cfg, prune=0.25), log=logs.append)  # new weights; the same calibration
    assert sum("from the cache" in m for m in logs) == 1
    logs.clear()
    Pipeline(PipelineConfig(**{**cfg, "cache_dir": str(tmp_path / "off")}, cache=False), log=logs.append)
    assert not (tmp_path / "off").exists() and not any("from the cache" in m for m in logs)


def test_tokens_are_streamed_as_committed(tiny_folder, capsys):
    from golden.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(PipelineConfig(model=str(tiny_folder), group_size=16, tree="2x2", gamma=2))
    heard = []
    for new_tokens in (1, 7, 20):
        heard.clear()
        report = pipe.run(pipe.tokenizer.encode("a b a b a b"), new_tokens, check=False, on_tokens=heard.append)
        assert [t for chunk in heard for t in chunk] == report.speculative.tokens
        assert all(chunk for chunk in heard) and len(heard) >= 1
    rc = main(["generate", "--model", str(tiny_folder), "--prompt", "hello", "--max-new-tokens", "8",
               "--group-size", "16", "--no-check"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "acceptance rate alpha" in out
