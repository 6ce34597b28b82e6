"""What the shell understood: an intent with typed slots (and, when a slot is missing, a question)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Optional


class Intent(str, Enum):
    LOAD_MODEL_API = "LOAD_MODEL_API"
    UNLOAD_MODEL_API = "UNLOAD_MODEL_API"
    START_API_SERVER = "START_API_SERVER"
    STOP_API_SERVER = "STOP_API_SERVER"
    SHOW_API_STATUS = "SHOW_API_STATUS"
    LIST_MODELS = "LIST_MODELS"
    CHAT_WITH_MODEL = "CHAT_WITH_MODEL"
    # Experiments, one intent each (every one recorded in the history).
    EXPERIMENT_WITH_MODEL = "EXPERIMENT_WITH_MODEL"  # one prompt, or the standard prompt set
    BATCH_EXPERIMENT = "BATCH_EXPERIMENT"  # every prompt of a file
    CONVERSATION_EXPERIMENT = "CONVERSATION_EXPERIMENT"  # a multi-turn script
    BENCHMARK_MODELS = "BENCHMARK_MODELS"  # speed: TTFT, tokens/s, latency, load time, memory
    COMPARE_MODELS = "COMPARE_MODELS"  # the same prompts on each, fidelity against their source, ranked
    FIDELITY_REPORT = "FIDELITY_REPORT"  # perplexity, KL divergence, top-1 agreement against a reference
    TUNE_MODEL = "TUNE_MODEL"  # speculation and engine settings measured on this machine, the winner served
    RECOMMEND_MODEL = "RECOMMEND_MODEL"  # "which model is fastest?": answered from the recorded measurements
    AGREEMENT_REPORT = "AGREEMENT_REPORT"  # two variants on a labelled dataset
    QUANTIZE_MODEL = "QUANTIZE_MODEL"
    DOWNLOAD_MODEL = "DOWNLOAD_MODEL"
    IMPORT_MODEL = "IMPORT_MODEL"
    LOGIN = "LOGIN"
    LIST_QUANTIZATIONS = "LIST_QUANTIZATIONS"
    EMBED_TEXT = "EMBED_TEXT"
    TRAIN_CLASSIFIER = "TRAIN_CLASSIFIER"
    CLASSIFY_TEXT = "CLASSIFY_TEXT"
    CHECK_CLASSIFIER = "CHECK_CLASSIFIER"
    LIST_CLASSIFIERS = "LIST_CLASSIFIERS"
    LIST_EXPERIMENTS = "LIST_EXPERIMENTS"
    SHOW_STATISTICS = "SHOW_STATISTICS"
    SHOW_CONFIG = "SHOW_CONFIG"
    ADD_ENDPOINT = "ADD_ENDPOINT"
    REMOVE_ENDPOINT = "REMOVE_ENDPOINT"
    LIST_ENDPOINTS = "LIST_ENDPOINTS"
    USE_MODEL = "USE_MODEL"
    EXPORT_MODEL = "EXPORT_MODEL"
    REMOVE_MODEL = "REMOVE_MODEL"
    SHOW_MODEL = "SHOW_MODEL"
    RENAME_MODEL = "RENAME_MODEL"
    COPY_MODEL = "COPY_MODEL"
    DISK_USAGE = "DISK_USAGE"
    SHOW_HELP = "SHOW_HELP"
    EXIT = "EXIT"
    UNKNOWN = "UNKNOWN"


@dataclass
class Slots:
    """Everything a command can carry; unset slots are None (or empty)."""

    model: Optional[str] = None
    models: list[str] = field(default_factory=list)
    every: bool = False  # "all models", "all of them": every model the command can run on (resolved when it runs)
    port: Optional[int] = None
    kind: Optional[str] = None  # help: the topic; export: the target engine (vllm | llama-server)
    prompt: Optional[str] = None
    file: Optional[str] = None
    method: Optional[str] = None  # gguf | gptq | bnb
    bits: Optional[int] = None
    level: Optional[str] = None  # q4_k_m, nf4, ...
    name: Optional[str] = None  # the output's name: "... as NAME"; rename/copy: the new name
    yes: bool = False  # --yes: run the plan without asking
    imatrix: bool = False  # GGUF: compute an importance matrix first
    fidelity: bool = False  # quantize: a fidelity report card right after
    group_size: Optional[int] = None  # quantize (gptq): "with group size 64"
    # quantize: a budget instead of a level, as parse_budget reads it ("fit 100 MB", "fit 4 GB of RAM", "kld 0.02");
    # the search picks each tensor's type to meet it (agents.quantization.budget)
    budget: Optional[str] = None
    texts: list[str] = field(default_factory=list)  # embed: every quoted text
    classifier: Optional[str] = None  # an embedding classifier's name
    text_column: Optional[str] = None  # train classifier: the data's text column (default "text")
    label_column: Optional[str] = None  # train classifier: the data's label column (default "label")
    algorithm: Optional[str] = None  # train classifier: svm | logreg
    pca: Optional[float] = None  # train classifier: PCA's share of variance (0..1) or number of components
    urls: list[str] = field(default_factory=list)  # add endpoint: its member URLs
    remote_model: Optional[str] = None  # add endpoint: the model id on the remote server
    key_env: Optional[str] = None  # add endpoint: the environment variable holding its key (never the key)

    def to_dict(self) -> dict[str, Any]:
        """Only the slots that are set."""
        return {k: v for k, v in asdict(self).items() if v not in (None, [], "", False)}


@dataclass
class Command:
    """A parsed line: the intent, its slots, and what to ask or suggest when it is incomplete."""

    intent: Intent
    slots: Slots = field(default_factory=Slots)
    confidence: float = 1.0
    corrections: list[str] = field(default_factory=list)  # words the parser changed: "laod -> load"
    question: Optional[str] = None  # a missing slot: ask this
    choices: list[str] = field(default_factory=list)
    suggestion: Optional[str] = None  # UNKNOWN: "did you mean ..."
    text: str = ""
    agreed: bool = True  # the word rules and the intent classifier read the same intent (or only one read it)
    alternatives: list["Command"] = field(default_factory=list)  # an unsure reading: the readings to choose from
    exact: bool = False  # an unmistakable form (a model on disk spoken to by name): the classifier does not overrule it

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"intent": self.intent.value, "slots": self.slots.to_dict()}
        if self.question:
            out["question"] = self.question
            out["choices"] = self.choices
        if self.suggestion:
            out["suggestion"] = self.suggestion
        out["confidence"] = round(self.confidence, 3)
        if self.corrections:
            out["corrections"] = self.corrections
        if not self.agreed:
            out["agreed"] = False
        return out
