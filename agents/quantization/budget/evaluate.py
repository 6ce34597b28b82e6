"""KL divergence of a GGUF against its f16 reference on fixed windows of text, fast enough to run dozens of times.

The same measure as `fidelity` (agents.measure.fidelity: llama.cpp's window layout, KL(ref || test) over the
full vocabulary at every scored position), with the reference's logits computed once and kept, so each
candidate costs one pass of its own. llama.cpp runs in this process, as the factory's quantizer does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from agents.measure.fidelity import (
    FidelityStats,
    PositionStats,
    describe_scoring,
    reference_log_probs,
    scoring_chunks,
    stats_against,
    summarize,
)
from lqmf.base.errors import LQMFError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringText:
    """Which text, cut how: what every KLD of a search is measured on (recorded with each figure)."""

    text: str
    source: str
    windows: int
    chunk: int = 512


def _open(path: Path, chunk: int, threads: Optional[int]):
    from llama_cpp import Llama

    from lqmf.base.llama_log import route_llama_log

    route_llama_log()
    return Llama(model_path=str(path), n_ctx=chunk, n_batch=chunk, logits_all=True, verbose=False,
                 n_threads=threads or os.cpu_count() or 1)


class KldMeter:
    """The reference's logits on a text's windows, kept; `measure(gguf)` scores a variant against them."""

    def __init__(self, reference: Path, scoring: ScoringText, *, threads: Optional[int] = None) -> None:
        import numpy as np

        self.reference = Path(reference)
        self.threads = threads
        ref = _open(self.reference, scoring.chunk, threads)
        try:
            ids = ref.tokenize(scoring.text.encode("utf-8"), add_bos=False, special=False)
            bos = ref.token_bos() if ref.token_bos() >= 0 and _adds_bos(ref) else None
            self.windows = scoring_chunks(ids, scoring.chunk, bos)[:scoring.windows]
            if not self.windows:
                raise LQMFError(f"{scoring.source} is {len(ids)} tokens, shorter than one window of {scoring.chunk}",
                                "give a longer text")
            self.vocab = ref.n_vocab()
            self.ref_logits = [reference_log_probs(self._logits(ref, window, first)) for window, first in self.windows]
        finally:
            ref.close()
        self.scored = describe_scoring(scoring.source, len(self.windows), scoring.chunk,
                                       sum(len(w) - 1 - first for w, first in self.windows))
        self.tokens = int(sum(len(x) for x in self.ref_logits))
        self.scoring = scoring
        self._np = np

    @staticmethod
    def _logits(llm: Any, window: list[int], first: int):
        import numpy as np

        llm.reset()
        llm.eval(window)
        return np.array(llm.scores[first:len(window) - 1], dtype=np.float32, copy=True)

    def measure(self, model: Path) -> FidelityStats:
        """The variant's fidelity card against the kept reference (KLD, PPL of both, top-1 agreement)."""
        llm = _open(Path(model), self.scoring.chunk, self.threads)
        try:
            if llm.n_vocab() != self.vocab:
                raise LQMFError(f"{Path(model).name} has {llm.n_vocab()} tokens, the reference {self.vocab}",
                                "measure variants of the same model")
            parts: list[PositionStats] = []
            for (window, first), ref in zip(self.windows, self.ref_logits, strict=True):
                parts.append(stats_against(ref, self._logits(llm, window, first), window[first + 1:]))
        finally:
            llm.close()
        return dataclasses.replace(summarize(PositionStats.join(parts)), ppl_text=self.scored)


def _adds_bos(llm: Any) -> bool:
    """Whether the model's tokenizer puts BOS first (as LQMF's fidelity asks its backend: tokenize '' with specials)."""
    return bool(llm.tokenize(b"", add_bos=True, special=True))
