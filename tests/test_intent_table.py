"""agents/intent_table.py is complete and the one source: parser, executor, help, guard and shell all read it."""

from __future__ import annotations

import itertools
import operator
from dataclasses import replace

import pytest

from agents import intent_table as table
from agents import results as r
from agents.intent_table import SPECS, HelpRow, Need
from agents.intents import Command, Intent, Slots

KNOWN = [f"model-{i}" for i in range(25)]


class Recorder:
    """Stands in for the executor: every attribute path a handler touches is logged, any call answers."""

    def __init__(self, log: list[str], path: str = "") -> None:
        self._log, self._path = log, path

    def __getattr__(self, name: str) -> Recorder:
        path = f"{self._path}.{name}" if self._path else name
        self._log.append(path)
        return Recorder(self._log, path)

    def __call__(self, *args, **kwargs) -> Recorder:
        return Recorder(self._log, self._path + "()")


def touched(intent: Intent) -> list[str]:
    """The executor attributes the intent's handler uses (paths such as "library.models" or "with_file")."""
    log: list[str] = []
    command = Command(intent, Slots(model="A", models=["A", "B"], file="f.txt", prompt="hi", kind="vllm", name="B"))
    SPECS[intent].handler(Recorder(log), command, None)
    return [path for path in log if "()" not in path]


@pytest.fixture
def executor(tmp_path):
    from agents.executor_agent import Executor
    from lqmf.base.settings import Settings
    from server.runtime.manager import ModelManager

    settings = Settings(home=tmp_path, models_dir_override=tmp_path / "models")
    (tmp_path / "models").mkdir()
    manager = ModelManager(settings)
    made = Executor(settings, manager, server=None)
    yield made
    made.close()
    manager.close()


def test_every_intent_has_exactly_one_spec():
    assert set(SPECS) == set(Intent)
    assert all(spec.intent is intent for intent, spec in SPECS.items())
    assert len(table._SPECS) == len(Intent), "an intent is declared twice"


def test_each_spec_names_its_examples_file():
    for intent, spec in SPECS.items():
        assert spec.examples == f"{intent.value.lower()}.txt"
        assert table.examples_file(intent).parent == table.EXAMPLES_DIR
    if table.EXAMPLES_DIR.is_dir():  # written by the example-sentences work; checked once it is there
        absent = [s.examples for s in SPECS.values() if not table.examples_file(s.intent).exists()]
        assert not absent, f"intents without example sentences: {absent}"


def test_every_handler_resolves_on_a_real_executor(executor):
    from lqmf.api import Library

    for intent in Intent:
        paths = touched(intent)
        if intent not in (Intent.EXIT, Intent.LOGIN):  # the two that answer without the executor
            assert paths, f"{intent.value}'s handler uses nothing of the executor"
        for path in paths:
            target = operator.attrgetter(path)(executor)  # AttributeError: the table names a missing handler
            if path.startswith("library."):
                assert hasattr(Library, path.split(".")[1]), f"{intent.value}: no Library.{path}"
            if not any(other.startswith(path + ".") for other in paths):  # what is called (or passed on to call)
                assert callable(target), f"{intent.value}: {path} is no handler"
        assert executor.handlers[intent].func is SPECS[intent].handler
        assert executor.handlers[intent].args == (executor,)


def test_the_executor_dispatches_through_the_table(executor, monkeypatch):
    from agents.executor_agent import Executor

    answer = r.Message(text="from the table")
    monkeypatch.setitem(SPECS, Intent.SHOW_STATISTICS, replace(SPECS[Intent.SHOW_STATISTICS],
                                                               handler=lambda x, c, p: answer))
    fresh = Executor(executor.settings, executor.manager, server=None)
    try:
        assert fresh.execute(Command(Intent.SHOW_STATISTICS)) is answer
    finally:
        fresh.close()


