"""Agreement report: one labelled dataset through two model variants under a classification prompt.

Two variants (a local model through the ModelManager, or any OpenAI-compatible endpoint) answer the
same prompt for every example, greedily. Each answer is parsed to one of the allowed labels; the
report says how often the two agree, how often each answer could be parsed, how accurate each is
against the gold labels, and how similar the raw answers are. Every example also goes to a CSV file.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

from lqmf.base.errors import LQMFError
from lqmf.base.progress import Progress
from lqmf.base.progress import report as report_progress
from lqmf.base.sampling import GREEDY

log = logging.getLogger(__name__)

# One fixed prompt, so that runs at different times (or on different variants) are comparable.
PROMPT_TEMPLATE = (
    "Classify the text below into exactly one of these labels: {labels}.\n"
    "Answer with the label only, nothing else.\n"
    "\n"
    "Text: {text}\n"
    "Label:"
)
CSV_COLUMNS = (
    "index", "text", "label", "response_a", "parsed_a", "correct_a",
    "response_b", "parsed_b", "correct_b", "agree", "similarity",
)
EXCERPT_CHARS = 300


# -- variants ------------------------------------------------------------------------------------

@runtime_checkable
class Variant(Protocol):
    """A model that answers one prompt (greedily): a name and complete(prompt) -> text."""

    name: str

    def complete(self, prompt: str) -> str:
        ...


@dataclass(frozen=True)
class LocalVariant:
    """A model served in process by a ModelManager."""

    name: str
    manager: Any = field(repr=False)
    max_tokens: int = 16

    def complete(self, prompt: str) -> str:
        from lqmf.base.generation import GenerationParams

        params = GenerationParams(**GREEDY, max_tokens=self.max_tokens)
        return self.manager.generate(self.name, [{"role": "user", "content": prompt}], params).text


@dataclass
class RemoteVariant:
    """A model behind an OpenAI-compatible /chat/completions endpoint; close() frees its connections."""

    base_url: str
    model: str
    api_key: Optional[str] = field(default=None, repr=False)
    max_tokens: int = 16
    timeout: float = 60.0
    _client: Any = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.model}@{self.base_url}"

    def _http(self):
        import httpx

        if self._client is None:  # one client for every call: keeps the connection (and TLS) open
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._client = httpx.Client(timeout=self.timeout, headers=headers)
        return self._client

    def complete(self, prompt: str) -> str:
        import httpx

        url = f"{self.base_url}/chat/completions"
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                **GREEDY, "max_tokens": self.max_tokens, "stream": False}
        try:
            response = self._http().post(url, json=body)
        except httpx.TimeoutException:
            raise LQMFError(f"{url} did not answer within {self.timeout:g}s",
                            "check that the server is up and not overloaded, or raise the timeout") from None
        except httpx.HTTPError as exc:
            raise LQMFError(f"cannot reach {url}: {str(exc) or type(exc).__name__}",
                            "start the server (python -m server --port PORT) or fix the URL; "
                            "it should end in /v1, e.g. http://127.0.0.1:8000/v1#MODEL") from None
        if response.status_code >= 400:
            raise LQMFError(f"{url} answered HTTP {response.status_code}: {_excerpt(response)}",
                            _hint_for_status(response.status_code, self.base_url, self.api_key is not None))
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LQMFError(f"{url} answered without choices[0].message.content: {_excerpt(response)}",
                            "point the variant at an OpenAI-compatible API (its base URL ends in /v1)") from None
        return content or ""  # OpenAI sends null content for an empty answer

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _excerpt(response) -> str:
    """The error message of an OpenAI-style body, else the start of the body text."""
    try:
        error = response.json().get("error")
        text = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        text = None
    text = str(text) if text else response.text.strip() or "(empty body)"
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _hint_for_status(status: int, base_url: str, sent_key: bool) -> str:
    if status in (401, 403):
        return ("the API key was refused: pass the server's key (its LQMF_API_KEY)" if sent_key
                else "the server needs an API key: pass it (the server's LQMF_API_KEY)")
    if status == 404:
        return f"check the model name (GET {base_url}/models lists them) and that the URL ends in /v1"
    if status in (429, 503):
        return "the server is busy: retry later"
    return "see the server's logs"


def local_variant(manager: Any, model_name: str, max_tokens: int = 16) -> LocalVariant:
    """A local model by name; ModelNotFound (with close names) when discovery does not know it."""
    manager.record(model_name)  # fail before the run, not at the first example
    return LocalVariant(model_name, manager, max_tokens)


def remote_variant(base_url: str, model: str, api_key: Optional[str] = None, max_tokens: int = 16,
                   timeout: float = 60.0) -> RemoteVariant:
    """A model behind an OpenAI-compatible API; base_url like http://127.0.0.1:8000/v1."""
    if not base_url.startswith(("http://", "https://")):
        raise LQMFError(f"{base_url!r} is not an http(s) URL", "use e.g. http://127.0.0.1:8000/v1")
    if not model:
        raise LQMFError(f"no model named for {base_url}", "name the model, e.g. http://127.0.0.1:8000/v1#MODEL")
    return RemoteVariant(base_url.rstrip("/"), model, api_key, max_tokens, timeout)


