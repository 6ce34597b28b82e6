"""Fidelity statistics: exact on constructed logits, and ordered as expected on the real demo variants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.measure.fidelity import FidelityStats, position_stats, summarize
from lqmf.base.settings import Settings
from server.runtime.manager import ModelManager


def compare_logits(ref_logits, test_logits, next_tokens) -> FidelityStats:
    """The report card of one stretch of tokens, as the fidelity experiment makes it (it joins many stretches)."""
    return summarize(position_stats(ref_logits, test_logits, next_tokens))


def test_identical_logits_are_perfectly_faithful():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 32))
    targets = rng.integers(0, 32, size=50)
    stats = compare_logits(logits, logits, targets)
    assert stats.kld_mean == pytest.approx(0, abs=1e-12) and stats.top1_agreement == 1.0
    assert stats.dp_mean == pytest.approx(0, abs=1e-12) and stats.ppl_ref == pytest.approx(stats.ppl_test)


def test_statistics_on_a_case_worked_by_hand():
    # Two positions, vocabulary of two. Reference: p = (0.5, 0.5) both times. Test: p = (0.8, 0.2), (0.5, 0.5).
    ref = np.log(np.array([[0.5, 0.5], [0.5, 0.5]]))
    test = np.log(np.array([[0.8, 0.2], [0.5, 0.5]]))
    stats = compare_logits(ref, test, [0, 1])
    kld_first = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    assert stats.kld_mean == pytest.approx(kld_first / 2) and stats.kld_max == pytest.approx(kld_first)
    assert stats.ppl_ref == pytest.approx(2.0)
    assert stats.ppl_test == pytest.approx(math.exp(-(math.log(0.8) + math.log(0.5)) / 2))
    assert stats.dp_mean == pytest.approx((0.8 - 0.5) / 2) and stats.dp_rms == pytest.approx(math.sqrt(0.09 / 2))
    # argmax of (0.5, 0.5) is token 0 for both at the second position; at the first, both pick token 0 too.
    assert stats.top1_agreement == 1.0


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="do not pair"):
        compare_logits(np.zeros((3, 4)), np.zeros((3, 5)), [0, 1, 2])


def test_demo_variants_against_the_hf_source(demo_dir, tmp_path):
    """8-bit stays closer to the f32 source than 4-bit; both really differ from it."""
    from lqmf.base.corpus import load_corpus

    manager = ModelManager(Settings(home=tmp_path, models_dir_override=demo_dir, keep_alive_s=-1))
    try:
        ids = manager.call("demo-hf", lambda b: b.tokenize(load_corpus().heldout[:4000]))[:256]
        ref = manager.call("demo-hf", lambda b: b.logits(ids))
        stats = {}
        for name in ("demo-hf", "demo-bnb-int8", "demo-bnb-nf4"):
            test = manager.call(name, lambda b: b.logits(ids))
            stats[name] = compare_logits(ref[:-1], test[:-1], ids[1:])
        assert stats["demo-hf"].kld_mean == pytest.approx(0, abs=1e-9) and stats["demo-hf"].top1_agreement == 1
        assert 0 < stats["demo-bnb-int8"].kld_mean < stats["demo-bnb-nf4"].kld_mean
        assert stats["demo-bnb-int8"].top1_agreement > stats["demo-bnb-nf4"].top1_agreement > 0.5
        assert stats["demo-bnb-nf4"].ppl_ref == pytest.approx(stats["demo-hf"].ppl_test)
    finally:
        manager.close()
