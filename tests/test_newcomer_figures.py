"""The wrong figures a newcomer met (issue 28), each checked on the real demo models, the real server and a real
history: the summary's fastest and most faithful, a manifest's run figures, bits per weight, and lineage in a
copied models folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from agents.measure.experiments import ExperimentAgent
from agents.models.show import show_model
from lqmf.api import Library
from lqmf.base.manifest import MANIFEST_SUFFIX, read_manifest, weight_split
from lqmf.base.settings import Settings
from server.http.runner import BackgroundServer
from server.runtime.manager import ModelManager
from tests.openai_stub import OpenAIStub, StubBehaviour

ONE_PROMPT = dict(prompts=["Say one word."], repetitions=1, warmup=0, max_tokens=4)


def models_with(demo_dir: Path, target: Path, *names: str) -> Path:
    """A models folder holding copies of demo models, manifests included."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (demo_dir / name).is_dir():
            shutil.copytree(demo_dir / name, target / name)
        else:
            shutil.copy2(demo_dir / name, target / name)
            shutil.copy2(demo_dir / (name + MANIFEST_SUFFIX), target / (name + MANIFEST_SUFFIX))
    return target


@pytest.fixture
def served(demo_dir, tmp_path):
    """The real server over a private models folder (demo f16, q8_0, q4_k_m), and an agent on its history."""
    models = models_with(demo_dir, tmp_path / "models", "demo-f16.gguf", "demo-q8_0.gguf", "demo-q4_k_m.gguf")
    settings = Settings(home=tmp_path / "home", models_dir_override=models, port=0, auto_benchmark_every=0,
                        remote_timeout_s=8.0)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    url = server.start().url
    try:
        yield url, ExperimentAgent(settings, manager, server.library.store), models
    finally:
        server.stop()
        manager.close()


