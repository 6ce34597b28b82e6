"""The shell's language (issue 28): help examples that run as printed, a typo on a read-only command that just runs,
a question that a new command passes over, "all of them", and "which model is fastest?" answered from the history."""

from __future__ import annotations

import re
import shutil
import sys

import pytest

from agents import intent_table as table
from agents import model_sets as ms
from agents import results as r
from agents.decision_agent import DecisionAgent
from agents.intents import Command, Intent, Slots
from tests.test_shell import Terminal, shell_env

PLACEHOLDER = re.compile(r"<[a-z-]+>")


def _executor(home, models):
    from agents.executor_agent import Executor
    from lqmf.base.settings import Settings
    from server.runtime.manager import ModelManager

    settings = Settings(home=home, models_dir_override=models)
    manager = ModelManager(settings)
    return Executor(settings, manager, server=None), manager


@pytest.fixture
def executor(demo_dir, tmp_path):
    made, manager = _executor(tmp_path / "home", demo_dir)
    yield made
    made.close()
    manager.close()


@pytest.fixture
def two_gguf(demo_dir, tmp_path):
    """A models folder of the two quick GGUF variants (a benchmark of "all models" takes seconds)."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("demo-q4_k_m.gguf", "demo-q8_0.gguf"):
        for path in demo_dir.glob(f"{name}*"):
            shutil.copy2(path, folder / path.name)
    return folder


def _agent(executor) -> DecisionAgent:
    return DecisionAgent(lambda: [rec.name for rec in executor.manager.available()])


def _examples(executor, topic: str = "") -> list[tuple[str, str]]:
    """(task, example) of every help row, with the forms `help TOPIC` adds."""
    rows = executor.help(Command(Intent.SHOW_HELP, Slots(kind=topic or None))).commands
    return [(row[0], row[3]) for row in rows if row[3]]


# -- help examples ---------------------------------------------------------------------------------------------
def test_every_quantize_example_in_help_plans_without_a_refusal(executor):
    """`help quantize` on the demo models: each example names an unquantized source and a free output name, so
    its plan is runnable (they all named demo-bnb-int8 before: "already quantized")."""
    agent = _agent(executor)
    quantizing = [ex for _, ex in _examples(executor, "quantize") if ex.startswith("quantize")]
    assert len(quantizing) >= 5
    for example in quantizing:
        command = agent.parse(example)
        assert command.intent is Intent.QUANTIZE_MODEL and command.slots.model == "demo-hf", example
        planned = executor.plan_quantization(command)
        assert planned.runnable, f"{example}: refused: {planned.plan.problems}"


def test_every_help_example_names_models_it_would_run_on(executor):
    agent = _agent(executor)
    records = {rec.name: rec for rec in executor.manager.available()}
    for topic in ("", *table.topic_tasks()):
        for _task, example in _examples(executor, topic):
            assert "demo-bnb-int8" not in example, example  # the slowest model on a CPU is never the example
            if PLACEHOLDER.search(example) or example == "exit (leaves chat)":
                continue  # nothing on disk fits (checked below); leaving chat mode names no model
            command = agent.parse(example)
            named = [m for m in [command.slots.model, *command.slots.models] if m in records] or \
                (table.models_of(executor, command) if command.slots.every else [])
            if command.intent in (Intent.CHAT_WITH_MODEL, Intent.BENCHMARK_MODELS, Intent.EXPERIMENT_WITH_MODEL,
                                  Intent.COMPARE_MODELS, Intent.LOAD_MODEL_API):
                assert named, example
                assert all(records[m].role != "embedding" and records[m].usable for m in named), example
            if command.intent is Intent.COMPARE_MODELS and not command.slots.every:
                assert len(set(command.slots.models)) == 2, example
            if command.intent is Intent.FIDELITY_REPORT:
                assert executor.library.lab.reference_for(command.slots.model), example


def test_an_example_with_nothing_to_fit_says_what_is_missing(demo_dir, tmp_path):
    """No HF folder on disk: the quantize examples keep a placeholder and say what to get; no classifier saved:
    classify's example says to train one."""
    only = tmp_path / "only-gguf"
    only.mkdir()
    for path in demo_dir.glob("demo-q4_k_m.gguf*"):
        shutil.copy2(path, only / path.name)
    made, manager = _executor(tmp_path / "home", only)
    try:
        quantize = [ex for _, ex in _examples(made, "quantize") if ex.startswith("quantize")]
        assert quantize and all(ex.startswith("quantize <hf-model> to") for ex in quantize), quantize
        assert all("no unquantized Hugging Face folder on disk: download ORG/NAME first" in ex for ex in quantize)
        classify = [ex for _, ex in _examples(made, "classifiers") if ex.startswith("classify")]
        assert classify == ['classify "this was a lovely gift" with <classifier> (no classifier saved yet: train one '
                            'first, see help classifiers)']
        chat = [ex for _, ex in _examples(made, "chat") if ex.startswith("chat with")]
        assert chat == ["chat with demo-q4_k_m"]
    finally:
        made.close()
        manager.close()


