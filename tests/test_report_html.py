"""The HTML experiment report: charts carry the data, text is escaped, the file is written atomically."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agents.measure.report_html import MIB, VariantRow, render_report, write_report

EVIL = '<script>alert("x")</script>&'

ROWS = [
    VariantRow("demo-f16.gguf", "gguf", "f16", size_bytes=400 * MIB, ppl=12.0, ppl_ref=12.0, kld_mean=0.0,
               top1_agreement=1.0, gen_tps=50.0),
    VariantRow("demo-q8_0.gguf", "gguf", "q8_0", size_bytes=220 * MIB, ppl=12.01, kld_mean=0.000123456789,
               top1_agreement=0.987654, gen_tps=80.5),
    VariantRow("demo-q4_k_m.gguf", "gguf", "q4_k_m", size_bytes=130 * MIB, ppl=12.4, kld_mean=0.0213,
               top1_agreement=0.91, gen_tps=120.25),
    # Bigger than q8 yet worse: positions must follow the values, not the row order.
    VariantRow("demo-bnb-nf4", "bnb", "nf4", size_bytes=300 * MIB, kld_mean=0.05, gen_tps=10.0),
    VariantRow("no-kld", "gptq", "4bit", size_bytes=150 * MIB, gen_tps=None),
    VariantRow("no-size", "hf", None, kld_mean=0.01, gen_tps=65.0),
]


class _Tags(HTMLParser):
    """Every start tag with its attributes, the visible text, and whether open/close tags balance."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "circle", "line", "rect", "path"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack.pop() != tag:
            self.mismatched.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(document: str) -> _Tags:
    parser = _Tags()
    parser.feed(document)
    parser.close()
    assert parser.mismatched == [] and parser.stack == [], "unbalanced tags"
    return parser


def _svg(document: str, chart_id: str) -> ET.Element:
    """The chart's <svg> element, parsed as XML (which also proves the fragment is well-formed)."""
    match = re.search(rf'<svg id="{chart_id}".*?</svg>', document, re.S)
    assert match, f"no svg {chart_id}"
    return ET.fromstring(match.group(0))


def _circles(document: str) -> dict[str, ET.Element]:
    circles = _svg(document, "chart-size-kld").findall(".//circle")
    by_model = {c.get("data-model"): c for c in circles}
    assert len(by_model) == len(circles), "duplicate points"
    return by_model  # type: ignore[return-value]


def _bars(document: str) -> dict[str, ET.Element]:
    bars = [r for r in _svg(document, "chart-tps").iter("rect") if r.get("class") == "bar"]
    by_model = {b.get("data-model"): b for b in bars}
    assert len(by_model) == len(bars), "duplicate bars"
    return by_model  # type: ignore[return-value]


def test_scatter_has_one_point_per_row_with_size_and_kld() -> None:
    circles = _circles(render_report("t", ROWS))
    assert set(circles) == {"demo-f16.gguf", "demo-q8_0.gguf", "demo-q4_k_m.gguf", "demo-bnb-nf4"}
    q8 = circles["demo-q8_0.gguf"]
    assert float(q8.get("data-kld")) == 0.000123456789
    assert int(q8.get("data-size-bytes")) == 220 * MIB
    tooltip = q8.find("title").text
    assert "demo-q8_0.gguf" in tooltip and "0.000123456789" in tooltip and str(220 * MIB) in tooltip


def test_scatter_positions_follow_size_and_kld() -> None:
    circles = _circles(render_report("t", ROWS))
    points = [r for r in ROWS if r.size_bytes is not None and r.kld_mean is not None]
    by_size = sorted(points, key=lambda r: r.size_bytes)
    xs = [float(circles[r.model].get("cx")) for r in by_size]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    by_kld = sorted(points, key=lambda r: r.kld_mean)
    ys = [float(circles[r.model].get("cy")) for r in by_kld]
    # SVG y grows downward: more divergence is drawn higher.
    assert ys == sorted(ys, reverse=True) and len(set(ys)) == len(ys)
    # Linear: q4's KLD is 0.0213 / 0.05 of nf4's, measured from the zero KLD of f16.
    zero = float(circles["demo-f16.gguf"].get("cy"))
    rise = {m: zero - float(c.get("cy")) for m, c in circles.items()}
    assert rise["demo-q4_k_m.gguf"] / rise["demo-bnb-nf4"] == pytest.approx(0.0213 / 0.05, rel=1e-3)


