"""Embeddings of many texts through the manager: batched on the model's worker, with progress."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Union

from lqmf.base.errors import InvalidRequest
from lqmf.base.progress import Progress, report

if TYPE_CHECKING:  # numpy stays out of the shell's start-up
    import numpy as np

Inputs = Union[Sequence[str], Sequence[Sequence[int]]]


@dataclass
class Embeddings:
    """Vectors of a list of texts, one row per text, in the order given."""

    model: str  # the model's name
    vectors: "np.ndarray"  # float32 [n_texts, dim]
    token_counts: list[int]
    seconds: float  # wall time of the embedding work
    pooling: str  # "mean" (or what the GGUF metadata said)
    normalized: bool

    @property
    def dim(self) -> int:
        """Length of each vector."""
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    @property
    def total_tokens(self) -> int:
        """Tokens embedded across every text."""
        return sum(self.token_counts)


def embed_texts(
    manager, model: str, texts: Inputs, *, normalize: bool = True, truncate: bool = False,
    batch_size: int = 32, progress: Optional[Progress] = None, what: str = "",
    keep_alive_s: Optional[float] = None,
) -> Embeddings:
    """Embed texts with a model through the manager (its worker, memory budget and eviction apply).

    `texts` may also be lists of token ids (OpenAI's pre-tokenized input). Each batch is one job on
    the model's worker, so generations queued meanwhile are not held back by a long embedding run.
    `progress` hears (`what` or "embedding with MODEL", texts done, texts in all) after each batch.
    """
    import numpy as np

    items = list(texts)
    if not items:
        raise InvalidRequest("there is nothing to embed", "send at least one text")
    if batch_size < 1:
        raise InvalidRequest(f"batch_size must be at least 1, not {batch_size}", "use a positive batch size")
    total = len(items)
    rows: list["np.ndarray"] = []
    counts: list[int] = []
    pooling = "mean"
    start = time.perf_counter()
    what = what or f"embedding with {model}"
    report(progress, what, 0, total)
    for first in range(0, total, batch_size):
        batch = items[first:first + batch_size]

        def work(backend, batch=batch, first=first):
            return backend.embed_batch(batch, normalize=normalize, truncate=truncate, offset=first)

        result = manager.call(model, work, keep_alive_s)
        rows.append(result.vectors)
        counts.extend(result.token_counts)
        pooling = result.pooling
        report(progress, what, min(first + len(batch), total), total)
    vectors = np.concatenate(rows, axis=0).astype(np.float32, copy=False)
    return Embeddings(model=model, vectors=vectors, token_counts=counts, seconds=time.perf_counter() - start,
                      pooling=pooling, normalized=normalize)
