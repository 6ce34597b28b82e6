"""Experiments on the real demo models: fidelity, benchmark figures, prompts, crash and Ctrl-C records,
the HTML report, and the automatic benchmark through the real server."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from agents.measure.experiments import ExperimentAgent, heldout_text
from agents.measure.quality import score
from agents.measure.ranking import percentile
from lqmf.base.errors import LQMFError
from lqmf.base.generation import GenerationParams
from lqmf.base.settings import Settings
from memory.store import Store
from server.runtime.manager import ModelManager
from tests.test_store import intact

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def lab(demo_dir, tmp_path):
    """An agent over the demo models with its own history; closed afterwards."""
    settings = Settings(home=tmp_path, models_dir_override=demo_dir, keep_alive_s=-1)
    manager = ModelManager(settings)
    store = Store(settings.db_path)
    try:
        yield ExperimentAgent(settings, manager, store)
    finally:
        manager.close()
        store.close()


# -- fidelity ----------------------------------------------------------------------------------------------
def test_f16_against_itself_is_perfectly_faithful(lab):
    """Two independent logits_all runs of the same GGUF: KLD 0 and the same top token everywhere."""
    report = lab.fidelity("demo-f16", "demo-f16", chunks=2)
    (row,) = [r.fidelity for r in report.rows if r.model == "demo-f16"]
    assert row.kld_mean == pytest.approx(0, abs=1e-6) and row.kld_max < 1e-5
    assert row.top1_agreement == 1.0 and row.tokens == 2 * (512 - 1 - 256)
    assert row.ppl_test == pytest.approx(row.ppl_ref, rel=1e-6)


def test_q8_is_more_faithful_than_q4_and_both_differ(lab):
    text, _ = heldout_text()
    stats = lab.fidelity_stats("demo-f16", ["demo-q8_0", "demo-q4_k_m"], text, chunks=3)
    q8, q4 = stats["demo-q8_0"], stats["demo-q4_k_m"]
    assert 0 < q8.kld_mean < q4.kld_mean
    assert 1 > q8.top1_agreement > q4.top1_agreement > 0.5
    assert q8.dp_rms < q4.dp_rms and q8.tokens == q4.tokens == 3 * 255
    assert stats["demo-f16"].kld_mean == 0 and stats["demo-f16"].ppl_test == q4.ppl_ref


def test_fidelity_across_backends_and_the_reference_is_found_from_manifests(lab):
    """The GGUF f16 and the transformers source agree to float precision; q4_k_m's reference is the f16."""
    assert lab.lineage("demo-q4_k_m") == ["demo-q4_k_m", "demo-f16", "demo-hf"]
    assert lab.reference_for("demo-q4_k_m") == "demo-f16" and lab.reference_for("demo-bnb-nf4") == "demo-hf"
    text, _ = heldout_text()
    stats = lab.fidelity_stats("demo-hf", ["demo-f16"], text, chunks=1)
    assert stats["demo-f16"].kld_mean < 1e-5 and stats["demo-f16"].top1_agreement > 0.99
    with pytest.raises(LQMFError, match="which model demo-hf was made from"):
        lab.reference_for("demo-hf")


def test_fidelity_report_is_recorded_and_drawn(lab):
    report = lab.fidelity("demo-q4_k_m", chunks=2)
    assert report.reference == "demo-f16" and "demo-q4_k_m: KLD" in report.recommendation
    row = report.row("demo-q4_k_m").fidelity
    saved = lab.store.experiment(report.id)
    assert saved["status"] == "done" and saved["models"] == ["demo-f16", "demo-q4_k_m"]
    assert saved["summary"]["models"][1]["kld_mean"] == row.kld_mean > 0
    assert {r["model"] for r in lab.store.results(report.id)} == {"demo-f16", "demo-q4_k_m"}
    html = Path(report.report_path).read_text(encoding="utf-8")
    svg = ET.fromstring(html[html.index('<svg id="chart-size-kld"'):html.index("</svg>") + len("</svg>")])
    points = {c.get("data-model"): float(c.get("data-kld")) for c in svg.iter("circle")}
    assert points == {"demo-f16": 0.0, "demo-q4_k_m": pytest.approx(row.kld_mean, rel=1e-4)}


