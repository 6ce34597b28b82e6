"""The error hierarchy raised by the core and translated once at each boundary (HTTP, shell)."""

from __future__ import annotations


class LQMFError(Exception):
    """Base of every error the core raises on purpose; `hint` tells the user what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ModelNotFound(LQMFError):
    """No model by that name or path."""


class ModelLoadError(LQMFError):
    """A model's files exist but could not be loaded."""


class InsufficientMemory(LQMFError):
    """Not enough RAM for what was asked."""


class InsufficientDisk(LQMFError):
    """Not enough free disk space for an output."""


class OutputExists(LQMFError):
    """The output path is already taken."""


class QuantizationError(LQMFError):
    """A quantization or conversion run failed."""


class UnsupportedArchitecture(QuantizationError):
    """The converter or quantizer has no support for this model architecture."""


class TokenizerNotSupported(QuantizationError):
    """The GGUF converter refused the model's tokenizer."""


class ToolUnavailable(LQMFError):
    """An external tool (the llama.cpp converter, a library) is missing."""


class QueueFull(LQMFError):
    """A model's request queue is full; retry later."""


class ModelBusy(LQMFError):
    """The model is loading or unloading; retry shortly."""


class ContextOverflow(LQMFError):
    """The prompt does not fit the model's context window."""


class DownloadError(LQMFError):
    """A model could not be fetched from the Hub (bad id, missing repo, network)."""


class AccessDenied(DownloadError):
    """The Hub refused access (401 no/invalid token, 403 gated or forbidden): the hint says how to get in."""


class PlanRefused(LQMFError):
    """A quantization plan cannot work on this machine (memory, disk, format): refused before work starts."""


class InvalidRequest(LQMFError):
    """A request's values are well-formed but cannot be used as given (the hint says what to send)."""


class ShuttingDown(LQMFError):
    """The server is stopping: work in flight is ended and no new work starts."""


class FeatureUnsupported(LQMFError):
    """The model or its format cannot do what the request asks (tools, a JSON schema, logprobs, a context size)."""


class EngineUnavailable(LQMFError):
    """A model's engine process is down (it died or is restarting); the message says why."""


class RemoteError(LQMFError):
    """A remote endpoint failed a request; the message names the endpoint.

    `status` is what LQMF answers in its place: 502 (the remote refused or answered nonsense), 503
    (unreachable), 504 (no answer in time) or 429 (rate-limited, with the remote's Retry-After).
    """

    def __init__(self, message: str, hint: str = "", status: int = 502, retry_after: str | None = None,
                 member_fault: bool = False) -> None:
        super().__init__(message, hint)
        self.status = status
        self.retry_after = retry_after
        # The member failed before answering anything: a fleet may send the request to another member.
        self.member_fault = member_fault