def test_scatter_has_tick_labels_on_both_axes() -> None:
    svg = _svg(render_report("t", ROWS), "chart-size-kld")
    x_ticks = [t.text for t in svg.iter("text") if "x-tick" in (t.get("class") or "")]
    y_ticks = [t.text for t in svg.iter("text") if "y-tick" in (t.get("class") or "")]
    assert len(x_ticks) >= 2 and len(y_ticks) >= 2
    assert "0" in y_ticks  # the KLD axis starts at zero
    values = [float(t.replace(",", "")) for t in x_ticks]
    assert values == sorted(values) and values[0] <= 130 and values[-1] >= 400


def test_bar_chart_has_one_bar_per_row_with_gen_tps_ordered_by_value() -> None:
    bars = _bars(render_report("t", ROWS))
    expected = {r.model: r.gen_tps for r in ROWS if r.gen_tps is not None}
    assert set(bars) == set(expected)
    assert {m: float(b.get("data-value")) for m, b in bars.items()} == expected
    ordered = sorted(expected, key=expected.__getitem__)
    heights = [float(bars[m].get("height")) for m in ordered]
    assert heights == sorted(heights) and len(set(heights)) == len(heights)
    assert heights[-1] / heights[0] == pytest.approx(120.25 / 10.0, rel=1e-3)
    # One shared baseline.
    bottoms = {round(float(b.get("y")) + float(b.get("height")), 1) for b in bars.values()}
    assert len(bottoms) == 1
    labels = [t.text for t in _svg(render_report("t", ROWS), "chart-tps").iter("text") if t.get("class") == "bar-label"]
    assert sorted(labels) == sorted(expected)


def test_model_names_are_escaped_everywhere() -> None:
    rows = [VariantRow(EVIL, "gguf", size_bytes=10 * MIB, kld_mean=0.1, gen_tps=5.0, ppl=3.0, ppl_text=EVIL)]
    document = render_report(EVIL, rows, reference=EVIL, recommendation=EVIL, notes=[EVIL])
    assert "<script" not in document.lower()
    assert "&lt;script&gt;" in document
    assert [m for m in _circles(document)] == [EVIL]
    assert [m for m in _bars(document)] == [EVIL]
    parsed = _parse(document)
    assert not any(tag == "script" for tag, _ in parsed.tags)
    assert EVIL in "".join(parsed.text)


def test_control_characters_do_not_break_the_svg() -> None:
    rows = [VariantRow("bad\x00name\x1b", size_bytes=MIB, kld_mean=0.1, gen_tps=1.0)]
    document = render_report("t", rows)
    assert list(_circles(document)) == ["bad\ufffdname\ufffd"]


def test_no_external_resources() -> None:
    document = render_report("t", ROWS, reference="demo-hf", recommendation="use q4_k_m", notes=["n"])
    lowered = document.lower()
    for needle in ("http://", "https://", "src=", "<script", "<link", "@import", "url("):
        assert needle not in lowered, needle


def _table(document: str) -> tuple[list[str], dict[str, list[str]]]:
    """Column headers and, per model, its cells' text."""
    match = re.search(r"<table.*?</table>", document, re.S)
    assert match, "no table"
    headers = re.findall(r'<th scope="col"[^>]*>([^<]*)</th>', match.group(0))
    cells: dict[str, list[str]] = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", match.group(0), re.S)[1:]:
        parsed = _parse(row)
        cells[parsed.text[0]] = parsed.text
    return headers, cells


