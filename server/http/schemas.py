"""Request bodies (pydantic at the edge) and their translation into the core's GenerationParams."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lqmf.base import sampling
from lqmf.base.generation import GenerationParams
from lqmf.base.names import MODEL_NAME, MODEL_NAME_MAX, MODEL_NAME_PATTERN, NEW_MODEL_NAME_PATTERN
from lqmf.serving_types import CLASSIFIER_NAME_MAX, CLASSIFIER_NAME_PATTERN
from server.http.durations import (
    DURATION_PATTERN,
    MAX_KEEP_ALIVE_S,
    parse_keep_alive,  # noqa: F401 (the routes read it with the bodies)
)
from server.http.errors import APIError

TEXT_MAX = 1_048_576  # characters; the body limit (LQMF_MAX_BODY_BYTES, 1 MiB) bounds it first
EXAMPLE_MODEL = "demo-q4_k_m"
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule for function names
TOOL_NAME_MAX = 64

ModelPath = Annotated[str, Path(min_length=1, max_length=MODEL_NAME_MAX + 7, pattern=MODEL_NAME_PATTERN,
                                description="A discovered model's name (GET /models/available).",
                                examples=[EXAMPLE_MODEL])]
ModelName = Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX + 7, pattern=MODEL_NAME_PATTERN,
                                 description="A discovered model's name (GET /models/available); "
                                 "an Ollama ':latest' tag is accepted.", examples=[EXAMPLE_MODEL])]
# Generation requests may leave the model out, or name `default`: the active model (`use NAME`).
DefaultableModel = Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX + 7, pattern=MODEL_NAME_PATTERN,
                                        description="A model's name (GET /models/available), or `default` (or "
                                        "nothing) for the active model: POST /model/switch/{name} sets it.",
                                        examples=[EXAMPLE_MODEL])]
Text = Annotated[str, Field(max_length=TEXT_MAX)]
StopString = Annotated[str, Field(max_length=sampling.STOP_LENGTH_MAX)]
KeepAlive = Union[
    Annotated[float, Field(ge=-MAX_KEEP_ALIVE_S, le=MAX_KEEP_ALIVE_S, allow_inf_nan=False)],
    Annotated[str, Field(max_length=40, pattern=DURATION_PATTERN)],
    None,
]
KEEP_ALIVE_DOC = ("Seconds, or a duration like '5m' / '1h30m' / '250ms', to keep the model loaded after this "
                  "request; negative: forever; 0: unload at once. At most ten years.")


def either(*fields: str) -> dict[str, Any]:
    """JSON Schema extra: at least one of `fields` is present and not null (what the model's validator enforces)."""
    return {"anyOf": [{"required": [f], "properties": {f: {"not": {"type": "null"}}}} for f in fields]}


def check_model_name(name: str) -> str:
    """A discovered model's name (an Ollama ':latest' tag is accepted); never a path."""
    bare = name[:-7] if name.endswith(":latest") else name
    if len(bare) > MODEL_NAME_MAX or not MODEL_NAME.match(bare):
        raise APIError(422, f"invalid model name {name[:MODEL_NAME_MAX]!r}",
                       "model names are letters, digits and . _ + - (no paths); see GET /models/available")
    return bare


def check_dimensions(name: str, dim: int, wanted: Optional[int]) -> None:
    """Refuse a `dimensions` other than the model's own (see DIMENSIONS_DOC for why)."""
    if wanted is not None and wanted != dim:
        raise APIError(400, f"{name} makes {dim}-dimensional embeddings, not {wanted}",
                       f"leave out dimensions or send {dim}: this model was not trained for shortened vectors")


def stops(value: Union[str, list[str], None]) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def field_for(name: str, default: Any = None, **extra: Any) -> Any:
    """A pydantic Field bounded and described as lqmf.base.sampling's table says (None: the route's profile decides)."""
    limit = sampling.LIMITS[name]
    extra.setdefault("description", limit.doc or None)
    return Field(default=default, **limit.bounds(), **extra)


def build_params(body: Any, defaults: Mapping[str, Any]) -> GenerationParams:
    """GenerationParams from the defaults, overridden by every sampling field the body sets."""
    values = dict(defaults)
    for name in sampling.SAMPLERS:
        value = getattr(body, name, None)
        if value is not None:
            values[name] = value
    values["stop"] = stops(body.stop)
    return GenerationParams(**values)


class Body(BaseModel):
    """Every request body: unknown fields ignored (clients send more than we use), no NaN or infinity."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class FunctionCall(Body):
    name: Annotated[str, Field(min_length=1, max_length=TOOL_NAME_MAX)]
    arguments: Union[Text, dict[str, Any]] = Field(default="{}",
                                                   description="JSON text (OpenAI) or an object (Ollama).")


class ToolCallIn(Body):
    """A tool call an assistant message made earlier in the conversation."""

    id: Optional[Annotated[str, Field(max_length=256)]] = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Body):
    model_config = ConfigDict(json_schema_extra=either("content", "tool_calls"))

    role: str = Field(pattern="^(system|user|assistant|tool)$")
    content: Optional[Text] = None
    tool_calls: Optional[Annotated[list[ToolCallIn], Field(min_length=1, max_length=64)]] = Field(
        default=None, description="The calls an assistant message made (its content may then be null).")
    tool_call_id: Optional[Annotated[str, Field(max_length=256)]] = None

    @model_validator(mode="after")
    def _says_something(self) -> "ChatMessage":
        if self.content is None and not self.tool_calls:
            raise ValueError('a message needs "content" (text), or "tool_calls" on an assistant message')
        if self.tool_calls and self.role != "assistant":
            raise ValueError('only assistant messages carry "tool_calls"')
        return self

    def plain(self) -> dict[str, Any]:
        """role and content (tool calls kept for the tool-call format, which writes them as JSON)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content or ""}
        if self.tool_calls:
            out["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        return out


class FunctionSpec(Body):
    name: str = Field(pattern=TOOL_NAME_PATTERN, description="Letters, digits, _ and -, at most 64.")
    description: Optional[Annotated[str, Field(max_length=TEXT_MAX)]] = None
    parameters: Optional[dict[str, Any]] = Field(default=None, description="A JSON schema for the arguments.")


class ToolSpec(Body):
    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedToolChoice(Body):
    class Name(Body):
        name: str = Field(pattern=TOOL_NAME_PATTERN)

    type: Literal["function"] = "function"
    function: Name


Tools = Annotated[list[ToolSpec], Field(max_length=128, description="Empty: no tools.")]
ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice, None]


