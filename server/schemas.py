"""Request bodies (pydantic at the edge) and their translation into the core's GenerationParams."""

from __future__ import annotations

import re
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.backends.base import GenerationParams

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,199}$")


def check_model_name(name: str) -> str:
    """A discovered model's name (an Ollama ':latest' tag is accepted); never a path."""
    from server.errors import APIError

    bare = name[:-7] if name.endswith(":latest") else name
    if not MODEL_NAME.match(bare) or ".." in bare:
        raise APIError(422, f"invalid model name {name!r}",
                       "model names are letters, digits and . _ + - (no paths); see GET /models/available")
    return bare


def stops(value: Union[str, list[str], None]) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


SAMPLING_NAMES = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "repeat_penalty")


def build_params(body: Any, defaults: dict[str, Any]) -> GenerationParams:
    """GenerationParams from the defaults, overridden by every sampling field the body sets."""
    values = dict(defaults)
    for name in SAMPLING_NAMES:
        value = getattr(body, name, None)
        if value is not None:
            values[name] = value
    values["stop"] = stops(body.stop)
    return GenerationParams(**values)


class ChatMessage(BaseModel):
    role: str = Field(pattern="^(system|user|assistant|tool)$")
    content: str


class SamplerFields(BaseModel):
    """The sampling knobs every API shares (Ollama's go in `options`)."""

    model_config = ConfigDict(extra="ignore")

    temperature: Optional[float] = Field(default=None, ge=0, le=5)
    top_p: Optional[float] = Field(default=None, gt=0, le=1)
    top_k: Optional[int] = Field(default=None, ge=0)
    min_p: Optional[float] = Field(default=None, ge=0, lt=1)
    seed: Optional[int] = None
    stop: Union[str, list[str], None] = None
    repeat_penalty: Optional[float] = Field(default=None, gt=0, le=5)


class SamplingFields(SamplerFields):
    """Sampling fields of the native and OpenAI bodies."""

    max_tokens: Optional[int] = Field(default=None, ge=1, le=32768)
    ignore_eos: bool = Field(default=False, description="Generate past end-of-sequence (fixed-length benchmarks).")

    def params(self, **defaults: Any) -> GenerationParams:
        return build_params(self, {**defaults, "ignore_eos": self.ignore_eos})


class NativeChatRequest(SamplingFields):
    """POST /models/{name}/chat: one message (or a whole conversation)."""

    message: Optional[str] = Field(default=None, description="The user's message.")
    messages: Optional[list[ChatMessage]] = Field(default=None, description="A whole conversation instead.")
    system: Optional[str] = Field(default=None, description="A system prompt placed first.")
    stream: bool = False
    keep_alive: Union[float, str, None] = None

    def conversation(self) -> list[dict[str, str]]:
        from server.errors import APIError

        if self.messages:
            convo = [m.model_dump() for m in self.messages]
        elif self.message is not None and self.message.strip():
            convo = [{"role": "user", "content": self.message}]
        else:
            raise APIError(422, "send a non-empty 'message' or a 'messages' list", 'e.g. {"message": "hello"}')
        if self.system:
            convo.insert(0, {"role": "system", "content": self.system})
        return convo


class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIChatRequest(SamplingFields):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    max_completion_tokens: Optional[int] = Field(default=None, ge=1, le=32768)
    n: int = Field(default=1, ge=1, le=1, description="Only one choice per request is supported.")
    frequency_penalty: float = Field(default=0.0, ge=0, le=0, description="Not supported: use repeat_penalty.")
    presence_penalty: float = Field(default=0.0, ge=0, le=0, description="Not supported: use repeat_penalty.")


class OpenAICompletionRequest(SamplingFields):
    model: str
    prompt: Union[str, list[str]]
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(default=1, ge=1, le=1)
    echo: bool = False

    def text(self) -> str:
        from server.errors import APIError

        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise APIError(422, f"{len(self.prompt)} prompts in one request; send one", "use /batch for many")
        return self.prompt[0]


class OpenAIEmbeddingRequest(BaseModel):
    model: str
    input: Union[str, list[str]] = Field(min_length=1)
    encoding_format: str = Field(default="float", pattern="^(float|base64)$")


class OllamaOptions(SamplerFields):
    num_predict: Optional[int] = None
    num_ctx: Optional[int] = None

    def params(self) -> GenerationParams:
        # Ollama's defaults: temperature 0.8, top_k 40, top_p 0.9, num_predict -1 (until the end).
        values: dict[str, Any] = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0,
                                  "max_tokens": 32768}
        if self.num_predict is not None and self.num_predict > 0:
            values["max_tokens"] = self.num_predict
        return build_params(self, values)


class OllamaGenerateRequest(BaseModel):
    model: str
    prompt: Optional[str] = None
    system: Optional[str] = None
    raw: bool = False
    stream: bool = True
    options: Optional[OllamaOptions] = None
    keep_alive: Union[float, str, None] = None


class OllamaChatRequest(BaseModel):
    model: str
    messages: Optional[list[ChatMessage]] = None
    stream: bool = True
    options: Optional[OllamaOptions] = None
    keep_alive: Union[float, str, None] = None


class OllamaShowRequest(BaseModel):
    model: Optional[str] = None
    name: Optional[str] = None


class TokenizeRequest(BaseModel):
    model: str
    text: Optional[str] = None
    content: Optional[str] = Field(default=None, description="Alias of text (llama.cpp's server name).")
    add_special: bool = True


class DetokenizeRequest(BaseModel):
    model: str
    tokens: list[int]


class CompareRequest(SamplingFields):
    models: list[str] = Field(min_length=2, max_length=8)
    prompt: Optional[str] = None
    messages: Optional[list[ChatMessage]] = None

    @field_validator("models")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("list each model once")
        return value


class BatchItem(SamplingFields):
    model: str
    prompt: Optional[str] = None
    messages: Optional[list[ChatMessage]] = None


class BatchRequest(BaseModel):
    items: list[BatchItem] = Field(min_length=1, max_length=256)


def parse_keep_alive(value: Union[float, str, None]) -> Optional[float]:
    """Ollama's keep_alive: seconds as a number, a duration like '5m' / '1h30m' / '250ms', -1 forever, 0 now."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else -1.0
    text = value.strip().lower()
    try:
        number = float(text)
        return number if number >= 0 else -1.0
    except ValueError:
        pass
    parts = re.findall(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"keep_alive {value!r} is not a duration: use seconds, '5m', '1h', '-1' or 0")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = sum(float(n) * unit[u] for n, u in parts)
    return total if total >= 0 else -1.0