def test_model_sets_order_quick_models_first(executor):
    from agents.help_examples import filler

    pool = filler(executor).pool
    assert pool.fitting(ms.GENERATES) == ["demo-q4_k_m", "demo-q8_0", "demo-f16", "demo-hf", "demo-gptq-4bit",
                                          "demo-bnb-int8", "demo-bnb-nf4"]
    assert pool.fitting(ms.SOURCE) == ["demo-hf"]
    assert pool.fitting(ms.VARIANT)[:2] == ["demo-q4_k_m", "demo-q8_0"]
    assert pool.pair() == ["demo-q4_k_m", "demo-q8_0"]  # two variants of one source


# -- "all models" ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, intent", [
    ("benchmark all models", Intent.BENCHMARK_MODELS), ("bench every model", Intent.BENCHMARK_MODELS),
    ("benchmark them all", Intent.BENCHMARK_MODELS), ("compare all of them", Intent.COMPARE_MODELS),
])
def test_all_models_is_a_model_set(executor, line, intent):
    command = _agent(executor).parse(line)
    assert command.intent is intent and command.slots.every and command.question is None
    assert table.description(command).endswith("all models")
    every = table.models_of(executor, command)
    assert set(every) == {rec.name for rec in executor.manager.available() if rec.usable}  # all demo models generate


def test_all_of_them_answers_which_model(two_gguf, tmp_path):
    """ "which model?" answered "all of them": the pending command runs on every model (here the two)."""
    from rich.console import Console

    from cli.api_cli import _NoSession
    from cli.shell import Shell

    made, manager = _executor(tmp_path / "home", two_gguf)
    try:
        shell = Shell(made, _agent(made), Console(file=open("/dev/null", "w")), session=_NoSession(),
                      interactive=False)
        asked = shell.run_line("benchmark")
        assert isinstance(asked, r.Question) and asked.choices == ["demo-q4_k_m", "demo-q8_0"]
        answered = shell._answer("all of them")
        assert answered is not None and answered.intent is Intent.BENCHMARK_MODELS and answered.slots.every
        assert table.missing(answered) is None
        assert table.models_of(made, answered) == ["demo-q4_k_m", "demo-q8_0"]
    finally:
        made.close()
        manager.close()


@pytest.mark.parametrize("line, wanted, refused", [
    ("quantize demo-", {"demo-hf"}, {"demo-q4_k_m", "demo-gptq-4bit", "demo-bnb-int8"}),  # sources only
    ("chat with demo-", {"demo-hf", "demo-q4_k_m"}, set()),
    ("fidelity of demo-", set(), set()),  # no completion phrase: every name
    ("show demo-", {"demo-hf", "demo-q4_k_m", "demo-f16"}, set()),
])
def test_tab_offers_the_models_a_command_would_run_on(executor, line, wanted, refused):
    """Completion is drawn from the models each command runs on, as help's examples are."""
    from prompt_toolkit.document import Document

    from agents.help_examples import completion_names
    from cli.shell import ShellCompleter

    completer = ShellCompleter(lambda before: completion_names(executor, before))
    offered = {c.text for c in completer.get_completions(Document(line), None)}
    every = {rec.name for rec in executor.manager.available() if rec.name.startswith("demo-")}
    assert wanted <= offered and not offered & refused, offered
    if not wanted:
        assert offered == every


