"""all-MiniLM-L6-v2 through the factory: GGUF f16/q8_0/q4_k_m and bitsandbytes nf4/int8, each verified by its
vectors against the source's and given an embedding-fidelity card; GPTQ refused in the plan; the variants side
by side (small vs large embeddings).

The floors are the verify thresholds (agents/quantization/encoder.py), which leave about twice the loss measured
on this model as margin: q8_0 0.9997 and int8 0.9993 mean cosine, q4_k_m 0.9925, nf4 0.974 (60 sentences).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.real

# level -> (the verify threshold its vectors must pass, the least neighbour agreement a usable variant keeps)
LEVELS = {"f16": (0.99, 0.95), "q8_0": (0.99, 0.9), "int8": (0.99, 0.9), "q4_k_m": (0.85, 0.75), "nf4": (0.85, 0.7)}
SOURCE = "minilm-hf"


def variant(level: str) -> str:
    """Named apart from the default names, which other modules of the session make without a card."""
    return f"minilm-card-{level}"


@pytest.fixture(scope="module")
def made(library) -> dict:
    """Each level made from the HF folder with its fidelity card (the run's Quantized results)."""
    out = {}
    for level in LEVELS:
        planned = library.quantize(SOURCE, level=level, name=variant(level), fidelity=True)
        assert planned.plan.runnable, planned.plan.problems
        out[level] = planned.run()
    return out


@pytest.mark.parametrize("level", list(LEVELS))
def test_each_level_is_verified_by_its_vectors_and_has_an_embedding_card(made, level):
    threshold, neighbours = LEVELS[level]
    done = made[level]
    verified = done.manifest["details"]["verified"]
    assert verified["check"] == "embedding" and verified["threshold"] == threshold
    assert verified["min_cosine"] >= threshold
    card = done.fidelity.row(done.model).embedding
    assert card.texts >= 50 and card.dim == 384
    assert card.cosine_min >= threshold and card.neighbour_overlap >= neighbours, card
    assert done.fidelity.reference == SOURCE


def test_gptq_is_refused_with_the_reason(library):
    plan = library.quantize(SOURCE, method="gptq", bits=4).plan
    assert plan.problems == ["GPTQModel does not quantize BERT encoders (bert); use gguf or bnb"]


def test_the_variants_side_by_side(library, made):
    table = library.fidelity(SOURCE)
    rows = {r.model: r for r in table.rows}
    assert table.rows[0].model == SOURCE and {variant(level) for level in LEVELS} <= set(rows)
    cosine = {level: rows[variant(level)].embedding.cosine_mean for level in LEVELS}
    # More bits, closer vectors: what holds on any CPU's kernels.
    assert cosine["f16"] > cosine["q8_0"] > cosine["q4_k_m"] and cosine["int8"] > cosine["nf4"]
    assert rows[variant("q4_k_m")].size_bytes < rows[variant("q8_0")].size_bytes < rows[variant("f16")].size_bytes
    assert all(r.bits_per_weight for r in table.rows)
