"""The LQMF library: the models on disk, loaded models to chat with, the factory and the measurements.

    import lqmf

    print(lqmf.models().names)                              # every model on disk (and remote endpoints)
    with lqmf.load("demo-q8_0") as model:                   # loaded now, unloaded when the block ends
        reply = model.chat("What does shuffle do?", max_tokens=32)
        print(reply.text, reply.completion_tokens)
    plan = lqmf.quantize("demo-hf", level="q4_k_m")         # nothing runs yet: look at plan.plan, plan.problems
    done = plan.run(progress=lambda what, done, total: print(what, done, total))
    print(lqmf.fidelity(done.model).row(done.model).fidelity)  # KL divergence, perplexity, top-1 agreement

Each module-level function opens a short-lived `Library` from the settings (LQMF_* environment variables);
a program that does several things keeps one `Library` (one manager, one history store) and calls its methods.
The shell and the HTTP server are faces over the same Library calls.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from lqmf.base.errors import InvalidRequest, LQMFError
from lqmf.base.progress import Progress
from lqmf.base.sampling import GREEDY
from lqmf.handle import Messages, ModelHandle, PathLike  # noqa: F401 (Messages, PathLike: lqmf.api's names too)
from lqmf.handle import optional_path as _path
from lqmf.handle import sampling_params as _params
from lqmf.serving import Serving

if TYPE_CHECKING:  # typing only: the library imports its parts when first asked
    from agents.classifiers.results import Classification, ClassifierCheckResult, ClassifierList, ClassifierTrained
    from agents.measure.results import (
        AgreementResult,
        EmbeddingResult,
        EmbeddingsSideBySide,
        ExperimentList,
        ExperimentResult,
        Statistics,
        TuneResult,
    )
    from agents.models.results import (
        DiskUsage,
        EndpointList,
        EndpointRemoved,
        ExportResult,
        ModelChanged,
        ModelDetails,
        ModelList,
    )
    from agents.quantization.budget.target import Budget
    from agents.quantization.results import AcquiredResult, LoggedIn, QuantizationList, QuantizePlan
    from lqmf.base.generation import GenerationParams
    from server.runtime.fallback import FallbackWalk as Walk
    from server.runtime.fallback import StartedJob

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"  # the name of the active model (`use NAME` in the shell, POST /model/switch/NAME)
EXPERIMENT_MAX_TOKENS = 128  # a prompt experiment's answer length: long enough to judge, short enough to wait for


class Library(Serving):
    """One settings, one ModelManager, one history store: what the shell, the server and programs share.

    Pass the manager a face already holds (the shell's); without one the library makes its own and closes it in
    close(). The history store is the library's, opened on first use and closed in close() (lqmf/serving.py: the
    core, and the calls the HTTP face serves requests with).
    """

    def __enter__(self) -> "Library":
        return self

    # -- models ---------------------------------------------------------------------------------------------
    def models(self, *, probe: bool = False) -> "ModelList":
        """Every model on disk (usable or not, with the reason), then every remote endpoint; `probe` asks
        endpoints not heard from lately first."""
        from agents.models.results import ModelList

        loaded = [m["name"] for m in self.manager.loaded()]
        return ModelList(models_dir=str(self.settings.models_dir), models=self.manager.available(probe=probe),
                         loaded=loaded)

    def load(self, name: str = DEFAULT_MODEL, *, keep_alive_s: Optional[float] = None) -> ModelHandle:
        """Load a model (`default`: the first of the default chain that loads) and return its handle."""
        chain = self.manager.routing.resolve(name)
        for index, candidate in enumerate(chain):
            try:
                loaded = self.manager.load(candidate, keep_alive_s)
            except LQMFError as exc:
                if index + 1 == len(chain):
                    raise
                log.warning("default model %s cannot be used (%s); falling back to %s",
                            candidate, exc, chain[index + 1])
                continue
            return ModelHandle(self, loaded.name)
        raise AssertionError("unreachable: a resolved chain is never empty")

    def unload(self, name: str) -> bool:
        """Free a loaded model; False when it was not loaded (ModelNotFound when no model has that name)."""
        if self.manager.unload(name):
            return True
        self.manager.record(name)  # unknown -> ModelNotFound with suggestions
        return False

    def engine_notice(self) -> Optional[str]:
        """Said once, after a GGUF load on the in-process fallback: why, and how to get the server engine."""
        return self.manager.engine_notice()

    def chat_stream(self, name: str, messages: Sequence[dict],
                    params: "GenerationParams") -> tuple["StartedJob", "Walk"]:
        """A streamed reply to a conversation from `name` (`default`: down its chain until a model begins answering),
        and the walk (its notice() says what was skipped and why)."""
        from server.runtime.fallback import stream_with_fallback

        return stream_with_fallback(self.manager, name, list(messages), params)

    def removal_question(self, names: "Optional[str] | list[str]") -> str:
        """What removing the model (or each of several) would delete, as the one question asked first; refused now
        as the removal would be, for any of them."""
        from agents.models import admin

        wanted = [admin.require_model(self.manager, name, "remove")
                  for name in (names if isinstance(names, list) else [names])]
        for name in wanted:
            admin.check_removable(self.manager, name)
        return admin.removal_question([admin.plan_removal(self.manager, name) for name in wanted])

    def show(self, name: str, *, with_template: bool = True) -> "ModelDetails":
        """One model: manifest facts, lineage tree, newest speed and fidelity, chat template (unless not
        `with_template`) and context."""
        from agents.models import admin
        from agents.models.show import show_model

        return show_model(self.manager, admin.require_model(self.manager, name, "show"), store=self.store,
                           with_template=with_template)

    def remove(self, name: str, *, unload: bool = False) -> "ModelChanged":
        """Delete a model's files (refused while it is loaded, unless `unload`: then unloaded first, still refused
        while it serves requests); recorded in the history."""
        from agents.models import admin
        from agents.models.results import ModelChanged

        name = admin.require_model(self.manager, name, "remove")
        return ModelChanged(change=admin.remove_model(self.manager, name, unload=unload, store=self.store))

    def rename(self, name: str, new: str) -> "ModelChanged":
        """Rename a model with its manifest, importance matrix and the lineage of its children."""
        from agents.models import admin
        from agents.models.results import ModelChanged

        name = admin.require_model(self.manager, name, "rename")
        return ModelChanged(change=admin.rename_model(self.manager, name, new, store=self.store))

    def copy(self, name: str, new: str) -> "ModelChanged":
        """An independent copy of a model under a new name."""
        from agents.models import admin
        from agents.models.results import ModelChanged

        name = admin.require_model(self.manager, name, "copy")
        return ModelChanged(change=admin.copy_model(self.manager, name, new, store=self.store))

    def disk_usage(self) -> "DiskUsage":
        """Bytes per model and what removing each frees; the total and the disk's free space."""
        from agents.models.show import disk_usage

        return disk_usage(self.manager)

    def export(self, model: str, target: str, *, host: Optional[str] = None,
               port: Optional[int] = None) -> "ExportResult":
        """The command that serves `model` on `target` (vllm | llama-server), checked against its files; runs
        nothing (FeatureUnsupported / InvalidRequest, with what to do instead, when that engine cannot serve it)."""
        from agents.models.export import export_plan
        from agents.models.results import ExportResult

        plan = export_plan(self.manager.record(model), target, settings=self.settings, host=host, port=port)
        return ExportResult(target=plan.target, model=plan.model, command=plan.command, notes=list(plan.notes),
                            experimental=plan.experimental)

    # -- remote endpoints and the default model ---------------------------------------------------------------
    def endpoints(self) -> "EndpointList":
        """Every registered endpoint with its members' health and latency (stale members probed first), a broken
        entry with the reason; never a key, only the variable it comes from."""
        from agents.models.results import EndpointList

        fleets = self.manager.endpoints.refresh()
        return EndpointList(endpoints=[fleet.status() for fleet in fleets.values()],
                            problem=self.manager.endpoints.config.problem())

    def add_endpoint(self, name: str, urls: Union[str, Sequence[str]], *, model: Optional[str] = None,
                     key_env: Optional[str] = None) -> "EndpointList":
        """Register (or replace) an OpenAI-compatible server as the model `name`; several URLs make a fleet. The key
        is read from the environment variable `key_env` when a request goes out. Probed at once."""
        from agents.models.results import EndpointList

        members = [urls] if isinstance(urls, str) else list(urls)
        fleet, replaced = self.manager.remotes.add(name, members, model, key_env)
        return EndpointList(endpoints=[fleet.status()], changed="replaced" if replaced else "registered")

    def remove_endpoint(self, name: str) -> "EndpointRemoved":
        """Forget an endpoint (after its requests in flight finish); it leaves the default chain too."""
        from agents.models.results import EndpointRemoved

        return EndpointRemoved(**self.manager.remotes.remove(name).public())

    def use(self, chain: Union[str, Sequence[str]]) -> list[str]:
        """Make chain[0] the default model (what `default` names), the rest its fallbacks in order; persisted."""
        return self.manager.routing.use([chain] if isinstance(chain, str) else list(chain))

    def embed(self, model: str, texts: Sequence[str], *, normalize: bool = False,
              progress: Optional[Progress] = None) -> "EmbeddingResult":
        """Embeddings of texts as a report: per text its token count, the vector's norm and the whole vector
        (raw by default, so the norm says something)."""
        import numpy as np

        from agents.measure.results import EmbeddedText, EmbeddingResult

        result = ModelHandle(self, model).embed(texts, normalize=normalize, progress=progress)
        norms = np.linalg.norm(result.vectors, axis=1)
        items = [EmbeddedText(text=text, tokens=count, norm=float(norm), vector=row.tolist())
                 for text, count, norm, row in zip(texts, result.token_counts, norms, result.vectors, strict=True)]
        return EmbeddingResult(model=result.model, dim=result.dim, pooling=result.pooling, seconds=result.seconds,
                               items=items)

    def embed_side_by_side(self, models: Sequence[str], texts: Sequence[str], *,
                           progress: Optional[Progress] = None) -> "EmbeddingsSideBySide":
        """The texts embedded by each model, and per text the cosine of each other model's vector to the first's
        ("does the 8-bit copy still point the same way?")."""
        from agents.measure.results import EmbeddingsSideBySide

        return EmbeddingsSideBySide.of([self.embed(model, texts, progress=progress) for model in models])

    # -- the factory ------------------------------------------------------------------------------------------
    def quantize(self, source: str, method: Optional[str] = None, level: Optional[str] = None, *,
                 bits: Optional[int] = None, name: Optional[str] = None, calibration: Optional[PathLike] = None,
                 imatrix: bool = False, fidelity: bool = False, group_size: Optional[int] = None,
                 budget: Optional[Union[str, "Budget"]] = None, progress: Optional[Progress] = None) -> "QuantizePlan":
        """The plan to quantize `source` (a model on disk, or a Hub repo id: downloaded first, with progress).

        method: gguf | gptq | bnb (None: gguf, unless the level names another: nf4 -> bnb); level: q4_k_m, q8_0,
        nf4, int8, 4bit...; bits: 2-8 picks the method's usual level; group_size: GPTQ's weights per scale
        (default 128; a plan refused for the model's widths says which one works). budget: "fit 100 MB",
        "fit 4 GB of RAM" or "kld 0.02" (or a Budget): a GGUF mix searched per tensor to meet it, measured and
        verified (agents.quantization.budget). Nothing is quantized until .run().
        """
        from agents.quantization.budget.target import budget_or_none
        from agents.quantization.plan import QuantRequest
        from agents.quantization.plan_runner import FactoryRunner
        from agents.quantization.results import QuantizePlan

        model, acquired = self._local_source(source, progress)
        request = QuantRequest(model=model, method=method, bits=bits, level=level, name=name,
                               calibration_file=_path(calibration), imatrix=imatrix, fidelity=fidelity,
                               group_size=group_size, budget=budget_or_none(budget))
        return QuantizePlan(plan=self.factory.plan(request), acquired=acquired, runner=FactoryRunner(self.factory))

    def _local_source(self, ref: str, progress: Optional[Progress]):
        """A model on disk by that name; a Hub repo id (ORG/NAME) that is not is downloaded first."""
        names = {rec.name for rec in self.manager.available()}
        if ref in names or "/" not in ref or Path(ref).expanduser().exists():
            return ref, None
        from agents.quantization.acquire import download_model

        got = download_model(ref, self.settings, progress=progress)
        return got.name, got

    def quantizations(self, *, limit: int = 30) -> "QuantizationList":
        """Recorded quantization runs, newest first, their models named as they are now (renames followed)."""
        from agents.models.renames import CHANGES_FOLLOWED, runs_with_names_now
        from agents.quantization.results import QuantizationList

        changes = self.store.model_changes(limit=CHANGES_FOLLOWED)
        return QuantizationList(runs=runs_with_names_now(self.store.quantization_runs(limit=limit), changes))

    def download(self, repo_id: str, *, name: Optional[str] = None, level: Optional[str] = None,
                 progress: Optional[Progress] = None) -> "AcquiredResult":
        """Fetch a model from the Hugging Face Hub into the models folder (one GGUF file: `level` picks it)."""
        from agents.quantization.acquire import download_model
        from agents.quantization.results import AcquiredResult

        got = download_model(repo_id, self.settings, name=name, level=level, progress=progress)
        return AcquiredResult(action="downloaded", model=got)

    def import_model(self, path: PathLike, *, name: Optional[str] = None,
                     progress: Optional[Progress] = None) -> "AcquiredResult":
        """Copy a local HF folder or .gguf file into the models folder, with a manifest."""
        from agents.quantization.acquire import import_model
        from agents.quantization.results import AcquiredResult

        got = import_model(_path(path), self.settings, name=name, progress=progress)
        return AcquiredResult(action="imported", model=got)

    def login(self, token: str) -> "LoggedIn":
        """Check a Hugging Face token and keep it in the hub's own token store."""
        from huggingface_hub import constants

        from agents.quantization.acquire import login
        from agents.quantization.results import LoggedIn

        user = login(token, self.settings)
        return LoggedIn(user=user, token_path=str(constants.HF_TOKEN_PATH))

    # -- experiments (each one recorded in the history) -------------------------------------------------------
    def experiment(self, model: str, prompt: Optional[str] = None, *, max_tokens: int = EXPERIMENT_MAX_TOKENS,
                   progress: Optional[Progress] = None) -> "ExperimentResult":
        """One prompt, measured and scored; no prompt: the standard prompt set."""
        from agents.measure.experiments import STANDARD_PROMPTS

        params = _params({**GREEDY, "max_tokens": max_tokens})
        if prompt:
            return self.lab.single(model, prompt, params)
        return self.lab.prompts("batch", model, list(STANDARD_PROMPTS), params, progress, source="standard prompts")

    def batch(self, model: str, prompts_file: PathLike, *, max_tokens: int = EXPERIMENT_MAX_TOKENS,
              progress: Optional[Progress] = None) -> "ExperimentResult":
        """Every prompt of a .txt (one per line) or .jsonl file."""
        return self.lab.batch(model, _path(prompts_file), _params({**GREEDY, "max_tokens": max_tokens}),
                              progress)

    def conversation(self, model: str, script_file: PathLike, *, max_tokens: int = EXPERIMENT_MAX_TOKENS,
                     progress: Optional[Progress] = None) -> "ExperimentResult":
        """A multi-turn script (one user turn per line): each turn sees the whole conversation so far."""
        return self.lab.conversation(model, _path(script_file), _params({**GREEDY, "max_tokens": max_tokens}),
                                     progress)

    def benchmark(self, models: Union[str, Sequence[str]], *, progress: Optional[Progress] = None,
                  **options: Any) -> "ExperimentResult":
        """Speed: TTFT, tokens/s, latency p50/p95, load time and memory; options: prompts, repetitions, warmup,
        max_tokens."""
        return self.lab.benchmark([models] if isinstance(models, str) else list(models), progress=progress,
                                  **options)

    def tune(self, name: str, *, progress: Optional[Progress] = None, **options: Any) -> "TuneResult":
        """Measure how llama-server serves a GGUF model fastest on this machine (speculation, slots, threads,
        micro-batch), store the choice in the history and serve the model with it from now on; options: tokens,
        prompts, load_tokens, budget_s (agents.measure.tuning.TuneOptions)."""
        from agents.measure.tuning import TuneOptions, Tuner

        return Tuner(self.manager, self.store, TuneOptions(**options)).run(name, progress)

    def compare(self, models: Sequence[str], prompts: Optional[Sequence[str]] = None, *,
                prompts_file: Optional[PathLike] = None, reference: Optional[str] = None, max_tokens: int = 48,
                chunks: Optional[int] = None, progress: Optional[Progress] = None) -> "ExperimentResult":
        """The same prompts on each model, fidelity against their shared source when there is one, ranked;
        `chunks` limits the fidelity windows (512 tokens each)."""
        extra = {"chunks": chunks} if chunks else {}
        return self.lab.compare(list(models), prompts=prompts, prompts_path=_path(prompts_file), reference=reference,
                                max_tokens=max_tokens, progress=progress, **extra)

    def fidelity(self, model: str, reference: Optional[str] = None, text: Optional[str] = None, *,
                 text_file: Optional[PathLike] = None, chunks: Optional[int] = None,
                 progress: Optional[Progress] = None) -> "ExperimentResult":
        """Perplexity, KL divergence, top-1 agreement and Δp of `model` against `reference` (default: the model
        it was made from), on `text`, a file's text, or held-out text the demo model never saw."""
        extra = {"chunks": chunks} if chunks else {}
        return self.lab.fidelity(model, reference, text_path=_path(text_file), text=text, progress=progress, **extra)

    def agreement(self, a: str, b: str, data_file: PathLike, *,
                  progress: Optional[Progress] = None) -> "AgreementResult":
        """Two variants (models, or URL#MODEL of an OpenAI-compatible server) classifying a labelled .jsonl set:
        agreement, parse success, accuracy, similarity; a per-example CSV in the reports folder."""
        import time

        from agents.measure.agreement import parse_variant, run_agreement
        from agents.measure.results import AgreementResult

        keys = self.manager.endpoints.key_for_url  # URL#MODEL of a registered endpoint: its key goes along
        variants = [parse_variant(spec, self.manager, api_key=keys(spec.partition("#")[0])) for spec in (a, b)]
        csv_path = self.settings.reports_dir / f"agreement-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        try:
            return AgreementResult(report=run_agreement(_path(data_file), *variants, csv_path=csv_path,
                                                        store=self.store, progress=progress))
        finally:
            for variant in variants:
                getattr(variant, "close", lambda: None)()

    def experiments(self, *, model: Optional[str] = None, limit: int = 30) -> "ExperimentList":
        """Recorded experiments, newest first (those that involve `model`, when given)."""
        from agents.measure.results import ExperimentList

        return ExperimentList(experiments=self.store.experiments(model=model, limit=limit))

    def statistics(self, *, model: Optional[str] = None) -> "Statistics":
        """Counts in the history and served requests per model (of `model` alone, when given)."""
        from agents.measure.results import Statistics

        return Statistics(values=self.store.statistics(model))

    # -- embedding classifiers (saved under LQMF_HOME/classifiers) ---------------------------------------------
    def classifiers(self) -> "ClassifierList":
        """Every saved classifier: its embedding model, labels, algorithm, accuracy (or why it is unusable)."""
        from agents.classifiers.artifact import classifiers_dir
        from agents.classifiers.results import ClassifierList

        return ClassifierList(folder=str(classifiers_dir(self.settings)), classifiers=self.classifier_registry.list())

    def train_classifier(self, name: str, data_file: PathLike, model: str, *, text_column: str = "text",
                         label_column: str = "label", algorithm: Optional[str] = None, pca: Optional[float] = None,
                         progress: Optional[Progress] = None) -> "ClassifierTrained":
        """An embedding classifier on `model`'s embeddings of a labelled .csv / .jsonl file: cross-validated,
        evaluated on a held-out split, saved safely; recorded in the history. algorithm: logreg (default) | svm;
        pca: a share of variance in (0, 1) or a number of components."""
        from agents.classifiers.pipeline import DEFAULT_ALGORITHM, PipelineSpec
        from agents.classifiers.results import ClassifierTrained
        from agents.classifiers.train import TrainRequest, train_classifier

        request = TrainRequest(name=name, data=_path(data_file), model=model, text_column=text_column,
                               label_column=label_column,
                               spec=PipelineSpec(algorithm=algorithm or DEFAULT_ALGORITHM, pca=pca))
        report = train_classifier(request, settings=self.settings, manager=self.manager, store=self.store,
                                  cache=self.classifier_registry.cache, progress=progress)
        return ClassifierTrained(report=report.to_dict())

    def classify(self, name: str, texts: Union[str, Sequence[str]]) -> "Classification":
        """A classifier's label and probabilities for each text (its embedding model loaded through the manager),
        with the latency."""
        from agents.classifiers.results import Classification

        items = [texts] if isinstance(texts, str) else list(texts)
        return Classification(result={**self.classifier_registry.predict(name, items), "texts": items})

    def check_classifier(self, name: str, variants: Union[str, Sequence[str]], *,
                         data_file: Optional[PathLike] = None, data_content: Optional[Union[str, bytes]] = None,
                         drop_unknown_labels: bool = False,
                         progress: Optional[Progress] = None) -> "ClassifierCheckResult":
        """The classifier on quantized variants' embeddings of its held-out split, or of `data_file` (a labelled
        .csv / .jsonl with the classifier's training columns and labels): accuracy, agreement with the source,
        cosine, texts/s; a report in the reports folder, recorded in the history.

        data_content: the file's content when it is not on this machine (`data_file` then only names it: its
        suffix says csv or jsonl). drop_unknown_labels: score the rows whose label the classifier knows instead
        of refusing a file with others."""
        from agents.classifiers.check import check_classifier
        from agents.classifiers.evalset import LabelledFile
        from agents.classifiers.results import ClassifierCheckResult

        models = [variants] if isinstance(variants, str) else list(variants)
        path = _path(data_file)
        if data_content is not None and path is None:
            raise InvalidRequest("data_content needs data_file to name it", "e.g. data_file='test.csv'")
        # A lone surrogate (no UTF-8 file holds one) becomes bytes the reader refuses as "not UTF-8", naming the line.
        content = data_content.encode("utf-8", "surrogatepass") if isinstance(data_content, str) else data_content
        data = None if path is None else LabelledFile(path, content, drop_unknown_labels)
        report = check_classifier(self.classifier_registry, name, models, store=self.store,
                                  reports_dir=self.settings.reports_dir, progress=progress, data=data)
        return ClassifierCheckResult(report=report.to_dict())


