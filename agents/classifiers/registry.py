"""Loaded classifiers and prediction: embed through the manager (its memory budget applies), then predict."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from agents.classifiers.artifact import (
    EVAL_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    ClassifierManifest,
    check_name,
    classifier_names,
    classifiers_dir,
    list_classifiers,
    load_pipeline,
    read_manifest,
)
from agents.classifiers.cache import EmbeddingCache
from agents.classifiers.errors import ClassifierNotFound, ClassifierRefused, DataError
from lqmf.base.errors import ModelNotFound
from server.runtime.catalog import names_hint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedClassifier:
    """A classifier that passed its safety checks, and the stat of its files when it did."""

    folder: Path
    manifest: ClassifierManifest
    pipeline: Any
    signature: tuple

    @property
    def name(self) -> str:
        return self.manifest.name


def _signature(folder: Path) -> tuple:
    """Stat facts that change when any of the classifier's files is replaced or rewritten."""
    facts = []
    for name in (MANIFEST_FILE, MODEL_FILE, EVAL_FILE):
        try:
            st = (folder / name).stat()
            facts.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            facts.append((name, None))
    return tuple(facts)


class ClassifierRegistry:
    """The classifiers one face (the shell or the server) has loaded; a changed folder is checked and loaded again."""

    def __init__(self, settings, manager, cache: Optional[EmbeddingCache] = None) -> None:
        self.settings = settings
        self.manager = manager
        self.cache = cache or EmbeddingCache(settings.cache_dir)
        self._lock = threading.Lock()
        self._loaded: dict[str, LoadedClassifier] = {}

    def list(self) -> list[dict[str, Any]]:
        """Every saved classifier's summary, with whether this face has it loaded."""
        with self._lock:
            loaded = set(self._loaded)
        return [{**c, "loaded": c["name"] in loaded} for c in list_classifiers(self.settings)]

    def get(self, name: str) -> LoadedClassifier:
        """The classifier `name`, loaded (and safety-checked) now unless its files are unchanged since the last time."""
        try:
            check_name(name)
        except DataError:
            raise self.not_found(name) from None
        folder = classifiers_dir(self.settings) / name
        signature = _signature(folder)
        with self._lock:
            known = self._loaded.get(name)
        if known is not None and known.signature == signature:
            return known
        try:
            manifest = read_manifest(folder)
            if manifest.name != name:
                raise ClassifierRefused(f"the folder {folder} holds classifier {manifest.name!r}, not {name!r}",
                                        "rename the folder back, or train it again under this name")
            loaded = LoadedClassifier(folder, manifest, load_pipeline(folder, manifest), signature)
        except BaseException as exc:
            with self._lock:
                self._loaded.pop(name, None)  # a classifier that fails now is never served from memory
            if isinstance(exc, ClassifierNotFound):
                raise self.not_found(name) from None
            raise
        with self._lock:
            self._loaded[name] = loaded
        log.info("loaded classifier %s (%s, %d dimensions, labels %s)", name, manifest.embedding.model,
                 manifest.embedding.dim, manifest.labels)
        return loaded

    def not_found(self, name: str) -> ClassifierNotFound:
        """The error for a name no classifier has: the nearest saved names, or the ones there are."""
        names = classifier_names(self.settings)
        if not names:
            return ClassifierNotFound(f"no classifier named {name!r}: there are none yet in "
                                      f"{classifiers_dir(self.settings)}",
                                      "train one with: train classifier NAME on data.csv with MODEL")
        return ClassifierNotFound(f"no classifier named {name!r}", names_hint(name, names))

    def embedding_model(self, classifier: LoadedClassifier):
        """The classifier's embedding model as discovered now; refused when it is missing or not the one trained on."""
        spec = classifier.manifest.embedding
        try:
            record = self.manager.record(spec.model)
        except ModelNotFound as exc:
            raise ClassifierRefused(
                f"classifier {classifier.name!r} needs its embedding model {spec.model!r}, which is not in "
                f"{self.settings.models_dir}", f"put the model back, or train the classifier again with another "
                f"model ({exc.hint})") from None
        if not record.usable:
            raise ClassifierRefused(f"classifier {classifier.name!r}: its embedding model {spec.model!r} is not "
                                    f"usable: {record.reason}", "repair the model, or train the classifier again")
        sha = self.cache.model_sha256(record.path)
        if sha != spec.sha256:
            raise ClassifierRefused(
                f"classifier {classifier.name!r} was trained on {spec.model} with sha256 {spec.sha256[:16]}…, but "
                f"{spec.model} on disk now has sha256 {sha[:16]}…: its embeddings would not be the ones the "
                "classifier learned", f"train it again: train classifier {classifier.name} on "
                f"{classifier.manifest.data.get('path', 'DATA')} with {spec.model}")
        return record

    def predict(self, name: str, texts: Sequence[str], keep_alive_s: Optional[float] = None) -> dict[str, Any]:
        """Labels and probabilities for each text, with the embedding model used and the time it took."""
        import numpy as np

        from server.runtime.embeddings import embed_texts

        started = time.perf_counter()
        classifier = self.get(name)
        spec = classifier.manifest.embedding
        record = self.embedding_model(classifier)
        self.manager.load(record.name, keep_alive_s)  # a first request pays the load: reported apart as load_s
        load_s = time.perf_counter() - started
        embedded = embed_texts(self.manager, record.name, list(texts), normalize=spec.normalized,
                               truncate=spec.truncate, keep_alive_s=keep_alive_s)
        check_dimension(classifier, embedded.vectors.shape[1], record.name)
        classify_started = time.perf_counter()
        proba = classifier.pipeline.predict_proba(np.asarray(embedded.vectors, dtype=np.float32))
        labels = classifier.manifest.labels
        predictions = [{"label": labels[int(row.argmax())],
                        "probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)}}
                       for row in proba]
        return {
            **classifier.manifest.verdict().fields(),
            "classifier": name, "model": record.name, "model_sha256": spec.sha256, "dimensions": spec.dim,
            "labels": labels, "predictions": predictions, "token_counts": embedded.token_counts,
            "load_s": round(load_s, 6), "embedding_s": round(embedded.seconds, 6),
            "classify_s": round(time.perf_counter() - classify_started, 6),
            "latency_s": round(time.perf_counter() - started, 6),
        }


def check_dimension(classifier: LoadedClassifier, dim: int, model: str) -> None:
    """Refuse vectors whose length is not the one the classifier was trained on."""
    if dim != classifier.manifest.embedding.dim:
        raise ClassifierRefused(
            f"{model} makes {dim}-dimensional embeddings but classifier {classifier.name!r} was trained on "
            f"{classifier.manifest.embedding.dim}-dimensional ones from {classifier.manifest.embedding.model}",
            "use a variant of the classifier's own model, or train a classifier on this model")
