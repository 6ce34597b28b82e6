"""The size-against-KLD frontier: which points it keeps, and where the SVG and the text chart put them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agents.measure.frontier import (
    KINDS,
    NOTHING_TO_DRAW,
    FrontierError,
    FrontierPoint,
    frontier_svg,
    frontier_text,
    pareto,
    points_from_dicts,
)
from agents.measure.report_html import VariantRow, render_report, write_report
from agents.measure.svg import log_scale, tight_scale

SVG = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert("x")</script>&'

# Issue 27's measurements of SmolLM2-135M-Instruct (llama-perplexity --kl-divergence against the f16).
ISSUE_LEVELS = [("Q8_0", 144.8, 0.0037), ("Q6_K", 138.4, 0.0084), ("Q5_K_M", 112.1, 0.0710),
                ("Q4_K_M", 105.5, 0.0536), ("Q4_K_S", 102.0, 0.0611), ("Q3_K_M", 93.5, 0.1229),
                ("Q2_K", 88.2, 0.4056)]
LEVELS = [FrontierPoint(name, round(mb * 1e6), kld, "level") for name, mb, kld in ISSUE_LEVELS]
BUDGET = FrontierPoint("fit-101mb", 101_000_000, 0.0379, "budget")
POINTS = [*LEVELS, BUDGET]


def _by_label(points: list[FrontierPoint]) -> dict[str, FrontierPoint]:
    return {p.label: p for p in points}


def _markers(svg: str) -> dict[str, ET.Element]:
    """The chart's markers by label; parsing it as XML also proves it well-formed."""
    root = ET.fromstring(svg)
    markers = [e for e in root.iter() if "marker" in (e.get("class") or "").split() and e.get("data-label")]
    by_label = {m.get("data-label"): m for m in markers}
    assert len(by_label) == len(markers), "two markers for one label"
    return by_label  # type: ignore[return-value]


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def _chart_lines(text: str) -> list[str]:
    """The text chart's plot rows (those with the y axis's bar), without the table below."""
    return [line for line in text.splitlines() if re.match(r"^\s*[\d.e-]*\s\|", line)]


def _row_of(text: str, label: str) -> int:
    rows = [i for i, line in enumerate(_chart_lines(text)) if re.search(rf"(^|\s){re.escape(label)}(\s|$)", line)]
    assert len(rows) == 1, f"{label} is not on exactly one row of the chart"
    return rows[0]


# ---------------------------------------------------------------------------------------------- points


def test_pareto_drops_the_dominated_level() -> None:
    front = _by_label(pareto(LEVELS))
    # Q5_K_M is bigger than Q4_K_M and worse: the issue's point. Every other level is on the front.
    assert "Q5_K_M" not in front
    assert set(front) == {p.label for p in LEVELS} - {"Q5_K_M"}
    assert [p.size_bytes for p in pareto(LEVELS)] == sorted(p.size_bytes for p in front.values())


def test_pareto_over_several_kinds_and_of_one_kind() -> None:
    everything = _by_label(pareto(POINTS))
    # The budget result beats Q4_K_S, Q4_K_M and Q5_K_M on both size and KLD.
    assert "fit-101mb" in everything and not {"Q4_K_S", "Q4_K_M", "Q5_K_M"} & set(everything)
    assert "fit-101mb" not in _by_label(pareto(POINTS, ("level",)))
    assert "Q4_K_S" in _by_label(pareto(POINTS, ("level",)))


def test_pareto_keeps_equal_points_and_drops_a_tie_that_is_worse_on_one_side() -> None:
    a = FrontierPoint("a", 100, 0.1, "level")
    twin = FrontierPoint("twin", 100, 0.1, "level+imatrix")
    bigger = FrontierPoint("bigger", 101, 0.1, "level")
    assert {p.label for p in pareto([a, twin, bigger])} == {"a", "twin"}


