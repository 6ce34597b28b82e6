"""Settings from the environment (prefix LQMF_); LQMF_HOME relocates every writable path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class UnderRoot:
    """A read-only Settings attribute: a path below the settings' root (LQMF_HOME, else the project folder)."""

    def __init__(self, *parts: str, doc: str = "") -> None:
        self.parts = parts
        self.__doc__ = doc or f"$LQMF_HOME/{'/'.join(parts)}"

    def __get__(self, settings: Optional["Settings"], owner: type) -> Any:
        return self if settings is None else settings.root.joinpath(*self.parts)


class Settings(BaseSettings):
    """Where LQMF reads and writes. Every writable path derives from `home` unless overridden."""

    model_config = SettingsConfigDict(env_prefix="LQMF_", extra="ignore", populate_by_name=True,
                                      ignored_types=(UnderRoot,))

    home: Optional[Path] = Field(
        default=None,
        description="Root of every writable path (models, database, logs, history, caches). "
        "Unset: the project folder, with models in ./quantized-models, logs in ./logs and "
        "the database under ./memory/.",
    )
    models_dir_override: Optional[Path] = Field(
        default=None,
        validation_alias="LQMF_MODELS_DIR",
        description="Where models live; overrides the models folder alone.",
    )
    tools_dir_override: Optional[Path] = Field(
        default=None,
        validation_alias="LQMF_TOOLS_DIR",
        description="Where built and fetched tools (llama.cpp's converter, llama-server, llama-quantize, "
        "llama-imatrix) live. Unset: the installation's own .cache/tools, whatever LQMF_HOME says: "
        "programs belong to the installation, not to a user's data.",
    )
    understanding_dir_override: Optional[Path] = Field(
        default=None,
        validation_alias="LQMF_UNDERSTANDING_DIR",
        description="Where the shell's sentence model (all-MiniLM-L6-v2 as a GGUF) and its intent classifier "
        "live. Unset: the installation's own .cache/understanding, built by `make setup`.",
    )
    intent_classifier: bool = Field(
        default=True,
        description="Read what people type with the intent classifier on all-MiniLM-L6-v2 as well as the word rules "
        "(0: the word rules alone). Scripts (-c, --script) always use the rules alone.",
    )
    log_level: str = Field(default="INFO", description="Level of logs/lqmf.log.")
    max_models: int = Field(default=5, ge=1, description="Most models loaded at once (the brief's MAX_MODELS).")
    max_memory_mb: int = Field(
        default=8192, ge=1,
        description="Memory budget for loaded models in MiB (the brief's MAX_MEMORY_USAGE); "
        "capped by what the machine has available.",
    )
    context_length: int = Field(default=4096, ge=64,
                                description="Context window to load models with (capped by the model's).")
    queue_size: int = Field(default=16, ge=1, description="Requests waiting per model before new ones get QueueFull.")
    stream_batch_ms: float = Field(
        default=2.0, ge=0,
        description="Streams faster than one token per ms/4 are handed over in batches at most this far "
        "apart (0: every token alone).",
    )
    keep_alive_s: float = Field(
        default=300.0, description="Seconds an idle model stays loaded; -1 forever, 0 unload after each request."
    )
    threads: Optional[int] = Field(
        default=None, ge=1,
        description="CPU threads per GGUF model (default: physical cores; in-process, one logical core "
        "left free).",
    )
    gguf_engine: Literal["auto", "server", "in-process"] = Field(
        default="auto",
        description="How GGUF models are served: 'server' (a llama-server child per model: parallel slots, "
                    "continuous batching, tools, JSON schemas, logprobs), 'in-process' (llama-cpp-python), or "
                    "'auto' (the server engine when it is built, else in-process, said once).")
    parallel: int = Field(default=4, ge=1, le=256,
                          description="Parallel slots per GGUF model on the server engine (requests decoded at once).")
    tuned: bool = Field(default=True,
                        description="Serve each GGUF model with the engine settings `tune NAME` measured for it on "
                                    "this machine (speculation, threads, slots, batches); false: always the defaults.")
    remote_parallel: int = Field(default=16, ge=1, le=1024,
                                 description="Requests LQMF sends to one remote model at once "
                                             "(its own server batches them).")
    remote_timeout_s: float = Field(default=120.0, gt=0,
                                    description="Seconds a remote endpoint may take to start answering (and between "
                                    "streamed events) before the request fails as a timeout.")
    probe_interval_s: float = Field(default=15.0, gt=0,
                                    description="Seconds between health probes of each remote endpoint member.")
    host: str = Field(default="127.0.0.1", description="Address the API server binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the API server binds (0: any free port).")
    api_key: Optional[SecretStr] = Field(
        default=None, description="When set, every endpoint but /health needs it (Bearer or x-api-key)."
    )
    allow_insecure_bind: bool = Field(
        default=False, description="Allow binding a non-loopback address without an API key."
    )
    # NoDecode: the environment may give these as a comma list as well as JSON (parsed by the validator below).
    origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("LQMF_ORIGINS", "LQMF_CORS_ORIGINS", "origins"),
        description="Web origins allowed besides the defaults (localhost, 127.0.0.1 and [::1] on any port; app://, "
        "file://, tauri://, vscode-webview://, vscode-file://); `*` is a wildcard, `*` alone allows any. Also read "
        "from LQMF_CORS_ORIGINS, its old name.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the server answers besides loopback, the bound host and this machine's name "
        "(`*.example.lan` for subdomains; `*` turns the check off).",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body accepted.")
    autoload: bool = Field(
        default=True, description="Load a discovered model when a request names it (else answer 409)."
    )
    preload: list[str] = Field(default_factory=list, description="Models to load when the server starts.")
    assist_model: Optional[str] = Field(
        default=None, description="A local model the shell may ask to classify commands its rules cannot place."
    )
    assist_url: Optional[str] = Field(
        default=None, description="An OpenAI-compatible base URL (…/v1) to ask instead of a local model."
    )
    assist_remote_model: str = Field(default="gpt-4o-mini", description="The model name sent to LQMF_ASSIST_URL.")
    assist_api_key: Optional[SecretStr] = Field(default=None, description="Bearer key for LQMF_ASSIST_URL.")
    auto_benchmark_every: int = Field(
        default=50, ge=0,
        description="Served generations between automatic background benchmarks of the loaded models (0: off).",
    )
    debug: bool = Field(default=False, description="Re-raise errors with their tracebacks.")

    @field_validator("origins", "allowed_hosts", mode="before")
    @classmethod
    def _lists(cls, value):
        return _comma_or_json_list(value)

    @property
    def root(self) -> Path:
        """The folder every default writable path hangs from."""
        return (self.home or PROJECT_ROOT).expanduser().resolve()

    @property
    def models_dir(self) -> Path:
        if self.models_dir_override is not None:
            return self.models_dir_override.expanduser().resolve()
        return self.root / "quantized-models"

    # Every writable path below the root (LQMF_HOME), in one table.
    logs_dir = UnderRoot("logs")
    db_path = UnderRoot("memory", "lqmf.db")
    endpoints_path = UnderRoot("endpoints.toml", doc="Remote endpoints (TOML, see docs/SCALE_OUT.md); written by "
                               "`add endpoint` and POST /endpoints.")
    active_model_path = UnderRoot("memory", "active_model.json",
                                  doc="The default model and its fallback chain (`use NAME [then OTHER]`).")
    reports_dir = UnderRoot("reports")
    benchmarks_log = UnderRoot("logs", "benchmarks.jsonl")
    history_path = UnderRoot("memory", "shell_history")
    servers_dir = UnderRoot("memory", "servers", doc="One PID.json per running `lqmf serve` (host, port), removed "
                            "when it stops: `show config` reads them.")
    cache_dir = UnderRoot(".cache")

    @property
    def tools_dir(self) -> Path:
        """Built programs: the installation's, so a server with another LQMF_HOME still finds its engine."""
        if self.tools_dir_override is not None:
            return self.tools_dir_override.expanduser().resolve()
        return PROJECT_ROOT / ".cache" / "tools"

    @property
    def understanding_dir(self) -> Path:
        """The shell's sentence model and intent classifier: the installation's, like its tools."""
        if self.understanding_dir_override is not None:
            return self.understanding_dir_override.expanduser().resolve()
        return PROJECT_ROOT / ".cache" / "understanding"


def _comma_or_json_list(value) -> list[str]:
    """A JSON list or a comma list (from the environment), or a list (from Python) -> its non-empty entries."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON list ({exc.msg}); write a JSON list or a comma list") from exc
        else:
            value = text.split(",")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings: a JSON list or a comma list")
    return [v.strip() for v in value if v.strip()]


def load_settings() -> Settings:
    """Read the settings from the environment now (no cached singleton: tests change it)."""
    return Settings()
