"""One self-contained HTML report (inline CSS, inline SVG charts, no scripts) for quantized-variant experiments."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, TypeGuard

from agents.measure.fidelity import format_dp, format_kld, format_ppl, format_share
from agents.measure.frontier import frontier_html
from agents.measure.svg import axes, coord, esc, linear_scale, svg_line, svg_text, truncate, vertical_title, y_ticks
from lqmf.base.files import write_text_atomic
from lqmf.base.units import format_bytes, nonfinite_text

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class VariantRow:
    """One quantized variant's measurements; None means not measured."""

    model: str
    format: Optional[str] = None  # gguf | hf | gptq | bnb
    level: Optional[str] = None  # q4_k_m, nf4, ...
    size_bytes: Optional[int] = None
    # Measured from the file (the manifest's tensor bytes * 8 / parameters): 4.9993 for q4_k_m, not 4.
    bits_per_weight: Optional[float] = None
    ppl: Optional[float] = None  # perplexity of the variant on `ppl_text`
    ppl_ref: Optional[float] = None
    ppl_text: Optional[str] = None  # which text (and how much of it) the perplexities were measured on
    kld_mean: Optional[float] = None  # mean KL divergence vs the reference
    kld_p99: Optional[float] = None
    top1_agreement: Optional[float] = None  # 0..1
    dp_rms: Optional[float] = None  # RMS change of the next token's probability, -1..1
    gen_tps: Optional[float] = None  # generation tokens/s
    prompt_tps: Optional[float] = None
    ttft_s: Optional[float] = None
    latency_p50_s: Optional[float] = None
    latency_p95_s: Optional[float] = None
    # An embedding classifier checked on this variant's embeddings (agents/classifiers/check.py).
    clf_accuracy: Optional[float] = None  # 0..1 on the held-out split
    clf_f1: Optional[float] = None  # macro F1, 0..1
    clf_agreement: Optional[float] = None  # 0..1, labels equal to the reference's
    emb_cosine_mean: Optional[float] = None  # vs the reference's embedding of the same text
    emb_cosine_p5: Optional[float] = None
    emb_texts_per_s: Optional[float] = None
    # An embedding model's fidelity card (agents/measure/embedding_fidelity.py), beside the cosines above.
    emb_neighbour_overlap: Optional[float] = None  # 0..1, nearest neighbours shared with the reference's




# ---------------------------------------------------------------------------------------------- numbers


def _finite(value: Optional[float]) -> TypeGuard[float]:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def _sig(value: float, digits: int) -> str:
    """`digits` significant digits, without exponent notation for ordinary magnitudes."""
    special = nonfinite_text(value)
    if special:
        return special
    if value != 0 and abs(value) >= 10**digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _fixed(decimals: int, suffix: str = "") -> Callable[[float], str]:
    def fmt(value: float) -> str:
        return nonfinite_text(value) or f"{value:,.{decimals}f}{suffix}"

    return fmt


def _percent(share: float) -> str:
    return nonfinite_text(share) or f"{share * 100:.2f}%"


# How a table cell is written, by the name the column table below gives ("-": text as it is). The fidelity
# figures use the shell's own formatters (agents.measure.fidelity), so a number reads the same in the terminal
# and here. Demo models are well under 1 MiB: "mib" keeps enough decimals to tell their variants apart.
_FORMATS: dict[str, Optional[Callable[[float], str]]] = {
    "-": None, "mib": lambda n: format_bytes(n, unit="MiB", small=True), "ppl": format_ppl, "kld": format_kld,
    "share": format_share, "dp": format_dp, "percent": _percent, "1": _fixed(1), "3": _fixed(3), "4": _fixed(4)}
# field | header | format | tooltip: the report's columns in order; a column shows when some row has its field.
# There is no response-quality column: the word heuristic (agents/measure/quality.py) gives a fluent
# non-answer full marks, so the report shows fidelity as the quality measure and leaves it to --json.
_COLUMN_TABLE = """
model            | Model               | -       | variant name
format           | Format              | -       | gguf, hf, gptq or bnb
level            | Level               | -       | quantization level
size_bytes       | Size (MiB)          | mib     | size on disk, MiB
bits_per_weight  | Bits per weight     | 4       | average bits per weight, measured from the file's tensors
ppl              | PPL                 | ppl     | perplexity of the variant on the text named below the table
ppl_ref          | PPL (ref)           | ppl     | perplexity of the reference on the same text
kld_mean         | KLD mean            | kld     | mean KL divergence vs the reference
kld_p99          | KLD p99             | kld     | 99th percentile KL divergence vs the reference
top1_agreement   | Top-1 agree         | share   | share of positions with the same top token as the reference
dp_rms           | Δp RMS              | dp      | RMS change of the next token's probability, percentage points
gen_tps          | Gen tok/s           | 1       | generation tokens per second
prompt_tps       | Prompt tok/s        | 1       | prompt-processing tokens per second
ttft_s           | TTFT (s)            | 3       | time to first token, seconds
latency_p50_s    | Latency p50 (s)     | 3       | median request latency, seconds
latency_p95_s    | Latency p95 (s)     | 3       | 95th percentile request latency, seconds
clf_accuracy     | Classifier accuracy | percent | accuracy of the embedding classifier on the held-out split
clf_f1           | Classifier F1       | percent | macro F1 of the embedding classifier on the held-out split
clf_agreement    | Agreement           | percent | share of held-out texts labelled as with the reference's embeddings
emb_cosine_mean  | Cosine mean         | 4       | mean cosine similarity to the reference's embeddings
emb_cosine_p5    | Cosine p5           | 4       | 5th percentile cosine similarity to the reference's embeddings
emb_texts_per_s  | Texts/s             | 1       | embedding throughput, texts per second
emb_neighbour_overlap | Neighbours kept | percent | share of each text's nearest neighbours kept from the reference's
"""


