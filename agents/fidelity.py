"""Quantization fidelity from full logits: the statistics llama.cpp's `perplexity --kl-divergence` prints."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _log_softmax(logits):
    import numpy as np

    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compare_logits(ref_logits, test_logits, next_tokens) -> FidelityStats:
    """Statistics over positions i: ref/test logits predicting next_tokens[i] (arrays [n, vocab] and [n])."""
    import numpy as np

    ref = np.asarray(ref_logits, dtype=np.float64)
    test = np.asarray(test_logits, dtype=np.float64)
    targets = np.asarray(next_tokens, dtype=np.int64)
    if ref.shape != test.shape or ref.ndim != 2 or len(targets) != ref.shape[0] or not len(targets):
        raise ValueError(f"logits {ref.shape} and {test.shape} do not pair with {len(targets)} next tokens")
    log_ref, log_test = _log_softmax(ref), _log_softmax(test)
    p_ref = np.exp(log_ref)
    kld = np.maximum((p_ref * (log_ref - log_test)).sum(axis=-1), 0.0)  # KL(ref || test) per position
    rows = np.arange(len(targets))
    nll_ref, nll_test = -log_ref[rows, targets], -log_test[rows, targets]
    dp = np.exp(-nll_test) - np.exp(-nll_ref)
    percentiles = {f"p{q:g}": float(np.percentile(dp, q)) for q in (1, 5, 10, 50, 90, 95, 99)}
    return FidelityStats(
        tokens=int(len(targets)),
        ppl_ref=float(math.exp(nll_ref.mean())),
        ppl_test=float(math.exp(nll_test.mean())),
        ln_ppl_ratio=float(nll_test.mean() - nll_ref.mean()),
        kld_mean=float(kld.mean()),
        kld_median=float(np.median(kld)),
        kld_p99=float(np.percentile(kld, 99)),
        kld_max=float(kld.max()),
        top1_agreement=float((ref.argmax(axis=-1) == test.argmax(axis=-1)).mean()),
        dp_mean=float(dp.mean()),
        dp_rms=float(math.sqrt((dp**2).mean())),
        dp_percentiles=percentiles,
    )
