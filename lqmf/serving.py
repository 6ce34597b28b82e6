"""The library's core: one settings, one ModelManager, one history Store, and the calls a face serves requests with
(what is loaded, jobs for streamed and whole generations, a fallback walk, tokens, embeddings, the history's rows).

`lqmf.api.Library` is this core plus the tasks (models, the factory, experiments, classifiers). The HTTP face
reaches the work only through these calls; parts are imported when first asked for, so the shell starts without
SQLite, the factory or numpy.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, Collection, Optional, Sequence

from lqmf.base.errors import InvalidRequest
from lqmf.base.progress import Progress
from lqmf.base.settings import Settings, load_settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # typing only
    import asyncio

    from agents.classifiers.registry import ClassifierRegistry, LoadedClassifier
    from agents.measure.auto_benchmark import AutoBenchmark
    from agents.measure.experiments import ExperimentAgent
    from agents.quantization.factory import QuantizationAgent
    from lqmf.base.generation import GenerationParams, Prompt
    from memory.store import Store
    from server.runtime.discovery import ModelRecord
    from server.runtime.embeddings import Embeddings
    from server.runtime.engine_tuning import EngineTuning
    from server.runtime.fallback import FallbackWalk
    from server.runtime.jobs import Job
    from server.runtime.manager import ModelManager


class Serving:
    """One settings, one ModelManager, one history Store, and the calls the faces serve requests with.

    Pass the manager a face already holds (the shell's); without one the library makes its own and closes it in
    close(). The history Store is the library's: opened on first use, closed in close(). A shell and the server
    it starts share one library, so they share one manager and one Store.
    """

    def __init__(self, settings: Optional[Settings] = None, manager: Optional["ModelManager"] = None) -> None:
        self.settings = settings or (manager.settings if manager is not None else load_settings())
        self._owns_manager = manager is None
        if manager is None:
            from server.runtime.manager import ModelManager

            manager = ModelManager(self.settings)
        self.manager = manager
        manager.tuning_of = self.tuning_of  # the manager starts GGUF children as the history says `tune` chose
        self._store: Optional["Store"] = None
        self._store_lock = threading.Lock()  # its own lock: opening SQLite never holds up anything else
        self._lab: Optional["ExperimentAgent"] = None
        self._factory: Optional["QuantizationAgent"] = None
        self._classifiers: Optional["ClassifierRegistry"] = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the manager this library made (which unloads every model), then the history store."""
        if self._owns_manager:
            self.manager.close()
        with self._store_lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def tuning_of(self, name: str) -> Optional["EngineTuning"]:
        """The engine settings `tune` chose for `name` last (None: never tuned, or the defaults won)."""
        import sqlite3

        from server.runtime.engine_tuning import TUNE_KIND, EngineTuning

        try:
            rows = self.store.experiments(kind=TUNE_KIND, model=name, status="done", limit=1)
        except sqlite3.Error as exc:  # an unreadable history must not stop a model from loading: the defaults serve
            log.warning("the history could not say how %s was tuned (%s): it is served with the defaults", name, exc)
            return None
        chosen = (rows[0].get("summary") or {}).get("tuning") if rows else None
        return EngineTuning.from_dict(chosen) if chosen else None

    # -- the parts, made on first use (the shell starts without SQLite or the factory) ------------------
    @property
    def store(self) -> "Store":
        """The history store, opened on first use."""
        if self._store is None:
            with self._store_lock:
                if self._store is None:  # two first users at once open it once
                    from memory.store import Store

                    self._store = Store(self.settings.db_path)
        return self._store

    @property
    def lab(self) -> "ExperimentAgent":
        """The experiment agent over this library's manager and store."""
        if self._lab is None:
            from agents.measure.experiments import ExperimentAgent

            self._lab = ExperimentAgent(self.settings, self.manager, self.store)
        return self._lab

    @property
    def factory(self) -> "QuantizationAgent":
        """The quantization agent over this library's manager and store."""
        if self._factory is None:
            from agents.quantization.factory import QuantizationAgent

            self._factory = QuantizationAgent(self.settings, self.manager, self.store)
        return self._factory

    @property
    def classifier_registry(self) -> "ClassifierRegistry":
        """The classifiers this library has loaded (one registry per library: the shell's, the server's)."""
        if self._classifiers is None:
            from agents.classifiers.registry import ClassifierRegistry

            self._classifiers = ClassifierRegistry(self.settings, self.manager)
        return self._classifiers

    # -- what is loaded, and where requests go ------------------------------------------------------------
    def loaded(self) -> list[dict[str, Any]]:
        """The loaded models' facts: format, bits, memory, load time, last use, keep_alive, queue depth, engine."""
        return self.manager.loaded()

    def load_counts(self) -> dict[str, int]:
        """How often each model has been loaded by this process (one evicted and loaded again counts twice)."""
        return self.manager.loads()

    def is_loaded(self, name: str) -> bool:
        """Whether `name` is loaded now (a model still loading is not)."""
        return self.manager.is_loaded(name)

    def find(self, name: str) -> "ModelRecord":
        """The discovered model called `name` (no endpoint probes), or ModelNotFound with the closest names."""
        return self.manager.record(name)

    def loaded_record(self, name: str) -> "ModelRecord":
        """The record of a loaded model (ModelNotFound when it is not loaded)."""
        return self.manager.get(name).record

    def load_exact(self, name: str, keep_alive_s: Optional[float] = None) -> dict[str, Any]:
        """Load exactly `name` (no default chain, no fallback; a loaded one has its last use renewed), its facts."""
        return self.manager.load(name, keep_alive_s).info()

    def engine_status(self) -> dict[str, Any]:
        """Which engine serves GGUF here and why (decided now if no GGUF load has decided it yet)."""
        return self.manager.engine_status()

    def default_chain(self) -> list[str]:
        """The default model and its fallbacks, in order (empty when none is set)."""
        return self.manager.active.chain()

    def probe_endpoints(self) -> None:
        """Health-check the remote endpoints' members not heard from lately (LQMFError: a broken endpoints file)."""
        self.manager.endpoints.refresh()

    # -- generation, tokens, embeddings ----------------------------------------------------------------------
    def fallback_walk(self, name: str, on_move: Optional[Callable[[str, str], None]] = None) -> "FallbackWalk":
        """A request's walk: `default`'s whole chain, else `name` alone; `on_move(failed, next)` hears each move
        (blocking: reads the active-model file)."""
        from server.runtime.fallback import FallbackWalk

        return FallbackWalk.of(self.manager, name, on_move)

    def stream_job(self, name: str, prompt: "Prompt", params: "GenerationParams",
                   keep_alive_s: Optional[float] = None, loop: Optional["asyncio.AbstractEventLoop"] = None,
                   block: bool = True) -> "Job":
        """A queued generation whose outputs are Chunks (the last with finish_reason and timings); `loop`
        delivers them to asyncio; block=False raises NotLoadedNow instead of waiting for a load."""
        return self.manager.stream(name, prompt, params, keep_alive_s, loop, block=block)

    def generate_job(self, name: str, prompt: "Prompt", params: "GenerationParams",
                     keep_alive_s: Optional[float] = None, loop: Optional["asyncio.AbstractEventLoop"] = None,
                     block: bool = True) -> "Job":
        """A queued generation whose one output is the whole GenerationResult; arguments as stream_job."""
        return self.manager.generate_job(name, prompt, params, keep_alive_s, loop, block=block)

    def tokenize(self, name: str, text: str, *, add_special: bool = True) -> list[int]:
        """Token ids of a text with a loaded model's own tokenizer."""
        return self.manager.call(name, lambda backend: backend.tokenize(text, add_special=add_special))

    def detokenize(self, name: str, tokens: Sequence[int]) -> str:
        """Text of token ids with a loaded model's tokenizer (InvalidRequest for ids outside its vocabulary)."""

        def work(backend) -> str:
            vocab = backend.vocab_size
            bad = [t for t in tokens if not 0 <= t < vocab]
            if bad:
                raise InvalidRequest(f"token ids out of range 0..{vocab - 1}: {bad[:10]}", "send ids from /tokenize")
            return backend.detokenize(tokens)

        return self.manager.call(name, work)

    def embeddings(self, name: str, texts: Sequence[Any], *, normalize: bool = True, truncate: bool = False,
                   keep_alive_s: Optional[float] = None, progress: Optional[Progress] = None) -> "Embeddings":
        """Vectors of texts (or lists of token ids) on `name`'s worker, with token counts; `truncate` cuts a
        too-long input to the context instead of refusing it."""
        from server.runtime.embeddings import embed_texts

        return embed_texts(self.manager, name, list(texts), normalize=normalize, truncate=truncate,
                           keep_alive_s=keep_alive_s, progress=progress)

    # -- the history's rows ------------------------------------------------------------------------------------
    def record_request(self, model: str, route: str, prompt_tokens: int, completion_tokens: int, latency_s: float,
                       finish_reason: Optional[str] = None, fallback_from: Optional[str] = None) -> None:
        """Record one served request in the history: tokens, latency, how it ended, what it fell back from."""
        self.store.record_request(model, route, prompt_tokens, completion_tokens, latency_s, finish_reason,
                                  fallback_from)

    def auto_benchmark(self, every: int) -> "AutoBenchmark":
        """A counter of served generations that benchmarks the loaded models in the background every `every`
        (0: never), recorded in the history and logs/benchmarks.jsonl."""
        from agents.measure.auto_benchmark import AutoBenchmark

        return AutoBenchmark(self.lab, every)

    def benchmark_summary(self, among: Optional[Collection[str]] = None) -> dict[str, Any]:
        """The fastest and the most faithful model, each among figures measured the same way, of models that
        exist now (and of `among` only, when given)."""
        from agents.measure.summary import benchmark_summary

        present = {record.name for record in self.manager.available()}
        return benchmark_summary(self.store, present, among)

    def experiment_rows(self, kind: Optional[str] = None, model: Optional[str] = None, status: Optional[str] = None,
                        limit: int = 50) -> list[dict[str, Any]]:
        """Recorded experiments as the history keeps them, newest first, filtered by kind, model or status."""
        return self.store.experiments(kind, model, status, limit)

    def experiment_with_results(self, experiment_id: int) -> Optional[dict[str, Any]]:
        """One recorded experiment with every result (under "results"); None when there is none by that id."""
        row = self.store.experiment(experiment_id)
        if row is not None:
            row["results"] = self.store.results(experiment_id)
        return row

    def quantization_runs(self, method: Optional[str] = None, status: Optional[str] = None,
                          limit: int = 50) -> list[dict[str, Any]]:
        """Recorded quantization runs as the history keeps them, newest first, of one method or status."""
        return self.store.quantization_runs(method, status, limit)

    # -- classifiers -------------------------------------------------------------------------------------------
    def classifier(self, name: str) -> "LoadedClassifier":
        """A saved classifier, after its safety check (ClassifierNotFound, ClassifierRefused)."""
        return self.classifier_registry.get(name)

    def classifier_predictions(self, name: str, texts: Sequence[str],
                               keep_alive_s: Optional[float] = None) -> dict[str, Any]:
        """A classifier's predictions (label, probabilities) for each text, with the latency."""
        return self.classifier_registry.predict(name, list(texts), keep_alive_s)
