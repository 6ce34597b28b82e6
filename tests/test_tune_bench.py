"""The tune side-by-side benchmark (benchmarks/tune_bench.py): its pure helpers, and one --quick run on the demo
model against the real servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.tune_bench import (
    BASELINE,
    KINDS,
    TUNED,
    count_identical,
    failed,
    figures,
    identity,
    markdown,
    parse_args,
    render_details,
    render_table,
    target_for,
    target_text,
    tune_line,
    verdict,
)
from tests.conftest import REPO


def answers(texts, e2e=100.0, decode=120.0, ttft=10.0):
    """A kind's single-stream answers as measure() keeps them: the same texts non-streamed and streamed."""
    return {"plain": [{"text": t, "e2e_tok_s": e2e} for t in texts],
            "streamed": [{"text": t, "decode_tok_s": decode, "ttft_ms": ttft} for t in texts]}


def system(texts, e2e, load, errors=()):
    return {"single": {k: answers(texts[k], e2e[k]) for k in texts},
            "load": {k: {str(n): {"tok_s": v, "ttft_p50_ms": 50.0, "errors": list(errors)} for n, v in load[k].items()}
                     for k in load}}


def test_targets_follow_the_issue():
    assert target_for("code", 1) == (1.5, True) and target_for("json", 1) == (1.5, True)
    assert target_for("chat", 1) == (0.98, False)
    assert all(target_for(k, n) == (1.0, False) for k in KINDS for n in (4, 16))
    assert target_text("json", 1) == ">= 1.5x, identical text" and target_text("chat", 16) == ">= 1x"


def test_identity_counts_equal_answers_and_a_missing_one_as_different():
    assert count_identical(["a", "b", "c"], ["a", "x", "c"]) == (2, 3)
    assert count_identical(["a", None], ["a", "b"]) == (1, 2)  # a failed request is not identical
    assert count_identical(["a", "b"], ["a", None]) == (1, 1)  # a prompt the reference failed is not counted
    assert count_identical(["a"], ["a", "b"]) == (1, 2)
    assert count_identical([], []) == (0, 0)


def test_verdicts_need_the_ratio_and_for_code_and_json_identical_text():
    assert verdict("code", 1, 150.0, 100.0, (3, 3)) == "PASS"
    assert verdict("code", 1, 149.0, 100.0, (3, 3)) == "MISS"
    assert verdict("json", 1, 200.0, 100.0, (2, 3)) == "MISS (text)"
    assert verdict("json", 1, 200.0, 100.0, (0, 0)) == "MISS (text)"  # nothing compared proves nothing
    assert verdict("chat", 1, 98.0, 100.0, (0, 3)) == "PASS"  # chat: speed only, its text is shown
    assert verdict("chat", 1, 97.9, 100.0) == "MISS"
    assert verdict("code", 16, 100.0, 100.0) == "PASS" and verdict("json", 4, 99.9, 100.0) == "MISS"
    assert verdict("chat", 4, float("nan"), 100.0) == "-" and verdict("chat", 4, 1.0, 0.0) == "-"


def test_figures_take_the_median_of_non_streamed_answers_and_the_loads():
    result = system({"code": ["x", "y", "z"]}, {"code": 0.0}, {"code": {4: 40.0, 16: 160.0}})
    result["single"]["code"]["plain"] = [{"text": "x", "e2e_tok_s": v} for v in (10.0, 30.0, float("nan"))]
    out = figures(result)
    assert out[("code", 1)] == 20.0 and out[("code", 4)] == 40.0 and out[("code", 16)] == 160.0
    assert figures({}) == {}


def test_failed_requests_are_counted_per_row():
    result = system({"chat": ["a", None]}, {"chat": 1.0}, {"chat": {4: 1.0, 16: 1.0}}, errors=["boom"])
    assert failed(result, "chat", 1) == 1 and failed(result, "chat", 16) == 1
    assert failed(result, "code", 1) == 0 and failed({}, "code", 4) == 0