# -- one call each: a short-lived library from the settings (LQMF_* environment variables) -----------------------
def models() -> "ModelList":
    """Every model on disk, then every remote endpoint."""
    with Library() as library:
        return library.models()


def load(name: str = DEFAULT_MODEL) -> ModelHandle:
    """A loaded model's handle; it owns its library, closed with the handle (use `with`)."""
    library = Library()
    try:
        return ModelHandle(library, library.load(name).name, owns_library=True)
    except BaseException:
        library.close()
        raise


def quantize(source: str, method: Optional[str] = None, level: Optional[str] = None, **options: Any) -> "QuantizePlan":
    """The plan to quantize `source`; run it with .run(progress=...). Options as Library.quantize."""
    from agents.quantization.plan_runner import FreshRunner

    with Library() as library:
        planned = library.quantize(source, method, level, **options)
    planned.runner = FreshRunner()  # the plan is data: whenever it runs, a manager and factory of its own run it
    return planned


def compare(models: Sequence[str], prompts: Optional[Sequence[str]] = None, **options: Any) -> "ExperimentResult":
    """The same prompts on each model plus fidelity against their shared source, ranked. Options as Library.compare."""
    with Library() as library:
        return library.compare(models, prompts, **options)


def fidelity(model: str, reference: Optional[str] = None, text: Optional[str] = None,
             **options: Any) -> "ExperimentResult":
    """The fidelity report card of `model` against its reference. Options as Library.fidelity."""
    with Library() as library:
        return library.fidelity(model, reference, text, **options)


__all__ = ["Library", "ModelHandle", "compare", "fidelity", "load", "models", "quantize"]