def test_a_point_round_trips_through_its_dict() -> None:
    for kind in KINDS:
        point = FrontierPoint("q4_k_m", 105_500_000, 0.0536, kind)
        assert FrontierPoint.from_dict(point.to_dict()) == point


@pytest.mark.parametrize("bad, words", [
    ({"label": "x", "size_bytes": 10, "kld": 0.1, "kind": "guess"}, "kind"),
    ({"label": "x", "size_bytes": 0, "kld": 0.1, "kind": "level"}, "size"),
    ({"label": "x", "size_bytes": 10.5, "kld": 0.1, "kind": "level"}, "size"),
    ({"label": "x", "size_bytes": 10, "kld": float("nan"), "kind": "level"}, "KLD"),
    ({"label": "x", "size_bytes": 10, "kld": "0.1", "kind": "level"}, "KLD"),
    ({"label": "x", "kld": 0.1}, "lacks size_bytes, kind"),
    (["x", 10, 0.1, "level"], "object"),
])
def test_a_bad_point_is_refused_with_what_to_give(bad: object, words: str) -> None:
    with pytest.raises(FrontierError) as caught:
        FrontierPoint.from_dict(bad)  # type: ignore[arg-type]
    assert words in str(caught.value) and caught.value.hint


# ---------------------------------------------------------------------------------------------- SVG


def test_svg_has_one_marker_per_point_and_every_label() -> None:
    svg = frontier_svg(POINTS, "SmolLM2 frontier")
    markers = _markers(svg)
    assert set(markers) == {p.label for p in POINTS}
    assert {m.get("data-kind") for m in markers.values()} == {"level", "budget"}
    # Budget results and levels are different markers, not just different colours.
    assert markers["fit-101mb"].tag == f"{SVG}path" and markers["Q4_K_M"].tag == f"{SVG}circle"
    texts = _texts(svg)
    assert all(p.label in texts for p in POINTS)
    assert "SmolLM2 frontier" in texts


def test_svg_draws_lower_kld_lower_and_bigger_files_further_right() -> None:
    # KLD grows upwards, as in the issue: a better result sits below the levels' curve (a larger SVG y).
    markers = _markers(frontier_svg(POINTS, "t"))
    y = {label: float(m.get("data-cy")) for label, m in markers.items()}  # type: ignore[arg-type]
    x = {label: float(m.get("data-cx")) for label, m in markers.items()}  # type: ignore[arg-type]
    assert y["fit-101mb"] > y["Q4_K_M"] > y["Q4_K_S"] > y["Q5_K_M"]  # 0.0379 < 0.0536 < 0.0611 < 0.0710
    assert y["Q8_0"] > y["Q6_K"]
    assert x["Q2_K"] < x["fit-101mb"] < x["Q4_K_S"] < x["Q8_0"]
    # Circles put their centre where data-cy says.
    assert float(markers["Q8_0"].get("cy")) == y["Q8_0"]  # type: ignore[arg-type]


def test_svg_has_a_log_axis_with_numbers_a_front_line_and_a_legend() -> None:
    svg = frontier_svg(POINTS, "t")
    root = ET.fromstring(svg)
    ticks = {t.get("class"): [] for t in root.iter(f"{SVG}text")}
    for t in root.iter(f"{SVG}text"):
        ticks[t.get("class")].append(t.text)
    assert {"0.01", "0.1"} <= set(ticks["tick y-tick"])
    assert {"100", "120", "140"} <= set(ticks["tick x-tick"])
    assert any("log" in (t or "") for t in ticks["axis-title"])
    # One line through the levels' front, in size order, and none through the dominated Q5_K_M.
    (front,) = [p for p in root.iter(f"{SVG}polyline") if "front-level" in (p.get("class") or "")]
    xs = [float(pair.split(",")[0]) for pair in front.get("points", "").split()]
    assert len(xs) == len(pareto(LEVELS)) and xs == sorted(xs)
    assert {"standard level", "budget result", "front of the levels"} <= set(ticks["legend"])


