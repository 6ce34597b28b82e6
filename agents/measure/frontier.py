"""The size-against-KLD frontier: standard llama.cpp levels and budget results, as SVG (reports) and as text (shell).

A person must see at a glance whether a budget result sits below the curve the standard levels draw: KLD on a
log axis (it spans 0.001..0.5), file size in decimal MB (as llama.cpp's and the issue's tables print it), the
levels' Pareto front as a line, every point labelled.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from agents.measure.fidelity import format_kld
from agents.measure.svg import LogScale, Scale, axes, coord, esc, log_scale, svg_text, tight_scale, truncate
from lqmf.base.errors import LQMFError

log = logging.getLogger(__name__)

LEVEL, LEVEL_IMATRIX, BUDGET, BUDGET_IMATRIX = "level", "level+imatrix", "budget", "budget+imatrix"
KINDS = (LEVEL, LEVEL_IMATRIX, BUDGET, BUDGET_IMATRIX)
LEVEL_KINDS = (LEVEL, LEVEL_IMATRIX)
MB = 1e6  # decimal, as llama.cpp's size tables
NOTHING_TO_DRAW = ("Nothing to draw: the frontier has no measured points (each needs a file size and a KLD "
                   "against the reference); measure the standard levels or run a budget search first.")


class FrontierError(LQMFError):
    """A frontier point that cannot be drawn as given."""


@dataclass(frozen=True)
class FrontierPoint:
    """One measured file: its label (q4_k_m, fit-100mb), size on disk, mean KLD against the f16, and kind."""

    label: str
    size_bytes: int
    kld: float
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FrontierError(f"frontier point {self.label!r} has kind {self.kind!r}", f"one of {', '.join(KINDS)}")
        if isinstance(self.size_bytes, bool) or not isinstance(self.size_bytes, int) or self.size_bytes <= 0:
            raise FrontierError(f"frontier point {self.label!r} has size {self.size_bytes!r}",
                                "a file size is a whole number of bytes above zero")
        if isinstance(self.kld, bool) or not isinstance(self.kld, (int, float)) or not math.isfinite(self.kld):
            raise FrontierError(f"frontier point {self.label!r} has KLD {self.kld!r}",
                                "a KLD is a finite number; measure the file again")

    @property
    def size_mb(self) -> float:
        """The size in decimal megabytes."""
        return self.size_bytes / MB

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as an experiment's summary stores it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrontierPoint:
        """The point a to_dict() wrote; a clear FrontierError for anything else."""
        if not isinstance(data, Mapping):
            raise FrontierError(f"a frontier point is an object, not {type(data).__name__}",
                                "label, size_bytes, kld and kind")
        missing = [key for key in ("label", "size_bytes", "kld", "kind") if key not in data]
        if missing:
            raise FrontierError(f"frontier point {data.get('label', '?')!r} lacks {', '.join(missing)}",
                                "each point needs label, size_bytes, kld and kind")
        return cls(str(data["label"]), data["size_bytes"], data["kld"], data["kind"])


def pareto(points: Iterable[FrontierPoint], kinds: Optional[Sequence[str]] = None) -> list[FrontierPoint]:
    """The points (of `kinds`, all by default) that no other is at least as good as on both size and KLD
    and better on one, by size."""
    pool = [p for p in points if kinds is None or p.kind in kinds]

    def beaten(p: FrontierPoint) -> bool:
        return any(q.size_bytes <= p.size_bytes and q.kld <= p.kld and (q.size_bytes, q.kld) != (p.size_bytes, p.kld)
                   for q in pool)

    return sorted((p for p in pool if not beaten(p)), key=lambda p: (p.size_bytes, p.kld))


# ---------------------------------------------------------------------------------------------- shared layout


@dataclass(frozen=True)
class _Style:
    """How one kind is drawn: SVG shape and colours, the terminal's mark, the legend's words."""

    css: str
    shape: str  # a key of _SHAPES
    fill: str
    stroke: str
    mark: str
    legend: str


_STYLES: dict[str, _Style] = {
    LEVEL: _Style("level", "circle", "#5a6272", "#ffffff", "o", "standard level"),
    LEVEL_IMATRIX: _Style("level-imatrix", "circle", "#ffffff", "#5a6272", "x", "standard level + imatrix"),
    BUDGET: _Style("budget", "diamond", "#d0342c", "#ffffff", "*", "budget result"),
    BUDGET_IMATRIX: _Style("budget-imatrix", "diamond", "#ffffff", "#d0342c", "@", "budget result + imatrix"),
}
# The levels' fronts, as lines: SVG dash pattern and the terminal's dot.
_FRONT_LINES: dict[str, tuple[str, str, str]] = {LEVEL: ("", ".", "front of the levels"),
                                                  LEVEL_IMATRIX: ("5 4", ":", "front of the imatrix levels")}
_UNDER_LABELS = frozenset(" " + "".join(dot for _, dot, _ in _FRONT_LINES.values()))


@dataclass(frozen=True)
class _Plotted:
    """A point as drawn: `kld` is the value on the log axis, the point's own where it is above zero."""

    point: FrontierPoint
    kld: float


