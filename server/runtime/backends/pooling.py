"""Token states -> one vector per text, as sentence-transformers' Pooling module computes it.

The modes are the ones a Pooling config names (lqmf.base.encoders.POOLINGS). Right padding is assumed (every
row's real tokens first, then padding masked out), as the transformers backend batches.
"""

from __future__ import annotations

from typing import Any, Callable

Tensor = Any  # torch.Tensor; torch is imported only by the caller that has it loaded


def _mean(hidden: Tensor, mask: Tensor) -> Tensor:
    return hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(hidden.dtype)


def _mean_sqrt_len(hidden: Tensor, mask: Tensor) -> Tensor:
    return hidden.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(hidden.dtype).sqrt()


def _weighted_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    # SGPT's position weighting: token i (from 1) weighs i, so later tokens, which saw more, count more.
    import torch

    weights = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype).unsqueeze(0) * mask.to(hidden.dtype)
    return (hidden * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True)


def _cls(hidden: Tensor, mask: Tensor) -> Tensor:
    return hidden[:, 0]


def _last(hidden: Tensor, mask: Tensor) -> Tensor:
    import torch

    last = mask.sum(dim=1).long() - 1
    return hidden[torch.arange(hidden.shape[0]), last]


def _max(hidden: Tensor, mask: Tensor) -> Tensor:
    return hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values


POOL: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mean": _mean, "mean_sqrt_len": _mean_sqrt_len, "weightedmean": _weighted_mean,
    "cls": _cls, "lasttoken": _last, "max": _max,
}


def pool(hidden: Tensor, mask: Tensor, mode: str) -> Tensor:
    """[rows, tokens, dim] states and a [rows, tokens] mask -> [rows, dim] pooled vectors.

    Padded positions are zeroed first (masked_fill, not a product): whatever they hold, even NaN, stays out.
    """
    hidden = hidden.masked_fill(mask.unsqueeze(-1) == 0, 0.0)
    return POOL.get(mode, _mean)(hidden, mask)