# -- which model is fastest? -----------------------------------------------------------------------------------
@pytest.mark.parametrize("line, focus", [
    ("which model is fastest?", "speed"), ("which one should I use?", None), ("what's the best model", None),
    ("which model is most faithful", "fidelity"),
])
def test_questions_about_the_models_ask_for_a_recommendation(executor, line, focus):
    command = _agent(executor).parse(line)
    assert command.intent is Intent.RECOMMEND_MODEL and command.slots.kind == focus and not command.question


def test_which_is_fastest_is_answered_from_the_history(two_gguf, tmp_path):
    made, manager = _executor(tmp_path / "home", two_gguf)
    agent = _agent(made)
    try:
        nothing = made.execute(agent.parse("which model is fastest?"))
        assert isinstance(nothing, r.Message) and nothing.text == "nothing measured yet; say `benchmark all models`"
        among = "is demo-q8_0 or demo-q4_k_m the faster pick, going by the recorded numbers?"
        assert made.execute(agent.parse(among)).text == ("nothing measured yet for demo-q8_0 or demo-q4_k_m; say "
                                                         "`benchmark demo-q8_0 and demo-q4_k_m`")
        both = made.execute(agent.parse("which one should I use?"))
        assert both.text == "nothing measured yet; say `benchmark all models` or `compare all models`"
        measured = made.library.benchmark(["demo-q4_k_m", "demo-q8_0"], repetitions=1, max_tokens=4,
                                          prompts=["Say hi."])
        fastest = max(measured.rows, key=lambda row: row.gen_tps)
        answer = made.execute(agent.parse("which model is fastest?"))
        assert answer.text.startswith(f"fastest: {fastest.model} at {fastest.gen_tps:.1f} tokens/s "
                                      f"(benchmark #{measured.id})"), answer.text
        advice = made.execute(agent.parse("which one should I use?"))
        assert advice.text.splitlines()[0] == answer.text.splitlines()[0]
        assert "no fidelity measured yet: say `compare all models`" in advice.text
        # Among named models only: the slower one, asked about alone, is the fastest of itself.
        chosen = made.execute(agent.parse(among)).text.splitlines()
        assert chosen[0] == "among demo-q8_0 and demo-q4_k_m, from the recorded measurements:"
        assert chosen[1] == answer.text.splitlines()[0]
        slower = min(measured.rows, key=lambda row: row.gen_tps)
        alone = made.execute(agent.parse(f"is {slower.model} the faster pick, going by the recorded numbers?"))
        assert alone.text.splitlines()[1].startswith(f"fastest: {slower.model} at {slower.gen_tps:.1f} tokens/s")
    finally:
        made.close()
        manager.close()


@pytest.mark.parametrize("line, intent", [("list quantizations", Intent.LIST_QUANTIZATIONS),
                                           ("list endpoints", Intent.LIST_ENDPOINTS)])
def test_a_plural_is_read_without_reporting_a_typo(executor, line, intent):
    """A correctly typed plural is no correction: nothing to say "(understood: …)" about, no lower confidence."""
    command = _agent(executor).parse(line)
    assert command.intent is intent and command.corrections == [] and not command.question


# -- a typo on a read-only command, a question passed over (a real terminal) ------------------------------------
def test_a_typo_on_a_read_only_command_runs_and_a_new_command_is_no_answer(demo_dir, home):
    term = Terminal([sys.executable, "cli/api_cli.py"], shell_env(home, demo_dir))
    term.expect(r"lqmf> ")
    term.send("lsit modles\r")
    term.expect(r"\(understood: list models\)")
    term.expect(r"Models in ")  # it ran: no "Did you mean" first
    term.expect(r"lqmf> ")
    assert "Did you mean" not in term.buffer
    term.send("stpo server\r")  # guarded: it still asks
    term.expect(r"Did you mean: stop server\? \[y/N\]")
    term.send("show api status\r")  # a new command, not an answer
    term.expect(r"not done: Did you mean: stop server\?\n")
    term.expect(r"not running")  # and it ran
    term.expect(r"lqmf> ")
    term.send("benchmark\r")
    term.expect(r"Which model should the benchmark run on\?")
    term.expect(r"lqmf> ")
    term.send("disk usage\r")
    term.expect(r"not done: Which model should the benchmark run on\?")
    term.expect(r"lqmf> ")
    term.send("exit\r")
    assert term.wait() == 0
    assert "Not done." not in term.buffer
