"""The shell draws a budget plan and a budget result (issue 27): the budget, measured against predicted, the tensor
types and the size-against-KLD chart. A unit test of the drawing on a hand-built manifest: the budget run itself is
tested end to end with the search.
"""

from __future__ import annotations

import copy
import io
import json

from rich.console import Console

from agents import results as r
from agents.quantization.plan import QuantPlan
from cli.render import render

BUDGET_DETAILS = {
    "budget": {"kind": "size", "value": 100e6},
    "predicted": {"kld": 0.0351, "size_bytes": 99_400_000},
    "measured": {"kld": 0.0379, "ppl": 7.291, "ppl_ref": 7.087, "top1": 0.9034, "size_bytes": 99_812_352,
                 "text": "configparser.py + pprint.py, 16 windows of 512 tokens"},
    "tensor_types": {**{f"blk.{i}.ffn_up.weight": "iq4_nl" for i in range(4)},
                     **{f"blk.{i}.attn_q.weight": "q5_0" for i in range(2)},
                     "blk.0.ffn_down.weight": "q6_k", "token_embd.weight": "q8_0"},
    "tries": [{"mix": "first", "kld": 0.041}, {"mix": "second", "kld": 0.0379}],
    "frontier": [
        {"label": "q4_k_m", "size_bytes": 105_500_000, "kld": 0.0536, "kind": "level"},
        {"label": "q4_k_s", "size_bytes": 102_000_000, "kld": 0.0611, "kind": "level"},
        {"label": "q3_k_m", "size_bytes": 93_500_000, "kld": 0.1229, "kind": "level"},
        {"label": "q6_k", "size_bytes": 138_400_000, "kld": 0.0084, "kind": "level"},
        {"label": "fit-100mb", "size_bytes": 99_812_352, "kld": 0.0379, "kind": "budget"},
    ],
    "validation": {"spearman": 0.912, "median_abs_rel_error": 0.14, "mixes": 12},
}


def _plan(**changes) -> QuantPlan:
    fields = dict(
        source="smol-hf", source_path="/models/smol-hf", source_format="hf", method="budget", level="fit-100mb",
        bits=0.0, output_name="smol-hf-fit-100mb.gguf", output_path="/models/smol-hf-fit-100mb.gguf",
        parameter_count=134_515_008, steps=["measure each tensor group's KLD at each candidate type",
                                            "solve the knapsack under 100 MB", "write and measure the mix"],
        calibration=None, imatrix=False, fidelity=False, expected_size_bytes=99_400_000,
        expected_peak_ram_bytes=900_000_000, disk_needed_bytes=400_000_000, available_ram_bytes=20_000_000_000,
        free_disk_bytes=50_000_000_000, estimated_seconds=310.0, estimate_basis="about 40 measurements of 7 s",
        recommendation="", notes=["predicted: 99.4 MB at KLD 0.035 (q4_k_m: 105.5 MB at 0.054)"])
    fields.update(changes)
    return QuantPlan(**fields)


def _drawn(result) -> str:
    out = io.StringIO()
    render(result, Console(file=out, width=200, color_system=None, highlight=False))
    return out.getvalue()


def _quantized(details: dict) -> r.Quantized:
    manifest = {"format": "gguf", "level": "fit-100mb", "size_bytes": 99_812_352, "bits_per_weight": 5.9,
                "weights": None, "details": details}
    return r.Quantized(run_id=7, output="smol-hf-fit-100mb.gguf", model="smol-hf-fit-100mb", plan=_plan(),
                       manifest=manifest, wall_time_s=300.0, peak_rss_bytes=800_000_000)


def test_a_budget_result_shows_measured_against_predicted_the_types_and_the_chart():
    text = _drawn(_quantized({"budget": BUDGET_DETAILS}))
    assert ("budget: file at most 100.0 MB (95.4 MiB) → measured 99.8 MB, KLD 0.037900 (predicted 0.035100), "
            "PPL 7.291 vs 7.087, same top token 90.34%") in text
    assert "measured on: configparser.py + pprint.py, 16 windows of 512 tokens" in text
    assert "types: 4 IQ4_NL, 2 Q5_0, 1 Q6_K, 1 Q8_0" in text
    assert "predictions checked on 12 standard levels: Spearman 0.912, median error 14% of the measured KLD" in text
    # The frontier chart: its title, the budget's mark and the levels', and its table of the points by size.
    assert "KLD vs reference (log scale)" in text and "file size (MB)" in text
    assert "* budget result" in text and "o standard level" in text
    table = [line.split() for line in text.splitlines() if line.startswith(("q3_k_m ", "fit-100mb ", "q4_k_s "))]
    assert table == [["q3_k_m", "93.5", "0.122900", "level"], ["fit-100mb", "99.8", "0.037900", "budget"],
                     ["q4_k_s", "102.0", "0.061100", "level"]]
    # The usual lines stay, the budget's come after them and before the next steps.
    assert text.index("quantized smol-hf") < text.index("budget: ") < text.index("next: load model")


def test_a_result_without_a_budget_draws_no_budget_lines():
    text = _drawn(_quantized({}))
    assert "budget:" not in text and "types:" not in text and "KLD vs reference" not in text


def test_a_frontier_entry_that_is_no_point_is_named_not_a_crash():
    details = copy.deepcopy(BUDGET_DETAILS)
    details["frontier"].append({"label": "broken", "size_bytes": 0, "kld": 0.1, "kind": "level"})
    text = _drawn(_quantized({"budget": details}))
    assert "frontier entry 6 left out" in text and "'broken'" in text
    assert "fit-100mb" in text  # the other points are still drawn


def test_json_keeps_the_manifest_as_it_is():
    result = _quantized({"budget": BUDGET_DETAILS})
    assert json.loads(json.dumps(result.to_dict()))["manifest"]["details"]["budget"] == BUDGET_DETAILS


def test_a_budget_plan_shows_its_budget_and_its_notes():
    for level, words in (("fit-100mb", "budget: file at most 100.0 MB (95.4 MiB)"),
                         ("ram-4000mb", "budget: RAM (file and context) at most 4,000.0 MB"),
                         ("kld-0.02", "budget: KLD at most 0.02")):
        text = _drawn(r.QuantizePlan(plan=_plan(level=level)))
        assert "method budget, level " + level in text and words in text
        assert "note: predicted: 99.4 MB at KLD 0.035 (q4_k_m: 105.5 MB at 0.054)" in text
    refused = _drawn(r.QuantizePlan(plan=_plan(problems=["100 MB cannot be met: the smallest mix is 88.2 MB"])))
    assert "refused: 100 MB cannot be met: the smallest mix is 88.2 MB" in refused
    assert "budget: file at most 100.0 MB" in refused
    # Another method's plan says nothing of a budget.
    assert "budget:" not in _drawn(r.QuantizePlan(plan=_plan(method="gguf", level="q4_k_m")))
