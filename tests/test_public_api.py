"""The public library API, used as a program would: only `import lqmf` (and its errors), no agents or server.

Quantize the demo model, inspect the plan, run it with a progress callback, load the variant, chat, stream,
embed, compare two variants and read their fidelity, with settings from LQMF_* environment variables.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest

import lqmf
from lqmf.errors import LQMFError

DEMO_FILES = ("demo-f16.gguf", "demo-q8_0.gguf")


@pytest.fixture
def private_models(demo_dir, tmp_path, monkeypatch):
    """A home and a models folder of this test's own, holding the demo's f16 and q8_0 GGUFs with their manifests."""
    models = tmp_path / "models"
    models.mkdir()
    for name in DEMO_FILES:
        shutil.copy2(demo_dir / name, models / name)
        shutil.copy2(demo_dir / f"{name}.lqmf.json", models / f"{name}.lqmf.json")
    monkeypatch.setenv("LQMF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LQMF_MODELS_DIR", str(models))
    return models


def test_quantize_load_chat_compare_and_fidelity(private_models):
    plan = lqmf.quantize("demo-f16", level="q4_k_m", name="api-q4_k_m")
    assert plan.runnable and plan.problems == [] and plan.output == "api-q4_k_m.gguf"
    assert (plan.plan.method, plan.plan.level, plan.plan.source) == ("gguf", "q4_k_m", "demo-f16")
    assert plan.plan.steps and plan.plan.expected_size_bytes > 0
    assert json.loads(json.dumps(plan.to_dict()))["plan"]["output_name"] == "api-q4_k_m.gguf"
    assert not (private_models / "api-q4_k_m.gguf").exists()  # a plan runs nothing

    calls: list[tuple[str, int, int]] = []
    done = plan.run(progress=lambda what, done, total: calls.append((what, done, total)))
    assert done.model == "api-q4_k_m" and (private_models / "api-q4_k_m.gguf").is_file()
    assert done.manifest["level"] == "q4_k_m" and done.run_id > 0 and done.wall_time_s > 0
    assert calls and all(isinstance(what, str) and what and 0 <= d <= t for what, d, t in calls)
    assert any("quantize to q4_k_m" in what for what, _, _ in calls)  # the plan's step, named as planned
    assert calls[-1][0] == "done" and calls[-1][1] == calls[-1][2] == len(plan.plan.steps)
    assert "api-q4_k_m" in lqmf.models().names

    with lqmf.load("api-q4_k_m") as model:
        assert model.info["name"] == "api-q4_k_m" and model.info["level"] == "q4_k_m"
        reply = model.chat("def main", max_tokens=8, temperature=0)
        assert reply.text.strip() and reply.finish_reason in ("stop", "length")
        assert reply.prompt_tokens > 0 and 0 < reply.completion_tokens <= 8 and reply.timings.total_s > 0
        chunks = list(model.stream([{"role": "user", "content": "def main"}], max_tokens=8, temperature=0))
        assert "".join(chunk.text for chunk in chunks) == reply.text  # greedy: the same reply, piece by piece
        assert chunks[-1].finish_reason == reply.finish_reason and chunks[-1].timings.completion_tokens > 0
        vectors = model.embed(["def f(x):", "A sentence about the weather."])
        assert vectors.vectors.shape == (2, vectors.dim) and vectors.dim > 0 and min(vectors.token_counts) > 0
        assert all(math.isclose(float((row ** 2).sum()), 1.0, rel_tol=1e-4) for row in vectors.vectors)
        with pytest.raises(LQMFError, match="unknown sampling setting"):
            model.chat("hi", colour="red")

    report = lqmf.compare(["api-q4_k_m", "demo-q8_0"], ["def main"], max_tokens=8, chunks=1)
    assert report.kind == "compare" and report.id > 0 and report.reference == "demo-f16"
    assert {row.model for row in report.rows} == {"api-q4_k_m", "demo-q8_0"}
    assert all(row.gen_tps > 0 and row.fidelity is not None and row.rank for row in report.rows)
    assert report.recommendation.startswith("fastest:") and report.report_path

    card = lqmf.fidelity("api-q4_k_m", chunks=1)
    assert card.kind == "fidelity" and card.reference == "demo-f16"
    figures = card.row("api-q4_k_m").fidelity
    for key in ("kld_mean", "kld_median", "kld_p99", "kld_max", "ppl_test", "ppl_ref"):
        value = getattr(figures, key)
        assert isinstance(value, float) and math.isfinite(value) and value >= 0, (key, value)
    assert figures.ppl_test > 1 and 0 <= figures.top1_agreement <= 1
    assert json.loads(json.dumps(card.to_dict()))["rows"][1]["kld_mean"] == figures.kld_mean  # flat, as stored

    with lqmf.Library() as library:  # the history holds all of it
        kinds = [e["kind"] for e in library.experiments().experiments]
        assert kinds[:2] == ["fidelity", "compare"]
        assert library.quantizations().runs[0]["status"] == "done"


def test_a_refused_plan_says_why_and_will_not_run(private_models):
    plan = lqmf.quantize("demo-f16", level="q8_0", name="demo-q8_0")  # that name is taken
    assert not plan.runnable and not plan.ok and any("already exists" in p for p in plan.problems)
    with pytest.raises(LQMFError, match="already exists"):
        plan.run()


def test_a_library_shares_one_manager_and_a_handle_unloads_on_close(private_models):
    with lqmf.Library() as library:
        model = library.load("demo-q8_0")
        assert library.models().loaded == ["demo-q8_0"]
        assert library.load("demo-q8_0").name == "demo-q8_0"  # loaded once
        model.close()
        assert library.models().loaded == []
        with pytest.raises(LQMFError, match="no model named"):
            library.load("nope")


def test_import_lqmf_loads_nothing_heavy():
    code = ("import json, sys, lqmf; assert lqmf.__all__; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'numpy', 'agents', 'server', 'memory', 'llama_cpp', 'transformers') or m == 'lqmf.api')))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert loaded == []