def _plotted(points: Sequence[FrontierPoint]) -> tuple[list[_Plotted], list[str]]:
    """Points with a KLD a log axis can hold, and a note for each that had to be lifted onto the axis's floor."""
    positive = [p.kld for p in points if p.kld > 0]
    # A KLD of zero (or a measurement a hair below it) has no place on a log axis: it sits one step below the
    # least measured one, on the axis floor, and says so.
    floor = min(positive) / 10 if positive else 1e-4
    notes = [f"{p.label}: KLD {p.kld:g} drawn at {floor:.2g} (a log axis has no zero or negatives)"
             for p in points if p.kld <= 0]
    return [_Plotted(p, p.kld if p.kld > 0 else floor) for p in points], notes


def _draw_order(points: Sequence[_Plotted]) -> list[_Plotted]:
    # Budget results are what the chart is for: they get their labels placed first, and are drawn on top.
    return sorted(points, key=lambda d: (d.point.kind in LEVEL_KINDS, d.point.size_bytes))


def _fronts(drawn: Sequence[_Plotted]) -> dict[str, list[_Plotted]]:
    """Each level kind's Pareto front, by size, as plotted points."""
    by_point = {id(d.point): d for d in drawn}
    fronts = {kind: [by_point[id(p)] for p in pareto([d.point for d in drawn], (kind,))] for kind in _FRONT_LINES}
    return {kind: front for kind, front in fronts.items() if len(front) > 1}


def _kinds_present(points: Sequence[FrontierPoint]) -> list[str]:
    return [kind for kind in KINDS if any(p.kind == kind for p in points)]


# ---------------------------------------------------------------------------------------------- SVG

_SVG_WIDTH, _PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_HEIGHT = 900, 80, 660, 44, 360
_CHAR_W, _LINE_H = 6.4, 12.0  # an 11 px label's average character width and line height, for placing labels
_SVG_CSS = (
    "#{id}{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:11px;max-width:100%;height:auto}}"
    "#{id} .axis{{stroke:#444;stroke-width:1}}#{id} .grid{{stroke:#e6e8ee;stroke-width:1}}"
    "#{id} .tick{{fill:#5a6272}}#{id} .axis-title{{fill:#1d2330;font-size:12px}}"
    "#{id} .chart-title{{fill:#1d2330;font-size:14px;font-weight:600}}#{id} .point-label{{fill:#1d2330}}"
    "#{id} .point-label.budget,#{id} .point-label.budget-imatrix{{font-weight:600;fill:#a3241e}}"
    "#{id} .front{{fill:none;stroke:#8a93a3;stroke-width:1.5}}#{id} .note{{fill:#8a5a00}}"
)


def _circle(x: float, y: float) -> tuple[str, str]:
    return "circle", f'cx="{coord(x)}" cy="{coord(y)}" r="5"'


def _diamond(x: float, y: float) -> tuple[str, str]:
    d = f"M{coord(x)} {coord(y - 7)}L{coord(x + 7)} {coord(y)}L{coord(x)} {coord(y + 7)}L{coord(x - 7)} {coord(y)}Z"
    return "path", f'd="{d}"'


# A shape's name -> (its SVG element, its geometry attributes) centred on (x, y).
_SHAPES = {"circle": _circle, "diamond": _diamond}


