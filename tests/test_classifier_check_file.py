"""`check classifier NAME on VARIANT [and VARIANT] with FILE.csv`: a check on a labelled file a person brings.

A classifier is trained on the demo models' embeddings of one part of the demo data, then checked on
another part (rows it never saw), through the library, the shell and HTTP. Its figures are checked
against an independent computation: the saved pipeline (skops) on vectors fetched over /v1/embeddings,
cosine recomputed in numpy. Files that do not fit the classifier (other columns, labels it never saw,
empty, missing, not UTF-8) are refused before any model is loaded, and nothing is recorded or written.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents import results as r
from agents.classifiers.errors import DataError
from agents.decision_agent import DecisionAgent
from agents.demo.classify_data import make_rows, write_csv
from agents.intents import Intent
from lqmf.api import Library
from lqmf.base.settings import Settings
from tests.test_classifiers import drawn, shell, shell_json

NAME = "cvp-file"
PER_LABEL = 30
VARIANTS = ["demo-q8_0", "demo-q4_k_m"]


@pytest.fixture(scope="module")
def lab(demo_dir, tmp_path_factory):
    """Demo models, a classifier trained on 30 rows of each label, and a test file of 30 other rows of each."""
    root = tmp_path_factory.mktemp("check-file")
    models, home = root / "models", root / "home"
    models.mkdir()
    for name in ("demo-hf", "demo-q8_0.gguf", "demo-q4_k_m.gguf"):
        for entry in demo_dir.glob(name + "*"):
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, models / entry.name)
    train_rows = make_rows(PER_LABEL)
    seen = {row.text for row in train_rows}
    test_rows = [row for row in make_rows(2 * PER_LABEL) if row.text not in seen]
    assert len(test_rows) == 2 * PER_LABEL  # make_rows picks by hash: the larger set holds the smaller one
    train = write_csv(root / "train.csv", train_rows)
    tests = write_csv(root / "my tests.csv", test_rows)  # a space in the path, as people's files have
    settings = Settings(home=home, models_dir_override=models, port=0)
    library = Library(settings)
    library.train_classifier(NAME, train, "demo-hf")
    yield {"root": root, "models": models, "home": home, "settings": settings, "library": library,
           "train": train, "tests": tests, "rows": test_rows}
    library.close()


@pytest.fixture(scope="module")
def client(lab):
    from fastapi.testclient import TestClient

    from server.http.app import create_app

    app = create_app(lab["settings"])
    yield TestClient(app, base_url="http://localhost")
    app.state.library.close()


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _untouched(lab):
    """What a refused check must leave as it was: the history's experiments and the reports folder."""
    reports = lab["settings"].reports_dir
    return (len(lab["library"].store.experiments(kind="classifier-check", limit=1000)),
            sorted(p.name for p in reports.iterdir()) if reports.is_dir() else [])


# -- the shell's words --------------------------------------------------------------------------------------


@pytest.mark.parametrize("line, models, file", [
    ("check classifier spam on q8_0 and q4_k_m with tests.csv", ["demo-q8_0", "demo-q4_k_m"], "tests.csv"),
    ("check classifier spam on demo-q8_0 using tests.jsonl", ["demo-q8_0"], "tests.jsonl"),
    ("check classifier spam on q8_0 with 'my tests on and off.csv'", ["demo-q8_0"], "my tests on and off.csv"),
    ('evaluate classifier spam on q4_k_m using the test set "/data/held out.ndjson"', ["demo-q4_k_m"],
     "/data/held out.ndjson"),
    ("check classifier spam with ~/tests.csv on q8_0, q4_k_m", ["demo-q8_0", "demo-q4_k_m"], "~/tests.csv"),
    ("test classifier spam on q8_0 and q4_k_m", ["demo-q8_0", "demo-q4_k_m"], None),  # the held-out split
])
def test_the_check_reads_the_variants_and_the_file(line, models, file):
    command = DecisionAgent(lambda: ["demo-hf", "demo-q8_0", "demo-q4_k_m"]).parse(line)
    assert command.intent is Intent.CHECK_CLASSIFIER and not command.question, command.question
    assert (command.slots.classifier, command.slots.models, command.slots.file) == ("spam", models, file)