def _columns(table: str) -> tuple[tuple[str, str, str, Optional[Callable[[float], str]]], ...]:
    """(field, header, tooltip, formatter) per line of a column table."""
    rows = [[cell.strip() for cell in line.split("|")] for line in table.strip().splitlines()]
    return tuple((field, header, tooltip, _FORMATS[fmt]) for field, header, fmt, tooltip in rows)


_COLUMNS = _columns(_COLUMN_TABLE)


# ---------------------------------------------------------------------------------------------- charts


def _scatter_size_kld(rows: Sequence[VariantRow]) -> str:
    points = [
        (r, float(r.size_bytes), float(r.kld_mean)) for r in rows if _finite(r.size_bytes) and _finite(r.kld_mean)
    ]
    if not points:
        return (
            '<p class="no-data" id="no-fidelity-data">'
            "No fidelity data: no variant has both a size and a mean KLD.</p>"
        )
    width, height = 760, 420
    left, right, top, bottom = 90, width - 30, 20, height - 60
    x = linear_scale([size / MIB for _, size, _ in points], left, right, include_zero=False, margin=0.05)
    # KLD starts at zero so a lossless variant sits on the axis and distances stay honest.
    y = linear_scale([kld for _, _, kld in points], bottom, top, include_zero=True, margin=0.05)
    parts = [
        f'<svg id="chart-size-kld" class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="Size versus mean KL divergence">'
    ]
    parts.extend(axes(x, y, x_title="Size (MiB)", y_title="Mean KLD vs reference"))
    placed: list[tuple[float, float]] = []
    for row, size, kld in points:
        cx, cy = x(size / MIB), y(kld)
        tip = f"{row.model}: size {row.size_bytes} bytes ({format_bytes(size, small=True)}), mean KLD {kld!r}"
        parts.append(
            f'<circle class="point" cx="{coord(cx)}" cy="{coord(cy)}" r="5" data-model="{esc(row.model)}" '
            f'data-size-bytes="{row.size_bytes}" data-kld="{kld!r}"><title>{esc(tip)}</title></circle>'
        )
        # Labels near the right edge go to the left of their point so they stay inside the chart.
        anchor, dx = ("end", -8) if cx > left + (right - left) * 0.7 else ("start", 8)
        ly = cy - 8
        # Coincident or close points (equal sizes, zero KLDs) would print their names on top of each other.
        while any(abs(cx - px) < 80 and abs(ly - py) < 12 for px, py in placed):
            ly += 13
        placed.append((cx, ly))
        parts.append(svg_text("point-label", cx + dx, ly, anchor, truncate(row.model)))
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(
    bars: Sequence[tuple[VariantRow, float]],
    *,
    chart_id: str,
    y_title: str,
    height: int,
    value_text: Callable[[float], str],
    unit: str = "",
    share: bool = False,
) -> str:
    """Bars of one figure per variant over rotated model names; `share` fixes the axis at 0..1."""
    left, top, slot = 90, 24, 64
    plot_w = max(560, slot * len(bars))
    width = left + plot_w + 30
    bottom = height - 110  # room for rotated model names
    domain = [0.0, 1.0] if share else [value for _, value in bars]
    y = linear_scale(domain, bottom, top, include_zero=True, margin=0.0 if share else 0.05)
    base = y(0.0)
    slot = plot_w / max(1, len(bars))
    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {coord(width)} {height}" width="{coord(width)}" '
        f'height="{height}" role="img" aria-label="{esc(y_title)} per variant">'
    ]
    parts.extend(y_ticks(y, left, left + plot_w))
    parts.append(svg_line("axis", left, base, left + plot_w, base))
    parts.append(svg_line("axis", left, bottom, left, top))
    parts.append(vertical_title(y, y_title))
    for i, (row, value) in enumerate(bars):
        cx, py = left + slot * (i + 0.5), y(value)
        bar_top, bar_h = min(py, base), abs(base - py)
        # The exact value rides along as a tooltip, as in the table.
        parts.append(
            f'<rect class="bar" data-model="{esc(row.model)}" data-value="{value!r}" x="{coord(cx - slot * 0.3)}" '
            f'y="{coord(bar_top)}" width="{coord(slot * 0.6)}" height="{coord(bar_h)}">'
            f"<title>{esc(f'{row.model}: {value_text(value)}{unit} ({value!r})')}</title></rect>"
        )
        parts.append(svg_text("bar-value", cx, bar_top - 5, "middle", value_text(value)))
        parts.append(svg_text("bar-label", cx, bottom + 14, "end", truncate(row.model, 22), rotate=-35))
    parts.append("</svg>")
    return "".join(parts)