def _marker(x: float, y: float, style: _Style, css: str, attrs: str = "", inner: str = "") -> str:
    """One kind's marker at (x, y); `attrs` and `inner` (a tooltip) already escaped."""
    tag, geometry = _SHAPES[style.shape](x, y)
    return (f'<{tag} class="{css} {style.css}" {geometry} fill="{style.fill}" stroke="{style.stroke}" '
            f'stroke-width="1.5"{attrs}>{inner}</{tag}>')


# Where a label may go around its point, in order of preference: (dx, dy of the baseline, text-anchor); in a
# crowd, the same directions further out (_RINGS), joined to the point by a leader line.
_LABEL_SPOTS = ((9, 4, "start"), (-9, 4, "end"), (7, -9, "start"), (7, 17, "start"), (-7, -9, "end"),
                (-7, 17, "end"), (0, -12, "middle"), (0, 21, "middle"))
_RINGS = (1.0, 2.2, 3.4, 4.6)


@dataclass(frozen=True)
class _Box:
    x0: float
    y0: float
    x1: float
    y1: float

    def overlap(self, other: _Box) -> float:
        """The area two boxes share."""
        return max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0)) * max(
            0.0, min(self.y1, other.y1) - max(self.y0, other.y0))


def _label_box(x: float, y: float, anchor: str, text: str) -> _Box:
    width = len(text) * _CHAR_W
    x0 = {"start": x, "end": x - width, "middle": x - width / 2}[anchor]
    return _Box(x0, y - _LINE_H + 2, x0 + width, y + 2)


@dataclass(frozen=True)
class _Spot:
    x: float
    y: float
    anchor: str
    ring: float

    def box(self, text: str) -> _Box:
        """Where the label's text lies."""
        return _label_box(self.x, self.y, self.anchor, text)


def _place_label(x: float, y: float, text: str, taken: list[_Box], frame: _Box) -> _Spot:
    """The nearest spot around (x, y) that overlaps no marker or label and stays in the frame; else the least bad."""

    def cost(spot: _Spot) -> float:
        box = spot.box(text)
        outside = (box.x1 - box.x0) * (box.y1 - box.y0) - box.overlap(frame)
        return sum(box.overlap(other) for other in taken) + 10 * outside

    spots = [_Spot(x + dx * ring, y + dy * ring, anchor, ring) for ring in _RINGS for dx, dy, anchor in _LABEL_SPOTS]
    best = min(spots, key=lambda spot: (cost(spot) > 0, spot.ring, cost(spot)))
    taken.append(best.box(text))
    return best


def _leader(x: float, y: float, spot: _Spot, text: str) -> str:
    """A thin line from a point to its label placed further out, ending at the label's nearest edge."""
    box = spot.box(text)
    ex, ey = min(max(x, box.x0), box.x1), min(max(y, box.y0), box.y1)
    return (f'<line class="leader" x1="{coord(x)}" y1="{coord(y)}" x2="{coord(ex)}" y2="{coord(ey)}" '
            'stroke="#a0a6b2" stroke-width="0.8"/>')


def _svg_points(drawn: Sequence[_Plotted], x: Scale, y: LogScale, frame: _Box) -> list[str]:
    at = {id(d): (x(d.point.size_mb), y(d.kld)) for d in drawn}
    taken = [_Box(px - 7, py - 7, px + 7, py + 7) for px, py in at.values()]
    leaders, markers, labels = [], [], []
    for d in reversed(_draw_order(drawn)):  # levels first, so the budget markers lie on top
        p, style = d.point, _STYLES[d.point.kind]
        tip = f"{p.label} ({style.legend}): {p.size_mb:.1f} MB ({p.size_bytes} bytes), KLD {p.kld:g}"
        cx, cy = at[id(d)]
        # data-cx/-cy: where any shape's centre is, for a reader (and the tests) that needs no geometry.
        attrs = (f' data-label="{esc(p.label)}" data-kind="{p.kind}" data-size-bytes="{p.size_bytes}" '
                 f'data-kld="{p.kld!r}" data-cx="{coord(cx)}" data-cy="{coord(cy)}"')
        markers.append(_marker(cx, cy, style, "marker", attrs, f"<title>{esc(tip)}</title>"))
    for d in _draw_order(drawn):
        label = truncate(d.point.label, 24)
        spot = _place_label(*at[id(d)], label, taken, frame)
        if spot.ring > 1:
            leaders.append(_leader(*at[id(d)], spot, label))
        labels.append(svg_text(f"point-label {_STYLES[d.point.kind].css}", spot.x, spot.y, spot.anchor, label))
    return leaders + markers + labels