def test_a_file_where_a_variant_belongs_gets_the_right_form():
    agent = DecisionAgent(lambda: ["demo-hf", "demo-q8_0", "demo-q4_k_m"])
    command = agent.parse("check classifier spam on tests.csv")
    assert command.intent is Intent.CHECK_CLASSIFIER and command.slots.models == []
    assert "tests.csv is a labelled file, not a variant" in command.question
    assert "check classifier spam on demo-q8_0 and demo-q4_k_m with tests.csv" in command.question
    quoted = agent.parse('check classifier spam on "my tests.csv"').question
    assert 'with "my tests.csv"' in quoted
    assert "on which variants" in agent.parse("check classifier spam with tests.csv").question
    assert "One labelled file per check" in agent.parse("check classifier spam on q8_0 with a.csv and b.csv").question
    # The drop option is read from the line as typed.
    from agents.classifier_parse import drops_unknown_labels

    assert drops_unknown_labels("check classifier spam on q8_0 with t.csv dropping unknown labels")
    assert drops_unknown_labels("check classifier spam on q8_0 with t.csv, skip rows with unseen labels")
    assert not drops_unknown_labels("check classifier spam on q8_0 with t.csv")
    dropping = agent.parse("check classifier spam on q8_0 with t.csv dropping unknown labels")
    assert (dropping.slots.models, dropping.slots.file) == (["demo-q8_0"], "t.csv")


# -- the check on a brought file ------------------------------------------------------------------------------


def test_a_check_on_a_brought_file_matches_an_independent_computation(lab, client):
    import skops.io as sio

    report = lab["library"].check_classifier(NAME, VARIANTS, data_file=lab["tests"]).report
    sha = hashlib.sha256(lab["tests"].read_bytes()).hexdigest()
    assert report["eval_rows"] == 2 * PER_LABEL
    assert report["data"]["source"] == "file" and report["data"]["path"] == str(lab["tests"])
    assert report["data"]["sha256"] == sha and report["data"]["rows"] == 2 * PER_LABEL
    assert (report["data"]["text_column"], report["data"]["label_column"]) == ("text", "label")
    assert report["evaluated_on"] == f"{2 * PER_LABEL} rows of my tests.csv (sha256 {sha[:12]}…)"
    assert any(str(lab["tests"]) in note and sha in note for note in report["notes"])
    assert not any("held-out" in note for note in report["notes"])

    texts = [row.text for row in lab["rows"]]
    truth = np.asarray([row.label for row in lab["rows"]])

    def vectors(model: str) -> np.ndarray:
        got = client.post("/v1/embeddings", json={"model": model, "input": texts})
        assert got.status_code == 200, got.text
        return np.asarray([d["embedding"] for d in got.json()["data"]], dtype=np.float32)

    folder = lab["home"] / "classifiers" / NAME
    pipeline = sio.load(folder / "model.skops", trusted=sio.get_untrusted_types(file=folder / "model.skops"))
    rows = {row["model"]: row for row in report["rows"]}
    assert list(rows) == ["demo-hf", *VARIANTS]
    source = vectors("demo-hf")
    source_labels = pipeline.predict(source)
    assert rows["demo-hf"]["accuracy"] == pytest.approx(np.mean(source_labels == truth), abs=1e-12)
    assert rows["demo-hf"]["accuracy"] > 0.75  # rows it never saw, far better than chance
    for variant in VARIANTS:
        row, mine = rows[variant], vectors(variant)
        assert row["status"] == "ok", row
        labels = pipeline.predict(mine)
        cos = np.sum(mine * source, axis=1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(source, axis=1))
        assert row["accuracy"] == pytest.approx(np.mean(labels == truth), abs=1e-12)
        assert row["agreement"] == pytest.approx(np.mean(labels == source_labels), abs=1e-12)
        assert row["cosine_mean"] == pytest.approx(cos.mean(), abs=1e-4)
        assert row["cosine_p5"] == pytest.approx(np.percentile(cos, 5), abs=1e-4)
        assert np.sum(row["confusion_matrix"]) == 2 * PER_LABEL

    # Recorded with the file's facts; the report page and the shell's table name the file.
    recorded = lab["library"].store.experiment(report["experiment_id"])
    assert recorded["status"] == "done" and recorded["summary"]["data"]["sha256"] == sha
    assert recorded["params"]["data"]["path"] == str(lab["tests"])
    assert "my tests.csv" in Path(report["report_path"]).read_text()
    table = drawn(r.ClassifierCheckResult(report=report))
    assert "60 rows of my tests.csv" in table and "held-out" not in table