def _bars_tps(rows: Sequence[VariantRow]) -> str:
    bars = [(r, float(r.gen_tps)) for r in rows if _finite(r.gen_tps)]
    if not bars:
        return (
            '<p class="no-data" id="no-throughput-data">'
            "No throughput data: no variant has a generation speed.</p>"
        )
    return _bar_chart(bars, chart_id="chart-tps", y_title="Generation tokens/s", height=430, value_text=_fixed(1),
                      unit=" tokens/s")


def _bars_share(rows: Sequence[VariantRow], key: str, chart_id: str, y_title: str) -> str:
    """Bars of a 0..1 figure per variant (classifier accuracy, agreement), on a fixed 0..1 axis."""
    bars = [(r, float(getattr(r, key))) for r in rows if _finite(getattr(r, key))]
    return _bar_chart(bars, chart_id=chart_id, y_title=y_title, height=400, value_text=_percent, share=True)


def _classifier_figures(rows: Sequence[VariantRow]) -> str:
    return "".join(
        f"<figure><figcaption>{caption}</figcaption>{_bars_share(rows, key, chart_id, title)}</figure>"
        for key, chart_id, caption, title in (
            ("clf_accuracy", "chart-classifier-accuracy", "Classifier accuracy per variant (held-out split)",
             "Accuracy"),
            ("clf_agreement", "chart-classifier-agreement", "Agreement with the reference's labels", "Agreement"),
            ("emb_cosine_mean", "chart-embedding-cosine", "Mean cosine similarity to the reference's embeddings",
             "Cosine"),
            ("emb_neighbour_overlap", "chart-embedding-neighbours",
             "Nearest neighbours kept (the same as with the reference's embeddings)", "Neighbours kept"),
        )
        if any(_finite(getattr(r, key)) for r in rows)
    )


