"""`tune NAME` (issue 30): fresh workloads, the choice rules, the stored tuning applied at load and shown, and a
real tune of the demo model on llama-server whose identity verdicts hold when the texts are made again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.measure.results import SettingsRow, SpeculationRow
from agents.measure.tuning import DRAFTLESS, SPEEDUP_FLOOR, choose_settings, choose_speculation, probe
from agents.measure.workloads import KINDS, Workloads
from lqmf.api import Library
from lqmf.base.errors import InvalidRequest
from lqmf.base.settings import Settings
from server.runtime.engine_tuning import NO_SPECULATION, TUNE_KIND, EngineTuning, Speculation, machine_fingerprint

MODEL = "demo-q4_k_m"
SMALL = {"tokens": 24, "prompts": 1, "load_tokens": 8}  # a real tune of the 4.5M demo model in seconds


# -- workloads ----------------------------------------------------------------------------------------------------
def test_every_prompt_is_new_and_the_same_seed_makes_the_same_prompts():
    made = Workloads(0)
    texts = [made.next(kind).messages[-1]["content"] for kind in KINDS for _ in range(150)]
    assert len(set(texts)) == len(texts)  # never the same prompt twice: a server's cache must not serve it
    again = Workloads(0)
    assert [again.next(kind).messages[-1]["content"] for kind in KINDS for _ in range(150)] == texts
    assert Workloads(1).next("code").messages != Workloads(0).next("code").messages
    with pytest.raises(ValueError, match="unknown workload kind"):
        made.next("poetry")


def test_the_kinds_ask_for_what_they_are_named_after():
    made = Workloads(3)
    code = made.next("code").messages[-1]["content"]
    assert "```python" in code and "def " in code and "Rename the variable" in code
    extraction = made.next("json").messages[-1]["content"]
    assert "JSON" in extraction and extraction.count("office") >= 5
    chat = made.next("chat").messages[-1]["content"]
    assert "The main character is called" in chat and "```" not in chat


def test_sse_events_reads_the_json_events_up_to_done_and_raises_on_an_error_event():
    from lqmf.base.errors import LQMFError
    from lqmf.base.sse import sse_events

    lines = [": keep-alive", "", 'data: {"choices": [{"delta": {"content": "a"}}]}', "data:", 'data: {"usage": {}}',
             "data: [DONE]", 'data: {"after": "done"}']
    assert list(sse_events(lines)) == [{"choices": [{"delta": {"content": "a"}}]}, {"usage": {}}]
    with pytest.raises(LQMFError, match="error event: .*slot unavailable"):
        list(sse_events(['data: {"a": 1}', 'data: {"error": {"message": "slot unavailable"}}']))


# -- the choice rules ---------------------------------------------------------------------------------------------
def _row(label: str, speedups: dict[str, float], identical: bool = True, error: str = "") -> SpeculationRow:
    return SpeculationRow(label, rates={k: 100 * v for k, v in speedups.items()}, speedups=speedups,
                          identical=identical, error=error)


CANDIDATES = [NO_SPECULATION, *DRAFTLESS]


def test_speculation_wins_only_when_its_text_is_the_same_and_no_kind_gets_slower():
    none = _row("none", {"chat": 1.0, "code": 1.0, "json": 1.0})
    changed_text = _row(DRAFTLESS[0].label, {"chat": 1.5, "code": 3.0, "json": 3.0}, identical=False)
    slower_chat = _row(DRAFTLESS[1].label, {"chat": SPEEDUP_FLOOR - 0.01, "code": 2.5, "json": 2.5})
    good = _row(DRAFTLESS[2].label, {"chat": 1.0, "code": 1.6, "json": 1.5})
    better = _row(DRAFTLESS[3].label, {"chat": 0.99, "code": 1.9, "json": 1.7})
    assert choose_speculation([none, changed_text, slower_chat, good], CANDIDATES) == DRAFTLESS[2]
    assert choose_speculation([none, changed_text, slower_chat, good, better], CANDIDATES) == DRAFTLESS[3]
    assert choose_speculation([none, changed_text, slower_chat], CANDIDATES) is NO_SPECULATION
    failed = _row(DRAFTLESS[2].label, {"chat": 2.0, "code": 2.0, "json": 2.0}, error="llama-server answered 500")
    assert choose_speculation([none, failed], CANDIDATES) is NO_SPECULATION
    flat = _row(DRAFTLESS[2].label, {"chat": 0.99, "code": 1.0, "json": 1.0})  # costs a little, gains nothing
    assert choose_speculation([none, flat], CANDIDATES) is NO_SPECULATION
    noise = _row(DRAFTLESS[2].label, {"chat": 1.0, "code": 1.04, "json": 1.04})  # within a shared CPU's noise
    assert choose_speculation([none, noise], CANDIDATES) is NO_SPECULATION


def _settings(label: str, slots: int, aggregate: dict[int, float], ttft: dict[int, float]) -> SettingsRow:
    return SettingsRow(label, slots, 2, None, aggregate=aggregate, ttft_ms=ttft)


def test_settings_win_on_throughput_only_with_ttft_no_worse_than_the_defaults(tmp_path):
    record = type("Record", (), {"path": tmp_path / "m.gguf"})()
    record.path.write_bytes(b"x" * 1000)
    defaults = _settings("defaults", 4, {1: 100, 4: 200, 16: 300}, {1: 10, 4: 40, 16: 400})
    slower_start = _settings("16 slots", 16, {1: 100, 4: 260, 16: 600}, {1: 10, 4: 80, 16: 300})
    faster = _settings("8 slots", 8, {1: 100, 4: 230, 16: 400}, {1: 10, 4: 41, 16: 350})
    chosen = choose_settings([defaults, slower_start, faster], NO_SPECULATION, record)
    assert chosen is not None and chosen.slots == 8
    assert chosen.gains["aggregate"] == {"1": 1.0, "4": 1.15, "16": 1.333}
    assert chosen.model_bytes == 1000 and chosen.machine == machine_fingerprint()
    assert choose_settings([defaults, slower_start], NO_SPECULATION, record) is None  # the defaults stay
    noise = _settings("16 slots", 16, {1: 101, 4: 202, 16: 303}, {1: 10, 4: 40, 16: 400})  # +1%: noise
    assert choose_settings([defaults, noise], NO_SPECULATION, record) is None
    same_threads = choose_settings([defaults, faster], NO_SPECULATION, record)
    assert same_threads.threads is None  # what equals the default is not pinned
    spec = choose_settings([defaults, slower_start], DRAFTLESS[0], record)  # speculation alone is a tuning too
    assert spec is not None and spec.slots is None and spec.speculation == DRAFTLESS[0]


# -- the stored tuning ------------------------------------------------------------------------------------------
def test_a_tuning_says_its_arguments_and_when_it_no_longer_holds(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x" * 10)
    tuning = EngineTuning(speculation=DRAFTLESS[1], slots=8, ubatch=256, machine=machine_fingerprint(),
                          model_bytes=10)
    assert tuning.server_args() == ("--spec-type", "ngram-mod", *DRAFTLESS[1].args, "-ub", "256")
    assert EngineTuning.from_dict(tuning.to_dict()) == tuning
    assert tuning.applies_to(model) is None
    assert "another machine" in EngineTuning(machine="a 486, 1 core", model_bytes=10).applies_to(model)
    model.write_bytes(b"x" * 11)
    assert "changed" in tuning.applies_to(model)
    drafted = EngineTuning(speculation=Speculation("draft-simple", (), str(tmp_path / "gone.gguf")),
                           machine=machine_fingerprint(), model_bytes=11)
    assert "draft model" in drafted.applies_to(model)
    assert drafted.server_args() == ("--spec-type", "draft-simple", "-md", str(tmp_path / "gone.gguf"))


@pytest.fixture
def models(demo_dir, tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for file in demo_dir.glob(f"{MODEL}.gguf*"):
        shutil.copy2(file, folder / file.name)
    shutil.copytree(demo_dir / "demo-hf", folder / "demo-hf")
    return folder


def _store_tuning(library: Library, tuning: EngineTuning) -> int:
    store = library.store
    experiment = store.start_experiment(TUNE_KIND, [MODEL], {})
    store.finish_experiment(experiment, {"model": MODEL, "tuning": tuning.to_dict(), "chosen": "a test's choice",
                                         "seconds": 1.0})
    return experiment


def test_the_stored_tuning_starts_the_child_and_show_says_it(models, tmp_path):
    settings = Settings(home=tmp_path / "home", models_dir_override=models)
    path = models / f"{MODEL}.gguf"
    tuning = EngineTuning(speculation=DRAFTLESS[0], slots=2, ubatch=128, machine=machine_fingerprint(),
                          model_bytes=path.stat().st_size, gains={"single": {"code": 1.5}})
    with Library(settings) as library:
        _store_tuning(library, tuning)
        info = library.manager.load(MODEL).backend.engine_info()
        assert info["slots"] == 2 and " ".join(tuning.server_args()) in " ".join(info["args"])
        shown = library.show(MODEL).figures["tuning"]
        assert shown["chosen"] == "a test's choice" and shown["gains"] == {"single": {"code": 1.5}}
        assert shown["not_applied"] is None and "--spec-type" in shown["args"]
        library.unload(MODEL)
        with path.open("ab") as f:  # another file under the same name: the tuning no longer holds
            f.write(b"\0" * 32)
        info = library.manager.load(MODEL).backend.engine_info()
        assert info["slots"] == settings.parallel and "--spec-type" not in info["args"]
        assert "changed" in library.show(MODEL).figures["tuning"]["not_applied"]


def test_tuned_false_serves_the_defaults(models, tmp_path):
    settings = Settings(home=tmp_path / "home", models_dir_override=models, tuned=False)
    path = models / f"{MODEL}.gguf"
    with Library(settings) as library:
        _store_tuning(library, EngineTuning(speculation=DRAFTLESS[0], slots=2, machine=machine_fingerprint(),
                                            model_bytes=path.stat().st_size))
        info = library.manager.load(MODEL).backend.engine_info()
        assert info["slots"] == settings.parallel and "--spec-type" not in info["args"]


def test_tune_refuses_what_llama_server_does_not_serve(models, tmp_path):
    with Library(Settings(home=tmp_path / "home", models_dir_override=models)) as library:
        with pytest.raises(InvalidRequest, match="GGUF"):
            library.tune("demo-hf")


def test_a_real_tune_records_what_it_measured_and_its_identity_verdicts_hold(models, tmp_path):
    settings = Settings(home=tmp_path / "home", models_dir_override=models)
    with Library(settings) as library:
        library.load(MODEL)
        result = library.tune(MODEL, **SMALL)
        assert not library.manager.is_loaded(MODEL)  # reloaded as tuned on its next use
        assert result.seconds < 180 and "at most 3 min" in result.plan[0]
        assert [row.label for row in result.speculation] == [c.label for c in (NO_SPECULATION, *DRAFTLESS)]
        for row in result.speculation:
            assert row.error or set(row.rates) == set(KINDS) and all(v > 0 for v in row.rates.values())
        assert [row.label for row in result.settings][0] == "defaults"
        assert all(set(row.aggregate) == {1, 4, 16} for row in result.settings if not row.error)
        stored = library.store.experiment(result.experiment_id)
        assert stored["kind"] == TUNE_KIND and stored["status"] == "done"
        assert stored["summary"]["chosen"] == result.chosen
        assert (library.tuning_of(MODEL) is None) == (result.tuning is None)
        if result.tuning is not None:
            chosen = EngineTuning.from_dict(result.tuning)
            row = next(r for r in result.speculation if r.label == chosen.speculation.label)
            assert row.identical and min(row.speedups.values()) >= SPEEDUP_FLOOR
        # The verdicts are the engine's: made again, the same candidate gives the same texts on the same prompts.
        record = library.manager.record(MODEL)
        texts = {}
        for spec in (NO_SPECULATION, DRAFTLESS[0]):
            made = Workloads(0)
            with probe(library.manager, record, EngineTuning(speculation=spec, slots=1)) as child:
                child.warm_up()
                texts[spec.label] = [child.complete(made.next(kind).messages, SMALL["tokens"]).text for kind in KINDS]
        same = texts[NO_SPECULATION.label] == texts[DRAFTLESS[0].label]
        assert same == next(r.identical for r in result.speculation if r.label == DRAFTLESS[0].label)