def test_jsonl_with_the_same_rows_gives_the_same_figures(lab):
    path = lab["root"] / "tests.jsonl"
    path.write_text("".join(json.dumps({"label": row.label, "text": row.text}) + "\n" for row in lab["rows"]))
    jsonl = lab["library"].check_classifier(NAME, "demo-q8_0", data_file=path).report
    csv_check = lab["library"].check_classifier(NAME, "demo-q8_0", data_file=lab["tests"]).report
    assert jsonl["data"]["format"] == "jsonl" and jsonl["eval_rows"] == 2 * PER_LABEL
    for a, b in zip(jsonl["rows"], csv_check["rows"], strict=True):
        assert (a["model"], a["accuracy"], a["agreement"]) == (b["model"], b["accuracy"], b["agreement"])


def test_the_training_file_itself_is_flagged_as_optimistic(lab):
    report = lab["library"].check_classifier(NAME, "demo-q8_0", data_file=lab["train"]).report
    assert any("the file the classifier was trained on" in note for note in report["notes"])


# -- files that do not fit ------------------------------------------------------------------------------------


def test_other_columns_are_refused_naming_what_was_found_and_what_is_needed(lab):
    before = _untouched(lab)
    wrong = _write(lab["root"] / "wrong.csv", ["body", "tag"], [[row.text, row.label] for row in lab["rows"]])
    with pytest.raises(DataError) as caught:
        lab["library"].check_classifier(NAME, VARIANTS, data_file=wrong)
    message = caught.value.message
    assert "'body', 'tag'" in message and "'text'" in message and "'label'" in message and NAME in message
    assert "columns it was trained on" in message and "text and label" in caught.value.hint
    half = _write(lab["root"] / "half.csv", ["text", "category"], [[row.text, row.label] for row in lab["rows"]])
    with pytest.raises(DataError, match=r"missing: 'label'") as caught:
        lab["library"].check_classifier(NAME, VARIANTS, data_file=half)
    assert "'text', 'category'" in caught.value.message
    fields = lab["root"] / "fields.jsonl"
    fields.write_text(json.dumps({"text": "x", "label": "code"}) + "\n" + json.dumps({"text": "y", "y": 1}) + "\n")
    with pytest.raises(DataError, match=r"fields on line 2 are 'text', 'y'"):
        lab["library"].check_classifier(NAME, VARIANTS, data_file=fields)
    assert _untouched(lab) == before


def test_the_classifier_own_columns_are_the_ones_asked_for(lab):
    """A classifier trained on columns body / tag asks for body / tag, not the defaults."""
    named = lab["root"] / "named.jsonl"
    named.write_text("".join(json.dumps({"body": row.text, "tag": row.label}) + "\n"
                             for row in make_rows(PER_LABEL)))
    lab["library"].train_classifier("cvp-named", named, "demo-hf", text_column="body", label_column="tag")
    with pytest.raises(DataError, match=r"needs the text column 'body' and the label column 'tag'"):
        lab["library"].check_classifier("cvp-named", "demo-q8_0", data_file=lab["tests"])
    renamed = _write(lab["root"] / "renamed.csv", ["tag", "body"], [[row.label, row.text] for row in lab["rows"]])
    report = lab["library"].check_classifier("cvp-named", "demo-q8_0", data_file=renamed).report
    assert report["eval_rows"] == 2 * PER_LABEL and report["data"]["text_column"] == "body"


