"""Agreement report: every metric on a case worked by hand, the parser, the dataset checks, and real runs
of the demo models (in process, and over the real HTTP server)."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest

from agents.measure.agreement import (
    PROMPT_TEMPLATE,
    LocalVariant,
    RemoteVariant,
    build_prompt,
    load_dataset,
    local_variant,
    parse_label,
    parse_variant,
    remote_variant,
    run_agreement,
)
from lqmf.api import Library
from lqmf.base.errors import LQMFError, ModelNotFound
from lqmf.base.settings import Settings
from memory.store import Store
from server.http.runner import BackgroundServer
from server.runtime.manager import ModelManager


class Scripted:
    """A fake variant: answers from a script, in order, and remembers the prompts it got."""

    def __init__(self, name: str, answers: list[str]) -> None:
        self.name = name
        self.answers = list(answers)
        self.prompts: list[str] = []

    def complete(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.answers.pop(0)


class Failing(Scripted):
    def complete(self, prompt: str) -> str:
        if len(self.prompts) == 1:
            raise LQMFError("the model went away", "load it again")
        return super().complete(prompt)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# Four examples, labels neg/pos. The answers, and what they make:
#   #  gold  A                    B      parsed A  parsed B  agree  A ok  B ok  exact  similarity
#   0  pos   "pos"                "pos"  pos       pos       yes    yes   yes   yes    1
#   1  neg   "neg"                "pos"  neg       pos       no     yes   no    no     0 (no common letter)
#   2  neg   "Positive position"  "pos"  None      pos       no     no    no    no     2*3/20 ("pos" in "position")
#   3  neg   "neg."               "neg"  neg       neg       yes    yes   yes   no     2*3/7
HAND = [("a delight", "pos"), ("a chore", "neg"), ("hard to say", "neg"), ("dull", "neg")]
ANSWERS_A = ["pos", "neg", "Positive position", "neg."]
ANSWERS_B = ["pos", "pos", "pos", "neg"]


@pytest.fixture
def hand_dataset(tmp_path):
    return write_jsonl(tmp_path / "hand.jsonl", [{"text": t, "label": label} for t, label in HAND])


def test_every_metric_on_a_case_worked_by_hand(hand_dataset, tmp_path):
    a, b = Scripted("A", ANSWERS_A), Scripted("B", ANSWERS_B)
    seen = []
    report = run_agreement(hand_dataset, a, b, csv_path=tmp_path / "out" / "rows.csv",
                           progress=lambda what, done, total: seen.append((what, done, total)))
    assert report.examples == 4 and report.labels == ("neg", "pos")
    assert report.variant_a == "A" and report.variant_b == "B"
    assert report.parse_success_a == 0.75 and report.parse_success_b == 1.0
    assert report.agreement_rate == 0.5  # examples 0 and 3; the unparsed example 2 counts as disagreement
    assert report.both_parsed == 3 and report.agreement_rate_parsed == pytest.approx(2 / 3)
    assert report.accuracy_a == 0.75 and report.accuracy_b == 0.5
    assert report.exact_match_rate == 0.25
    assert report.text_similarity_mean == pytest.approx((1 + 0 + 6 / 20 + 6 / 7) / 4)
    assert seen == [("agreement", 1, 4), ("agreement", 2, 4), ("agreement", 3, 4), ("agreement", 4, 4)]
    # Both got the same fixed prompt, in dataset order.
    assert a.prompts == b.prompts == [build_prompt(t, ["neg", "pos"]) for t, _ in HAND]
    assert a.prompts[0] == PROMPT_TEMPLATE.format(labels="neg, pos", text="a delight")
    assert "neg, pos" in a.prompts[0] and a.prompts[0].rstrip().endswith("Label:")
    assert report.to_dict()["labels"] == ["neg", "pos"] and json.dumps(report.to_dict())


def test_csv_rows_and_no_temporary_left(hand_dataset, tmp_path):
    out = tmp_path / "rows.csv"
    out.write_text("an older report\n")  # replaced whole
    run_agreement(hand_dataset, Scripted("A", ANSWERS_A), Scripted("B", ANSWERS_B), csv_path=out)
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["index", "text", "label", "response_a", "parsed_a", "correct_a",
                             "response_b", "parsed_b", "correct_b", "agree", "similarity"]
    assert [(r["index"], r["text"], r["label"]) for r in rows] == [
        (str(i), t, label) for i, (t, label) in enumerate(HAND)]
    assert [r["response_a"] for r in rows] == ANSWERS_A and [r["response_b"] for r in rows] == ANSWERS_B
    assert [r["parsed_a"] for r in rows] == ["pos", "neg", "", "neg"]
    assert [r["parsed_b"] for r in rows] == ["pos", "pos", "pos", "neg"]
    assert [r["correct_a"] for r in rows] == ["1", "1", "0", "1"]
    assert [r["correct_b"] for r in rows] == ["1", "0", "0", "1"]
    assert [r["agree"] for r in rows] == ["1", "0", "0", "1"]
    assert [float(r["similarity"]) for r in rows] == pytest.approx([1, 0, 0.3, 6 / 7], abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hand.jsonl", "rows.csv"]


def test_records_into_the_store_and_fails_cleanly(hand_dataset, tmp_path):
    store = Store(tmp_path / "lqmf.db")
    try:
        report = run_agreement(hand_dataset, Scripted("A", ANSWERS_A), Scripted("B", ANSWERS_B),
                               csv_path=tmp_path / "rows.csv", store=store)
        [done] = store.experiments(kind="agreement")
        assert done["status"] == "done" and done["models"] == ["A", "B"] and done["summary"] == report.to_dict()
        assert done["params"]["labels"] == ["neg", "pos"] and done["params"]["examples"] == 4
        results = store.results(done["id"])
        assert [(r["model"], r["response"]) for r in results] == [
            pair for answers in zip(ANSWERS_A, ANSWERS_B, strict=True)
            for pair in zip(("A", "B"), answers, strict=True)]
        assert [r["metrics"]["parsed"] for r in results if r["model"] == "A"] == ["pos", "neg", None, "neg"]
        assert [r["metrics"]["correct"] for r in results if r["model"] == "B"] == [True, False, False, True]
        assert [r["metrics"]["label"] for r in results[::2]] == [label for _, label in HAND]

        failed_csv = tmp_path / "failed.csv"
        with pytest.raises(LQMFError, match="went away"):
            run_agreement(hand_dataset, Scripted("A", ANSWERS_A), Failing("B", ANSWERS_B), csv_path=failed_csv,
                          store=store)
        [failed] = store.experiments(status="failed")
        assert failed["summary"]["done"] == 1 and "went away" in failed["summary"]["error"]
        assert len(store.results(failed["id"])) == 2  # the one example finished before the failure
        assert not failed_csv.exists() and not list(tmp_path.glob(".failed.csv*"))
    finally:
        store.close()


# -- the parser ------------------------------------------------------------------------------------

@pytest.mark.parametrize("response, labels, expected", [
    ("pos", ["neg", "pos"], "pos"),
    ("  POS.", ["neg", "pos"], "pos"),
    ("position", ["neg", "pos"], None),  # whole words only
    ("a positive, pos-ish take", ["neg", "pos"], "pos"),  # "-" ends a word
    ("neg, or maybe pos", ["pos", "neg"], "neg"),  # the earliest wins, whatever the label order
    ("It is pos, not neg", ["neg", "pos"], "pos"),
    ("this is not spam", ["spam", "not spam"], "not spam"),
    ("very\n  positive", ["positive", "very positive"], "very positive"),  # any whitespace between words
    ("spam filter", ["spam", "spam filter"], "spam filter"),  # same start: the longer label
    ("I'd say c++.", ["c", "c++"], "c++"),
    ("", ["neg", "pos"], None),
    ("Label: 1", ["0", "1"], "1"),
])
def test_parse_label(response, labels, expected):
    assert parse_label(response, labels) == expected


# -- dataset checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, message", [
    ([{"text": "a", "label": "x"}, '{"text": "b", "label": ', {"text": "c", "label": "y"}],
     r"bad\.jsonl:2: not valid JSON"),
    ([{"text": "a", "label": "x"}, "", {"text": "b"}], r'bad\.jsonl:3: "label" is missing'),
    ([{"text": "  ", "label": "x"}], r'bad\.jsonl:1: "text" is missing or empty'),
    ([{"label": "x"}], r'bad\.jsonl:1: "text" is missing'),
    ([{"text": "a", "label": ""}], r'bad\.jsonl:1: "label" is missing or empty'),
    ([{"text": "a", "label": True}], r'bad\.jsonl:1: "label" is missing or empty'),
    ([{"text": "a", "label": "x"}, ["a list"]], r"bad\.jsonl:2: expected a JSON object, got list"),
    (["", "   "], r"bad\.jsonl has no examples"),
    ([{"text": "a", "label": "x"}, {"text": "b", "label": "x"}], r"only one label \(x\)"),
])
def test_dataset_errors_name_the_file_and_line(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(LQMFError, match=message) as caught:
        load_dataset(path)
    assert caught.value.hint


def test_dataset_encoding_labels_and_missing_file(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok", "label": "x"}\n{"text": "caf\xe9", "label": "y"}\n')
    with pytest.raises(LQMFError, match=r"latin\.jsonl:2: not UTF-8") as caught:
        load_dataset(path)
    assert "UTF-8" in caught.value.hint
    with pytest.raises(LQMFError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl")

    good = write_jsonl(tmp_path / "good.jsonl", [{"text": "one", "label": 1}, "", {"text": "two", "label": "Neg"}])
    examples, labels = load_dataset(good, ["neg", "1", "pos"])
    assert labels == ["neg", "1", "pos"]  # the given order is kept, and gold labels take its spelling
    assert [(e.line, e.text, e.label) for e in examples] == [(1, "one", "1"), (3, "two", "neg")]
    assert load_dataset(good)[1] == ["1", "Neg"]
    with pytest.raises(LQMFError, match=r"good\.jsonl:3: label 'Neg' is not one of"):
        load_dataset(good, ["1", "pos"])
    with pytest.raises(LQMFError, match="only one label"):
        load_dataset(good, ["1"])
    with pytest.raises(LQMFError, match="repeat a label"):
        load_dataset(good, ["neg", "NEG", "1"])


def test_parse_variant(tmp_path, demo_dir):
    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir))
    try:
        local = parse_variant("demo-f16", manager)
        assert isinstance(local, LocalVariant) and local.name == "demo-f16" and local.max_tokens == 16
        remote = parse_variant("http://127.0.0.1:8000/v1/#demo-q4_k_m", manager, api_key="key-XYZ")
        assert isinstance(remote, RemoteVariant) and remote.base_url == "http://127.0.0.1:8000/v1"
        assert remote.model == "demo-q4_k_m" and remote.api_key == "key-XYZ" and "key-XYZ" not in repr(remote)
        with pytest.raises(LQMFError, match="names no model"):
            parse_variant("https://example.com/v1", manager)
        with pytest.raises(ModelNotFound, match="no model named 'demo-f15'") as caught:
            parse_variant("demo-f15", manager)
        assert "demo-f16" in caught.value.hint
    finally:
        manager.close()


# -- real models ----------------------------------------------------------------------------------------
# The demo models were trained on Python standard-library text: they do not classify. The datasets are
# docstring-like texts, and "what" and "return" are offered as labels because the demo answers tend to
# start with those words; every assertion below holds whatever the answers are.

REAL = [("Return a random element from the list.", "return"), ("What does shuffle do?", "what"),
        ("Compute the digest of the data.", "return"), ("What does sorted return?", "what")]


@pytest.fixture
def real_dataset(tmp_path):
    return write_jsonl(tmp_path / "real.jsonl", [{"text": t, "label": label} for t, label in REAL])


def test_a_model_agrees_with_itself(demo_dir, tmp_path, real_dataset):
    manager = ModelManager(Settings(home=tmp_path / "home", models_dir_override=demo_dir, keep_alive_s=-1))
    try:
        variant = parse_variant("demo-f16", manager, max_tokens=8)
        report = run_agreement(real_dataset, variant, variant, csv_path=tmp_path / "self.csv")
    finally:
        manager.close()
    # Greedy decoding of the same weights in the same process: the same text every time.
    assert report.exact_match_rate == 1.0 and report.text_similarity_mean == 1.0
    assert report.parse_success_a == report.parse_success_b and report.accuracy_a == report.accuracy_b
    # Identical answers parse identically, so they agree exactly where they parse.
    assert report.agreement_rate == report.both_parsed / report.examples == report.parse_success_a
    assert report.agreement_rate_parsed == (1.0 if report.both_parsed else None)
    rows = list(csv.DictReader(open(tmp_path / "self.csv", newline="", encoding="utf-8")))
    assert len(rows) == 4 and all(r["response_a"] == r["response_b"] and r["response_a"].strip() for r in rows)


@pytest.fixture(scope="module")
def keyed_server(demo_dir, tmp_path_factory):
    """The real API server on 127.0.0.1 (a free port), with its own manager and an API key."""
    settings = Settings(home=tmp_path_factory.mktemp("agreement-server"), models_dir_override=demo_dir, port=0,
                        keep_alive_s=-1, api_key="s3cret")
    manager = ModelManager(settings)
    server = BackgroundServer(settings, Library(settings, manager))
    try:
        url = server.start().url
        yield f"{url}/v1"
    finally:
        server.stop()
        manager.close()


def test_local_against_the_same_model_over_http(demo_dir, tmp_path, real_dataset, keyed_server):
    manager = ModelManager(Settings(home=tmp_path / "home", models_dir_override=demo_dir, keep_alive_s=-1))
    remote = remote_variant(keyed_server, "demo-q4_k_m", api_key="s3cret", max_tokens=8)
    store = Store(tmp_path / "lqmf.db")
    try:
        local = local_variant(manager, "demo-q4_k_m", max_tokens=8)
        report = run_agreement(real_dataset, local, remote, csv_path=tmp_path / "http.csv", store=store)
        [experiment] = store.experiments(kind="agreement")
        results = store.results(experiment["id"])
    finally:
        remote.close()
        store.close()
        manager.close()
    # The server applies the same chat template and decodes greedily with the same llama.cpp weights,
    # each side on its own model instance that sees the prompts in the same order: identical text.
    assert report.exact_match_rate == 1.0 and report.text_similarity_mean == 1.0
    assert report.variant_b == f"demo-q4_k_m@{keyed_server}" and report.variant_a == "demo-q4_k_m"
    assert report.agreement_rate == report.parse_success_a == report.parse_success_b
    assert experiment["status"] == "done" and experiment["models"] == ["demo-q4_k_m", f"demo-q4_k_m@{keyed_server}"]
    assert experiment["summary"] == report.to_dict()
    assert len(results) == 8 and [r["model"] for r in results[:2]] == experiment["models"]
    for first, second, (text, label) in zip(results[::2], results[1::2], REAL, strict=True):
        assert first["prompt"] == second["prompt"] == build_prompt(text, ["return", "what"])
        assert first["response"] == second["response"] and first["latency_s"] > 0
        assert first["metrics"]["label"] == label and first["metrics"]["parsed"] == second["metrics"]["parsed"]
        assert first["metrics"]["correct"] == (first["metrics"]["parsed"] == label)


def test_remote_errors_are_clear(keyed_server):
    prompt = build_prompt("What does shuffle do?", ["return", "what"])
    for key in (None, "wrong"):
        variant = remote_variant(keyed_server, "demo-q4_k_m", api_key=key)
        with pytest.raises(LQMFError, match="answered HTTP 401: missing or wrong API key") as caught:
            variant.complete(prompt)
        variant.close()
        assert "LQMF_API_KEY" in caught.value.hint
    unknown = remote_variant(keyed_server, "demo-q5", api_key="s3cret")
    with pytest.raises(LQMFError, match="answered HTTP 404: no model named 'demo-q5'") as caught:
        unknown.complete(prompt)
    unknown.close()
    assert "/models" in caught.value.hint

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens once the probe is closed
    closed = remote_variant(f"http://127.0.0.1:{port}/v1", "demo-q4_k_m", timeout=5)
    with pytest.raises(LQMFError, match=rf"cannot reach http://127\.0\.0\.1:{port}/v1/chat/completions") as caught:
        closed.complete(prompt)
    assert "start the server" in caught.value.hint
