"""SVG building blocks for the reports' charts: escaping, linear and log scales with round ticks, axes, lines, text."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

# XML 1.0 forbids these even as references; dropping them keeps the SVG parts parseable as XML.
XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def esc(value: object) -> str:
    """Escape any text for element content and quoted attributes."""
    return html.escape(XML_INVALID.sub("\ufffd", str(value)), quote=True)


def truncate(text: str, limit: int = 28) -> str:
    """`text`, cut to `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------- scales


class AxisScale(Protocol):
    """What the axes need of a scale: data -> pixels, the pixel ends, the ticks and their labels."""

    p0: float
    p1: float
    ticks: tuple[float, ...]

    def __call__(self, value: float) -> float: ...

    def label(self, tick: float) -> str: ...


@dataclass(frozen=True)
class Scale:
    """Linear map from a data domain onto pixels, with round-number ticks."""

    d0: float
    d1: float
    p0: float
    p1: float
    ticks: tuple[float, ...]
    decimals: int

    def __call__(self, value: float) -> float:
        return self.p0 + (value - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)

    def label(self, tick: float) -> str:
        text = f"{tick:,.{self.decimals}f}"
        return "0" if float(tick) == 0 else text


def nice_step(span: float, target: int = 5) -> float:
    """The round step (1, 2, 2.5 or 5 x 10^k) that cuts `span` into about `target` parts."""
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0):
        if raw <= mult * magnitude:
            return mult * magnitude
    return 10 * magnitude


def linear_scale(values: Sequence[float], p0: float, p1: float, *, include_zero: bool, margin: float = 0.0) -> Scale:
    """A scale covering `values` (finite, non-empty); equal values get a padded domain, never zero width."""
    lo, hi = min(values), max(values)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    # The margin keeps extreme points off the frame, but never pushes the domain across zero.
    extra = (hi - lo) * margin
    lo = lo - extra if lo < 0 or lo - extra >= 0 else 0.0
    hi = hi + extra if hi > 0 or hi + extra <= 0 else 0.0
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = (lo, lo + pad) if include_zero and lo == 0 else (lo - pad, hi + pad)
    step = nice_step(hi - lo)
    k0, k1 = math.floor(lo / step), math.ceil(hi / step)
    if not 0 < k1 - k0 <= 20:
        # Float trouble with a span tiny against the magnitude: fall back to the bare ends.
        return Scale(lo, hi, p0, p1, (lo, hi), 6)
    ticks = tuple(k * step for k in range(k0, k1 + 1))
    return Scale(ticks[0], ticks[-1], p0, p1, ticks, _decimals(step))


def _decimals(step: float) -> int:
    mantissa = step / 10 ** math.floor(math.log10(step))
    return max(0, -math.floor(math.log10(step)) + (1 if math.isclose(mantissa, 2.5) else 0))


def tight_scale(values: Sequence[float], p0: float, p1: float, *, margin: float = 0.05, target: int = 6) -> Scale:
    """A scale over the span of `values` (finite, non-empty) and `margin` of it each side, with round ticks
    inside: unlike linear_scale, the ends are not pushed out to a tick, so the points fill the plot."""
    lo, hi = min(values), max(values)
    span = hi - lo or abs(lo) * 0.1 or 1.0
    lo, hi = lo - span * margin, hi + span * margin
    step = nice_step(hi - lo, target)
    ticks = tuple(k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1))
    return Scale(lo, hi, p0, p1, ticks, _decimals(step))


# The round values a log axis stops at within each decade.
_LOG_STEPS = (1.0, 2.0, 5.0)


@dataclass(frozen=True)
class LogScale:
    """Log10 map from a positive data domain onto pixels, ticked at 1, 2 and 5 of each decade."""

    d0: float
    d1: float
    p0: float
    p1: float
    ticks: tuple[float, ...]

    def __call__(self, value: float) -> float:
        share = (math.log10(value) - math.log10(self.d0)) / (math.log10(self.d1) - math.log10(self.d0))
        return self.p0 + share * (self.p1 - self.p0)

    def label(self, tick: float) -> str:
        # 0.001 reads better than 1e-03 down to the KLDs of q8_0; below that the exponent is shorter.
        return f"{tick:.{max(0, -math.floor(math.log10(tick)))}f}" if tick >= 1e-4 else f"{tick:.0e}"


def _round_values(lo_decade: int, hi_decade: int) -> list[float]:
    # Built from the mantissa and the exponent apart so that 0.2 is 0.2, not 0.20000000000000004.
    return [float(f"{step:g}e{k}") for k in range(lo_decade, hi_decade + 1) for step in _LOG_STEPS]


def log_scale(values: Sequence[float], p0: float, p1: float) -> LogScale:
    """A log scale from the round value (1, 2, 5 x 10^k) at or below the least of `values` (positive, non-empty)
    to the one at or above the greatest; a wide span is ticked at the decades only."""
    lo, hi = min(values), max(values)
    rounds = _round_values(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    d0 = max(v for v in rounds if v <= lo * (1 + 1e-9))
    d1 = min(v for v in rounds if v >= hi * (1 - 1e-9))
    if d1 <= d0:
        d1 = min(v for v in rounds if v > d0)
    inside = [v for v in rounds if d0 * (1 - 1e-9) <= v <= d1 * (1 + 1e-9)]
    if math.log10(d1 / d0) > 3.5:  # more than three decades: 1-2-5 ticks would crowd the axis
        inside = [v for v in inside if f"{v:e}".startswith("1")] or [d0, d1]
    return LogScale(d0, d1, p0, p1, tuple(inside))


def coord(value: float) -> str:
    """Format an SVG coordinate."""
    return f"{value:.2f}"


# ---------------------------------------------------------------------------------------------- elements


def svg_line(css: str, x1: float, y1: float, x2: float, y2: float) -> str:
    """An SVG line styled by the class `css`."""
    return f'<line class="{css}" x1="{coord(x1)}" y1="{coord(y1)}" x2="{coord(x2)}" y2="{coord(y2)}"/>'


def svg_text(css: str, x: float, y: float, anchor: str, content: object, *, rotate: Optional[float] = None) -> str:
    """An SVG text with escaped content; `rotate` turns it (degrees) about its own anchor point."""
    turn = f' transform="rotate({rotate:g} {coord(x)} {coord(y)})"' if rotate is not None else ""
    return f'<text class="{css}" x="{coord(x)}" y="{coord(y)}" text-anchor="{anchor}"{turn}>{esc(content)}</text>'


def axes(x: AxisScale, y: AxisScale, *, x_title: str, y_title: str) -> list[str]:
    """The two axes of a chart: lines, grid, ticks with numbers, and both titles."""
    left, right = x.p0, x.p1
    bottom, top = y.p0, y.p1
    out = [svg_line("axis", left, bottom, right, bottom), svg_line("axis", left, bottom, left, top)]
    for tick in x.ticks:
        out.append(svg_line("grid", x(tick), bottom, x(tick), top))
        out.append(svg_text("tick x-tick", x(tick), bottom + 16, "middle", x.label(tick)))
    out.extend(y_ticks(y, left, right))
    out.append(svg_text("axis-title", (left + right) / 2, bottom + 38, "middle", x_title))
    out.append(vertical_title(y, y_title))
    return out


def y_ticks(y: AxisScale, left: float, right: float) -> list[str]:
    """The y axis's grid lines and tick numbers across the plot."""
    out = []
    for tick in y.ticks:
        out.append(svg_line("grid", left, y(tick), right, y(tick)))
        out.append(svg_text("tick y-tick", left - 6, y(tick) + 4, "end", y.label(tick)))
    return out


def vertical_title(y: AxisScale, title: str) -> str:
    """The y axis's title, turned to run up the left edge."""
    return svg_text("axis-title", 16, (y.p0 + y.p1) / 2, "middle", title, rotate=-90)