def test_svg_escapes_labels_and_title() -> None:
    svg = frontier_svg([FrontierPoint(EVIL, 10**8, 0.05, "budget"), *LEVELS[:2]], EVIL)
    assert "<script" not in svg
    root = ET.fromstring(svg)
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))
    assert EVIL in _markers(svg)
    assert EVIL in _texts(svg)


def test_svg_of_nothing_says_so() -> None:
    svg = frontier_svg([], "t")
    root = ET.fromstring(svg)
    assert "Nothing to draw" in " ".join(_texts(svg))
    assert not [e for e in root.iter() if "marker" in (e.get("class") or "")]


def test_svg_lifts_a_zero_or_negative_kld_onto_the_axis_floor_with_a_note() -> None:
    points = [*LEVELS, FrontierPoint("f16", 270_000_000, 0.0, "level"),
              FrontierPoint("noisy", 150_000_000, -1e-6, "budget")]
    svg = frontier_svg(points, "t")
    markers = _markers(svg)
    lowest = max(float(m.get("data-cy")) for label, m in markers.items() if label in {"Q8_0", "Q6_K"})  # type: ignore[arg-type]
    assert float(markers["f16"].get("data-cy")) > lowest  # type: ignore[arg-type]  (below every measured KLD)
    assert markers["f16"].get("data-cy") == markers["noisy"].get("data-cy")
    assert markers["noisy"].get("data-kld") == repr(-1e-6)  # the measured value rides along, unchanged
    notes = [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "note"]
    assert len(notes) == 2 and all("log axis" in n for n in notes)
    assert any(n.startswith("f16:") for n in notes) and any(n.startswith("noisy:") for n in notes)


def test_only_zero_klds_still_draw() -> None:
    svg = frontier_svg([FrontierPoint("f16", 270_000_000, 0.0, "level")], "t")
    assert set(_markers(svg)) == {"f16"}


def test_one_point_gets_a_scale_of_its_own() -> None:
    markers = _markers(frontier_svg([BUDGET], "t"))
    assert set(markers) == {"fit-101mb"}


# ---------------------------------------------------------------------------------------------- scales


