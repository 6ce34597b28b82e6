"""The shell's classifier handlers: train, classify, check, list (agents/intent_table.py routes intents here)."""

from __future__ import annotations

from typing import Optional

from agents import results as r
from agents.classifier_parse import drops_unknown_labels
from agents.intents import Command
from lqmf.base.progress import Progress

HELP = [
    ("train classifier NAME on data.csv with MODEL [text column T, label column L] [svm|logreg] [pca 0.95]",
     "an embedding classifier: cross-validated, saved safely under LQMF_HOME/classifiers"),
    ('classify "text" with NAME',
     "a classifier's label and probabilities for a text (also POST /classifiers/NAME/predict)"),
    ("check classifier NAME on VARIANT [and VARIANT] [with test.csv] [dropping unknown labels]",
     "the classifier on quantized variants' embeddings of its held-out split, or of a labelled file with its "
     "training columns: accuracy, agreement, cosine, texts/s"),
    ("list classifiers", "the saved classifiers with their model, labels and accuracy"),
]


class ClassifierCommands:
    """Handlers over the executor's library: each maps a command's slots to one Library call (the library keeps the
    loaded classifiers)."""

    def __init__(self, executor) -> None:
        self.executor = executor

    @property
    def library(self):
        return self.executor.library

    def train(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        slots = command.slots
        return self.library.train_classifier(slots.classifier, slots.file, slots.model,
                                             text_column=slots.text_column or "text",
                                             label_column=slots.label_column or "label",
                                             algorithm=slots.algorithm, pca=slots.pca, progress=progress)

    def classify(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        return self.library.classify(command.slots.classifier, command.slots.texts or [command.slots.prompt])

    def check(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        slots = command.slots
        # The drop option is read from the line as typed: no Slots field carries it.
        return self.library.check_classifier(slots.classifier, slots.models, data_file=slots.file,
                                             drop_unknown_labels=drops_unknown_labels(command.text),
                                             progress=progress)

    def list(self, command: Command, progress: Optional[Progress] = None) -> r.Result:
        return self.library.classifiers()
