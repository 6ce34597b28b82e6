"""The side-by-side engine benchmark's pure helpers (benchmarks/engine_bench.py): no server, no timing."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.engine_bench import (
    BASELINE,
    figures_for,
    json_safe,
    median,
    parse_args,
    parse_clients,
    percentile,
    ratio,
    render_table,
    sse_rate,
    summarize,
    verdict,
)


def test_percentile_interpolates_between_ranks_and_ignores_nan():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)
    assert percentile([5.0], 95) == 5.0
    assert percentile([1.0, float("nan"), 3.0], 0) == 1.0
    assert math.isnan(percentile([], 50))


def test_median_and_ratio_treat_missing_numbers_as_missing():
    assert median([3.0, float("nan"), 1.0]) == 2.0
    assert math.isnan(median([float("nan")]))
    assert ratio(9.0, 10.0) == pytest.approx(0.9)
    assert math.isnan(ratio(1.0, 0.0)) and math.isnan(ratio(float("nan"), 1.0))


def test_sse_rate_counts_tokens_after_the_first_one():
    assert sse_rate(65, 0.010, 0.650) == pytest.approx(100.0)
    assert math.isnan(sse_rate(1, 0.01, 0.02))  # one token: no interval to measure
    assert math.isnan(sse_rate(10, 0.5, 0.5))


def test_parse_clients():
    assert parse_clients("1,4,16") == [1, 4, 16]
    assert parse_clients(" 4, 1,4 ,") == [4, 1]
    for bad in ("0", "", "a"):
        with pytest.raises(ValueError):
            parse_clients(bad)


def test_verdicts_follow_each_target_kind():
    rows = {f.key: f for f in figures_for([1, 4, 16])}
    assert rows["tok_s_c1"].target == ("min_ratio", 0.95)
    assert rows["tok_s_c4"].target == rows["tok_s_c16"].target == ("min_ratio", 0.9)
    assert verdict(rows["tok_s_c1"].target, 95.0, 100.0) == "PASS"
    assert verdict(rows["tok_s_c1"].target, 94.0, 100.0) == "MISS"
    assert verdict(rows["ttft_p50_ms"].target, 14.9, 10.0) == "PASS"  # at most +5 ms
    assert verdict(rows["ttft_p50_ms"].target, 15.1, 10.0) == "MISS"
    assert verdict(rows["errors"].target, 0, 3) == "PASS"
    assert verdict(rows["errors"].target, 1, 0) == "MISS"
    assert verdict(rows["ttft_p95_ms"].target, 1.0, 1.0) == "-"  # reported, not judged
    assert verdict(rows["sse_tok_s"].target, float("nan"), 1.0) == "-"


def test_summary_takes_medians_but_sums_errors():
    figures = figures_for([1])
    rounds = [{"system": BASELINE, "figures": {"tok_s_c1": v, "errors": e}}
              for v, e in ((10.0, 0), (30.0, 1), (20.0, 2))]
    out = summarize(rounds, figures)
    assert out[BASELINE]["tok_s_c1"] == 20.0 and out[BASELINE]["errors"] == 3.0
    assert "lqmf-server" not in out  # a system that did not run has no column values


def test_table_has_a_row_per_figure_with_ratios_targets_and_verdicts():
    figures = figures_for([1, 4])
    results = {
        "llama-server": {"tok_s_c1": 100.0, "tok_s_c4": 200.0, "ttft_p50_ms": 10.0, "ttft_p95_ms": 12.0,
                         "sse_tok_s": 100.0, "errors": 0.0},
        "lqmf-server": {"tok_s_c1": 96.0, "tok_s_c4": 150.0, "ttft_p50_ms": 12.5, "ttft_p95_ms": 20.0,
                        "sse_tok_s": 99.0, "errors": 0.0},
    }
    lines = render_table(figures, results).splitlines()
    assert len(lines) == 2 + len(figures)
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert "llama-server alone" in lines[0] and "LQMF in-process" in lines[0]
    one, four = lines[2], lines[3]
    assert "0.960x" in one and ">= 0.95x" in one and "PASS" in one
    assert "0.750x" in four and "MISS" in four
    ttft = next(line for line in lines if "TTFT p50" in line)
    assert "+2.5 ms" in ttft and "<= +5 ms" in ttft and "PASS" in ttft
    assert lines[-1].split("|")[4].strip() == "-"  # in-process did not run: no number, no verdict


def test_json_safe_turns_nan_into_null():
    text = json.dumps(json_safe({"a": float("nan"), "b": [1.0, float("inf")], 3: {"c": 2}}), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.0, None], "3": {"c": 2}}


def test_arguments_and_the_quick_defaults(tmp_path):
    args = parse_args([])
    assert (args.rounds, args.tokens, args.clients, args.requests, args.streams) == (3, 64, [1, 4, 16], 2, 24)
    assert args.model is None and not args.two_models and args.out.name == "engine_bench.json"
    assert args.systems == ["llama-server", "lqmf-server", "lqmf-in-process"]
    quick = parse_args(["--quick", "--demo-dir", str(tmp_path), "--clients", "1,4"])
    assert (quick.rounds, quick.requests, quick.streams, quick.clients) == (1, 1, 3, [1, 4])
    assert quick.model == tmp_path / "demo-q4_k_m.gguf"
    assert parse_args(["--quick", "--rounds", "2"]).rounds == 2  # an explicit value wins over --quick
    assert parse_args(["--systems", "lqmf-in-process,llama-server"]).systems == ["llama-server", "lqmf-in-process"]
    for bad in (["--systems", "vllm"], ["--tokens", "0"], ["--clients", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