# ---------------------------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1180px;padding:0 1rem;
color:#1d2330;background:#fff}
h1{margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #d8dce4;padding-bottom:.2rem}
.meta{color:#5a6272;margin:.2rem 0}.recommendation{background:#eef6ee;border-left:4px solid #3a8a3a;padding:.6rem .8rem}
.empty,.no-data{background:#fff6e5;border-left:4px solid #d08a00;padding:.6rem .8rem}
table{border-collapse:collapse;font-size:.82rem;width:100%}
th,td{border:1px solid #d8dce4;padding:.25rem .35rem}th{background:#f2f4f8;text-align:left}
thead th{vertical-align:bottom;font-weight:600;overflow-wrap:normal}
tbody th{overflow-wrap:anywhere;min-width:7rem;font-weight:500}td.num{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.missing{color:#a0a6b2;text-align:center}
tr.reference td{background:#f4f0fa}
figure{margin:1rem 0}figcaption{font-weight:600;margin-bottom:.4rem}
svg.chart{max-width:100%;height:auto;font-size:11px}svg .axis{stroke:#444;stroke-width:1}
svg .grid{stroke:#e6e8ee;stroke-width:1}
svg .tick{fill:#5a6272}svg .axis-title{fill:#1d2330;font-size:12px}svg .point{fill:#2f6fdb;stroke:#fff;stroke-width:1.5}
svg .point-label,svg .bar-label{fill:#1d2330}svg .bar{fill:#2f6fdb}svg .bar-value{fill:#1d2330;font-size:10px}
.table-note{color:#5a6272;font-size:.9rem}#frontier-points{width:auto;min-width:28rem}
figcaption.frontier-caption{font-weight:400;color:#5a6272}
"""


def _table(rows: Sequence[VariantRow], reference: Optional[str]) -> str:
    present = {f.name for f in fields(VariantRow) if any(getattr(r, f.name) is not None for r in rows)}
    columns = [c for c in _COLUMNS if c[0] == "model" or c[0] in present]
    head = "".join(f'<th scope="col" title="{esc(tip)}">{esc(header)}</th>' for _, header, tip, _ in columns)
    body = []
    for row in rows:
        cells = []
        for name, _, _, fmt in columns:
            value = getattr(row, name)
            if value is None:
                cells.append('<td class="missing">—</td>')
            elif fmt is None:
                tag = "th" if name == "model" else "td"
                scope = ' scope="row"' if name == "model" else ""
                cells.append(f"<{tag}{scope}>{esc(value)}</{tag}>")
            else:
                try:
                    text = fmt(float(value))
                except (TypeError, ValueError):
                    text = str(value)
                # The exact value rides along as a tooltip: six decimals can round a tiny KLD to zero.
                cells.append(f'<td class="num" data-field="{name}" title="{esc(repr(value))}">{esc(text)}</td>')
        css = ' class="reference"' if reference is not None and row.model == reference else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return (
        # No sideways scrolling: the table takes the page's width, headers and long names wrap
        # (tests/test_report_html.py measures it in headless Chromium, in a 1280 px window).
        '<div class="table-wrap"><table id="results"><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _table_notes(rows: Sequence[VariantRow]) -> list[str]:
    """What the table's figures were measured on, and what quality means here."""
    out = []
    texts = list(dict.fromkeys(r.ppl_text for r in rows if r.ppl_text and (r.ppl is not None or r.ppl_ref is not None)))
    for text in texts:
        out.append(f'<p class="table-note ppl-text">Perplexity measured on {esc(text)}. Perplexities '
                   "measured on other text or with other windows (the demo build's, for one) differ and are "
                   "not comparable with these.</p>")
    if any(_finite(r.kld_mean) for r in rows):
        out.append('<p class="table-note quality-note">Quality is fidelity to the reference: KLD, top-1 agreement '
                   "and Δp. A word-count heuristic of the generated answers is kept in the history and in "
                   "--json only: it scores a fluent non-answer as highly as a right one.</p>")
    return out


def render_report(
    title: str,
    rows: Sequence[VariantRow],
    *,
    reference: Optional[str] = None,
    recommendation: Optional[str] = None,
    notes: Sequence[str] = (),
    created_at: Optional[float] = None,
    frontier: Optional[Iterable[Any]] = None,
) -> str:
    """Return the report as one self-contained HTML document; `frontier` (a summary's "frontier" list of
    FrontierPoint dicts, as a budget experiment records) adds the size-against-KLD frontier section."""
    rows = list(rows)
    stamp = time.time() if created_at is None else created_at
    when = datetime.fromtimestamp(stamp, tz=timezone.utc)
    parts = [
        "<!DOCTYPE html>\n",
        '<html lang="en"><head><meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        # Defence in depth: even if something slipped through escaping, the page may load and run nothing.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\"/>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Created <time datetime="{when.isoformat()}">{when:%Y-%m-%d %H:%M:%S} UTC</time></p>',
        f'<p class="meta reference">Reference model: '
        f"{f'<strong>{esc(reference)}</strong>' if reference else 'not given'}</p>",
    ]
    if recommendation:
        parts.append(f'<p class="recommendation"><strong>Recommendation:</strong> {esc(recommendation)}</p>')
    if frontier is not None:
        parts.append(frontier_html(frontier))
    if not rows and frontier is None:
        parts.append('<p class="empty" id="no-results">No results: this experiment produced no variant rows.</p>')
    elif rows:
        parts.append(f"<h2>Variants ({len(rows)})</h2>")
        parts.append(_table(rows, reference))
        parts.extend(_table_notes(rows))
        parts.append("<h2>Charts</h2>")
        classifier = _classifier_figures(rows)
        parts.append(classifier)
        # A classifier check measures no generation: its report leaves out the two empty generation charts.
        if not classifier or any(_finite(r.kld_mean) or _finite(r.gen_tps) for r in rows):
            parts.append(f"<figure><figcaption>Size vs KLD</figcaption>{_scatter_size_kld(rows)}</figure>")
            parts.append(
                f"<figure><figcaption>Generation tokens/s per variant</figcaption>{_bars_tps(rows)}</figure>"
            )
    if notes:
        items = "".join(f"<li>{esc(note)}</li>" for note in notes)
        parts.append(f'<h2>Notes</h2><ul class="notes">{items}</ul>')
    parts.append("</body></html>\n")
    log.debug("rendered report %r: %d rows", title, len(rows))
    return "".join(parts)


def write_report(path: Path, title: str, rows: Sequence[VariantRow], **options: Any) -> Path:
    """Render the report (options as render_report's) and write it whole or not at all; return the path."""
    path = Path(path)
    rows = list(rows)
    write_text_atomic(path, render_report(title, rows, **options))
    log.info("wrote report %s (%d rows)", path, len(rows))
    return path
