"""`help` and `help TOPIC`: the table's rows, each example naming models on disk on which it would run.

An example's NAME / A / B / REF / OUT / MODEL / CLASSIFIER are filled from what is on disk as its intent needs
(agents/intent_table.py declares `fits`); where nothing fits, a placeholder says what is missing, so no example
is one that the command would refuse ("already quantized", "not found", an encoder asked to chat).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from agents import intent_table as table
from agents import model_sets as ms
from agents import results as r
from agents.intents import Command, Intent

NO_CLASSIFIER = ms.Missing("<classifier>", "no classifier saved yet: train one first, see help classifiers")
PLACEHOLDER = re.compile(r"\b(NAME2|NAME|A|B|REF|OUT|MODEL|CLASSIFIER)\b")


@dataclass
class Filler:
    """The models on disk (and saved classifiers) that examples are filled from; one per `help` asked."""

    pool: ms.Pool
    classifiers: list[str]
    disk_names: set[str]  # every name on disk, usable or not: an output must not take one

    def fill(self, spec: table.IntentSpec, example: str) -> str:
        """The example with its placeholders filled for its intent; untouched for intents that name no model."""
        used = PLACEHOLDER.findall(example)
        if spec.fits is None or not used:
            return example
        values = self._values(spec.fits)
        text = PLACEHOLDER.sub(lambda m: values[m.group(1)][0], example)
        missing = list(dict.fromkeys(values[key][1] for key in used if values[key][1]))
        if spec.intent is Intent.QUANTIZE_MODEL and not missing:
            text = self._free_output(text, values["NAME"][0])
        return f"{text} ({'; '.join(missing)})" if missing else text

    def _values(self, fits: str) -> dict[str, tuple[str, Optional[str]]]:
        """Each placeholder's value, and why it stays a placeholder (None when a model on disk fills it)."""
        values: dict[str, tuple[str, Optional[str]]] = {}

        def put(keys: tuple[str, ...], names: list[str], why: ms.Missing) -> None:
            for index, key in enumerate(keys):
                values[key] = (names[index], None) if index < len(names) else (why.placeholder, why.why)

        if fits == table.PAIR:
            put(("A", "B"), self.pool.pair(), ms.MISSING[ms.GENERATES])
            values["NAME"], values["NAME2"] = values["A"], values["B"]
        else:
            names = self.pool.fitting(fits)
            put(("NAME", "NAME2"), names[:2] if len(names) > 1 else names * 2, ms.MISSING[fits])
            values["A"], values["B"] = values["NAME"], values["NAME2"]
        reference = None if values["A"][1] else self.pool.reference(values["A"][0])
        values["REF"] = (reference, None) if reference else ("<reference>", f"the source of {values['A'][0]} is "
                                                                           "not on disk: name one")
        put(("MODEL",), self.pool.fitting(ms.EMBEDS)[:1], ms.MISSING[ms.EMBEDS])
        put(("CLASSIFIER",), self.classifiers[:1], NO_CLASSIFIER)
        values["OUT"] = ("OUT", None)
        return values

    def _free_output(self, text: str, source: str) -> str:
        """A quantize example whose output would land on a name already on disk gets `as` a free one."""
        from agents.decision_agent import DecisionAgent
        from agents.quantization.plan import QuantRequest, choose_method_and_level, default_output_name

        command = DecisionAgent(lambda: sorted(self.disk_names | {source})).parse(text)
        s = command.slots
        if command.intent is not Intent.QUANTIZE_MODEL:
            return text  # a sibling form in the row: "list quantizations"
        method, level, problems = choose_method_and_level(QuantRequest(source, s.method, s.bits, s.level,
                                                                        group_size=s.group_size))
        if problems:
            return text
        wanted = s.name if s.name and s.name != "OUT" else default_output_name(source, method, level, s.group_size)
        stem = wanted.removesuffix(".gguf")
        if stem not in self.disk_names and s.name != "OUT":
            return text
        free = next(f"{stem}-{n}" for n in range(2, 1000) if f"{stem}-{n}" not in self.disk_names) \
            if stem in self.disk_names else stem
        if s.name:
            return re.sub(r"\bas\s+\S+", f"as {free}", text, count=1)
        return re.sub(r"(\s+--yes)?$", rf" as {free}\1", text, count=1)


def _reference(executor: Any) -> Callable[[str], Optional[str]]:
    """The source a variant was made from, or None (no manifest, or its source is not on disk)."""
    from lqmf.base.errors import LQMFError

    def reference(name: str) -> Optional[str]:
        try:
            return executor.library.lab.reference_for(name)
        except LQMFError:
            return None

    return reference


def filler(executor: Any) -> Filler:
    """What the executor's models on disk and saved classifiers fill examples with."""
    from agents.classifiers.artifact import classifier_names

    records = executor.library.models().models
    return Filler(ms.Pool.of(records, _reference(executor)), classifier_names(executor.settings),
                  {rec.name for rec in records})


def completion_names(executor: Any, line: str) -> list[str]:
    """The model names the shell's Tab offers after `line`: those its command would run on (quantize: the
    unquantized sources; chat: what generates; ...), remote endpoints where the command can use them; every name
    after a line that starts with no command phrase."""
    fit = table.completion_fit(line)
    records = executor.library.models().models
    if fit is None:
        return [rec.name for rec in records]
    remote = [rec.name for rec in records if rec.remote and fit in (ms.ANY, ms.GENERATES)]
    return ms.Pool.of(records, _reference(executor)).fitting(fit) + remote


def _rows(entries: list[tuple[table.IntentSpec, table.HelpRow]], fill: Callable[[table.IntentSpec, str], str],
          forms: bool) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for spec, row in entries:
        rows.append((spec.task, row.form, row.does, fill(spec, row.example)))
        if forms:
            rows += [(spec.task, "", "", fill(spec, form)) for form in row.more]
    return rows


def help_result(executor: Any, command: Command) -> r.Help:
    """`help`: one line per command, grouped by task, each with an example; `help TOPIC`: its forms."""
    topic = (command.slots.kind or "").lower()
    entries = table.help_entries()
    fill = filler(executor).fill
    if not topic:
        return r.Help(commands=_rows(entries, fill, forms=False))
    task = table.topic_tasks().get(topic)
    chosen = [(spec, row) for spec, row in entries if spec.task == task] if task else \
        [(spec, row) for spec, row in entries if topic in spec.task.lower() or topic in row.form.lower()]
    if task and topic not in table.WHOLE_TASK_TOPICS:
        # "help quantize": the entries that name the topic, when some do; else the whole task.
        chosen = [(spec, row) for spec, row in chosen
                  if topic in " ".join((row.form, row.does, row.example, *row.more)).lower()] or chosen
    if not chosen:
        return r.Help(commands=[("", f"no help topic '{topic}'", "every command:", "help")]
                      + _rows(entries, fill, forms=False))
    return r.Help(commands=_rows(chosen, fill, forms=True))