def summary(url: str) -> dict:
    answer = httpx.get(f"{url}/benchmark/summary", timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- 1. the summary ----------------------------------------------------------------------------------------
def test_a_removed_model_is_left_out_of_the_summary(served):
    url, agent, models = served
    shutil.copy2(models / "demo-q4_k_m.gguf", models / "doomed.gguf")
    agent.benchmark(["doomed"], **ONE_PROMPT)
    assert summary(url)["fastest_model"]["model"] == "doomed"
    (models / "doomed.gguf").unlink()
    gone = summary(url)
    assert gone["fastest_model"] is None and "doomed" not in gone["speed_by_model"]
    assert gone["recommendation"] is None
    agent.benchmark(["demo-q4_k_m"], **ONE_PROMPT)
    now = summary(url)
    fastest = now["fastest_model"]
    assert fastest["model"] == "demo-q4_k_m" and fastest["compared"]["models"] == ["demo-q4_k_m"]
    assert fastest["compared"]["left_out"] == ["doomed"]
    # It names what it compares: the prompt set, the length, when.
    assert now["recommendation"].startswith("speed: demo-q4_k_m (")
    assert "the only model measured on a prompt set of 1 (4 tokens each) on " in now["recommendation"]


def test_an_answer_that_arrived_in_one_burst_is_no_decode_rate(served):
    """A remote whose answer comes all at once (after 0.3 s, then every piece together): the arrival times of its
    tokens say nothing of decoding, so it gets no rate and is not ranked; a forgotten endpoint is left out."""
    url, agent, _ = served
    reply = "one two three four five six seven eight"
    with OpenAIStub(StubBehaviour(mode="slow", delay_s=0.3, reply=reply)) as stub:
        added = httpx.post(f"{url}/endpoints", json={"name": "far", "url": stub.url, "model": "stub-model"}, timeout=30)
        assert added.status_code == 201, added.text
        bench = agent.benchmark(["far", "demo-q4_k_m"], **ONE_PROMPT)
    far, local = bench.row("far"), bench.row("demo-q4_k_m")
    run = next(r for r in bench.runs if r.model == "far")
    assert run.completion_tokens == 8 and run.ttft_s >= 0.3 and run.gen_tps is None and far.gen_tps is None
    assert not run.decode_timed and far.speed.untimed_runs == 1 and far.rank is None
    assert local.gen_tps > 0 and local.rank == 1
    assert any(n.startswith("far: its answer arrived in one burst over HTTP") for n in bench.notes)
    assert "far" not in bench.recommendation
    now = summary(url)
    assert now["fastest_model"]["model"] == "demo-q4_k_m"
    assert "one burst" in now["fastest_model"]["compared"]["not_ranked"]["far"]
    assert now["speed_by_model"]["far"]["gen_tps"] is None and now["speed_by_model"]["far"]["measured_over"] == "http"
    assert httpx.delete(f"{url}/endpoints/far", timeout=30).status_code in (200, 204)
    assert "far" not in summary(url)["speed_by_model"]


def test_a_rate_recorded_from_a_burst_before_this_fix_is_not_ranked(served):
    """The newcomer's history: `far` at 6342.1 tok/s with TTFT p50 and latency p50 both 0.011 s."""
    url, agent, _ = served
    with OpenAIStub(StubBehaviour()) as stub:
        added = httpx.post(f"{url}/endpoints", json={"name": "far", "url": stub.url, "model": "stub-model"}, timeout=30)
        assert added.status_code == 201, added.text
        store = agent.store
        old = store.start_experiment("compare", ["demo-q4_k_m", "far"], {"prompts": 5, "max_tokens": 48})
        store.finish_experiment(old, {"models": [
            {"model": "far", "runs": 5, "gen_tps": 6342.1, "ttft_p50_s": 0.011, "latency_p50_s": 0.011,
             "format": "remote", "measured_over": "http", "rank": 1},
            {"model": "demo-q4_k_m", "runs": 5, "gen_tps": 2662.0, "ttft_p50_s": 0.002, "latency_p50_s": 0.02,
             "format": "gguf", "rank": 2}]})
        now = summary(url)
    fastest = now["fastest_model"]
    assert fastest["model"] == "demo-q4_k_m" and fastest["gen_tps"] == 2662.0
    assert "nearly all its latency" in fastest["compared"]["not_ranked"]["far"]
    assert "5 prompts (the record does not say which)" in fastest["compared"]["measured_on"]


def test_the_most_faithful_is_the_lowest_kld_not_the_last_measured(served):
    url, agent, _ = served
    q8 = agent.fidelity("demo-q8_0", "demo-f16", chunks=2).row("demo-q8_0").fidelity
    q4 = agent.fidelity("demo-q4_k_m", "demo-f16", chunks=2).row("demo-q4_k_m").fidelity  # measured last
    assert q8.kld_mean < q4.kld_mean
    faithful = summary(url)["most_faithful_model"]
    assert faithful["model"] == "demo-q8_0" and faithful["kld_mean"] == pytest.approx(q8.kld_mean)
    assert faithful["compared"]["models"] == ["demo-q8_0", "demo-q4_k_m"]
    assert faithful["reference"] == "demo-f16" and faithful["compared"]["text"] == q8.ppl_text
    # Against another text, the figures are not comparable: the newest text's group alone is ranked.
    other = agent.fidelity("demo-q4_k_m", "demo-f16", text="def main():\n    return 1\n" * 300, chunks=1)
    faithful = summary(url)["most_faithful_model"]
    assert faithful["model"] == "demo-q4_k_m" and faithful["compared"]["models"] == ["demo-q4_k_m"]
    assert faithful["experiment_id"] == other.id


# -- 2. a manifest's run figures ------------------------------------------------------------------------------
def test_the_manifest_records_the_whole_run_as_the_run_reports_it(demo_dir, tmp_path):
    models = models_with(demo_dir, tmp_path / "models", "demo-f16.gguf")
    with Library(Settings(home=tmp_path / "home", models_dir_override=models)) as lib:
        done = lib.quantize("demo-f16", level="q8_0", name="my-q8").run()
        on_disk = json.loads((models / ("my-q8.gguf" + MANIFEST_SUFFIX)).read_text())
        shown = lib.show("my-q8")
    assert on_disk["wall_time_s"] == done.wall_time_s and on_disk["peak_rss_bytes"] == done.peak_rss_bytes
    step = on_disk["details"]["quantizer_step"]
    assert step["wall_time_s"] <= on_disk["wall_time_s"] and step["peak_rss_bytes"] <= on_disk["peak_rss_bytes"]
    assert shown.manifest["wall_time_s"] == done.wall_time_s
    # 4. Its lineage is stored relative to the models folder.
    assert on_disk["source"]["path"] == "demo-f16.gguf" and on_disk["source"]["relative_to"] == "models folder"
    assert read_manifest(models / "my-q8.gguf")["source"]["path"] == str(models / "demo-f16.gguf")


# -- 3. bits per weight ---------------------------------------------------------------------------------------
def test_bits_per_weight_says_what_it_counts(demo_dir, tmp_path):
    split = weight_split(demo_dir / "demo-gptq-4bit")
    manifest = read_manifest(demo_dir / "demo-gptq-4bit")
    assert split.quantized_parameters + split.kept_parameters == manifest["parameter_count"]
    assert split.kept == ("embeddings", "output head") and split.kept_bits_per_weight == 16
    assert 4 < split.quantized_bits_per_weight < 4.5 < manifest["bits_per_weight"]
    assert weight_split(demo_dir / "demo-q4_k_m.gguf") is None and weight_split(demo_dir / "demo-hf") is None
    from cli.render_models import model_details

    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir))
    try:
        details = show_model(manager, "demo-gptq-4bit")
    finally:
        manager.close()
    console = Console(record=True, width=400)
    model_details(details, console)
    text = " ".join(console.export_text().split())
    assert (f"{manifest['bits_per_weight']:.2f} measured over all weights (embeddings and output head kept "
            f"at 16 bit); {split.quantized_bits_per_weight:.2f} over the quantized layers") in text