class JsonSchemaFormat(Body):
    name: Annotated[str, Field(max_length=64)] = "response"
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON schema the reply must meet.")
    strict: Optional[bool] = None


class ResponseFormat(Body):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: Optional[JsonSchemaFormat] = None

    @model_validator(mode="after")
    def _schema_given(self) -> "ResponseFormat":
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError('response_format type "json_schema" needs a "json_schema": {"name": ..., "schema": {...}}')
        return self

    def schema_text(self) -> Optional[str]:
        """The constraint as JSON text, or None for plain text."""
        if self.type == "json_object":
            return json.dumps(ANY_JSON_OBJECT)
        if self.type == "json_schema" and self.json_schema is not None:
            return json.dumps(self.json_schema.schema_)
        return None


ANY_JSON_OBJECT = {"type": "object"}


def conversation(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Role/content pairs for the chat template; earlier tool calls written in LQMF's tool-call format."""
    from server.http.tool_calls import rendered_history

    return rendered_history([m.plain() for m in messages])


def ollama_format(value: Union[str, dict[str, Any], None]) -> Optional[str]:
    """Ollama's `format`: "json" (any JSON object) or a JSON schema, as constraint text."""
    if value is None or value == "":
        return None
    return json.dumps(ANY_JSON_OBJECT if value == "json" else value)


Messages = Annotated[list[ChatMessage], Field(min_length=1, max_length=4096)]


class SamplerFields(Body):
    """The sampling knobs every API shares (Ollama's go in `options`)."""

    temperature: Optional[float] = field_for("temperature")
    top_p: Optional[float] = field_for("top_p")
    top_k: Optional[int] = field_for("top_k")
    min_p: Optional[float] = field_for("min_p")
    seed: Optional[int] = field_for("seed")
    stop: Union[StopString, Annotated[list[StopString], Field(max_length=sampling.STOP_MAX)], None] = None
    repeat_penalty: Optional[float] = field_for("repeat_penalty")


class SamplingFields(SamplerFields):
    """Sampling fields of the native and OpenAI bodies."""

    max_tokens: Optional[int] = field_for("max_tokens")
    ignore_eos: bool = Field(default=False, description="Generate past end-of-sequence (fixed-length benchmarks).")

    def params(self, **defaults: Any) -> GenerationParams:
        return build_params(self, {**defaults, "ignore_eos": self.ignore_eos})


def _has_text(value: Optional[str]) -> bool:
    return value is not None and bool(value.strip())


class NativeChatRequest(SamplingFields):
    """POST /models/{name}/chat: one message (or a whole conversation)."""

    model_config = ConfigDict(json_schema_extra=either("message", "messages"))

    message: Optional[Text] = Field(default=None, pattern=r"\S", description="The user's message.")
    messages: Optional[Messages] = Field(default=None, description="A whole conversation instead.")
    system: Optional[Text] = Field(default=None, description="A system prompt placed first.")
    stream: bool = False
    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC)

    @model_validator(mode="after")
    def _something_to_say(self) -> "NativeChatRequest":
        if not self.messages and not _has_text(self.message):
            raise ValueError('send a non-empty "message" or a "messages" list, e.g. {"message": "hello"}')
        return self

    def conversation(self) -> list[dict[str, str]]:
        if self.messages:
            convo = conversation(self.messages)
        else:
            convo = [{"role": "user", "content": self.message or ""}]
        if self.system:
            convo.insert(0, {"role": "system", "content": self.system})
        return convo