def parse_variant(spec: str, manager: Any, api_key: Optional[str] = None, max_tokens: int = 16) -> Variant:
    """"NAME" -> a local model; "http(s)://host:port/v1#MODEL" -> that model over HTTP."""
    spec = spec.strip()
    if spec.startswith(("http://", "https://")):
        base_url, _, model = spec.partition("#")
        if not model.strip():
            raise LQMFError(f"the remote variant {spec!r} names no model",
                            "append '#MODEL' to the URL, e.g. http://127.0.0.1:8000/v1#demo-q4_k_m")
        return remote_variant(base_url, model.strip(), api_key=api_key, max_tokens=max_tokens)
    if not spec:
        raise LQMFError("an empty variant was given", "give a model name or http(s)://host:port/v1#MODEL")
    return local_variant(manager, spec, max_tokens)


# -- dataset --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    """One labelled text and the line it came from."""

    line: int
    text: str
    label: str


def load_dataset(path: Path, labels: Optional[Sequence[str]] = None) -> tuple[list[Example], list[str]]:
    """Examples from a JSONL file ({"text", "label"} per line) and the allowed labels; LQMFError names the line."""
    path = Path(path)
    if not path.is_file():
        raise LQMFError(f"dataset {path} does not exist",
                        'give a JSONL file with one {"text": ..., "label": ...} per line')
    data = path.read_bytes()
    try:
        content = data.decode("utf-8-sig")  # tolerate the BOM some editors write
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise LQMFError(f"{path}:{line}: not UTF-8 text (byte {exc.start})", "save the dataset as UTF-8") from None
    shape = 'each line must be one JSON object like {"text": "...", "label": "..."}'
    raw: list[tuple[int, str, str]] = []
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline) are not examples
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LQMFError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})", shape) from None
        if not isinstance(row, dict):
            raise LQMFError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}", shape)
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise LQMFError(f'{path}:{number}: "text" is missing or empty', shape)
        label = row.get("label")
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)  # numeric class ids are common; the model is asked for the digits
        if not isinstance(label, str) or not label.strip():
            raise LQMFError(f'{path}:{number}: "label" is missing or empty', shape + " (label: a string or integer)")
        raw.append((number, text, label.strip()))
    if not raw:
        raise LQMFError(f"{path} has no examples", shape)

    if labels is None:
        allowed = sorted({label for _, _, label in raw})
        where = f"{path} has"
    else:
        allowed = [str(label).strip() for label in labels]
        where = "the labels given have"
        if any(not label for label in allowed):
            raise LQMFError("an empty label was given", "give non-empty labels")
    folded = [label.casefold() for label in allowed]
    if len(set(folded)) != len(folded):
        # The answers are parsed case-insensitively, so two labels differing by case are one label.
        raise LQMFError(f"the labels {allowed} repeat a label (ignoring case)", "give each label once")
    if len(allowed) < 2:
        raise LQMFError(f"{where} only one label ({', '.join(allowed)}); an agreement report needs at least two",
                        "add examples of another label, or pass the allowed labels explicitly")
    canonical = dict(zip(folded, allowed, strict=True))
    examples = []
    for number, text, label in raw:
        if label.casefold() not in canonical:
            raise LQMFError(f"{path}:{number}: label {label!r} is not one of the allowed labels {allowed}",
                            "fix the label, or add it to the allowed labels")
        examples.append(Example(number, text, canonical[label.casefold()]))
    return examples, allowed