def _dash(kind: str) -> str:
    dash = _FRONT_LINES[kind][0]
    return f' stroke-dasharray="{dash}"' if dash else ""


def _svg_fronts(drawn: Sequence[_Plotted], x: Scale, y: LogScale) -> list[str]:
    out = []
    for kind, front in _fronts(drawn).items():
        path = " ".join(f"{coord(x(d.point.size_mb))},{coord(y(d.kld))}" for d in front)
        out.append(f'<polyline class="front front-{_STYLES[kind].css}" points="{path}"{_dash(kind)}/>')
    return out


def _svg_legend(drawn: Sequence[_Plotted], left: float, top: float) -> list[str]:
    kinds = _kinds_present([d.point for d in drawn])
    out = [svg_text("axis-title legend-title", left, top, "start", "Legend")]
    row = top + 20
    for kind in kinds:
        style = _STYLES[kind]
        out.append(_marker(left + 7, row - 4, style, "legend-mark", ' aria-hidden="true"'))
        out.append(svg_text("legend", left + 20, row, "start", style.legend))
        row += 20
    for kind in _fronts(drawn):
        out.append(f'<polyline class="front" points="{coord(left)},{coord(row - 4)} {coord(left + 14)},'
                   f'{coord(row - 4)}"{_dash(kind)}/>')
        out.append(svg_text("legend", left + 20, row, "start", _FRONT_LINES[kind][2]))
        row += 20
    out.append(svg_text("legend tick", left, row + 8, "start", "lower = closer to the reference;"))
    out.append(svg_text("legend tick", left, row + 22, "start", "left = smaller file"))
    return out


def frontier_svg(points: Sequence[FrontierPoint], title: str, *, chart_id: str = "chart-frontier") -> str:
    """An inline, self-contained SVG of size (MB) against KLD (log axis): levels, their front, budget results."""
    points = list(points)
    if not points:
        return (f'<svg id="{esc(chart_id)}" class="chart frontier empty" viewBox="0 0 {_SVG_WIDTH} 60" '
                f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(NOTHING_TO_DRAW)}">'
                + "".join(f'<text x="10" y="{22 + 18 * i}" font-size="13" fill="#8a5a00">{esc(line)}</text>'
                          for i, line in enumerate(NOTHING_TO_DRAW.split("; ")))
                + "</svg>")
    drawn, notes = _plotted(points)
    bottom = _PLOT_TOP + _PLOT_HEIGHT
    height = bottom + 56 + 16 * len(notes)
    x = tight_scale([d.point.size_mb for d in drawn], _PLOT_LEFT, _PLOT_RIGHT, margin=0.08, target=8)
    y = log_scale([d.kld for d in drawn], bottom, _PLOT_TOP)
    frame = _Box(_PLOT_LEFT, _PLOT_TOP, _PLOT_RIGHT, bottom)
    parts = [
        f'<svg id="{esc(chart_id)}" class="chart frontier" viewBox="0 0 {_SVG_WIDTH} {height}" width="{_SVG_WIDTH}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title><style>{_SVG_CSS.format(id=esc(chart_id))}</style>",
        svg_text("chart-title", (_PLOT_LEFT + _PLOT_RIGHT) / 2, 22, "middle", title),
    ]
    parts.extend(axes(x, y, x_title="File size (MB, 10⁶ bytes)", y_title="KLD vs reference (log scale)"))
    parts.extend(_svg_fronts(drawn, x, y))
    parts.extend(_svg_points(drawn, x, y, frame))
    parts.extend(_svg_legend(drawn, _PLOT_RIGHT + 24, _PLOT_TOP + 8))
    parts.extend(svg_text("note", _PLOT_LEFT, bottom + 60 + 16 * i, "start", note) for i, note in enumerate(notes))
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- terminal