class StreamOptions(Body):
    include_usage: bool = False


class OpenAIChatRequest(SamplingFields):
    model: DefaultableModel = "default"
    messages: Messages
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    max_completion_tokens: Optional[int] = field_for("max_tokens", description="OpenAI's newer name for max_tokens.")
    tools: Optional[Tools] = None
    tool_choice: ToolChoice = Field(default=None, description="auto (default with tools), none, required, or "
                                    '{"type": "function", "function": {"name": ...}} to force one tool.')
    parallel_tool_calls: Optional[bool] = None
    response_format: Optional[ResponseFormat] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = field_for("logprobs", description="With logprobs: alternatives per token.")
    n: int = Field(default=1, ge=1, le=1, description="Only one choice per request is supported.")
    frequency_penalty: float = field_for("frequency_penalty", default=sampling.DEFAULTS["frequency_penalty"])
    presence_penalty: float = field_for("presence_penalty", default=sampling.DEFAULTS["presence_penalty"])


class OpenAICompletionRequest(SamplingFields):
    model: DefaultableModel = "default"
    prompt: Union[Text, Annotated[list[Text], Field(min_length=1, max_length=1)]] = Field(
        description="The prompt: a string, or a list of exactly one (use /batch for many).")
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(default=1, ge=1, le=1)
    echo: bool = False
    logprobs: Optional[int] = field_for("logprobs")

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


EMBED_INPUTS_MAX = 2048  # inputs per embedding request (OpenAI's limit)
TOKEN_IDS_MAX = 131072
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
TokenIds = Annotated[list[TokenId], Field(min_length=1, max_length=TOKEN_IDS_MAX)]
NORMALIZE_DOC = "LQMF extension: L2-normalise each vector (unit length)."
DIMENSIONS_DOC = ("Must equal the model's embedding size when given: these models were not trained to be cut "
                  "short (Matryoshka), so a shortened vector is refused rather than silently degraded.")


class OpenAIEmbeddingRequest(Body):
    model: ModelName
    input: Union[
        Annotated[Text, Field(min_length=1)],
        Annotated[list[Annotated[Text, Field(min_length=1)]], Field(min_length=1, max_length=EMBED_INPUTS_MAX)],
        TokenIds,
        Annotated[list[TokenIds], Field(min_length=1, max_length=EMBED_INPUTS_MAX)],
    ] = Field(description="A text, a list of texts, a list of token ids, or a list of token-id lists.")
    encoding_format: str = Field(default="float", pattern="^(float|base64)$",
                                 description="base64: the little-endian float32 bytes of each vector.")
    dimensions: Optional[int] = Field(default=None, ge=1, le=65536, description=DIMENSIONS_DOC)
    user: Optional[Annotated[str, Field(max_length=256)]] = Field(default=None, description="Ignored.")
    normalize: bool = Field(default=True, description=NORMALIZE_DOC)
    truncate: bool = Field(default=False, description="LQMF extension: cut inputs longer than the context "
                           "window to their first tokens instead of refusing them (400).")

    def inputs(self) -> list[Union[str, list[int]]]:
        """The inputs as a list: texts or token-id lists."""
        if isinstance(self.input, str):
            return [self.input]
        if self.input and isinstance(self.input[0], int):
            return [list(self.input)]  # one pre-tokenized input
        return list(self.input)


class OllamaOptions(SamplerFields):
    num_predict: Optional[int] = Field(default=None, ge=-2, le=sampling.LIMITS["max_tokens"].high,
                                       description="Tokens to generate; -1 or -2: until the end (or the context).")
    num_ctx: Optional[int] = field_for("num_ctx")

    def params(self) -> GenerationParams:
        """GenerationParams from Ollama's own defaults (lqmf.base.sampling.OLLAMA), overridden by these options."""
        values = dict(sampling.OLLAMA)
        if self.num_predict is not None and self.num_predict > 0:
            values["max_tokens"] = self.num_predict
        return build_params(self, values)