def test_fidelity_refuses_bad_requests(lab, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short\n")
    with pytest.raises(LQMFError, match="shorter than one window"):
        lab.fidelity("demo-q4_k_m", "demo-f16", text_path=short)
    with pytest.raises(LQMFError, match="no file"):
        lab.fidelity("demo-q4_k_m", "demo-f16", text_path=tmp_path / "missing.txt")
    assert [e["status"] for e in lab.store.experiments()] == ["failed"]  # the short text; the missing file first


# -- benchmark ------------------------------------------------------------------------------------------------
def test_benchmark_figures_agree_with_token_counts_and_timings(lab):
    prompts = ["Explain what a Python dictionary is.", "What does the `with` statement do?"]
    report = lab.benchmark(["demo-q4_k_m", "demo-hf"], prompts=prompts, repetitions=2, warmup=1, max_tokens=12)
    results = lab.store.results(report.id)
    assert len(results) == 2 * 2 * 2  # models x repetitions x prompts; the warm-up is not recorded
    for model in ("demo-q4_k_m", "demo-hf"):
        lengths = [lab.manager.call(model, lambda b, p=p: len(b.chat_prompt_ids([{"role": "user", "content": p}])))
                   for p in prompts]
        runs = [r for r in results if r["model"] == model]
        row = report.row(model)
        for run in runs:
            assert run["completion_tokens"] == 12  # fixed length: end-of-text ignored
            assert run["prompt_tokens"] == lengths[prompts.index(run["prompt"])]
            decode = run["metrics"]["decode_s"]
            assert run["tokens_per_second"] == pytest.approx(11 / decode)
            assert run["metrics"]["prompt_tps"] == pytest.approx(run["prompt_tokens"] / run["ttft_s"])
            assert run["latency_s"] >= run["ttft_s"] + decode
        speed, load = row.speed, row.load
        assert speed.completion_tokens == 48 and speed.prompt_tokens == 2 * sum(lengths)
        assert speed.gen_tps == pytest.approx(sum(11 for _ in runs) / sum(r["metrics"]["decode_s"] for r in runs))
        assert speed.prompt_tps == pytest.approx(speed.prompt_tokens / sum(r["ttft_s"] for r in runs))
        assert speed.latency_p50_s == pytest.approx(statistics.median(r["latency_s"] for r in runs))
        assert load.loaded_by_benchmark and load.load_time_s > 0 and load.peak_rss_attributable_bytes > 0
    assert [r.rank for r in report.rows] == [1, 2]
    assert report.rows[0].gen_tps >= report.rows[1].gen_tps
    assert report.recommendation.startswith(f"fastest: {report.rows[0].model}")


def test_benchmark_of_a_loaded_model_does_not_claim_its_memory(lab):
    lab.manager.load("demo-q4_k_m")
    load = lab.benchmark(["demo-q4_k_m"], prompts=["hi"], repetitions=1, warmup=0, max_tokens=4).rows[0].load
    assert load.loaded_by_benchmark is False and load.peak_rss_attributable_bytes is None
    assert load.footprint_bytes > 0


def test_percentile_matches_numpy():
    import numpy as np

    values = [0.3, 0.1, 0.7, 0.2, 0.9]
    for q in (0, 50, 95, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


# -- prompts ------------------------------------------------------------------------------------------------------
def test_batch_and_conversation_are_recorded_turn_by_turn(lab, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is a tuple?"}\n\n'
                       '{"messages": [{"role": "user", "content": "What is a set?"}]}\n')
    seen = []
    params = GenerationParams(max_tokens=16, temperature=0)
    batch = lab.batch("demo-q4_k_m", prompts, params, progress=lambda what, done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    assert [r["prompt"] for r in lab.store.results(batch.id)] == ["What is a tuple?", "What is a set?"]
    script = tmp_path / "script.txt"
    script.write_text("system: Answer briefly.\nWhat is a list?\nAnd a dict?\n")
    convo = lab.conversation("demo-q4_k_m", script, params)
    first, second = lab.store.results(convo.id)
    assert [first["metrics"]["turn"], second["metrics"]["turn"]] == [1, 2]
    # The second turn carries the first question and answer: its prompt is longer by at least that.
    assert second["prompt_tokens"] > first["prompt_tokens"] + first["completion_tokens"]
    for run in (first, second):
        heuristic = run["metrics"]["quality_heuristic"]
        assert 0 <= heuristic["total"] <= 1
        parts = heuristic["length"] + heuristic["relevance"] + heuristic["coherence"]
        assert heuristic["total"] == pytest.approx(parts, abs=1e-3)


@pytest.mark.parametrize("content,message", [
    ('{"prompt": "ok"}\nnot json\n', "line 2: not JSON"),
    ('{"prompt": "ok"}\n{"other": 1}\n', "line 2: no prompt"),
    ("\n\n", "holds no prompts"),
])
def test_bad_prompt_files_name_the_line(lab, tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(LQMFError, match=message):
        lab.batch("demo-q4_k_m", path, GenerationParams(max_tokens=4))
    assert lab.store.experiments() == []  # refused before anything was recorded


def test_ctrl_c_leaves_the_experiment_incomplete(lab):
    def interrupt(what, done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lab.prompts("batch", "demo-q4_k_m", ["one", "two", "three"], GenerationParams(max_tokens=4), interrupt)
    (exp,) = lab.store.experiments()
    assert exp["status"] == "incomplete" and exp["summary"]["stopped"] == "interrupted"
    assert len(lab.store.results(exp["id"])) == 1 and exp["summary"]["runs"] == 1


def test_killed_mid_experiment_leaves_a_consistent_database(demo_dir, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from lqmf.base.settings import Settings
        from memory.store import Store
        from server.runtime.manager import ModelManager
        from lqmf.base.generation import GenerationParams
        from agents.measure.experiments import ExperimentAgent
        settings = Settings(home={str(tmp_path)!r}, models_dir_override={str(demo_dir)!r})
        agent = ExperimentAgent(settings, ModelManager(settings), Store(settings.db_path))
        agent.prompts("batch", "demo-q4_k_m", ["Write a long story."] * 10000, GenerationParams(max_tokens=32))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "memory" / "lqmf.db"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if db.exists():
                store = Store(db)
                done = store.experiments() and len(store.results(store.experiments()[0]["id"]))
                store.close()
                if done and done >= 3:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the experiment never got going")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = Store(db)
    try:
        assert intact(db) and store.recovered == 1
        (exp,) = store.experiments()
        assert exp["status"] == "incomplete"
        results = store.results(exp["id"])
        assert len(results) >= 3
        assert all(r["response"] is not None and r["completion_tokens"] is not None for r in results)
    finally:
        store.close()


def test_quality_heuristic_parts():
    empty = score("What is a dict?", "")
    assert empty.total == 0
    on_topic = score("Explain python dictionaries", "Python dictionaries map keys to values and are fast to search.")
    looping = score("Explain python dictionaries", "the the the the the the the the the the the the")
    assert on_topic.relevance == 0.3 and looping.relevance == 0
    assert on_topic.coherence == 0.4 and looping.coherence < 0.1
    assert on_topic.total > looping.total


# -- compare and the summary over HTTP ----------------------------------------------------------------------------
def test_compare_ranks_and_finds_the_shared_reference(lab):
    report = lab.compare(["demo-q4_k_m", "demo-q8_0"], max_tokens=8, chunks=1)
    assert report.reference == "demo-f16"
    assert {r.model for r in report.rows} == {"demo-q4_k_m", "demo-q8_0"}
    faithful = min(report.rows, key=lambda r: r.fidelity.kld_mean).model
    fastest = max(report.rows, key=lambda r: r.gen_tps).model
    assert faithful == "demo-q8_0" and f"most faithful: {faithful}" in report.recommendation
    assert f"fastest: {fastest}" in report.recommendation and "smallest: demo-q4_k_m" in report.recommendation
    html = Path(report.report_path).read_text(encoding="utf-8")
    assert html.count('class="bar"') == 2 and 'id="chart-size-kld"' in html
    assert lab.common_reference(["demo-gptq-4bit", "demo-q4_k_m"]) == "demo-hf"
    with pytest.raises(LQMFError, match="two or more"):
        lab.compare(["demo-q4_k_m", "demo-q4_k_m"])


def test_auto_benchmark_fires_after_n_requests_and_feeds_the_summary(demo_dir, tmp_path):
    from lqmf.api import Library
    from server.http.runner import BackgroundServer

    settings = Settings(home=tmp_path, models_dir_override=demo_dir, port=0, auto_benchmark_every=3, keep_alive_s=-1)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    server.start()
    try:
        url = server.status().url
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}
        for _ in range(2):
            assert httpx.post(f"{url}/models/demo-q4_k_m/chat", json=body, timeout=60).status_code == 200
        time.sleep(0.5)
        assert httpx.get(f"{url}/benchmark/summary").json()["fastest_model"] is None  # not yet: 2 of 3
        assert httpx.post(f"{url}/models/demo-q4_k_m/chat", json=body, timeout=60).status_code == 200
        deadline = time.monotonic() + 60
        while (summary := httpx.get(f"{url}/benchmark/summary").json())["fastest_model"] is None:
            assert time.monotonic() < deadline, "no automatic benchmark after 3 requests"
            time.sleep(0.2)
        assert summary["fastest_model"]["model"] == "demo-q4_k_m" and summary["fastest_model"]["gen_tps"] > 0
        assert summary["fastest_model"]["kind"] == "auto-benchmark" and summary["most_faithful_model"] is None
        (line,) = settings.benchmarks_log.read_text().splitlines()
        logged = json.loads(line)
        assert logged["request_count"] == 3 and logged["models"]["demo-q4_k_m"]["completion_tokens"] == 48
        # A fidelity run recorded by anyone (here: a second store on the same file) feeds the summary too.
        store = Store(settings.db_path)
        try:
            ExperimentAgent(settings, manager, store).fidelity("demo-q4_k_m", chunks=1)
        finally:
            store.close()
        faithful = httpx.get(f"{url}/benchmark/summary").json()["most_faithful_model"]
        assert faithful["model"] == "demo-q4_k_m" and faithful["reference"] == "demo-f16" and faithful["kld_mean"] > 0
        listed = httpx.get(f"{url}/experiments", params={"kind": "auto-benchmark"}).json()["experiments"]
        assert len(listed) == 1 and listed[0]["status"] == "done"
        one = httpx.get(f"{url}/experiments/{listed[0]['id']}").json()
        assert len(one["results"]) == 3  # the small benchmark: three prompts, once
        assert httpx.get(f"{url}/experiments/9999").status_code == 404
        assert httpx.get(f"{url}/experiments", params={"status": "bogus"}).status_code == 422
    finally:
        server.stop()
        manager.close()
    store = Store(settings.db_path)
    try:
        per_model = store.statistics()["per_model"]
        assert per_model[0]["model"] == "demo-q4_k_m" and per_model[0]["requests"] == 3  # served, not benchmark runs
    finally:
        store.close()


def test_auto_benchmark_counting():
    from agents.measure.auto_benchmark import AutoBenchmark

    class Agent:
        def __init__(self):
            self.calls = 0
            self.manager = self

        def loaded(self):
            self.calls += 1
            return []  # nothing loaded: the run ends at once

    agent = Agent()
    off = AutoBenchmark(agent, every=0)
    for _ in range(10):
        off.observe()
    assert agent.calls == 0
    every_four = AutoBenchmark(agent, every=4)
    for _ in range(9):
        every_four.observe()
        every_four.wait()
    assert agent.calls == 2
