"""Quantization fidelity from full logits: the statistics llama.cpp's `perplexity --kl-divergence` prints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from lqmf.base.units import nonfinite_text

# How every face writes these figures (the shell's tables and the HTML report call the same functions),
# so one number reads the same wherever it appears. KLD is fixed-point with six decimals, as llama.cpp's
# `perplexity --kl-divergence` prints it: one notation down a column, so magnitudes line up.


def format_kld(value: Optional[float]) -> str:
    return "-" if value is None else nonfinite_text(value) or f"{value:.6f}"


def format_share(value: Optional[float]) -> str:
    """A 0..1 share (top-1 agreement) as a percentage."""
    return "-" if value is None else nonfinite_text(value) or f"{100 * value:.2f}%"


def format_dp(value: Optional[float]) -> str:
    """Δp (a change of probability, -1..1) as percentage points."""
    return "-" if value is None else nonfinite_text(value) or f"{100 * value:.3f}%"


def format_ppl(value: Optional[float]) -> str:
    return "-" if value is None else nonfinite_text(value) or f"{value:,.3f}"


def describe_scoring(source: str, windows: int, chunk: int, tokens: int) -> str:
    """Which text a perplexity was measured on and how, in words a reader can compare across places."""
    return (f"{source}: the first {windows} windows of {chunk} tokens, each scored from its middle on "
            f"(llama.cpp's layout), {tokens:,} tokens scored")


@dataclass(frozen=True)
class FidelityStats:
    """A quantized variant against its reference over the same tokens."""

    tokens: int
    ppl_ref: float
    ppl_test: float
    ln_ppl_ratio: float  # mean ln(PPL(test) / PPL(ref))
    kld_mean: float
    kld_median: float
    kld_p99: float
    kld_max: float
    top1_agreement: float  # share of positions where both put the same token first ("same top p")
    dp_mean: float  # Δp = p_test(next token) - p_ref(next token)
    dp_rms: float
    dp_percentiles: dict[str, float]
    # Which text, windows and token count the perplexities come from (set by whoever chose the text).
    ppl_text: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_softmax(logits):
    import numpy as np

    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass
class PositionStats:
    """Per-position figures of one stretch of tokens; small enough to keep for a whole text."""

    kld: Any
    nll_ref: Any
    nll_test: Any
    dp: Any
    same_top1: Any

    @staticmethod
    def join(parts: "list[PositionStats]") -> "PositionStats":
        import numpy as np

        return PositionStats(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                               ("kld", "nll_ref", "nll_test", "dp", "same_top1")))


def position_stats(ref_logits, test_logits, next_tokens) -> PositionStats:
    """KL(ref || test), both NLLs, Δp and top-1 agreement at positions i predicting next_tokens[i]."""
    import numpy as np

    ref = np.asarray(ref_logits, dtype=np.float64)
    test = np.asarray(test_logits, dtype=np.float64)
    if ref.shape != test.shape:
        raise ValueError(f"logits {ref.shape} and {test.shape} do not pair")
    return stats_against(_log_softmax(ref), test, next_tokens)


def reference_log_probs(ref_logits):
    """The reference's log-probabilities, computed once where many variants are scored against one reference."""
    import numpy as np

    return _log_softmax(np.asarray(ref_logits, dtype=np.float64)).astype(np.float32)


def stats_against(log_ref, test_logits, next_tokens) -> PositionStats:
    """position_stats from the reference's log-probabilities (reference_log_probs) and a variant's logits."""
    import numpy as np

    log_ref = np.asarray(log_ref, dtype=np.float64)
    log_test = _log_softmax(np.asarray(test_logits, dtype=np.float64))
    targets = np.asarray(next_tokens, dtype=np.int64)
    if log_ref.shape != log_test.shape or log_ref.ndim != 2 or len(targets) != log_ref.shape[0] or not len(targets):
        raise ValueError(f"logits {log_ref.shape} and {log_test.shape} do not pair with {len(targets)} next tokens")
    p_ref = np.exp(log_ref)
    kld = np.maximum((p_ref * (log_ref - log_test)).sum(axis=-1), 0.0)
    rows = np.arange(len(targets))
    nll_ref, nll_test = -log_ref[rows, targets], -log_test[rows, targets]
    return PositionStats(kld=kld, nll_ref=nll_ref, nll_test=nll_test, dp=np.exp(-nll_test) - np.exp(-nll_ref),
                         same_top1=log_ref.argmax(axis=-1) == log_test.argmax(axis=-1))


def summarize(stats: PositionStats) -> FidelityStats:
    """The report card over every scored position."""
    import numpy as np

    kld, dp = stats.kld, stats.dp
    percentiles = {f"p{q:g}": float(np.percentile(dp, q)) for q in (1, 5, 10, 50, 90, 95, 99)}
    return FidelityStats(
        tokens=int(len(kld)),
        ppl_ref=float(math.exp(stats.nll_ref.mean())),
        ppl_test=float(math.exp(stats.nll_test.mean())),
        ln_ppl_ratio=float(stats.nll_test.mean() - stats.nll_ref.mean()),
        kld_mean=float(kld.mean()),
        kld_median=float(np.median(kld)),
        kld_p99=float(np.percentile(kld, 99)),
        kld_max=float(kld.max()),
        top1_agreement=float(stats.same_top1.mean()),
        dp_mean=float(dp.mean()),
        dp_rms=float(math.sqrt((dp**2).mean())),
        dp_percentiles=percentiles,
    )


def scoring_chunks(ids: list[int], chunk: int, bos: Optional[int]) -> list[tuple[list[int], int]]:
    """llama.cpp's perplexity layout: windows of `chunk` tokens, each starting with BOS where the model has one,
    scored from the middle on (every scored token has at least chunk/2 tokens of context).

    Returns (window ids, first scored position) pairs; position j predicts window[j + 1].
    """
    if chunk < 4:
        raise ValueError("chunk must be at least 4 tokens")
    body = chunk - 1 if bos is not None else chunk
    windows = []
    for start in range(0, len(ids) - body + 1, body):
        window = ([bos] if bos is not None else []) + ids[start:start + body]
        windows.append((window, chunk // 2))
    return windows
