"""Embedding classifiers end to end: the demo data, train / classify / check through the shell and HTTP.

Figures are checked against independent computations: scikit-learn's own cross_val_score on the
embeddings read straight from the cache file, cosine similarity recomputed in numpy from vectors
fetched over /v1/embeddings, predictions recomputed with the saved pipeline.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from rich.console import Console

from agents import results as r
from agents.classifiers.data import read_labelled
from agents.classifiers.errors import DataError
from agents.classifiers.pipeline import PipelineSpec
from agents.decision_agent import DecisionAgent
from agents.intents import Intent
from cli.render import render
from lqmf.api import Library
from lqmf.base.manifest import tree_sha256
from lqmf.base.settings import Settings
from server.http.runner import BackgroundServer
from server.runtime.manager import ModelManager
from tests.conftest import REPO
from tests.tiny_models import tiny_llama

NAME = "cvp"
VARIANTS = ("demo-q8_0", "demo-q4_k_m", "demo-bnb-nf4")
CODE = "for index in range(10): total += index * 2"
PROSE = "Return the number of items that are still waiting in the queue."


def shell(args: list[str], home: Path, models: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LQMF_HOME": str(home), "LQMF_MODELS_DIR": str(models), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "cli/api_cli.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def json_documents(text: str) -> list[dict]:
    """The JSON documents --json printed one after another (anything a library printed between them skipped)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while (at := text.find('{\n  "command"', at)) >= 0:
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
    return docs


def drawn(result) -> str:
    """What the shell draws for a result."""
    console = Console(record=True, width=200, color_system=None)
    render(result, console)
    return console.export_text()


def shell_json(command: str, home: Path, models: Path) -> tuple[int, dict]:
    """Run one command with --json; (exit code, the result object)."""
    out = shell(["--json", "-c", command], home, models)
    start = out.stdout.find('{\n  "command"')  # libraries may print before the JSON document
    assert start >= 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.returncode, json.loads(out.stdout[start:])["result"]