OllamaFormat = Union[Literal["json", ""], dict[str, Any], None]
FORMAT_DOC = '"json" (any JSON object) or a JSON schema the reply must meet.'


class OllamaGenerateRequest(Body):
    model: DefaultableModel = "default"
    prompt: Optional[Text] = None
    format: OllamaFormat = Field(default=None, description=FORMAT_DOC)
    system: Optional[Text] = None
    raw: bool = False
    stream: bool = True
    options: Optional[OllamaOptions] = None
    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC)


class OllamaChatRequest(Body):
    model: DefaultableModel = "default"
    messages: Optional[Annotated[list[ChatMessage], Field(max_length=4096)]] = None
    format: OllamaFormat = Field(default=None, description=FORMAT_DOC)
    tools: Optional[Tools] = None
    stream: bool = True
    options: Optional[OllamaOptions] = None
    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC)


class OllamaEmbedRequest(Body):
    """Ollama's /api/embed."""

    model: ModelName
    input: Union[Text, Annotated[list[Text], Field(max_length=EMBED_INPUTS_MAX)]] = Field(
        default="", description="A text or a list of texts; empty: only load the model.")
    truncate: bool = Field(default=True, description="Cut inputs longer than the context window to their first "
                           "tokens (Ollama's default); false: refuse them (400).")
    options: Optional[OllamaOptions] = None
    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC)
    dimensions: Optional[int] = Field(default=None, ge=1, le=65536, description=DIMENSIONS_DOC)
    normalize: bool = Field(default=True, description=NORMALIZE_DOC)

    def inputs(self) -> list[str]:
        """The non-empty inputs (Ollama skips an empty string)."""
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        return [t for t in items if t]


class OllamaEmbeddingsRequest(Body):
    """Ollama's older /api/embeddings: one prompt, one vector (not normalised, as Ollama's)."""

    model: ModelName
    prompt: Text = Field(default="", description="The text; empty: only load the model.")
    options: Optional[OllamaOptions] = None
    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC)
    truncate: bool = Field(default=True, description="Cut a prompt longer than the context window; false: 400.")
    normalize: bool = Field(default=False, description=NORMALIZE_DOC)


class OllamaShowRequest(Body):
    model_config = ConfigDict(json_schema_extra=either("model", "name"))

    model: Optional[ModelName] = None
    name: Optional[ModelName] = None

    @model_validator(mode="after")
    def _named(self) -> "OllamaShowRequest":
        if not (self.model or self.name):
            raise ValueError('name the model: {"model": "NAME"}')
        return self


class LoadRequest(Body):
    """POST /models/{name}/load (the body is optional)."""

    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC)


class TokenizeRequest(Body):
    model_config = ConfigDict(json_schema_extra=either("text", "content"))

    model: ModelName
    text: Optional[Text] = None
    content: Optional[Text] = Field(default=None, description="Alias of text (llama.cpp's server name).")
    add_special: bool = True

    @model_validator(mode="after")
    def _has_input(self) -> "TokenizeRequest":
        if self.text is None and self.content is None:
            raise ValueError('send "text" to tokenize, e.g. {"model": "...", "text": "hello"}')
        return self


class DetokenizeRequest(Body):
    model: ModelName
    tokens: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(max_length=131072)


class PromptOrMessages(SamplingFields):
    """A generation given a prompt or a whole conversation (at least one of them)."""

    model_config = ConfigDict(json_schema_extra=either("prompt", "messages"))

    prompt: Optional[Annotated[Text, Field(min_length=1)]] = None
    messages: Optional[Messages] = None

    @model_validator(mode="after")
    def _has_prompt(self) -> "PromptOrMessages":
        if not self.prompt and not self.messages:
            raise ValueError('send a "prompt" or "messages"')
        return self


def each_once(value: list[str]) -> list[str]:
    """A list of model names with none named twice."""
    if len(set(value)) != len(value):
        raise ValueError("list each model once")
    return value


class CompareRequest(PromptOrMessages):
    models: list[ModelName] = Field(min_length=2, max_length=8, json_schema_extra={"uniqueItems": True})

    _distinct = field_validator("models")(classmethod(lambda cls, value: each_once(value)))


class BatchItem(PromptOrMessages):
    model: DefaultableModel = "default"


class BatchRequest(Body):
    items: list[BatchItem] = Field(min_length=1, max_length=256)


ClassifierPath = Annotated[str, Path(min_length=1, max_length=CLASSIFIER_NAME_MAX, pattern=CLASSIFIER_NAME_PATTERN,
                                     description="A saved classifier's name (GET /classifiers).",
                                     examples=["code-vs-prose"])]