def test_labels_the_classifier_never_saw_are_refused_or_dropped(lab):
    before = _untouched(lab)
    extra = [[f"buy now {i}", "spam"] for i in range(3)] + [["meeting at noon", "ham"]]
    mixed = _write(lab["root"] / "mixed.csv", ["text", "label"],
                   [[row.text, row.label] for row in lab["rows"]] + extra)
    with pytest.raises(DataError) as caught:
        lab["library"].check_classifier(NAME, VARIANTS, data_file=mixed)
    message = caught.value.message
    assert "4 of 64 rows" in message and "'spam' (3 rows, first on line 62)" in message
    assert "'ham' (1 row, first on line 65)" in message and "'code', 'prose'" in message
    assert "drop" in caught.value.hint and "accuracy on those rows would be 0" in caught.value.hint
    assert _untouched(lab) == before

    report = lab["library"].check_classifier(NAME, "demo-q8_0", data_file=mixed, drop_unknown_labels=True).report
    assert report["eval_rows"] == 2 * PER_LABEL and report["data"]["file_rows"] == 64
    assert report["data"]["dropped"] == {"spam": 3, "ham": 1}
    assert any("dropped 4 rows" in note for note in report["notes"])

    only = _write(lab["root"] / "only.csv", ["text", "label"], extra)
    with pytest.raises(DataError, match="no row has a label"):
        lab["library"].check_classifier(NAME, "demo-q8_0", data_file=only, drop_unknown_labels=True)
    # One known label only is a fair test set: scored, with a note on what it cannot measure.
    code_only = _write(lab["root"] / "code.csv", ["text", "label"],
                       [[row.text, row.label] for row in lab["rows"] if row.label == "code"])
    report = lab["library"].check_classifier(NAME, "demo-q8_0", data_file=code_only).report
    assert report["eval_rows"] == PER_LABEL and report["rows"][0]["roc_auc"] is None
    assert any("no rows of 'prose'" in note for note in report["notes"])


@pytest.mark.parametrize("name, content, words", [
    ("empty.csv", b"", ["empty.csv is empty"]),
    ("blank.jsonl", b"\n  \n", ["blank.jsonl is empty"]),
    ("header.csv", b"text,label\n", ["header.csv has no rows"]),
    ("latin.csv", "text,label\ncaf\xe9 au lait,prose\n".encode("latin-1"), ["latin.csv:2", "not UTF-8", "iconv"]),
    ("tests.txt", b"text,label\nx,code\n", ["not labelled data", ".csv"]),
    ("blank-label.csv", b"text,label\nx = 1,code\ny = 2, \n", ["blank-label.csv:3", "label column 'label' is empty"]),
])
def test_unusable_files_get_clear_errors_and_leave_nothing(lab, name, content, words):
    before = _untouched(lab)
    path = lab["root"] / name
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        lab["library"].check_classifier(NAME, VARIANTS, data_file=path)
    assert all(word in str(caught.value) for word in words), str(caught.value)
    assert _untouched(lab) == before


def test_a_missing_file_or_a_file_named_as_a_variant(lab):
    fresh = Library(lab["settings"])  # nothing loaded yet: a refusal must not load a model either
    try:
        with pytest.raises(DataError, match="no file at"):
            fresh.check_classifier(NAME, VARIANTS, data_file=lab["root"] / "nowhere.csv")
        with pytest.raises(DataError, match="tests.csv is a labelled file, not a model") as caught:
            fresh.check_classifier(NAME, ["tests.csv"])
        assert f"check classifier {NAME} on VARIANT [and VARIANT] with tests.csv" in caught.value.hint
        assert fresh.manager.loaded() == []
    finally:
        fresh.close()


# -- the shell and HTTP -----------------------------------------------------------------------------------------


def test_the_shell_checks_on_a_quoted_file_and_answers_a_file_as_variant_with_the_form(lab):
    code, out = shell_json(f"check classifier {NAME} on q8_0 with '{lab['tests']}'", lab["home"], lab["models"])
    assert code == 0, out
    assert out["report"]["data"]["path"] == str(lab["tests"]) and out["report"]["eval_rows"] == 2 * PER_LABEL
    asked = shell(["-c", f"check classifier {NAME} on {lab['tests'].name.replace(' ', '-')}"], lab["home"],
                  lab["models"])
    assert "is a labelled file, not a variant" in asked.stdout and "no model named" not in asked.stdout
    assert f"check classifier {NAME} on demo-q8_0 and demo-q4_k_m with my-tests.csv" in asked.stdout