@pytest.fixture(scope="module")
def lab(demo_dir, tmp_path_factory):
    """A models folder (demo models, a copy of demo-hf to change later, a 64-dimensional model), a home, the data."""
    root = tmp_path_factory.mktemp("classifiers")
    models, home = root / "models", root / "home"
    models.mkdir()
    for name in ("demo-hf", "demo-f16.gguf", "demo-q8_0.gguf", "demo-q4_k_m.gguf", "demo-bnb-nf4"):
        for entry in demo_dir.glob(name + "*"):
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, models / entry.name)
    shutil.copytree(demo_dir / "demo-hf", models / "demo-hf-copy")
    tiny_llama(demo_dir / "demo-hf", models / "tiny-64", hidden=64)
    data = root / "code-vs-prose.csv"
    made = subprocess.run([sys.executable, "-m", "agents.demo.classify_data", str(data), "--per-label", "100"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    code, trained = shell_json(f"train classifier {NAME} on {data} with demo-hf", home, models)
    assert code == 0, trained
    return {"models": models, "home": home, "data": data, "trained": trained}


@pytest.fixture(scope="module")
def api(lab):
    settings = Settings(home=lab["home"], models_dir_override=lab["models"], port=0)
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    url = server.start().url
    with httpx.Client(base_url=url, timeout=300) as client:
        yield client
    server.stop()
    manager.close()


def _folder(lab, name: str = NAME) -> Path:
    return lab["home"] / "classifiers" / name


def _copy_classifier(lab, new: str) -> Path:
    """Another classifier folder with the same files (its manifest renamed), to tamper with."""
    folder = _folder(lab, new)
    shutil.copytree(_folder(lab), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["name"] = new
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


# -- the demo data -------------------------------------------------------------------------------------


def test_demo_data_is_balanced_stable_and_readable(lab):
    from agents.demo.classify_data import make_rows

    data = read_labelled(lab["data"])
    assert data.counts() == {"code": 100, "prose": 100} and len(set(data.texts)) == 200
    # Same Python, same rows.
    assert [(r.text, r.label) for r in make_rows(100)] == list(zip(data.texts, data.labels, strict=True))
    assert lab["data"].read_text().splitlines()[0] == "text,label,source"


# -- training ---------------------------------------------------------------------------------------------


def test_training_is_recorded_saved_safely_and_matches_sklearn_on_the_cached_embeddings(lab):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    report = lab["trained"]["report"]
    manifest = report["manifest"]
    folder = _folder(lab)
    assert sorted(p.name for p in folder.iterdir()) == ["eval.jsonl", "manifest.json", "model.skops"]
    assert not list(folder.parent.glob(".*"))  # no temporary left behind
    assert manifest["embedding"]["model"] == "demo-hf" and manifest["embedding"]["dim"] == 256
    assert manifest["embedding"]["sha256"] == tree_sha256(lab["models"] / "demo-hf")
    assert manifest["data"]["sha256"] == hashlib.sha256(lab["data"].read_bytes()).hexdigest()
    assert {"scikit-learn", "skops", "numpy"} <= set(manifest["library_versions"])
    assert manifest["files"]["model.skops"] == hashlib.sha256((folder / "model.skops").read_bytes()).hexdigest()
    assert manifest["embedding_run"]["computed"] == 200
    assert b"pickle" not in (folder / "model.skops").read_bytes()[:4] and zipfile.is_zipfile(folder / "model.skops")

    # The split: every row is in exactly one part, both labels in each, and eval.jsonl is the held-out part.
    data = read_labelled(lab["data"])
    held = [json.loads(line) for line in (folder / "eval.jsonl").read_text().splitlines()]
    held_lines = {row["line"] for row in held}
    train = [i for i, line in enumerate(data.lines) if line not in held_lines]
    assert len(held) == manifest["split"]["eval_rows"] == 40 and len(train) == manifest["split"]["train_rows"]
    assert {row["label"] for row in held} == {"code", "prose"}

    # Embeddings straight from the cache file, then scikit-learn's own cross-validation.
    db = sqlite3.connect(lab["home"] / ".cache" / "embeddings.sqlite3")
    rows = dict(db.execute("SELECT text_sha, vector FROM embeddings WHERE model_sha = ?",
                           (manifest["embedding"]["sha256"],)).fetchall())
    db.close()
    X = np.stack([np.frombuffer(rows[hashlib.sha256(t.encode()).hexdigest()], dtype=np.float32) for t in data.texts])
    y = np.asarray(data.labels)
    assert X.shape == (200, 256) and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)  # normalised
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=0))
    for scoring, key in (("accuracy", "accuracy"), ("f1_macro", "f1_macro"), ("roc_auc", "roc_auc")):
        expected = cross_val_score(pipeline, X[train], y[train], cv=cv, scoring=scoring).mean()
        assert manifest["cv"][key] == pytest.approx(expected, abs=1e-9), key
    assert manifest["cv"]["accuracy"] > 0.85  # far better than chance (0.5) on 160 rows
    assert np.sum(manifest["cv"]["confusion_matrix"]) == len(train)
    fitted = pipeline.fit(X[train], y[train])
    held_idx = [data.lines.index(row["line"]) for row in held]
    assert manifest["holdout"]["accuracy"] == pytest.approx(fitted.score(X[held_idx], y[held_idx]), abs=1e-12)

    history = shell_json("list experiments", lab["home"], lab["models"])[1]["experiments"]
    recorded = next(e for e in history if e["id"] == report["experiment_id"])
    assert recorded["kind"] == "classifier-train" and recorded["status"] == "done"


def test_retraining_reads_the_cache_and_lists_the_classifier(lab, tmp_path):
    script = tmp_path / "again.txt"
    script.write_text(f"train classifier {NAME} on {lab['data']} with demo-hf\nlist classifiers\n")
    out = shell(["--json", "--script", str(script)], lab["home"], lab["models"])
    assert out.returncode == 0, out.stdout[-2000:]
    again, listed = [doc["result"] for doc in json_documents(out.stdout)]
    run = again["report"]["manifest"]["embedding_run"]
    assert run["computed"] == 0 and run["cached"] == 200 and again["report"]["replaced"]
    assert again["report"]["manifest"]["cv"] == lab["trained"]["report"]["manifest"]["cv"]
    assert [(c["name"], c["model"], c["usable"]) for c in listed["classifiers"] if c["name"] == NAME] == \
        [(NAME, "demo-hf", True)]
    assert NAME in drawn(r.ClassifierList(**{k: v for k, v in listed.items() if k != "type"}))


