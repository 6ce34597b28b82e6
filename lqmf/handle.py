"""A loaded model's handle (what `lqmf.load()` and `Library.load()` return), and the argument forms the library
takes: a prompt or a conversation, sampling keyword arguments, paths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from lqmf.base.errors import InvalidRequest
from lqmf.base.progress import Progress

if TYPE_CHECKING:  # typing only: the handle imports its parts when first asked
    from lqmf.base.generation import GenerationParams, GenerationResult
    from lqmf.serving import Serving
    from server.runtime.embeddings import Embeddings
    from server.runtime.jobs import Job

Messages = Union[str, Sequence[dict]]  # a user's prompt, or a whole conversation of {"role", "content"}
PathLike = Union[str, Path]


def sampling_params(sampling: dict[str, Any]) -> "GenerationParams":
    """Sampling keyword arguments (temperature=0.2, max_tokens=64, ...) as GenerationParams; unknown names refused."""
    from lqmf.base.generation import GenerationParams

    unknown = sorted(set(sampling) - set(GenerationParams.__dataclass_fields__))
    if unknown:
        raise InvalidRequest(f"unknown sampling setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
                             f"use any of {', '.join(GenerationParams.__dataclass_fields__)}")
    return GenerationParams(**sampling)


def conversation(messages: Messages) -> list[dict]:
    """A plain prompt is one user turn (rendered with the model's own chat template)."""
    return [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)


def optional_path(value: Optional[PathLike]) -> Optional[Path]:
    """A user's path (with ~ expanded), or None when none was given."""
    return Path(value).expanduser() if value else None


class ModelHandle:
    """A loaded model: chat with it, stream from it, embed with it; close() (or leaving `with`) unloads it."""

    def __init__(self, library: "Serving", name: str, *, owns_library: bool = False) -> None:
        self.library = library
        self.name = name
        self._owns_library = owns_library

    def __repr__(self) -> str:
        return f"ModelHandle({self.name!r})"

    def __enter__(self) -> "ModelHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def info(self) -> dict[str, Any]:
        """What the manager knows of it now: format, level, memory, load time, context, queue."""
        return self.library.manager.get(self.name).info()

    def chat(self, messages: Messages, **sampling: Any) -> "GenerationResult":
        """One whole reply: .text, .finish_reason, .prompt_tokens, .completion_tokens and .timings (seconds)."""
        return self.library.manager.generate(self.name, conversation(messages), sampling_params(sampling))

    def stream(self, messages: Messages, **sampling: Any) -> "Job":
        """A reply as it is made: iterate its Chunks (.text deltas; the last has finish_reason and timings);
        cancel() stops it within one token."""
        return self.library.stream_job(self.name, conversation(messages), sampling_params(sampling))

    def embed(self, texts: Union[str, Sequence[str]], *, normalize: bool = True,
              progress: Optional[Progress] = None) -> "Embeddings":
        """Vectors of the texts (float32, one row each, unit length unless normalize=False), with token counts."""
        items = [texts] if isinstance(texts, str) else list(texts)
        return self.library.embeddings(self.name, items, normalize=normalize, progress=progress)

    def close(self) -> None:
        """Unload the model (and close the library when this handle made it)."""
        self.library.manager.unload(self.name)
        if self._owns_library:
            self.library.close()
