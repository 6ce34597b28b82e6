"""Classifiers not clearly above chance: trained and saved, but flagged wherever they are shown.

The newcomer's case from issue 28: 24 rows over three labels, trained on the demo model's
embeddings. The verdict is checked against an independent computation (the Wilson bounds as the
roots of their defining equation, solved with scipy; chance from the manifest's own confusion
matrix), then looked for in the train result, the listing, the details, classify and the variant
check, through the library, the shell and real HTTP. Classifiers saved before the verdict existed
still load. A mistyped classifier name gets the nearest names.
"""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from agents import results as r
from agents.classifiers.chance import ChanceInputs, chance_rate, judge, wilson
from agents.classifiers.errors import ClassifierNotFound
from agents.demo.classify_data import make_rows, write_csv
from lqmf.api import Library
from lqmf.base.settings import Settings
from server.http.runner import BackgroundServer
from tests.test_classifiers import drawn, shell

MOOD = {
    "positive": ["this was a lovely gift", "I adore the colours", "what a wonderful day", "the staff were kind",
                 "best purchase this year", "it works perfectly", "very happy with it", "a delight to use"],
    "negative": ["this broke in a week", "terrible service", "I want a refund", "the worst meal ever",
                 "it arrived damaged", "rude and slow", "a waste of money", "never again"],
    "neutral": ["the box is blue", "it arrived on tuesday", "the manual has ten pages", "it weighs two kilos",
                "the shop opens at nine", "there are three sizes", "the cable is one metre", "it comes in a bag"],
}
GIFT = "this was a lovely gift"


@pytest.fixture(scope="module")
def lab(demo_dir, tmp_path_factory):
    """demo-hf and demo-q4_k_m, the 24-row mood classifier and a 60-row code-vs-prose one, one Library."""
    root = tmp_path_factory.mktemp("chance")
    models, home = root / "models", root / "home"
    models.mkdir()
    for name in ("demo-hf", "demo-q4_k_m.gguf"):
        for entry in demo_dir.glob(name + "*"):
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, models / entry.name)
    mood = root / "mood.csv"
    mood.write_text("text,label\n" + "".join(f"{text},{label}\n" for label, texts in MOOD.items() for text in texts))
    code = write_csv(root / "code.csv", make_rows(30))
    settings = Settings(home=home, models_dir_override=models, port=0)
    library = Library(settings)
    trained = {"mood": library.train_classifier("mood", mood, "demo-hf"),
               "code": library.train_classifier("code-vs-prose", code, "demo-hf")}
    yield {"root": root, "models": models, "home": home, "settings": settings, "library": library,
           "trained": trained}
    library.close()


@pytest.fixture(scope="module")
def api(lab):
    """The real server on 127.0.0.1, over the same LQMF_HOME (a restart: it reads the saved manifests)."""
    from server.runtime.manager import ModelManager

    manager = ModelManager(lab["settings"])
    server = BackgroundServer(lab["settings"], Library(lab["settings"], manager))
    url = server.start().url
    with httpx.Client(base_url=url, timeout=300) as client:
        yield client
    server.stop()
    manager.close()