# -- prompt and parsing -----------------------------------------------------------------------------

def build_prompt(text: str, labels: Sequence[str]) -> str:
    """The classification prompt for one text."""
    return PROMPT_TEMPLATE.format(labels=", ".join(labels), text=text)


def _label_pattern(label: str) -> re.Pattern[str]:
    # Whole word: no word character on either side ("pos" is not found in "position"); the words of a
    # multi-word label may be separated by any whitespace. Lookarounds, not \b, so labels that begin or
    # end with punctuation ("c++") still match.
    words = r"\s+".join(re.escape(word) for word in label.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def parse_label(response: str, labels: Sequence[str]) -> Optional[str]:
    """The allowed label found earliest in the response as a whole word (case-insensitive), else None.

    At the same position the longer label wins ("spam filter" over "spam").
    """
    best: Optional[tuple[int, int, str]] = None
    for label in labels:
        found = _label_pattern(label).search(response)
        if found is None:
            continue
        key = (found.start(), -(found.end() - found.start()), label)
        if best is None or key < best:
            best = key
    return best[2] if best else None


def similarity(a: str, b: str) -> float:
    """difflib's ratio of two texts (1.0: identical, including two empty texts)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


# -- the report ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    """Both variants' answers to one example."""

    index: int
    example: Example
    response_a: str
    response_b: str
    parsed_a: Optional[str]
    parsed_b: Optional[str]
    similarity: float

    @property
    def correct_a(self) -> bool:
        return self.parsed_a == self.example.label

    @property
    def correct_b(self) -> bool:
        return self.parsed_b == self.example.label

    @property
    def agree(self) -> bool:
        # An answer that names no label agrees with nothing, not even another unparsed answer.
        return self.parsed_a is not None and self.parsed_a == self.parsed_b


@dataclass(frozen=True)
class AgreementReport:
    """How two variants agree on one labelled dataset.

    agreement_rate counts every example: one where either answer could not be parsed is a
    disagreement. agreement_rate_parsed counts only the examples both answers named a label for
    (None when there are none). Unparsed answers count as wrong for accuracy. Similarity and exact
    match compare the raw answers, as returned.
    """

    variant_a: str
    variant_b: str
    dataset: str
    examples: int
    labels: tuple[str, ...]
    agreement_rate: float
    agreement_rate_parsed: Optional[float]
    both_parsed: int
    parse_success_a: float
    parse_success_b: float
    accuracy_a: float
    accuracy_b: float
    text_similarity_mean: float
    exact_match_rate: float
    csv_path: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["labels"] = list(self.labels)
        return out


def summarize(outcomes: Sequence[Outcome], *, a: str, b: str, dataset: str, labels: Sequence[str],
              csv_path: str) -> AgreementReport:
    """The report's numbers from the per-example outcomes."""
    n = len(outcomes)
    both = [o for o in outcomes if o.parsed_a is not None and o.parsed_b is not None]

    def share(count: int) -> float:
        return count / n

    return AgreementReport(
        variant_a=a, variant_b=b, dataset=dataset, examples=n, labels=tuple(labels),
        agreement_rate=share(sum(o.agree for o in outcomes)),
        agreement_rate_parsed=sum(o.agree for o in both) / len(both) if both else None,
        both_parsed=len(both),
        parse_success_a=share(sum(o.parsed_a is not None for o in outcomes)),
        parse_success_b=share(sum(o.parsed_b is not None for o in outcomes)),
        accuracy_a=share(sum(o.correct_a for o in outcomes)),
        accuracy_b=share(sum(o.correct_b for o in outcomes)),
        text_similarity_mean=sum(o.similarity for o in outcomes) / n,
        exact_match_rate=share(sum(o.response_a == o.response_b for o in outcomes)),
        csv_path=csv_path,
    )


def write_csv(path: Path, outcomes: Sequence[Outcome]) -> None:
    """One row per example (booleans as 1/0, an unparsed answer as an empty cell), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary in the same folder, renamed over the target: readers never see half a file.
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            for o in outcomes:
                writer.writerow([
                    o.index, o.example.text, o.example.label,
                    o.response_a, o.parsed_a or "", int(o.correct_a),
                    o.response_b, o.parsed_b or "", int(o.correct_b),
                    int(o.agree), f"{o.similarity:.6f}",
                ])
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _timed(variant: Variant, prompt: str) -> tuple[str, float]:
    start = time.perf_counter()
    text = variant.complete(prompt)
    return text, time.perf_counter() - start


def run_agreement(dataset: Path, a: Variant, b: Variant, *, labels: Optional[list[str]] = None, csv_path: Path,
                  store: Any = None, progress: Optional[Progress] = None) -> AgreementReport:
    """Ask both variants to classify every example; write the per-example CSV; record into `store` if given."""
    examples, allowed = load_dataset(dataset, labels)
    total = len(examples)
    log.info("agreement: %s vs %s on %d examples of %s (labels %s)", a.name, b.name, total, dataset, allowed)
    experiment = None
    if store is not None:
        experiment = store.start_experiment("agreement", [a.name, b.name], {
            "dataset": str(dataset), "labels": allowed, "examples": total,
            "prompt_template": PROMPT_TEMPLATE, "csv_path": str(csv_path),
        })
    outcomes: list[Outcome] = []
    try:
        for index, example in enumerate(examples):
            prompt = build_prompt(example.text, allowed)
            response_a, latency_a = _timed(a, prompt)
            response_b, latency_b = _timed(b, prompt)
            outcome = Outcome(index, example, response_a, response_b, parse_label(response_a, allowed),
                              parse_label(response_b, allowed), similarity(response_a, response_b))
            outcomes.append(outcome)
            if experiment is not None:
                shared = {"index": index, "line": example.line, "label": example.label, "agree": outcome.agree}
                store.add_result(experiment, a.name, prompt, response=response_a, latency_s=latency_a, metrics={
                    **shared, "variant": "a", "parsed": outcome.parsed_a, "correct": outcome.correct_a})
                store.add_result(experiment, b.name, prompt, response=response_b, latency_s=latency_b, metrics={
                    **shared, "variant": "b", "parsed": outcome.parsed_b, "correct": outcome.correct_b})
            report_progress(progress, "agreement", index + 1, total)
        report = summarize(outcomes, a=a.name, b=b.name, dataset=str(dataset), labels=allowed,
                           csv_path=str(csv_path))
        write_csv(csv_path, outcomes)
    except BaseException as exc:
        if experiment is not None:
            stopped = isinstance(exc, KeyboardInterrupt)  # Ctrl-C: incomplete, not an error
            store.finish_experiment(experiment, {"error": str(exc), "type": type(exc).__name__,
                                                 "done": len(outcomes), "examples": total},
                                    failed=not stopped, incomplete=stopped)
        raise
    if experiment is not None:
        store.finish_experiment(experiment, report.to_dict())
    log.info("agreement: %s vs %s: agreement %.3f, parsed %.3f / %.3f, accuracy %.3f / %.3f, csv %s",
             a.name, b.name, report.agreement_rate, report.parse_success_a, report.parse_success_b,
             report.accuracy_a, report.accuracy_b, csv_path)
    return report