def test_svm_with_pca_is_trained_too(lab):
    from agents.classifiers.pipeline import PipelineSpec
    from agents.classifiers.train import TrainRequest, train_classifier

    settings = Settings(home=lab["home"], models_dir_override=lab["models"])
    manager = ModelManager(settings)
    try:
        report = train_classifier(TrainRequest("cvp-svm", lab["data"], "demo-hf", spec=PipelineSpec("svm", 0.9)),
                                  settings=settings, manager=manager)
    finally:
        manager.close()
    m = report.manifest
    assert m["pipeline"]["algorithm"] == "svm" and 1 <= m["pipeline"]["pca_components"] < 256
    assert m["embedding_run"]["computed"] == 0 and m["cv"]["accuracy"] > 0.85  # from the cache: no model loaded


# -- serving ----------------------------------------------------------------------------------------------


def test_classify_in_the_shell_and_over_http_agree(lab, api):
    code, out = shell_json(f'classify "{CODE}" with {NAME}', lab["home"], lab["models"])
    assert code == 0 and out["result"]["predictions"][0]["label"] == "code"
    one = api.post(f"/classifiers/{NAME}/predict", json={"text": CODE})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["label"] == "code" and body["model"] == "demo-hf" and body["dimensions"] == 256
    assert body["probabilities"] == pytest.approx(out["result"]["predictions"][0]["probabilities"], abs=1e-5)
    assert sum(body["probabilities"].values()) == pytest.approx(1) and body["latency_s"] >= body["embedding_s"] > 0
    many = api.post(f"/classifiers/{NAME}/predict", json={"texts": [CODE, PROSE]}).json()
    assert [p["label"] for p in many["predictions"]] == ["code", "prose"]
    listed = api.get("/classifiers").json()["classifiers"]
    assert any(c["name"] == NAME and c["model_sha256"] == tree_sha256(lab["models"] / "demo-hf") for c in listed)
    assert api.get(f"/classifiers/{NAME}").json()["manifest"]["labels"] == ["code", "prose"]


def test_bad_requests_over_http(api):
    assert api.post("/classifiers/nobody/predict", json={"text": "x"}).status_code == 404
    assert api.post(f"/classifiers/{NAME}/predict", json={"text": "x", "texts": ["y"]}).status_code == 422
    assert api.post(f"/classifiers/{NAME}/predict", json={"text": "   "}).status_code == 422
    assert api.post(f"/classifiers/{NAME}/predict", json={"texts": []}).status_code == 422
    assert api.post("/classifiers/..%2Fetc/predict", json={"text": "x"}).status_code in (404, 422)


def test_a_tampered_classifier_file_is_refused(lab, api):
    # 1. Changed bytes: the file is not the one the manifest recorded.
    flipped = _copy_classifier(lab, "cvp-flipped")
    data = bytearray((flipped / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / "model.skops").write_bytes(bytes(data))
    refused = api.post("/classifiers/cvp-flipped/predict", json={"text": CODE})
    assert refused.status_code == 409 and "safety check" in refused.json()["error"]["message"]
    # 2. A consistent hash, but a schema that would build os.system: skops' audit refuses it.
    evil = _copy_classifier(lab, "cvp-evil")
    with zipfile.ZipFile(evil / "model.skops") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])

    def poison(node):
        if isinstance(node, dict):
            if node.get("__class__") == "StandardScaler":
                node["__class__"], node["__module__"] = "system", "os"
            for value in node.values():
                poison(value)
        elif isinstance(node, list):
            for value in node:
                poison(value)

    poison(schema)
    members["schema.json"] = json.dumps(schema).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    (evil / "model.skops").write_bytes(buffer.getvalue())
    manifest = json.loads((evil / "manifest.json").read_text())
    manifest["files"]["model.skops"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (evil / "manifest.json").write_text(json.dumps(manifest))
    refused = api.post("/classifiers/cvp-evil/predict", json={"text": CODE})
    assert refused.status_code == 409 and "os.system" in refused.json()["error"]["message"]
    code, out = shell_json(f'classify "{CODE}" with cvp-evil', lab["home"], lab["models"])
    assert code == 1 and "not trusted" in out["message"] and "os.system" in out["message"]
    listed = {c["name"]: c for c in api.get("/classifiers").json()["classifiers"]}
    assert listed["cvp-evil"]["usable"]  # listing reads manifests only; loading is what refuses


def test_a_missing_or_changed_embedding_model_is_refused(lab, api):
    from agents.classifiers.train import TrainRequest, train_classifier

    copy = lab["models"] / "demo-hf-copy"
    settings = Settings(home=lab["home"], models_dir_override=lab["models"])
    manager = ModelManager(settings)
    try:
        report = train_classifier(TrainRequest("cvp-copy", lab["data"], "demo-hf-copy"), settings=settings,
                                  manager=manager)
    finally:
        manager.close()
    assert report.manifest["embedding_run"]["computed"] == 0  # the same weights under another name: cached
    assert api.post("/classifiers/cvp-copy/predict", json={"text": CODE}).status_code == 200
    config = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**config, "temperature": 0.5}))
    changed = api.post("/classifiers/cvp-copy/predict", json={"text": CODE})
    assert changed.status_code == 409 and "sha256" in changed.json()["error"]["message"]
    assert "train it again" in changed.json()["error"]["hint"]
    shutil.rmtree(copy)
    missing = api.post("/classifiers/cvp-copy/predict", json={"text": CODE})
    assert missing.status_code == 409 and "demo-hf-copy" in missing.json()["error"]["message"]
    code, out = shell_json(f'classify "{CODE}" with cvp-copy', lab["home"], lab["models"])
    assert code == 1 and "demo-hf-copy" in out["message"]


