"""SmolLM2 through the whole factory: every method and the usual levels make a verified variant, or the plan
refuses them with the reason before any work (GPTQ: tests/real/test_real_plans.py)."""

from __future__ import annotations

import pytest

from tests.real.conftest import ensure_variant

pytestmark = pytest.mark.real

# q8_0 and q4_k_m are made by test_real_fidelity.py's fixture the same way (ensure_variant runs the factory).
GGUF_LEVELS = ("q6_k", "q5_k_m", "q4_0", "q3_k_m", "q2_k", "iq4_nl")


@pytest.mark.parametrize(("method", "level", "source"),
                         [("gguf", level, "smol-f16") for level in GGUF_LEVELS]
                         + [("bnb", "nf4", "smol-hf"), ("bnb", "int8", "smol-hf")])
def test_each_level_is_a_verified_variant_of_the_planned_size(library, method, level, source):
    if source == "smol-f16":
        ensure_variant(library, "smol-hf", "gguf", "f16")
    planned = library.quantize(source, method, level)
    assert planned.runnable, planned.plan.problems
    done = planned.run()
    verified = done.manifest["details"]["verified"]
    assert verified["token"] >= 0 and verified["prompt_tokens"] > 0, verified
    assert abs(planned.plan.expected_size_bytes / done.manifest["size_bytes"] - 1) < 0.05, (
        planned.plan.expected_size_bytes, done.manifest["size_bytes"])
    assert done.manifest["bits_per_weight"] > 0


def test_int8_still_knows_the_capital(library):
    name = ensure_variant(library, "smol-hf", "bnb", "int8")
    reply = library.load(name).chat([{"role": "user", "content": "What is the capital of France?"}],
                                    temperature=0, max_tokens=16)
    assert "Paris" in reply.text, reply.text
