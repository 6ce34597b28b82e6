"""Experiments over models, every one recorded in the store: prompts, batches, conversations,
benchmarks, side-by-side comparisons and fidelity report cards."""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from agents.measure import quality
from agents.measure.embedding_fidelity import (
    NEIGHBOURS,
    embed_vectors,
    embedding_stats,
    embedding_verdict,
    heldout_texts,
)
from agents.measure.fidelity import (
    FidelityStats,
    PositionStats,
    describe_scoring,
    position_stats,
    scoring_chunks,
    summarize,
)
from agents.measure.inputs import heldout_text, load_conversation, load_prompts, prompt_text, read_text_file
from agents.measure.ranking import (
    fidelity_verdict,
    rank,
    recommend,
    summarize_runs,
    untimed_notes,
)
from agents.measure.results import ExperimentResult, LoadFigures, ModelRow, RunFigures, arrived_in_one_burst
from agents.measure.summary import prompt_set
from lqmf.base.encoders import EMBEDDING
from lqmf.base.errors import LQMFError
from lqmf.base.generation import GenerationParams, Prompt, collect
from lqmf.base.progress import Progress
from lqmf.base.sampling import GREEDY
from lqmf.base.settings import Settings
from lqmf.base.units import plural
from server.runtime.manager import ModelManager

log = logging.getLogger(__name__)

# The benchmark's standard prompt set: short and long prompts, prose and code, so prompt processing
# and generation are both exercised.
STANDARD_PROMPTS: tuple[str, ...] = (
    "Explain what a Python dictionary is and when to use one.",
    "Write a function that returns the n-th Fibonacci number.",
    "List three differences between a list and a tuple.",
    "Summarize the following text in one sentence: The standard library offers modules for file "
    "handling, text processing, networking, concurrency, data persistence and much more, so that "
    "most everyday programs need no third-party packages at all.",
    "What does the `with` statement do?",
)
DEFAULT_CHUNK = 512  # tokens per fidelity window, as llama.cpp's perplexity tool uses by default
DEFAULT_CHUNKS = 8
SMALL_BENCHMARK = dict(prompts=STANDARD_PROMPTS[:3], repetitions=1, warmup=0, max_tokens=16)