def test_file_needed_is_declared_exactly_where_the_handler_needs_a_file(executor):
    for intent, spec in SPECS.items():
        assert (spec.file_needed is not None) == ("with_file" in touched(intent)), intent.value
        if spec.file_needed:
            result = executor.execute(Command(intent, Slots(model="A")))
            assert isinstance(result, r.ErrorResult) and result.message == spec.file_needed[0]
            assert result.hint == spec.file_needed[1].format(model="A")


def test_help_lists_every_row_of_the_table_grouped_by_task(executor, monkeypatch):
    rows = executor.help(Command(Intent.SHOW_HELP)).commands
    declared = [(spec.task, row) for spec in SPECS.values() for row in spec.help]
    assert [(task, form, does) for task, form, does, _ in rows] == [(t, row.form, row.does) for t, row in declared]
    groups = [task for task, _ in itertools.groupby(task for task, *_ in rows)]
    assert len(groups) == len(set(groups)), "a task's rows are split: keep SPECS grouped by task"
    # A row added to the table is in help, with nothing else to edit.
    spec = SPECS[Intent.DISK_USAGE]
    added = HelpRow("frobnicate NAME", "a row only the table knows", "frobnicate NAME")
    monkeypatch.setitem(SPECS, Intent.DISK_USAGE, replace(spec, help=spec.help + (added,)))
    assert "frobnicate NAME" in [form for _, form, _, _ in executor.help(Command(Intent.SHOW_HELP)).commands]


def test_each_help_topic_opens_its_intents_task(executor):
    words = [word for spec in SPECS.values() for word in spec.topics]
    assert len(words) == len(set(words)), "a help topic word names two intents"
    for spec in SPECS.values():
        for word in spec.topics:
            rows = executor.help(Command(Intent.SHOW_HELP, Slots(kind=word))).commands
            assert rows and {task for task, *_ in rows} == {spec.task}, word


def test_guarded_intents_ask_when_guessed_and_run_when_typed():
    from agents.executor_agent import Executor

    must_guard = {Intent.REMOVE_MODEL, Intent.UNLOAD_MODEL_API, Intent.STOP_API_SERVER, Intent.RENAME_MODEL,
                  Intent.QUANTIZE_MODEL, Intent.DOWNLOAD_MODEL, Intent.ADD_ENDPOINT, Intent.REMOVE_ENDPOINT,
                  Intent.USE_MODEL}
    assert {i for i in Intent if table.guarded(i)} == must_guard
    for intent in Intent:
        guess = Command(intent, Slots(model="A", name="B"), confidence=0.85, corrections=["x -> y"])
        asked = Executor.confirmation(guess)
        assert (asked is not None) == table.guarded(intent), intent.value
        assert Executor.confirmation(Command(intent, Slots(model="A", name="B"))) is None  # typed right
        assert Executor.confirmation(replace(guess, slots=Slots(model="A", yes=True))) is None  # --yes
        unsure = Executor.confirmation(Command(intent, Slots(model="A"), confidence=0.5))
        assert (unsure is None) == table.never_asks(intent), intent.value


def test_the_parser_asks_the_tables_questions(monkeypatch):
    from agents.decision_agent import DecisionAgent

    for intent, spec in SPECS.items():
        command = Command(intent)
        DecisionAgent._ask_for_missing(command, KNOWN)
        if not spec.needs:
            assert command.question is None, intent.value
            continue
        first = spec.needs[0]
        assert command.question == first.ask(command.slots), intent.value
        assert command.choices == (KNOWN[:20] if first.choices else []), intent.value
    # The question that shows a slot, and one the table changes: the parser follows.
    named = Command(Intent.RENAME_MODEL, Slots(model="demo"))
    DecisionAgent._ask_for_missing(named, KNOWN)
    assert named.question == "What should the new name be? e.g. rename demo to NEW-NAME"
    monkeypatch.setitem(SPECS, Intent.DISK_USAGE, replace(SPECS[Intent.DISK_USAGE],
                                                          needs=(Need(("model",), "Whose disk usage?"),)))
    asked = DecisionAgent(lambda: KNOWN).parse("disk usage")
    assert asked.intent is Intent.DISK_USAGE and asked.question == "Whose disk usage?" and not asked.choices