def test_the_http_route_checks_on_sent_data(lab, client):
    content = lab["tests"].read_text(encoding="utf-8")
    got = client.post(f"/classifiers/{NAME}/check",
                      json={"models": ["demo-q8_0"], "data": {"name": "sent.csv", "content": content}})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["data"]["source"] == "file" and body["data"]["sent"] and body["eval_rows"] == 2 * PER_LABEL
    assert body["data"]["sha256"] == hashlib.sha256(content.encode()).hexdigest()
    assert body["evaluated_on"].startswith("60 rows of sent.csv")
    same = lab["library"].check_classifier(NAME, "demo-q8_0", data_file=lab["tests"]).report
    assert [(row["model"], row["accuracy"], row["agreement"]) for row in body["rows"]] == \
        [(row["model"], row["accuracy"], row["agreement"]) for row in same["rows"]]

    wrong = client.post(f"/classifiers/{NAME}/check",
                        json={"models": ["demo-q8_0"], "data": {"name": "w.csv", "content": "body,tag\nx,code\n"}})
    assert wrong.status_code == 422 and "'body', 'tag'" in wrong.json()["error"]["message"]
    spam = "text,label\nx = 1,code\nbuy now,spam\n"
    refused = client.post(f"/classifiers/{NAME}/check",
                          json={"models": ["demo-q8_0"], "data": {"name": "s.csv", "content": spam}})
    assert refused.status_code == 422 and "'spam'" in refused.json()["error"]["message"]
    dropped = client.post(f"/classifiers/{NAME}/check", json={
        "models": ["demo-q8_0"], "data": {"name": "s.csv", "content": spam}, "drop_unknown_labels": True})
    assert dropped.status_code == 200 and dropped.json()["data"]["dropped"] == {"spam": 1}
    held = client.post(f"/classifiers/{NAME}/check", json={"models": ["demo-q8_0"]})
    assert held.status_code == 200 and held.json()["data"]["source"] == "held-out"
    assert "held-out rows of train.csv" in held.json()["evaluated_on"]
    # A path is never read on the server; bad names and unknown things get their statuses.
    for data in ({"name": "../etc/x.csv", "content": "text,label\n"}, {"name": "x.txt", "content": "a"},
                 {"name": "x.csv", "content": ""}):
        assert client.post(f"/classifiers/{NAME}/check", json={"models": ["demo-q8_0"], "data": data}).status_code \
            == 422
    assert client.post("/classifiers/nobody/check", json={"models": ["demo-q8_0"]}).status_code == 404
    assert client.post(f"/classifiers/{NAME}/check", json={"models": ["nope"]}).status_code == 404
    assert client.post(f"/classifiers/{NAME}/check", json={"models": []}).status_code == 422
    # JSON may carry a lone surrogate, which no UTF-8 file holds: refused, not a server error.
    lone = json.dumps({"models": ["demo-q8_0"], "data": {"name": "l.csv", "content": "text,label\n\ud800,code\n"}})
    refused = client.post(f"/classifiers/{NAME}/check", content=lone, headers={"Content-Type": "application/json"})
    assert refused.status_code == 422 and "data.content" in refused.json()["error"]["message"]


def test_a_lone_surrogate_from_python_is_refused_as_not_utf8(lab):
    with pytest.raises(DataError, match=r"l.csv:2: not UTF-8"):
        lab["library"].check_classifier(NAME, "demo-q8_0", data_file="l.csv", data_content="text,label\n\ud800,x\n")


def test_the_shell_handler_passes_the_file_and_the_drop_option():
    from agents.classifier_commands import ClassifierCommands

    calls = []

    class Library:
        def check_classifier(self, *args, **kwargs):
            calls.append((args, kwargs))

    class Executor:
        library = Library()

    agent = DecisionAgent(lambda: ["demo-hf", "demo-q8_0", "demo-q4_k_m"])
    for line, drop in (("check classifier spam on q8_0 with 'my t.csv' dropping unknown labels", True),
                       ("check classifier spam on q8_0 with 'my t.csv'", False)):
        ClassifierCommands(Executor()).check(agent.parse(line))
        assert calls.pop() == (("spam", ["demo-q8_0"]), {"data_file": "my t.csv", "drop_unknown_labels": drop,
                                                         "progress": None})