def test_table_shows_only_columns_with_values_and_formats_numbers() -> None:
    headers, cells = _table(render_report("t", ROWS))
    assert headers == ["Model", "Format", "Level", "Size (MiB)", "PPL", "PPL (ref)", "KLD mean", "Top-1 agree",
                       "Gen tok/s"]
    assert list(cells) == [r.model for r in ROWS]
    column = dict(zip(headers, zip(*cells.values(), strict=True), strict=True))
    assert column["Size (MiB)"] == ("400.0", "220.0", "130.0", "300.0", "150.0", "—")
    # KLD in one notation down the column (six decimals, as the shell and llama.cpp print it).
    assert column["KLD mean"] == ("0.000000", "0.000123", "0.021300", "0.050000", "—", "0.010000")
    assert column["Top-1 agree"] == ("100.00%", "98.77%", "91.00%", "—", "—", "—")
    assert column["Gen tok/s"] == ("50.0", "80.5", "120.2", "10.0", "—", "65.0")
    assert column["PPL"] == ("12.000", "12.010", "12.400", "—", "—", "—")
    assert cells["no-size"][:3] == ["no-size", "hf", "—"]


def test_small_sizes_keep_enough_decimals() -> None:
    rows = [VariantRow("tiny", size_bytes=300_000), VariantRow("mid", size_bytes=5 * MIB)]
    _, cells = _table(render_report("t", rows))
    assert cells["tiny"][1] == "0.286" and cells["mid"][1] == "5.00"


def test_numbers_read_as_the_shell_prints_them() -> None:
    """The report and the shell's fidelity table format the same values with the same functions."""
    from cli.render import FIDELITY_COLUMNS

    row = {"ppl_test": 97.4321, "kld_mean": 2.5e-05, "kld_p99": 0.0123456, "top1_agreement": 0.98765,
           "dp_rms": 0.0123}
    shell = {header: fmt(row[key]) for header, key, fmt in FIDELITY_COLUMNS if key in row}
    document = render_report("t", [VariantRow("a", ppl=row["ppl_test"], kld_mean=row["kld_mean"],
                                              kld_p99=row["kld_p99"], top1_agreement=row["top1_agreement"],
                                              dp_rms=row["dp_rms"])])
    headers, cells = _table(document)
    html = dict(zip(headers, cells["a"], strict=True))
    assert shell == {"PPL": "97.432", "KLD mean": "0.000025", "KLD p99": "0.012346", "top-1 agree": "98.77%",
                     "Δp RMS": "1.230%"}
    assert (html["PPL"], html["KLD mean"], html["KLD p99"], html["Top-1 agree"], html["Δp RMS"]) == (
        shell["PPL"], shell["KLD mean"], shell["KLD p99"], shell["top-1 agree"], shell["Δp RMS"])
    # The exact value stays reachable: a KLD rounded to six decimals keeps its full value as a tooltip.
    assert 'title="2.5e-05"' in document


def test_bits_per_weight_is_the_measured_figure_with_four_decimals() -> None:
    headers, cells = _table(render_report("t", [VariantRow("q4", "gguf", "q4_k_m", bits_per_weight=4.9993)]))
    assert dict(zip(headers, cells["q4"], strict=True))["Bits per weight"] == "4.9993"


def test_perplexity_names_the_text_it_was_measured_on() -> None:
    text = "stdlib configparser.py: the first 8 windows of 512 tokens, 2,040 tokens scored"
    document = render_report("t", [VariantRow("a", ppl=97.4, ppl_ref=96.0, ppl_text=text, kld_mean=0.01)])
    notes = " ".join(_parse(document).text)
    assert f"Perplexity measured on {text}." in notes
    # No perplexity, no claim about its text.
    assert "Perplexity measured" not in render_report("t", [VariantRow("a", gen_tps=1.0, ppl_text=text)])