class _Grid:
    """A character canvas: the plot's rows and columns, blank until drawn on."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cells = [[" "] * width for _ in range(height)]

    def free(self, row: int, c0: int, c1: int) -> bool:
        """Whether columns c0..c1 (inclusive) of `row` are inside and hold nothing but blanks and the fronts' dots:
        a label may cover a stretch of line, never a mark or another label."""
        return 0 <= row < self.height and 0 <= c0 and c1 < self.width and all(
            self.cells[row][c] in _UNDER_LABELS for c in range(c0, c1 + 1))

    def write(self, row: int, col: int, text: str) -> None:
        for i, char in enumerate(text):
            self.cells[row][col + i] = char


def _text_cell(x: Scale, y: LogScale, d: _Plotted) -> tuple[int, int]:
    return round(y(d.kld)), round(x(d.point.size_mb))


def _text_fronts(grid: _Grid, drawn: Sequence[_Plotted], x: Scale, y: LogScale) -> None:
    for kind, front in _fronts(drawn).items():
        dot = _FRONT_LINES[kind][1]
        for a, b in itertools.pairwise(front):
            (r0, c0), (r1, c1) = _text_cell(x, y, a), _text_cell(x, y, b)
            steps = 2 * max(abs(r1 - r0), abs(c1 - c0), 1)
            for i in range(1, steps):
                r, c = round(r0 + (r1 - r0) * i / steps), round(c0 + (c1 - c0) * i / steps)
                if grid.cells[r][c] == " ":
                    grid.cells[r][c] = dot


def _text_labels(grid: _Grid, drawn: Sequence[_Plotted], x: Scale, y: LogScale) -> None:
    # Labels go right of their mark, else left, where the whole label and a space around it are blank.
    for d in _draw_order(drawn):
        row, col = _text_cell(x, y, d)
        label = truncate(d.point.label, 16)
        for start in (col + 2, col - 1 - len(label)):
            end = start + len(label) - 1
            # One free cell each side (where the plot has one) keeps a label apart from its neighbours.
            if start >= 0 and end < grid.width and grid.free(row, max(0, start - 1), min(grid.width - 1, end + 1)):
                for col in (start - 1, end + 1):
                    if 0 <= col < grid.width:
                        grid.cells[row][col] = " "
                grid.write(row, start, label)
                break


def _y_labels(y: LogScale, height: int) -> dict[int, str]:
    labels: dict[int, str] = {}
    for tick in y.ticks:
        row = round(y(tick))
        if 0 <= row < height and row not in labels and row - 1 not in labels and row + 1 not in labels:
            labels[row] = y.label(tick)
    return labels


def _x_axis(x: Scale, width: int, gutter: int) -> list[str]:
    rule = ["-"] * width
    numbers = [" "] * (width + 8)
    last_end = -2
    for tick in x.ticks:
        col = round(x(tick))
        if not 0 <= col < width:
            continue
        rule[col] = "+"
        text = x.label(tick)
        start = max(0, col - len(text) // 2)
        if start > last_end + 1:
            numbers[start:start + len(text)] = list(text)
            last_end = start + len(text)
    pad = " " * gutter
    return [pad + "+" + "".join(rule), pad + " " + "".join(numbers).rstrip()]


def _text_table(points: Sequence[FrontierPoint]) -> list[str]:
    rows = sorted(points, key=lambda p: (p.size_bytes, p.kld))
    width = max(5, *(len(p.label) for p in rows))
    out = [f"{'label':<{width}}  {'size MB':>8}  {'KLD':>9}  kind"]
    out += [f"{p.label:<{width}}  {p.size_mb:>8.1f}  {format_kld(p.kld):>9}  {p.kind}" for p in rows]
    return out


def _wrap(entries: Sequence[str], lead: str, width: int) -> list[str]:
    """Entries joined by three spaces, in lines of at most `width` (an entry longer than that keeps its line)."""
    lines: list[list[str]] = [[]]
    for entry in entries:
        if lines[-1] and len(lead) + len("   ".join([*lines[-1], entry])) > width:
            lines.append([])
        lines[-1].append(entry)
    return [(lead if i == 0 else " " * len(lead)) + "   ".join(line) for i, line in enumerate(lines)]


def frontier_text(points: Sequence[FrontierPoint], width: int = 64, height: int = 18) -> str:
    """The frontier drawn in characters for the terminal, with a legend and a table of the points by size."""
    points = list(points)
    if not points:
        return NOTHING_TO_DRAW
    if width < 16 or height < 4:
        raise FrontierError(f"a {width}x{height} character chart is too small to draw", "at least 16 wide, 4 high")
    drawn, notes = _plotted(points)
    x = tight_scale([d.point.size_mb for d in drawn], 0, width - 1, margin=0.03)
    y = log_scale([d.kld for d in drawn], height - 1, 0)
    grid = _Grid(width, height)
    _text_fronts(grid, drawn, x, y)
    for d in reversed(_draw_order(drawn)):  # budget marks last: on a shared cell, the budget result shows
        row, col = _text_cell(x, y, d)
        grid.cells[row][col] = _STYLES[d.point.kind].mark
    _text_labels(grid, drawn, x, y)
    labels = _y_labels(y, height)
    gutter = max(len(text) for text in labels.values()) + 1 if labels else 1
    lines = ["KLD vs reference (log scale)"]
    lines += [f"{labels.get(row, ''):>{gutter - 1}} |{''.join(cells).rstrip()}" for row, cells in enumerate(grid.cells)]
    lines += _x_axis(x, width, gutter)
    lines.append((" " * gutter + "file size (MB)".center(width)).rstrip())
    legend = [f"{_STYLES[kind].mark} {_STYLES[kind].legend}" for kind in _kinds_present(points)]
    legend += [f"{_FRONT_LINES[kind][1] * 3} {_FRONT_LINES[kind][2]}" for kind in _fronts(drawn)]
    lines += _wrap(legend, "legend: ", gutter + 1 + width)
    lines += [f"note: {note}" for note in notes]
    lines.append("")
    lines += _text_table(points)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- report section


def points_from_dicts(items: Iterable[Any]) -> tuple[list[FrontierPoint], list[str]]:
    """The points of an experiment summary's "frontier" list, and a note for each entry that is not one."""
    points, problems = [], []
    for index, item in enumerate(items):
        try:
            points.append(item if isinstance(item, FrontierPoint) else FrontierPoint.from_dict(item))
        except FrontierError as exc:
            problems.append(f"frontier entry {index + 1} left out: {exc}")
    return points, problems