# -- the variant check ----------------------------------------------------------------------------------


def test_check_across_variants_matches_numpy_and_refuses_another_dimension(lab, api):
    import skops.io as sio

    variants = " and ".join((*VARIANTS, "tiny-64"))
    code, out = shell_json(f"check classifier {NAME} on {variants}", lab["home"], lab["models"])
    assert code == 0, out
    report = out["report"]
    rows = {row["model"]: row for row in report["rows"]}
    assert list(rows) == ["demo-hf", *VARIANTS, "tiny-64"]
    assert rows["tiny-64"]["status"] == "refused" and "64-dimensional" in rows["tiny-64"]["reason"]
    held = [json.loads(line) for line in (_folder(lab) / "eval.jsonl").read_text().splitlines()]
    texts, truth = [r["text"] for r in held], np.asarray([r["label"] for r in held])

    def vectors(model: str) -> np.ndarray:
        got = api.post("/v1/embeddings", json={"model": model, "input": texts})
        assert got.status_code == 200, got.text
        return np.asarray([d["embedding"] for d in got.json()["data"]], dtype=np.float32)

    folder = _folder(lab)
    pipeline = sio.load(folder / "model.skops", trusted=sio.get_untrusted_types(file=folder / "model.skops"))
    source = vectors("demo-hf")
    source_labels = pipeline.predict(source)
    assert rows["demo-hf"]["accuracy"] == pytest.approx(np.mean(source_labels == truth), abs=1e-12)
    for variant in VARIANTS:
        row, mine = rows[variant], vectors(variant)
        assert row["status"] == "ok" and row["dim"] == 256 and row["texts_per_s"] > 0
        cos = np.sum(mine * source, axis=1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(source, axis=1))
        assert row["cosine_mean"] == pytest.approx(cos.mean(), abs=1e-4)
        assert row["cosine_p5"] == pytest.approx(np.percentile(cos, 5), abs=1e-4)
        labels = pipeline.predict(mine)
        assert row["accuracy"] == pytest.approx(np.mean(labels == truth), abs=1e-12)
        assert row["agreement"] == pytest.approx(np.mean(labels == source_labels), abs=1e-12)
        assert row["accuracy_drop"] == pytest.approx(rows["demo-hf"]["accuracy"] - row["accuracy"], abs=1e-12)
        assert row["lineage"] == "derived from the classifier's model"
    page = Path(report["report_path"]).read_text()
    assert 'id="chart-classifier-accuracy"' in page and all(f'data-model="{v}"' in page for v in VARIANTS)
    recorded = api.get("/experiments", params={"kind": "classifier-check"}).json()["experiments"][0]
    assert recorded["id"] == report["experiment_id"] and recorded["status"] == "done"
    assert [r["model"] for r in recorded["summary"]["rows"]] == list(rows)
    table = drawn(r.ClassifierCheckResult(report=report))
    assert "cosine mean" in table and "demo-q4_k_m" in table and "refused" in table


