"""Fidelity on a real model: SmolLM2's GGUF levels made by the factory, scored against its f16 GGUF and its HF folder.

Properties that hold for any CPU's kernels: more bits, less divergence; an f16 conversion is near-identical to
the folder it came from; every figure is finite and inside its range.
"""

from __future__ import annotations

import math

import pytest

from tests.real.conftest import ensure_variant

pytestmark = pytest.mark.real

LEVELS = ("f16", "q8_0", "q4_k_m")


@pytest.fixture(scope="module")
def variants(library) -> dict[str, str]:
    """smol-hf quantized to each level by the factory (kept from an earlier module of the session when there)."""
    return {level: ensure_variant(library, "smol-hf", "gguf", level) for level in LEVELS}


def fidelity(library, model: str, reference: str, chunks: int):
    result = library.fidelity(model, reference, chunks=chunks)
    stats = result.row(model).fidelity
    assert stats is not None and stats.tokens > 0, result.notes
    return stats


def test_levels_order_by_divergence_against_the_f16_gguf(library, variants):
    stats = {level: fidelity(library, variants[level], variants["f16"], chunks=4) for level in ("q8_0", "q4_k_m")}
    kld = {level: s.kld_mean for level, s in stats.items()}
    assert all(math.isfinite(v) and v > 0 for v in kld.values()), stats
    assert kld["q8_0"] < kld["q4_k_m"] / 4, kld  # llama-perplexity: 0.0037 vs 0.0536 on this model
    assert stats["q8_0"].top1_agreement > stats["q4_k_m"].top1_agreement > 0.5, stats


def test_f16_gguf_matches_the_folder_it_was_converted_from(library, variants):
    stats = fidelity(library, variants["f16"], "smol-hf", chunks=2)
    assert stats.kld_mean < 0.01, stats
    assert stats.top1_agreement > 0.9, stats