def test_log_scale_ends_on_round_values_and_ticks_them() -> None:
    scale = log_scale([0.0037, 0.4056], 400, 40)
    assert (scale.d0, scale.d1) == (0.002, 0.5)
    assert scale.ticks == (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    assert scale(0.5) == 40 and scale(0.002) == 400
    assert [scale.label(t) for t in (0.002, 0.05, 0.5)] == ["0.002", "0.05", "0.5"]
    wide = log_scale([1e-6, 0.5], 400, 40)
    assert all(f"{t:e}".startswith("1") for t in wide.ticks)  # decades only over many decades


def test_tight_scale_keeps_the_points_off_the_edges_without_padding_to_a_tick() -> None:
    scale = tight_scale([88.2, 144.8], 0, 100, margin=0.05)
    assert 80 < scale.d0 < 88.2 and 144.8 < scale.d1 < 150
    assert all(scale.d0 <= t <= scale.d1 for t in scale.ticks) and len(scale.ticks) >= 3


# ---------------------------------------------------------------------------------------------- text


def test_text_chart_puts_lower_kld_on_a_lower_row() -> None:
    # As the SVG: KLD grows upwards, so the better result is the lower line of text.
    text = frontier_text(POINTS)
    assert _row_of(text, "Q2_K") < _row_of(text, "fit-101mb") < _row_of(text, "Q8_0")
    assert _row_of(text, "Q6_K") < _row_of(text, "Q8_0")


def test_text_chart_marks_kinds_apart_and_has_legend_axes_and_table() -> None:
    text = frontier_text(POINTS)
    chart = "\n".join(_chart_lines(text))
    assert chart.count("*") == 1 and chart.count("o") >= len(LEVELS)
    legend = [line for line in text.splitlines() if line.startswith("legend:")]
    assert legend and "o standard level" in legend[0] and "* budget result" in legend[0]
    assert "file size (MB)" in text and "KLD vs reference (log scale)" in text
    assert re.search(r"^\s+\d.*\b100\b.*\b120\b.*\b140\b", text, re.M), "no x-axis numbers"
    assert re.search(r"^\s*0\.01 \|", text, re.M), "no y-axis numbers"
    table = text.split("\n\n")[-1].splitlines()
    assert table[0].split() == ["label", "size", "MB", "KLD", "kind"]
    assert [row.split()[0] for row in table[1:]] == [p.label for p in sorted(POINTS, key=lambda p: p.size_bytes)]
    assert "fit-101mb     101.0   0.037900  budget" in table


def test_text_chart_fits_its_width() -> None:
    for width in (32, 64, 100):
        text = frontier_text(POINTS, width=width, height=12)
        plot = _chart_lines(text)
        assert len(plot) == 12
        gutter = plot[0].index("|") + 1
        assert max(len(line) for line in plot) <= gutter + width


def test_text_chart_of_nothing_says_so_and_a_tiny_one_is_refused() -> None:
    assert frontier_text([]) == NOTHING_TO_DRAW and "Nothing to draw" in NOTHING_TO_DRAW
    with pytest.raises(FrontierError, match="too small"):
        frontier_text(POINTS, width=5, height=2)


def test_text_chart_notes_a_clamped_kld() -> None:
    text = frontier_text([*LEVELS, FrontierPoint("f16", 270_000_000, 0.0, "level")])
    assert _row_of(text, "f16") > _row_of(text, "Q8_0")  # below every measured KLD
    notes = [line for line in text.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "f16" in notes[0] and "log axis" in notes[0]
    assert "f16" in text.split("\n\n")[-1]  # the table keeps the measured 0


# ---------------------------------------------------------------------------------------------- report


def test_report_with_a_frontier_draws_it_and_its_table(tmp_path: Path) -> None:
    summary = {"frontier": [p.to_dict() for p in POINTS]}
    path = write_report(tmp_path / "budget.html", "LQMF budget #7: smol-hf", [], reference="smol-f16",
                        frontier=summary["frontier"])
    document = path.read_text()
    match = re.search(r'<svg id="chart-frontier".*?</svg>', document, re.S)
    assert match, "no frontier chart"
    assert set(_markers(match.group(0))) == {p.label for p in POINTS}
    table = re.search(r'<table id="frontier-points">.*?</table>', document, re.S)
    assert table and all(f"<th scope=\"row\">{p.label}</th>" in table.group(0) for p in POINTS)
    assert 'id="no-results"' not in document  # a budget experiment has its frontier, not "no results"


def test_report_skips_a_bad_entry_with_a_note_and_draws_the_rest() -> None:
    items = [BUDGET.to_dict(), {"label": "half", "size_bytes": 5}, LEVELS[0].to_dict()]
    document = render_report("t", [], frontier=items)
    match = re.search(r'<svg id="chart-frontier".*?</svg>', document, re.S)
    assert match and set(_markers(match.group(0))) == {"fit-101mb", "Q8_0"}
    assert "frontier entry 2 left out" in document and "lacks" in document


def test_report_with_an_empty_frontier_says_nothing_to_draw() -> None:
    document = render_report("t", [], frontier=[])
    assert 'id="no-frontier-data"' in document and "Nothing to draw" in document
    assert "<svg" not in document


def test_report_without_a_frontier_has_no_frontier_section() -> None:
    document = render_report("t", [VariantRow("a", size_bytes=10**6, kld_mean=0.1, gen_tps=1.0)])
    assert 'id="frontier"' not in document and "chart-frontier" not in document


def test_points_from_dicts_takes_points_too() -> None:
    points, problems = points_from_dicts([BUDGET, BUDGET.to_dict(), 7])
    assert points == [BUDGET, BUDGET] and len(problems) == 1 and "entry 3" in problems[0]