_CAPTION = ("Every point measured: file size and mean KLD against the reference. A budget result below the line "
            "of the standard levels beats them: smaller at the same KLD, or closer to the reference at the same size.")


def frontier_html(items: Iterable[Any], title: str = "File size against KLD, measured") -> str:
    """The report's frontier section: the chart, the points by size, and notes on entries left out."""
    points, problems = points_from_dicts(items)
    parts = ['<h2 id="frontier">Frontier: size against KLD</h2>']
    if points:
        parts.append(f'<figure><figcaption class="frontier-caption">{esc(_CAPTION)}'
                     f"</figcaption>{frontier_svg(points, title)}</figure>")
        rows = "".join(
            f'<tr class="{_STYLES[p.kind].css}"><th scope="row">{esc(p.label)}</th>'
            f'<td class="num" title="{p.size_bytes} bytes">{p.size_mb:,.1f}</td>'
            f'<td class="num" title="{p.kld!r}">{esc(format_kld(p.kld))}</td><td>{esc(p.kind)}</td></tr>'
            for p in sorted(points, key=lambda p: (p.size_bytes, p.kld)))
        parts.append('<table id="frontier-points"><thead><tr><th scope="col">Label</th><th scope="col">Size (MB)</th>'
                     f'<th scope="col">KLD</th><th scope="col">Kind</th></tr></thead><tbody>{rows}</tbody></table>')
    else:
        parts.append(f'<p class="no-data" id="no-frontier-data">{esc(NOTHING_TO_DRAW)}</p>')
    parts.extend(f'<p class="table-note frontier-note">{esc(problem)}</p>' for problem in problems)
    log.debug("frontier section: %d points, %d left out", len(points), len(problems))
    return "".join(parts)