# -- 4. a copied models folder keeps its lineage --------------------------------------------------------------
def test_a_copied_models_folder_points_at_its_own_files(demo_dir, tmp_path):
    # Manifests written before (absolute paths, into the folder the demo was built in) ...
    old = read_manifest(demo_dir / "demo-q4_k_m.gguf")
    copy = models_with(demo_dir, tmp_path / "copy", "demo-f16.gguf", "demo-q4_k_m.gguf")
    # (written here as they were: the demo in a fresh clone is built with relative lineage already)
    copied = copy / ("demo-q4_k_m.gguf" + MANIFEST_SUFFIX)
    raw = json.loads(copied.read_text())
    raw["source"].pop("relative_to", None)
    raw["source"]["path"] = str(demo_dir / "demo-f16.gguf")
    copied.write_text(json.dumps(raw))
    # ... are read in the copy as naming the copy's own source, and the folder they came from is untouched.
    assert old["source"]["path"] == str(demo_dir / "demo-f16.gguf")
    manager = ModelManager(Settings(home=tmp_path / "home", models_dir_override=copy))
    try:
        details = show_model(manager, "demo-q4_k_m")
    finally:
        manager.close()
    assert details.manifest["source"]["path"] == str(copy / "demo-f16.gguf")
    assert details.lineage["ancestors"] == ["demo-f16"]
    # New manifests are relative: a folder made here, then moved, still names its own files.
    made = models_with(demo_dir, tmp_path / "made", "demo-f16.gguf")
    with Library(Settings(home=tmp_path / "home2", models_dir_override=made)) as lib:
        lib.quantize("demo-f16", level="q8_0", name="mine").run()
    moved = tmp_path / "moved"
    shutil.move(made, moved)
    assert read_manifest(moved / "mine.gguf")["source"]["path"] == str(moved / "demo-f16.gguf")