def test_table_rows_are_kind_by_clients_with_ratio_identity_and_verdict():
    texts = {k: ["a", "b"] for k in KINDS}
    base = system(texts, {k: 100.0 for k in KINDS}, {k: {4: 200.0, 16: 300.0} for k in KINDS})
    tuned = system({**texts, "json": ["a", "other"]}, {"chat": 99.0, "code": 160.0, "json": 200.0},
                   {k: {4: 210.0, 16: 290.0} for k in KINDS})
    results = {BASELINE: base, "lqmf-default": base, TUNED: tuned}
    assert identity(results, TUNED, "json") == (2, 4)  # non-streamed and streamed answers alike
    assert identity({TUNED: tuned}, TUNED, "json") is None
    lines = render_table(results).splitlines()
    assert len(lines) == 2 + 3 * len(KINDS) and len({len(line) for line in lines}) == 1
    assert "llama-server default" in lines[0] and "LQMF tuned" in lines[0] and "verdict" in lines[0]
    row = {(c[0].strip(), c[1].strip()): c for c in (line.split("|")[1:-1] for line in lines[2:])}
    code = row[("code", "1 (single stream)")]
    assert code[5].strip() == "1.60x" and code[6].strip() == "4/4, 4/4" and code[-1].strip() == "PASS"
    assert row[("json", "1 (single stream)")][-1].strip() == "MISS (text)"
    assert row[("chat", "1 (single stream)")][-1].strip() == "PASS"
    assert row[("chat", "4")][-1].strip() == "PASS" and row[("chat", "16")][-1].strip() == "MISS"
    assert row[("code", "16")][6].strip() == "-"


def test_a_missing_system_leaves_dashes_and_failures_are_shown():
    texts = {k: ["a"] for k in KINDS}
    base = system(texts, {k: 100.0 for k in KINDS}, {k: {4: 200.0, 16: 300.0} for k in KINDS}, errors=["x", "y"])
    lines = render_table({BASELINE: base, TUNED: {"errors": ["it did not start"]}}).splitlines()
    first = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert first[2] == "100.0" and first[3] == first[4] == first[5] == "-" and first[-1] == "-"
    assert "200.0 (2 failed)" in lines[3]
    details = render_details({BASELINE: base}).splitlines()
    assert len(details) == 2 + 4 * len(KINDS) and "decode tok/s, 1 stream" in details[2] and "120.0" in details[2]


def test_markdown_aligns_columns():
    text = markdown(["a", "number"], [["long name", "1.0"], ["b", "22.5"]])
    lines = text.splitlines()
    assert lines[1] == "| --------- | -----: |" and lines[2].endswith("|    1.0 |")
    assert len({len(line) for line in lines}) == 1


def test_tune_line_judges_the_180_s_limit():
    assert tune_line(120.4, "speculation ngram-mod") == \
        "tune: 120.4 s (limit 180 s) PASS; chose: speculation ngram-mod"
    assert "MISS" in tune_line(181.0, "x") and "did not finish" in tune_line(None, "")


def test_arguments_and_the_quick_defaults(tmp_path):
    args = parse_args([])
    assert (args.prompts, args.tokens, args.load_tokens, args.tune) == (3, 200, 64, {})
    assert args.model is None and not args.bench_model and not args.quick
    assert not args.out.resolve().is_relative_to(REPO)  # never into the checkout
    quick = parse_args(["--quick", "--demo-dir", str(tmp_path)])
    assert (quick.prompts, quick.tokens, quick.load_tokens) == (1, 16, 8) and quick.tune["budget_s"] <= 60
    assert parse_args(["--quick", "--tokens", "4"]).tokens == 4  # an explicit value wins over --quick
    for bad in (["--tokens", "0"], ["--quick", "--bench-model"], ["--model", "x.gguf", "--quick"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_quick_run_measures_all_three_systems(demo_dir, settings, tmp_path):
    from lqmf.base.tools import LlamaTools, tools_folder

    if not LlamaTools.in_folder(tools_folder(settings)).server.is_file():
        pytest.skip("llama-server is not built here (`make tools` builds it)")
    out = tmp_path / "tune.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/tune_bench.py", "--quick", "--demo-dir", str(demo_dir), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    raw = json.loads(out.read_text())
    assert set(raw["systems"]) == {"llama-server", "lqmf-default", "lqmf-tuned"}
    for name, result in raw["systems"].items():
        assert "single" in result, (name, result.get("errors"))
        for kind in KINDS:  # every single-stream answer came back (the load figures may meet a full context)
            assert all(a["text"] is not None for a in result["single"][kind]["plain"]), (name, result["errors"])
    assert raw["figures"]["lqmf-tuned"]["chat/1"] > 0 and raw["figures"]["llama-server"]["chat/1"] > 0
    assert raw["tune"]["chosen"] or raw["tune"].get("error")
    assert "| workload | clients" in run.stdout and "tune:" in run.stdout
    assert raw["config"]["ld_library_path"].endswith("lib")