# -- the agent ----------------------------------------------------------------------------------------
class ExperimentAgent:
    """Runs experiments through the shared model manager and records them in the store."""

    def __init__(self, settings: Settings, manager: ModelManager, store) -> None:
        self.settings = settings
        self.manager = manager
        self.store = store

    # -- recording ----------------------------------------------------------------------------------
    @contextmanager
    def _recording(self, kind: str, models: list[str], params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """An experiment row: done with the summary the body fills in, failed on an error, incomplete on Ctrl-C."""
        experiment = {"id": self.store.start_experiment(kind, models, params), "summary": {}}
        try:
            yield experiment
        except KeyboardInterrupt:
            self.store.finish_experiment(experiment["id"], {**experiment["summary"], "stopped": "interrupted"},
                                         incomplete=True)
            raise
        except BaseException as exc:
            self.store.finish_experiment(experiment["id"], {**experiment["summary"], "error": str(exc)}, failed=True)
            raise
        self.store.finish_experiment(experiment["id"], experiment["summary"])

    def _seen(self, *names: str) -> None:
        """Remember the models an experiment touched (the history's `models` table)."""
        for name in names:
            self.store.record_model(self.manager.record(name))

    def _generators_only(self, models: Sequence[str], what: str) -> None:
        """Refuse embedding models where text generation is measured, before any work (they make vectors)."""
        encoders = [m for m in models if self.manager.record(m).role == EMBEDDING]
        if encoders:
            verb = "is an embedding model" if len(encoders) == 1 else "are embedding models"
            raise LQMFError(f"{', '.join(encoders)} {verb}: {what} measures text generation, which encoders do not do",
                            "compare embedding models with each other (compare A and B) or measure one with "
                            f"`fidelity of {encoders[0]}`")

    def _record_run(self, experiment_id: int, run: RunFigures, **extra: Any) -> None:
        self.store.add_result(
            experiment_id, run.model, run.prompt, response=run.response, prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens, latency_s=run.latency_s, ttft_s=run.ttft_s,
            tokens_per_second=run.gen_tps,
            metrics={"prompt_tps": run.prompt_tps, "decode_s": run.decode_s, "finish_reason": run.finish_reason,
                     "quality_heuristic": run.quality.to_dict(), **extra},
        )

    # -- one generation -------------------------------------------------------------------------------
    def run_prompt(self, model: str, prompt: Prompt, params: GenerationParams, fresh: bool = False) -> RunFigures:
        """Generate once; `fresh` drops any cached prompt prefix first, so the whole prompt is timed."""

        # A plain prompt is a user's chat turn, rendered with the model's own chat template.
        chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if fresh:  # the server engine's prompt cache is per request; the in-process one is reset below
            params = dataclasses.replace(params, cache_prompt=False)

        def work(backend, cancel):
            if fresh:
                backend.reset_cache()
            yield collect(backend.stream_prompt(chat, params, cancel))

        start = time.perf_counter()
        result = self.manager.submit(model, work).result()[0]
        latency = time.perf_counter() - start
        text = prompt_text(prompt)
        t = result.timings
        # A local engine times its own decoding; a remote's times are arrivals here, which say nothing of
        # decoding when the answer came in one burst.
        remote = self.manager.record(model).format == "remote"
        return RunFigures(
            model=model, prompt=text, response=result.text, prompt_tokens=t.prompt_tokens,
            completion_tokens=t.completion_tokens, finish_reason=result.finish_reason, ttft_s=t.prompt_eval_s,
            decode_s=t.eval_s, latency_s=latency, quality=quality.score(text, result.text),
            decode_timed=not (remote and arrived_in_one_burst(t.eval_s, t.total_s or latency)),
        )

    # -- prompts ------------------------------------------------------------------------------------------
    def single(self, model: str, prompt: str, params: GenerationParams) -> ExperimentResult:
        """One prompt, one answer, measured and scored."""
        return self.prompts("single", model, [prompt], params)

    def batch(self, model: str, path: Path, params: GenerationParams,
              progress: Optional[Progress] = None) -> ExperimentResult:
        """Every prompt of a .txt or .jsonl file."""
        prompts = load_prompts(path)
        return self.prompts("batch", model, prompts, params, progress, source=str(path))

    def prompts(self, kind: str, model: str, prompts: list[Prompt], params: GenerationParams,
                progress: Optional[Progress] = None, **extra: Any) -> ExperimentResult:
        """Each prompt once, in order, measured, scored and recorded."""
        self._seen(model)  # an unknown name: ModelNotFound before anything is recorded
        runs: list[RunFigures] = []
        with self._recording(kind, [model], {"params": asdict(params), "prompts": len(prompts), **extra}) as exp:
            for i, prompt in enumerate(prompts):
                run = self.run_prompt(model, prompt, params)
                self._record_run(exp["id"], run)
                runs.append(run)
                exp["summary"] = summarize_runs(model, runs).to_dict()
                if progress:
                    progress(f"{kind} on {model}", i + 1, len(prompts))
        return ExperimentResult(id=exp["id"], kind=kind, models=[model], rows=[summarize_runs(model, runs)], runs=runs)

    def conversation(self, model: str, path: Path, params: GenerationParams,
                     progress: Optional[Progress] = None) -> ExperimentResult:
        """A multi-turn script: each user turn sees the whole conversation so far."""
        system, turns = load_conversation(path)
        self._seen(model)
        messages = [{"role": "system", "content": system}] if system else []
        runs: list[RunFigures] = []
        with self._recording("conversation", [model], {"params": asdict(params), "turns": len(turns),
                                                       "source": str(path)}) as exp:
            for i, turn in enumerate(turns):
                messages.append({"role": "user", "content": turn})
                run = self.run_prompt(model, list(messages), params)
                messages.append({"role": "assistant", "content": run.response})
                self._record_run(exp["id"], run, turn=i + 1)
                runs.append(run)
                exp["summary"] = summarize_runs(model, runs).to_dict()
                if progress:
                    progress(f"conversation with {model}", i + 1, len(turns))
        return ExperimentResult(id=exp["id"], kind="conversation", models=[model], rows=[summarize_runs(model, runs)],
                                runs=runs)

    # -- speed ----------------------------------------------------------------------------------------------
    def benchmark(self, models: list[str], *, prompts: Sequence[Prompt] = STANDARD_PROMPTS, repetitions: int = 3,
                  warmup: int = 1, max_tokens: int = 64, kind: str = "benchmark", only_loaded: bool = False,
                  progress: Optional[Progress] = None) -> ExperimentResult:
        """Fixed-length greedy generations (end-of-text ignored, prompt cache dropped) after a warm-up."""
        if repetitions < 1 or warmup < 0 or max_tokens < 2:
            raise LQMFError("repetitions must be >= 1, warm-up >= 0 and max_tokens >= 2", "use the defaults")
        self._generators_only(models, kind)
        self._seen(*models)
        params = GenerationParams(**GREEDY, max_tokens=max_tokens, ignore_eos=True)
        rows: list[ModelRow] = []
        all_runs: list[RunFigures] = []
        # The prompt set is recorded by content, so the history compares only speeds measured on the same one.
        settings = {"repetitions": repetitions, "warmup": warmup, "max_tokens": max_tokens, "prompts": len(prompts),
                    "prompt_set": prompt_set(prompts, STANDARD_PROMPTS), "ignore_eos": True}
        with self._recording(kind, list(models), settings) as exp:
            per_model = (warmup + repetitions) * len(prompts)
            total, done = len(models) * per_model, 0
            for name in models:
                if only_loaded and not self.manager.is_loaded(name):
                    continue
                row, runs = self._benchmark_one(
                    exp["id"], name, prompts, repetitions, warmup, params,
                    lambda n, name=name, done=done: progress and progress(f"benchmark {name}", done + n, total))
                done += per_model
                rows.append(row)
                all_runs.extend(runs)
                exp["summary"] = {"models": [r.to_dict() for r in rows], **settings}
            ranked = rank(rows)
            exp["summary"] = {"models": [r.to_dict() for r in ranked], "recommendation": recommend(ranked), **settings}
        notes = [f"{row.model} is remote ({row.load.host}): measured over HTTP, so TTFT and latency include "
                 "the network; token counts are the remote's own" for row in ranked if row.load.measured_over]
        notes += untimed_notes(ranked)
        return ExperimentResult(id=exp["id"], kind=kind, models=list(models), rows=ranked, runs=all_runs,
                                recommendation=recommend(ranked), notes=notes)

    def _benchmark_one(self, experiment_id: int, name: str, prompts: Sequence[Prompt], repetitions: int,
                       warmup: int, params: GenerationParams, tick: Callable[[int], Any]):
        import psutil

        from lqmf.base.manifest import measure_run

        was_loaded = self.manager.is_loaded(name)
        baseline = psutil.Process().memory_info().rss
        runs: list[RunFigures] = []
        with measure_run() as measured:
            loaded = self.manager.load(name)
            # Warm-up passes cover every prompt: llama.cpp sizes its compute graph per batch shape on first use.
            for i in range(warmup * len(prompts)):
                self.run_prompt(name, prompts[i % len(prompts)], params, fresh=True)
                tick(i + 1)
            for rep in range(repetitions):
                for prompt in prompts:
                    run = self.run_prompt(name, prompt, params, fresh=True)
                    self._record_run(experiment_id, run, repetition=rep + 1)
                    runs.append(run)
                    tick(warmup * len(prompts) + len(runs))
        record = loaded.record
        row = summarize_runs(name, runs)
        row.format, row.level, row.bits, row.size_bytes = record.format, record.level, record.bits, record.size_bytes
        row.load = LoadFigures(
            load_time_s=loaded.load_time_s, loaded_by_benchmark=not was_loaded, footprint_bytes=loaded.footprint_bytes,
            # Attributable only when this benchmark did the load: the rise over the process before it.
            peak_rss_attributable_bytes=max(0, measured.peak_rss_bytes - baseline) if not was_loaded else None,
        )
        if record.format == "remote":
            # Timed here, over HTTP: TTFT includes the network and the remote's queue; tokens are its own usage.
            row.size_bytes = None
            row.load = LoadFigures(load_time_s=loaded.load_time_s, loaded_by_benchmark=not was_loaded,
                                   footprint_bytes=None, peak_rss_attributable_bytes=None, measured_over="http",
                                   host=record.display.get("host"))
        return row, runs

    # -- fidelity -------------------------------------------------------------------------------------------
    def lineage(self, name: str) -> list[str]:
        """The model, then what it was made from, and so on (followed through manifests' source files)."""
        records = {r.name: r for r in self.manager.available()}
        by_file = {r.path.name: r.name for r in records.values()}
        chain = [self.manager.record(name).name]
        while True:
            manifest = records[chain[-1]].manifest or {}
            parent = by_file.get(Path(manifest.get("source", {}).get("path") or "").name)
            if parent is None or parent in chain:
                return chain
            chain.append(parent)

    def reference_for(self, name: str) -> str:
        """The variant's reference: the nearest ancestor that is an f16/bf16/f32 GGUF or an HF model."""
        records = {r.name: r for r in self.manager.available()}
        for ancestor in self.lineage(name)[1:]:
            record = records[ancestor]
            if record.format == "hf" or (record.level or "").lower() in ("f16", "bf16", "f32"):
                return ancestor
        raise LQMFError(f"cannot tell which model {name} was made from",
                        f"name the reference: fidelity of {name} against MODEL")

    def _reference_or_none(self, name: str) -> Optional[str]:
        try:
            return self.reference_for(name)
        except LQMFError:
            return None

    def common_reference(self, models: list[str]) -> Optional[str]:
        """The nearest model every one of `models` comes from (or is), if any."""
        lineages = [self.lineage(m) for m in models]
        return next((a for a in lineages[0] if all(a in chain for chain in lineages[1:])), None)

    def fidelity(self, model: str, reference: Optional[str] = None, *, text_path: Optional[Path] = None,
                 text: Optional[str] = None, chunks: int = DEFAULT_CHUNKS, chunk: int = DEFAULT_CHUNK,
                 progress: Optional[Progress] = None) -> ExperimentResult:
        """The report card of `model` against `reference` on held-out text (a windowed perplexity run);
        `text_path` or `text` replaces the held-out text. An embedding model's card is embedding fidelity
        (agents.measure.embedding_fidelity), and an embedding model made from nothing here gets its variants'."""
        if self.manager.record(model).role == EMBEDDING:
            return self.embedding_fidelity([model], reference, text_path=text_path, text=text, progress=progress)
        reference = reference or self.reference_for(model)
        self._seen(model, reference)
        scored = (text, "the given text") if text is not None else self._fidelity_text(text_path)
        return self._fidelity_report("fidelity", [model], reference, scored, chunks, chunk, progress)

    def embedding_fidelity(self, models: list[str], reference: Optional[str] = None, *, kind: str = "fidelity",
                           text_path: Optional[Path] = None, text: Optional[str] = None,
                           progress: Optional[Progress] = None) -> ExperimentResult:
        """Cosine to the reference and neighbour agreement of embedding models over held-out sentences.

        No reference: the models' common source. A source alone (made from nothing here) is the reference of
        every embedding model made from it, so `fidelity of SOURCE` is the table of its variants, small and large.
        """
        if reference is None and len(models) == 1 and self._reference_or_none(models[0]) is None:
            reference, models = models[0], self.variants_of(models[0])
            if not models:
                raise LQMFError(f"{reference} has no variants to measure",
                                f"quantize it first, e.g. quantize {reference} to q8_0")
        elif reference is None:
            reference = self.common_reference(models) if len(models) > 1 else self.reference_for(models[0])
            if reference is None:
                raise LQMFError(f"{', '.join(models)} do not share a source model", "name the reference: against MODEL")
        not_embedding = [n for n in [reference, *models] if self.manager.record(n).role != EMBEDDING]
        if not_embedding:
            raise LQMFError(f"{', '.join(not_embedding)} cannot be measured by embedding fidelity: not embedding "
                            "models", "measure a generator's fidelity against a generator")
        self._seen(reference, *models)
        texts, source = heldout_texts(text_path, text)
        return self._embedding_report(kind, models, reference, texts, source, progress)

    def variants_of(self, source: str) -> list[str]:
        """Every model made from `source`, directly or through others (by their manifests' lineage)."""
        return [r.name for r in self.manager.available()
                if r.name != source and r.usable and source in self.lineage(r.name)[1:]]

    def _fidelity_report(self, kind: str, models: list[str], reference: str, scored: tuple[str, str],
                         chunks: int, chunk: int, progress: Optional[Progress]) -> ExperimentResult:
        text, source = scored
        params = {"reference": reference, "text": source, "chunks": chunks, "chunk": chunk}
        involved = list(dict.fromkeys([reference, *models]))
        with self._recording(kind, involved, params) as exp:
            stats = self.fidelity_stats(reference, models, text, chunks=chunks, chunk=chunk, progress=progress,
                                        source=source)
            rows: list[ModelRow] = []
            for name in involved:
                if name in stats:
                    record = self.manager.record(name)
                    row = ModelRow(name, format=record.format, level=record.level, bits=record.bits,
                                   size_bytes=record.size_bytes, fidelity=stats[name])
                    self.store.add_result(exp["id"], name, f"fidelity vs {reference}: {source}", metrics=row.to_dict())
                    rows.append(row)
            verdict = fidelity_verdict(rows, reference)
            exp["summary"] = {"reference": reference, "text": source, "models": [r.to_dict() for r in rows],
                              "recommendation": verdict}
        report = ExperimentResult(id=exp["id"], kind=kind, models=models, rows=rows, reference=reference,
                                  recommendation=verdict, notes=[f"measured on {next(iter(stats.values())).ppl_text}"])
        report.report_path = str(self.write_html(report))
        return report

    def _embedding_report(self, kind: str, models: list[str], reference: str, texts: list[str], source: str,
                          progress: Optional[Progress]) -> ExperimentResult:
        """Embedding fidelity of each model against `reference`, recorded as a `kind` experiment like fidelity's.

        Rows (the reference first, then by size, largest first) carry size, measured bits per weight, the card
        and the embedding time: the variants of one source side by side, small against large.
        """
        if len(texts) < 3:
            raise LQMFError(f"embedding fidelity needs three or more texts, not {len(texts)}",
                            "give a file with one text per line")
        involved = list(dict.fromkeys([reference, *models]))
        params = {"reference": reference, "text": source, "texts": len(texts), "neighbours": NEIGHBOURS,
                  "measure": "embedding"}
        with self._recording(kind, involved, params) as exp:
            ref_vectors, ref_s = embed_vectors(self.manager, reference, texts, progress)
            rows: list[ModelRow] = []
            for name in involved:
                vectors, seconds = (ref_vectors, ref_s) if name == reference else \
                    embed_vectors(self.manager, name, texts, progress)
                stats = dataclasses.replace(embedding_stats(ref_vectors, vectors), embed_s=round(seconds, 4),
                                            text=source)
                record = self.manager.record(name)
                bpw = (record.manifest or {}).get("bits_per_weight")
                row = ModelRow(name, format=record.format, level=record.level, bits=record.bits,
                               size_bytes=record.size_bytes,
                               bits_per_weight=bpw if isinstance(bpw, (int, float)) else None, embedding=stats)
                self.store.add_result(exp["id"], name, f"embedding fidelity vs {reference}: {source}",
                                      metrics=row.to_dict())
                rows.append(row)
            rows = rows[:1] + sorted(rows[1:], key=lambda r: -(r.size_bytes or 0))
            verdict = embedding_verdict(rows, reference)
            exp["summary"] = {"reference": reference, "text": source, "measure": "embedding",
                              "models": [r.to_dict() for r in rows], "recommendation": verdict}
        report = ExperimentResult(id=exp["id"], kind=kind, models=models, rows=rows, reference=reference,
                                  recommendation=verdict,
                                  notes=[f"embedded {source}; neighbours: each text's "
                                         f"{rows[0].embedding.neighbours_k} nearest among them"])
        report.report_path = str(self.write_html(report))
        return report

    def _fidelity_text(self, text_path: Optional[Path]) -> tuple[str, str]:
        if text_path is None:
            return heldout_text()
        return read_text_file(Path(text_path)), str(text_path)  # verbatim: blank lines are text too

    def fidelity_stats(self, reference: str, models: list[str], text: str, *, chunks: int = DEFAULT_CHUNKS,
                       chunk: int = DEFAULT_CHUNK, progress: Optional[Progress] = None,
                       source: str = "the given text") -> dict[str, FidelityStats]:
        """FidelityStats of each model against the reference from full logits, window by window.

        Every listed model is evaluated on its own, the reference too when listed (a real
        run-to-run check); the reference's own row, when it is not listed, is its perplexity.
        """
        models = list(dict.fromkeys(models))
        contexts = [self.manager.call(n, lambda b: b.context_length) for n in [reference, *models]]
        chunk = min(chunk, *contexts)
        ids = self.manager.call(reference, lambda b: b.tokenize(text, add_special=False))
        with_bos = self.manager.call(reference, lambda b: b.tokenize("", add_special=True))
        bos = with_bos[0] if with_bos else None
        probe_text = self.manager.call(reference, lambda b: b.detokenize(ids[:256]))

        def tokenizer_of(backend):
            return backend.vocab_size, backend.tokenize(probe_text, add_special=False)

        mine = self.manager.call(reference, tokenizer_of)
        for name in models:
            if name != reference and self.manager.call(name, tokenizer_of) != mine:
                raise LQMFError(f"{name} and {reference} do not share a tokenizer, so their logits cannot be compared",
                                "compare variants made from the same model")
        windows = scoring_chunks(ids, chunk, bos)[:chunks]
        if not windows:
            raise LQMFError(f"the text is {plural(len(ids), 'token')}, shorter than one window of {chunk}",
                            "give a longer text file")
        parts: dict[str, list[PositionStats]] = {n: [] for n in [reference, *models]}
        for i, (window, first) in enumerate(windows):
            ref_logits = self.manager.call(reference, lambda b, window=window: b.logits(window))[first:-1]
            targets = window[first + 1:]
            if reference not in models:
                parts[reference].append(position_stats(ref_logits, ref_logits, targets))
            for name in models:
                logits = self.manager.call(name, lambda b, window=window: b.logits(window))[first:-1]
                parts[name].append(position_stats(ref_logits, logits, targets))
            if progress:
                progress(f"fidelity against {reference}", i + 1, len(windows))
        # Perplexity depends on the text and the windows as much as on the model (the demo build's 68 on
        # 128-token windows of all the held-out text, 97 here on 512-token windows of its start): say which.
        scored = describe_scoring(source, len(windows), chunk, sum(len(w) - 1 - first for w, first in windows))
        return {name: dataclasses.replace(summarize(PositionStats.join(p)), ppl_text=scored)
                for name, p in parts.items()}

    # -- side by side -----------------------------------------------------------------------------------------
    def compare(self, models: list[str], *, prompts: Optional[Sequence[Prompt]] = None,
                prompts_path: Optional[Path] = None, reference: Optional[str] = None, max_tokens: int = 48,
                chunks: int = DEFAULT_CHUNKS, progress: Optional[Progress] = None) -> ExperimentResult:
        """The same prompts on every model (given, from a file, or the standard set), plus fidelity against a
        shared reference when there is one; ranked."""
        if len(set(models)) < 2:
            raise LQMFError("compare needs two or more different models", "compare A and B")
        if all(self.manager.record(m).role == EMBEDDING for m in models):  # vectors, not tokens, to compare
            return self.embedding_fidelity(list(dict.fromkeys(models)), reference, kind="compare", progress=progress)
        self._generators_only(models, "compare")  # a mix: vectors and tokens have no common measure
        self._seen(*models)
        prompts = list(prompts) if prompts else load_prompts(prompts_path) if prompts_path else list(STANDARD_PROMPTS)
        notes = []
        # Fidelity needs full logits, which a remote API does not return: it covers the local models only.
        remote = [m for m in models if self.manager.record(m).format == "remote"]
        local = [m for m in models if m not in remote]
        if reference is None and local:
            reference = self.common_reference(local) if len(local) > 1 else self._reference_or_none(local[0])
        for name in remote:
            notes.append(f"{name} is remote: measured over HTTP (TTFT includes the network); its API returns "
                         "sampled text, not the full logits fidelity needs, so it has no fidelity figures")
        params = GenerationParams(**GREEDY, max_tokens=max_tokens)
        recorded = {"prompts": len(prompts), "max_tokens": max_tokens, "reference": reference,
                    "prompt_set": prompt_set(prompts, STANDARD_PROMPTS), "ignore_eos": False}
        with self._recording("compare", list(models), recorded) as exp:
            rows: dict[str, ModelRow] = {}
            runs: list[RunFigures] = []
            per_model = 2 * len(prompts)  # a warm-up pass, then one measured pass

            def tick(base: int) -> Callable[[int], None]:
                return lambda n: progress and progress("compare", base + n, len(models) * per_model)

            for m_index, name in enumerate(models):
                rows[name], model_runs = self._benchmark_one(exp["id"], name, prompts, 1, 1, params,
                                                             tick(m_index * per_model))
                runs.extend(model_runs)
            if reference is not None and local:
                text, source = heldout_text()
                stats = self.fidelity_stats(reference, local, text, chunks=chunks, progress=progress, source=source)
                for name in local:
                    rows[name].fidelity = stats[name]
                notes.append(f"fidelity of {', '.join(local)} against {reference}, "
                             f"measured on {stats[local[0]].ppl_text}")
            elif local:
                notes.append("no fidelity: these models do not share a source model (run: fidelity of A against REF)")
            ranked = rank(list(rows.values()))
            notes += untimed_notes(ranked)
            exp["summary"] = {"models": [r.to_dict() for r in ranked], "reference": reference,
                              "recommendation": recommend(ranked, reference)}
        report = ExperimentResult(id=exp["id"], kind="compare", models=list(models), rows=ranked, runs=runs,
                                  reference=reference, recommendation=recommend(ranked, reference), notes=notes)
        report.report_path = str(self.write_html(report))
        return report

    # -- pictures -------------------------------------------------------------------------------------------
    def write_html(self, report: ExperimentResult) -> Path:
        """The self-contained HTML report of a compare or fidelity experiment."""
        from agents.measure.report_html import VariantRow, write_report

        def measured_bpw(name: str) -> Optional[float]:
            # The manifest's bits per weight is measured from the file (4.9993 for q4_k_m); the row's
            # "bits" is the level's nominal class (4), which would understate every K-quant.
            try:
                manifest = self.manager.record(name).manifest or {}
            except LQMFError:  # removed since the experiment ran
                return None
            value = manifest.get("bits_per_weight")
            return float(value) if isinstance(value, (int, float)) else None

        def row_of(row: ModelRow) -> VariantRow:
            v = row.value
            return VariantRow(
                model=row.model, format=row.format, level=row.level, size_bytes=row.size_bytes,
                bits_per_weight=measured_bpw(row.model), ppl=v("ppl_test"), ppl_ref=v("ppl_ref"),
                ppl_text=v("ppl_text"), kld_mean=v("kld_mean"), kld_p99=v("kld_p99"),
                top1_agreement=v("top1_agreement"), dp_rms=v("dp_rms"), gen_tps=v("gen_tps"),
                prompt_tps=v("prompt_tps"), ttft_s=v("ttft_p50_s"), latency_p50_s=v("latency_p50_s"),
                latency_p95_s=v("latency_p95_s"), emb_cosine_mean=v("cosine_mean"), emb_cosine_p5=v("cosine_p5"),
                emb_neighbour_overlap=v("neighbour_overlap"),
                emb_texts_per_s=v("texts") / v("embed_s") if v("embed_s") else None,
            )

        path = self.settings.reports_dir / f"experiment-{report.id}-{report.kind}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_report(path, f"LQMF {report.kind} #{report.id}: {', '.join(report.models)}",
                            [row_of(r) for r in report.rows], reference=report.reference,
                            recommendation=report.recommendation, notes=report.notes)