# -- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, words", [
    ("missing.csv", "body,label\nx,a\n", ["missing.csv:1", "'text'", "'body'"]),
    ("one.csv", "text,label\n" + "".join(f"t{i},a\n" for i in range(6)), ["every row has the label 'a'", "two labels"]),
    ("empty.csv", "text,label\nx,a\ny,a\nz,a\n ,b\nw,b\nv,b\n", ["empty.csv:5", "empty"]),
    ("latin.csv", "text,label\nx,a\n".encode() + "caf\xe9,b\n".encode("latin-1"), ["latin.csv:3", "UTF-8"]),
    ("bad.jsonl", '{"text": "x", "label": "a"}\n{"text": "y", "label"\n', ["bad.jsonl:2", "JSON"]),
    ("nolabel.jsonl", '{"text": "x", "label": "a"}\n{"text": "y"}\n', ["nolabel.jsonl:2", "'label'"]),
    ("few.csv", "text,label\n" + "".join(f"t{i},a\n" for i in range(5)) + "u,b\n", ["'b' (1)", "at least 3"]),
    ("ragged.csv", "text,label\nx,a,extra\n", ["ragged.csv:2", "3 fields"]),
    ("data.txt", "text,label\n", ["not labelled data"]),
])
def test_bad_data_is_refused_with_the_line_or_column(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as caught:
        read_labelled(path)
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_unreadable_files_and_named_columns(tmp_path):
    with pytest.raises(DataError, match="no file at"):
        read_labelled(tmp_path / "nowhere.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        read_labelled(tmp_path / "folder.csv")
    path = tmp_path / "named.jsonl"
    path.write_text("".join(json.dumps({"body": f"t{i}", "tag": i % 2}) + "\n" for i in range(8)))
    data = read_labelled(path, text_column="body", label_column="tag")
    assert data.counts() == {"0": 4, "1": 4} and data.lines == list(range(1, 9))


def test_a_failed_training_leaves_the_old_classifier_whole(lab, tmp_path):
    from agents.classifiers.train import TrainRequest, train_classifier
    from lqmf.base.errors import LQMFError
    from memory.store import Store

    before = (_folder(lab) / "manifest.json").read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nx,a\ny,a\nz,a\n,b\n")
    code, out = shell_json(f"train classifier {NAME} on {bad} with demo-hf", lab["home"], lab["models"])
    assert code == 1 and "bad.csv:5" in out["message"]
    settings = Settings(home=lab["home"], models_dir_override=lab["models"])
    manager, store = ModelManager(settings), Store(settings.db_path)
    try:
        with pytest.raises(LQMFError, match="pca 5000"):
            train_classifier(TrainRequest(NAME, lab["data"], "demo-hf", spec=PipelineSpec(pca=5000)),
                             settings=settings, manager=manager, store=store)
        with pytest.raises(LQMFError, match="no-such-model"):
            train_classifier(TrainRequest("x", lab["data"], "no-such-model"), settings=settings, manager=manager)
        failed = [e for e in store.experiments(kind="classifier-train") if e["status"] == "failed"]
    finally:
        manager.close()
        store.close()
    assert failed and "pca 5000" in failed[0]["summary"]["error"]
    assert (_folder(lab) / "manifest.json").read_bytes() == before
    assert not (_folder(lab, "x")).exists() and not list(_folder(lab).parent.glob(".*"))


# -- the shell's words ---------------------------------------------------------------------------------------


def test_the_commands_parse():
    agent = DecisionAgent(lambda: ["demo-hf", "demo-q8_0", "demo-q4_k_m"])
    train = agent.parse("train classifier spam on 'my data.csv' with hf, text column body, label column tag, svm, pca")
    assert train.intent is Intent.TRAIN_CLASSIFIER and not train.question
    assert (train.slots.classifier, train.slots.file, train.slots.model) == ("spam", "my data.csv", "demo-hf")
    assert (train.slots.text_column, train.slots.label_column, train.slots.algorithm, train.slots.pca) == \
        ("body", "tag", "svm", 0.95)
    check = agent.parse("check classifier spam on q8_0 and q4_k_m")
    assert check.intent is Intent.CHECK_CLASSIFIER and check.slots.models == ["demo-q8_0", "demo-q4_k_m"]
    classify = agent.parse('classify "train the test set" with test-clf')
    assert classify.intent is Intent.CLASSIFY_TEXT and classify.slots.classifier == "test-clf"
    assert classify.slots.texts == ["train the test set"]
    assert agent.parse("list classifiers").intent is Intent.LIST_CLASSIFIERS
    assert agent.parse("train classifier on data.csv").question  # no name, no model: asked
    assert agent.parse("agreement of demo-hf and demo-q8_0 on x.jsonl").intent is Intent.AGREEMENT_REPORT  # unchanged