def _independent_wilson(correct: int, n: int) -> tuple[float, float]:
    """The Wilson bounds as the roots of (p̂ - p)² = z² p (1 - p) / n on each side of p̂."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    z, observed = norm.ppf(0.975), correct / n

    def gap(p: float) -> float:
        return (observed - p) ** 2 - z * z * p * (1 - p) / n

    # gap is negative just beside p̂ and not negative at 0 and 1: one root on each side (0 or 1 at the edges).
    low = 0.0 if correct == 0 else brentq(gap, 0.0, observed - 1e-12)
    high = 1.0 if correct == n else brentq(gap, observed + 1e-12, 1.0)
    return low, high


# -- the verdict's arithmetic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("correct, n", [(10, 19), (4, 15), (0, 12), (12, 12), (150, 160)])
def test_the_wilson_interval_solves_its_equation(correct, n):
    assert wilson(correct, n) == pytest.approx(_independent_wilson(correct, n), abs=1e-9)


def test_chance_is_the_majority_share_or_one_over_k_and_says_which():
    assert chance_rate({"a": 8, "b": 8, "c": 8}) == (pytest.approx(1 / 3), "1/3: 3 balanced labels")
    rate, rule = chance_rate({"a": 14, "b": 3, "c": 3})
    assert rate == pytest.approx(0.7) and rule == "the majority class's share: 'a' is 14 of 20 rows"


def test_the_warning_carries_rows_per_label_balance_interval_chance_and_advice():
    # The figures: 24 rows, 8 per label, cross-validated 4 of 15 right.
    verdict = judge(ChanceInputs(data_rows=24, data_counts={"neg": 8, "neu": 8, "pos": 8},
                                 cv_counts={"neg": 5, "neu": 5, "pos": 5}, cv_correct=4))
    assert verdict.above_chance is False
    assert verdict.warning == ("not clearly above chance: 24 rows, 8 per label over 3 labels; cross-validated 0.27 "
                               "(95% 0.11–0.52 over 15 rows) vs chance 0.33 (1/3: 3 balanced labels): add rows, "
                               "at least ~30 per label")
    unbalanced = judge(ChanceInputs(data_rows=100, data_counts={"a": 90, "b": 10},
                                    cv_counts={"a": 72, "b": 8}, cv_correct=72))
    assert unbalanced.above_chance is False and unbalanced.chance == pytest.approx(0.9)  # always 'a' scores 0.90
    assert "10–90 per label over 2 labels (fewest: 'b', most: 'a', 90% of the rows)" in unbalanced.warning
    clear = judge(ChanceInputs(data_rows=200, data_counts={"a": 100, "b": 100},
                               cv_counts={"a": 80, "b": 80}, cv_correct=150))
    assert clear.above_chance is True and clear.warning == ""


# -- one classifier at chance, flagged everywhere --------------------------------------------------------------


def test_a_classifier_at_chance_is_saved_and_flagged_in_its_train_result(lab):
    report = lab["trained"]["mood"].report
    manifest = report["manifest"]
    assert (lab["home"] / "classifiers" / "mood" / "model.skops").is_file()  # trained and saved all the same
    # Independently: chance and the interval from the manifest's cross-validation confusion matrix.
    confusion = manifest["cv"]["confusion_matrix"]
    n, correct = sum(map(sum, confusion)), sum(confusion[i][i] for i in range(len(confusion)))
    chance = max(max(map(sum, confusion)) / n, 1 / len(confusion))
    low, high = _independent_wilson(correct, n)
    assert low <= chance  # the newcomer's case: not clearly above chance
    assert report["above_chance"] is False and manifest["chance"]["above_chance"] is False
    assert manifest["chance"]["interval"] == pytest.approx([low, high], abs=1e-9)
    assert manifest["chance"]["chance"] == pytest.approx(chance)
    assert manifest["chance"]["inputs"] == {"data_rows": 24, "data_counts": {"negative": 8, "neutral": 8,
                                                                             "positive": 8},
                                            "cv_counts": {label: sum(row) for label, row in
                                                          zip(manifest["cv"]["labels"], confusion, strict=True)},
                                            "cv_correct": correct}
    warning = report["warning"]
    assert warning.startswith("not clearly above chance: 24 rows, 8 per label over 3 labels; cross-validated ")
    assert f"(95% {low:.2f}–{high:.2f} over {n} rows) vs chance {chance:.2f}" in warning
    assert warning.endswith("add rows, at least ~30 per label")
    shown = drawn(lab["trained"]["mood"])
    assert "warning: not clearly above chance: 24 rows, 8 per label" in " ".join(shown.split())

    good = lab["trained"]["code"].report
    assert good["above_chance"] is True and good["warning"] == "" and "warning" not in drawn(lab["trained"]["code"])


def test_the_flag_is_in_the_listing_details_and_predictions_over_http(lab, api):
    listed = {c["name"]: c for c in api.get("/classifiers").json()["classifiers"]}
    warning = lab["trained"]["mood"].report["warning"]
    assert (listed["mood"]["above_chance"], listed["mood"]["warning"]) == (False, warning)
    assert (listed["code-vs-prose"]["above_chance"], listed["code-vs-prose"]["warning"]) == (True, "")
    details = api.get("/classifiers/mood").json()
    assert (details["above_chance"], details["warning"]) == (False, warning)
    assert details["manifest"]["chance"]["inputs"]["cv_correct"] == details["chance"]["inputs"]["cv_correct"]
    predicted = api.post("/classifiers/mood/predict", json={"text": GIFT})
    assert predicted.status_code == 200, predicted.text
    assert (predicted.json()["above_chance"], predicted.json()["warning"]) == (False, warning)
    assert api.post("/classifiers/code-vs-prose/predict", json={"text": GIFT}).json()["above_chance"] is True


def test_the_flag_is_in_the_library_results_and_what_the_shell_draws(lab):
    library = lab["library"]
    listing = library.classifiers()
    drawn_list = " ".join(drawn(listing).split())
    assert "NOT above" in drawn_list and "mood: warning: not clearly above chance" in drawn_list
    classified = library.classify("mood", GIFT)
    assert classified.result["above_chance"] is False
    assert "classifier mood is not clearly above chance" in " ".join(drawn(classified).split())


def test_a_check_does_not_praise_keeping_the_accuracy_of_a_classifier_at_chance(lab):
    report = lab["library"].check_classifier("mood", ["demo-q4_k_m"]).report
    assert report["above_chance"] is False and report["warning"] == lab["trained"]["mood"].report["warning"]
    assert "keeps the classifier's accuracy" not in report["recommendation"]
    assert report["recommendation"].startswith("no verdict on the variants: the classifier itself is not clearly "
                                               "above chance")
    row = next(row for row in report["rows"] if row["model"] == "demo-q4_k_m")
    assert f"demo-q4_k_m {row['accuracy']:.3f}" in report["recommendation"]
    shown = " ".join(drawn(r.ClassifierCheckResult(report=report)).split())
    assert "warning: not clearly above chance" in shown and "no verdict on the variants" in shown
    page = open(report["report_path"], encoding="utf-8").read()
    assert "not clearly above chance" in page


def test_the_shell_shows_the_flag_and_suggests_the_nearest_name(lab, tmp_path):
    script = tmp_path / "lines.txt"
    script.write_text(f'list classifiers\nclassify "{GIFT}" with mood\nclassify "{GIFT}" with mod\n')
    out = shell(["--script", str(script)], lab["home"], lab["models"])
    text = " ".join(out.stdout.split())
    assert "NOT above" in text and "mood: warning: not clearly above chance: 24 rows" in text
    assert "classifier mood is not clearly above chance" in text and "its labels and probabilities mean little" in text
    assert "error: no classifier named 'mod' → did you mean mood?" in text, out.stdout[-2000:]


# -- classifiers saved before the verdict, and names ---------------------------------------------------------


def _saved_earlier(lab, name: str, drop_confusion: bool) -> None:
    """A copy of the mood classifier whose manifest looks like one saved before this change."""
    folder = lab["home"] / "classifiers" / name
    shutil.copytree(lab["home"] / "classifiers" / "mood", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["name"] = name
    del manifest["chance"]
    if drop_confusion:
        del manifest["cv"]["confusion_matrix"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_classifiers_saved_before_the_verdict_still_load(lab, api):
    _saved_earlier(lab, "mood-old", drop_confusion=False)
    _saved_earlier(lab, "mood-older", drop_confusion=True)
    listed = {c["name"]: c for c in api.get("/classifiers").json()["classifiers"]}
    # Computed from the confusion matrix every manifest kept: the same verdict as the one saved.
    assert listed["mood-old"]["usable"] and listed["mood-old"]["chance"] == listed["mood"]["chance"]
    older = listed["mood-older"]
    assert older["usable"] and older["above_chance"] is None
    assert older["warning"].startswith("accuracy against chance not measured")
    assert api.post("/classifiers/mood-older/predict", json={"text": GIFT}).status_code == 200
    assert api.get("/classifiers/mood-older").json()["above_chance"] is None
    assert "not measured" in " ".join(drawn(lab["library"].classifiers()).split())


def test_an_unknown_classifier_name_gets_the_nearest_names(lab, api, tmp_path):
    with pytest.raises(ClassifierNotFound) as caught:
        lab["library"].classify("mod", GIFT)
    assert caught.value.message == "no classifier named 'mod'" and caught.value.hint.startswith("did you mean mood")
    missing = api.post("/classifiers/code-vs-pros/predict", json={"text": GIFT})
    assert missing.status_code == 404 and missing.json()["error"]["hint"] == "did you mean code-vs-prose?"
    assert "did you mean mood" in api.get("/classifiers/moo").json()["error"]["hint"]
    empty = Library(Settings(home=tmp_path, models_dir_override=lab["models"]))
    try:
        with pytest.raises(ClassifierNotFound, match="there are none yet") as none:
            empty.classify("mood", GIFT)
    finally:
        empty.close()
    assert none.value.hint == "train one with: train classifier NAME on data.csv with MODEL"