def test_quality_heuristic_is_not_shown_and_fidelity_is_named_instead() -> None:
    """The word heuristic gives a fluent non-answer full marks, so the report does not show it."""
    from agents.measure.quality import score

    non_answer = score("What does the with statement do in Python?",
                       "The with statement in Python is a statement that Python programmers use, and what it "
                       "does is an interesting question that many people ask about Python.")
    assert non_answer.total >= 0.95  # the reason it is hidden: it cannot tell this from a real answer
    assert "quality_heuristic" not in {f.name for f in __import__("dataclasses").fields(VariantRow)}
    document = render_report("t", ROWS)
    headers, _ = _table(document)
    assert not any("quality" in h.lower() for h in headers)
    assert "Quality is fidelity to the reference" in document


def test_header_shows_title_time_reference_and_recommendation() -> None:
    document = render_report("Sweep A", ROWS, reference="demo-f16.gguf", recommendation="q4_k_m: 3x smaller",
                             created_at=0.0)
    text = " ".join(_parse(document).text)
    assert "Sweep A" in text
    assert "1970-01-01 00:00:00 UTC" in text
    assert "demo-f16.gguf" in text
    assert "Recommendation:" in text and "q4_k_m: 3x smaller" in text
    assert '<tr class="reference"><th scope="row">demo-f16.gguf</th>' in document


def test_empty_rows_render_a_clear_message() -> None:
    document = render_report("Nothing", [], notes=["the run was cancelled"])
    parsed = _parse(document)
    assert "No results" in "".join(parsed.text)
    assert "the run was cancelled" in "".join(parsed.text)
    assert "<svg" not in document and "<table" not in document


def test_missing_data_shows_notes_instead_of_charts() -> None:
    document = render_report("t", [VariantRow("a", size_bytes=MIB), VariantRow("b", kld_mean=0.1)])
    assert 'id="chart-size-kld"' not in document and 'id="chart-tps"' not in document
    assert "No fidelity data" in document and "No throughput data" in document


def test_one_point_and_equal_values_do_not_divide_by_zero() -> None:
    same = [VariantRow(f"m{i}", size_bytes=100 * MIB, kld_mean=0.0, gen_tps=0.0) for i in range(3)]
    for rows in (same, same[:1], [VariantRow("x", size_bytes=5, kld_mean=2.5e-9, gen_tps=7.0)]):
        document = render_report("t", rows)
        svg = _svg(document, "chart-size-kld")
        width, height = (float(v) for v in svg.get("viewBox").split()[2:])
        for circle in svg.iter("circle"):
            cx, cy = float(circle.get("cx")), float(circle.get("cy"))
            assert math.isfinite(cx) and math.isfinite(cy)
            assert 0 <= cx <= width and 0 <= cy <= height
        for bar in _bars(document).values():
            assert math.isfinite(float(bar.get("height"))) and float(bar.get("height")) >= 0


def test_non_finite_values_are_skipped_in_charts_but_shown_in_table() -> None:
    rows = [
        VariantRow("ok", size_bytes=MIB, kld_mean=0.1, gen_tps=3.0, ppl=float("inf")),
        VariantRow("nan", size_bytes=2 * MIB, kld_mean=float("nan"), gen_tps=float("inf")),
    ]
    document = render_report("t", rows)
    assert list(_circles(document)) == ["ok"]
    assert list(_bars(document)) == ["ok"]
    assert "∞" in document and "nan" in document