def test_an_unload_offers_only_the_loaded_models(executor):
    need = SPECS[Intent.UNLOAD_MODEL_API].needs[0]
    assert need.choices == table.LOADED_MODELS and need.none
    command = Command(Intent.UNLOAD_MODEL_API, question=need.question, choices=list(KNOWN))
    assert executor.execute(command) == r.Message(text=need.none)  # nothing is loaded here


def test_describe_reads_the_table():
    from agents.decision_agent import describe

    slots = Slots(model="A", models=["A", "B"], name="N")
    for intent, spec in SPECS.items():
        said = describe(Command(intent, slots, text="as typed"))
        if spec.describe is None:
            assert said == "as typed"
        elif callable(spec.describe):
            assert said == spec.describe(slots)
        else:
            assert said == spec.describe.format(model="A", name="N", models="A and B")
    assert describe(Command(Intent.BENCHMARK_MODELS, Slots(model="A"))) == "benchmark A"


def test_suggestions_are_the_tables_canonical_lines_commonest_first():
    from agents.decision_agent import suggest

    ranked = [s for s in SPECS.values() if s.canonical]
    assert all(s.rank > 0 for s in ranked) and len({s.rank for s in ranked}) == len(ranked)
    assert not [s for s in SPECS.values() if s.rank and not s.canonical]
    lines = table.canonical_lines()
    assert lines[:3] == ["start server", "stop server", "show api status"]
    assert suggest("frobnicate", "demo") == ["load model demo", "unload model demo"]


def test_the_shell_reads_completion_and_feedback_from_the_table(executor, monkeypatch):
    from prompt_toolkit.document import Document
    from rich.console import Console

    from cli.api_cli import _NoSession
    from cli.shell import Shell, ShellCompleter

    completer = ShellCompleter(lambda line: [])

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), None)]

    words = table.completion_words()
    assert complete("") == words and len(words) == len(set(words))
    spec = SPECS[Intent.DISK_USAGE]
    monkeypatch.setitem(SPECS, Intent.DISK_USAGE, replace(spec, completion=spec.completion + ("du -h",)))
    assert complete("du") == ["du -h"]

    shell = Shell(executor, agent=None, console=Console(), session=_NoSession(), interactive=False)
    for intent, spec in SPECS.items():
        drawn = shell.feedback(intent)
        if intent is Intent.QUANTIZE_MODEL:  # its plan's bar while the plan is made
            assert drawn == ("bar", "planning")
        elif spec.progress:
            assert drawn is not None and drawn[0] == spec.progress, intent.value
        else:
            assert drawn is None, intent.value
    # A plan, a pick, a prompt: the two-step intents, as the table declares them; -c shows a plan and runs it.
    assert {i: table.two_step(i).asks for i in Intent if table.two_step(i)} == {
        Intent.QUANTIZE_MODEL: "plan", Intent.ADD_ENDPOINT: "model", Intent.LOGIN: "secret"}
    assert shell.answers == {"plan"}
    assert {i for i in Intent if table.many_models(i)} == {Intent.COMPARE_MODELS, Intent.AGREEMENT_REPORT}


def test_no_module_keeps_a_second_copy_of_the_table():
    import agents.decision_agent as parser
    import agents.executor_agent as executor_module
    import cli.shell as shell

    for module, names in ((executor_module, ("HELP", "TOPIC_TASKS", "FILLED", "GUARDED", "FILE_NEEDED")),
                          (shell, ("PROGRESS", "SLOW", "MANY_MODELS", "COMMAND_WORDS")),
                          (parser, ("EXPERIMENTS", "DESCRIBE", "CANONICAL"))):
        kept = [name for name in names if hasattr(module, name)]
        assert not kept, f"{module.__name__} still declares {kept}: read agents/intent_table.py instead"