ClassifierText = Annotated[str, Field(min_length=1, max_length=TEXT_MAX, pattern=r"\S")]


class ClassifyRequest(Body):
    """POST /classifiers/{name}/predict: one text or a list of texts."""

    # Exactly one of the two, as the validator below enforces.
    model_config = ConfigDict(json_schema_extra={"oneOf": either("text", "texts")["anyOf"]})

    text: Optional[ClassifierText] = Field(default=None, description="One text to classify.")
    texts: Optional[Annotated[list[ClassifierText], Field(min_length=1, max_length=256)]] = Field(
        default=None, description="Several texts (at most 256), classified in one batch.")
    keep_alive: KeepAlive = Field(default=None, description=KEEP_ALIVE_DOC + " (The classifier's embedding model.)")

    @model_validator(mode="after")
    def _one_input(self) -> "ClassifyRequest":
        if (self.text is None) == (self.texts is None):
            raise ValueError('send "text" (one) or "texts" (a list), not both, e.g. {"text": "def f(): pass"}')
        return self

    def inputs(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


# A file's name only: no folder, no control character, a suffix the labelled-data reader knows.
DATA_FILE_NAME = r"^[^/\\\x00-\x1f]+\.(?:csv|CSV|jsonl|JSONL|ndjson|NDJSON)$"


class LabelledData(Body):
    """A labelled .csv or .jsonl file sent with a request: its name and content, never a path on the server."""

    name: str = Field(min_length=5, max_length=255, pattern=DATA_FILE_NAME,
                      description="The file's name; its suffix says the format (.csv with a header row, or .jsonl).",
                      examples=["test.csv"])
    content: str = Field(min_length=1, max_length=TEXT_MAX, description=(
        "The file's text (UTF-8), with the classifier's own training columns (GET /classifiers/{name}: "
        "manifest.data.text_column and label_column)."), examples=["text,label\nfor i in range(3): pass,code\n"])


class ClassifierCheckRequest(Body):
    """POST /classifiers/{name}/check: the variants, and a labelled file to check on instead of the held-out split."""

    models: list[ModelName] = Field(min_length=1, max_length=8, json_schema_extra={"uniqueItems": True},
                                    description="The variants to check the classifier on (its own model is the "
                                                "reference row).")
    data: Optional[LabelledData] = Field(default=None, description=(
        "A labelled file to check on; without it, the held-out split kept at training time. Refused (422) when "
        "its columns are not the classifier's training columns or it has labels the classifier never saw."))
    drop_unknown_labels: bool = Field(default=False, description=(
        "Check on the rows whose label the classifier knows instead of refusing a file with other labels (the "
        "report counts the dropped rows)."))

    _distinct = field_validator("models")(classmethod(lambda cls, value: each_once(value)))


Url = Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://[!-~]+$",
                           description="An OpenAI-compatible base URL, e.g. http://10.0.0.5:8000/v1.")]


class EndpointRequest(Body):
    """POST /endpoints: a remote OpenAI-compatible server (or a fleet of them) registered as a model."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=either("url", "urls"))

    name: ModelName = Field(description="The model name LQMF will list and route to.")
    url: Optional[Url] = None
    urls: Optional[Annotated[list[Url], Field(min_length=1, max_length=64)]] = Field(
        default=None, description="Several servers of the same model: a fleet, routed by least outstanding requests.")
    model: Optional[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default=None, description="The remote model id (default: the one model the server lists).")
    key_env: Optional[Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default=None, description="The environment variable (on the LQMF server) holding the remote's API key. "
        "Keys themselves are never accepted, stored or shown.")

    @model_validator(mode="after")
    def _one_place(self) -> "EndpointRequest":
        if not self.url and not self.urls:
            raise ValueError('send "url" (one server) or "urls" (a fleet)')
        return self

    def all_urls(self) -> list[str]:
        return ([self.url] if self.url else []) + list(self.urls or [])


class SwitchRequest(Body):
    """POST /model/switch/{name} (the body is optional): the models to fall back to, in order."""

    fallbacks: Annotated[list[ModelName], Field(max_length=16)] = Field(default_factory=list)


class ModelNameChange(Body):
    """POST /models/{name}/rename and /models/{name}/copy: the new name (not taken yet)."""

    to: Annotated[str, Field(min_length=1, max_length=MODEL_NAME_MAX, pattern=NEW_MODEL_NAME_PATTERN,
                             description="The new model's name: letters, digits and . _ + - (no paths, no "
                             "':latest'); a GGUF file becomes NEW.gguf, a folder NEW.")]
