"""The shell's classifier handlers: train, classify, check, list (the executor merges their dispatch table)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from agents import results as r
from agents.intents import Command, Intent
from lqmf.progress import Progress

HELP = [
    ("train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] [pca 0.95]",
     "an embedding classifier: cross-validated, saved safely under LQMF_HOME/classifiers"),
    ('classify "text" with NAME',
     "a classifier's label and probabilities for a text (also POST /classifiers/NAME/predict)"),
    ("check classifier NAME on VARIANT [and VARIANT]",
     "the classifier on quantized variants' embeddings: accuracy, agreement, cosine, texts/s"),
    ("list classifiers", "the saved classifiers with their model, labels and accuracy"),
]


class ClassifierCommands:
    """Handlers over the executor's library (settings, manager, history store); loaded classifiers are kept."""

    def __init__(self, executor) -> None:
        self.executor = executor
        self._registry = None

    def handlers(self) -> dict[Intent, Callable[[Command, Optional[Progress]], r.Result]]:
        """The intents these handlers answer (merged into the executor's table)."""
        return {Intent.TRAIN_CLASSIFIER: self.train, Intent.CLASSIFY_TEXT: self.classify,
                Intent.CHECK_CLASSIFIER: self.check, Intent.LIST_CLASSIFIERS: self.list}

    @property
    def registry(self):
        """The shell's loaded classifiers, made on first use (sklearn stays out of the start-up)."""
        if self._registry is None:
            from agents.classifiers.registry import ClassifierRegistry

            self._registry = ClassifierRegistry(self.executor.settings, self.executor.manager)
        return self._registry

    def train(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        from agents.classifiers.pipeline import DEFAULT_ALGORITHM, PipelineSpec
        from agents.classifiers.train import TrainRequest, train_classifier

        slots = command.slots
        request = TrainRequest(
            name=slots.classifier, data=Path(slots.file).expanduser(), model=slots.model,
            text_column=slots.text_column or "text", label_column=slots.label_column or "label",
            spec=PipelineSpec(algorithm=slots.algorithm or DEFAULT_ALGORITHM, pca=slots.pca))
        report = train_classifier(request, settings=self.executor.settings, manager=self.executor.manager,
                                  store=self.executor.library.store, cache=self.registry.cache,
                                  progress=progress)
        return r.ClassifierTrained(report=report.to_dict())

    def classify(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        texts = command.slots.texts or [command.slots.prompt]
        return r.Classification(result={**self.registry.predict(command.slots.classifier, texts), "texts": texts})

    def check(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        from agents.classifiers.check import check_classifier

        report = check_classifier(self.registry, command.slots.classifier, command.slots.models,
                                  store=self.executor.library.store,
                                  reports_dir=self.executor.settings.reports_dir, progress=progress)
        return r.ClassifierCheckResult(report=report.to_dict())

    def list(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        from agents.classifiers.artifact import classifiers_dir

        return r.ClassifierList(folder=str(classifiers_dir(self.executor.settings)), classifiers=self.registry.list())