def test_write_report_replaces_existing_file_atomically(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")
    returned = write_report(target, "New", ROWS, created_at=0.0)
    assert returned == target
    assert os.listdir(tmp_path) == ["report.html"]
    content = target.read_text(encoding="utf-8")
    assert content == render_report("New", ROWS, created_at=0.0)
    assert content.startswith("<!DOCTYPE html>")


def test_write_report_creates_parent_folder(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "sweep" / "r.html"
    write_report(target, "t", [])
    assert "No results" in target.read_text(encoding="utf-8")
    assert os.listdir(target.parent) == ["r.html"]


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")

    def refuse(src: object, dst: object) -> None:
        assert Path(str(src)).parent == tmp_path  # the temporary sits beside the target
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk went away"):
        write_report(target, "New", ROWS)
    assert target.read_text(encoding="utf-8") == "old report"
    assert os.listdir(tmp_path) == ["report.html"]


# -- as a person sees it: the page laid out by a real browser --------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Read by the probe below; window.innerWidth is the viewport the page was laid out in.
PROBE = """<script>
const t = document.getElementById('results');
const cells = [...t.querySelectorAll('th,td')].map(c => c.getBoundingClientRect().right);
document.body.setAttribute('data-probe', JSON.stringify({
  table_right: t.getBoundingClientRect().right, cells_right: Math.max(...cells),
  viewport: window.innerWidth, page_width: document.documentElement.scrollWidth}));
</script>"""


def _widest_rows() -> list[VariantRow]:
    """Every column a compare report can have, long real-world names, and wide numbers."""
    names = ["Qwen2.5-0.5B-Instruct-q4_k_m.gguf", "Meta-Llama-3.1-8B-Instruct-IQ4_XS.gguf",
             "mistralai_Mistral-7B-Instruct-v0.3_gptq_4bit", "Qwen2.5-0.5B-Instruct-bnb-nf4"]
    return [
        VariantRow(name, "gguf", "q4_k_m", size_bytes=(i + 1) * 1234 * MIB, bits_per_weight=4.9993,
                   ppl=12345.678 + i, ppl_ref=12001.5, ppl_text="Python standard library configparser.py, pprint.py",
                   kld_mean=0.0123456, kld_p99=1.234567, top1_agreement=0.98765, dp_rms=0.0123, gen_tps=1234.5,
                   prompt_tps=12345.6, ttft_s=12.345, latency_p50_s=123.456, latency_p95_s=123.456)
        for i, name in enumerate(names)
    ]


def _layout(tmp_path: Path, document: str, extra_css: str = "") -> dict[str, float]:
    """Load the report in headless Chromium at 1280x900 and read the table's geometry back from the DOM."""
    # The report forbids scripts (its CSP); this copy allows the one inline probe, and nothing else changes.
    probed = document.replace("style-src 'unsafe-inline'", "style-src 'unsafe-inline'; script-src 'unsafe-inline'")
    probed = probed.replace("</style>", extra_css + "</style>").replace("</body>", PROBE + "</body>")
    page = tmp_path / "report.html"
    page.write_text(probed, encoding="utf-8")
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,900"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r"data-probe=\"([^\"]*)\"", dom.stdout)
    assert match, f"the probe did not run: {dom.stderr[-500:]}"
    # A picture for whoever looks into a failure: what a person at a 1280 px window sees.
    subprocess.run([*base, f"--screenshot={tmp_path / 'report.png'}", page.as_uri()], capture_output=True,
                   timeout=120)
    return json.loads(html.unescape(match.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_variants_table_fits_a_1280px_window_in_chromium(tmp_path: Path) -> None:
    document = render_report("Compare", _widest_rows(), reference="Qwen2.5-0.5B-Instruct-q4_k_m.gguf",
                             recommendation="fastest: x", notes=["n"])
    layout = _layout(tmp_path, document)
    assert layout["viewport"] == 1280
    assert layout["table_right"] <= layout["viewport"], layout
    assert layout["cells_right"] <= layout["viewport"], layout  # no column hidden off-screen
    assert layout["page_width"] <= layout["viewport"], layout  # nothing to scroll sideways to
    assert (tmp_path / "report.png").stat().st_size > 0


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_the_chromium_probe_sees_a_table_that_does_not_fit(tmp_path: Path) -> None:
    """The check above can fail: the same probe on a table forced wider than the window reports it."""
    layout = _layout(tmp_path, render_report("t", _widest_rows()), "#results{width:1900px}")
    assert layout["table_right"] > layout["viewport"]
