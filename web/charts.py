"""Server-rendered charts: small inline SVG (no JavaScript, no CDN), registered as Jinja globals.

People would rather look than read: bar charts for metrics, CV fold scores and
feature importance, a heatmap for the confusion matrix. Every chart is plain
SVG markup with its numbers as text too (and a ``<title>`` per mark), so it
reads without colour and prints well.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from flask import Flask
from markupsafe import Markup, escape

from models.training.metrics import higher_is_better
from web.formatting import format_number

BAR_COLOR = "#2f5bd3"
HIGHLIGHT_COLOR = "#1f8a4c"
ROW_HEIGHT = 24  # the bar's band (the bar itself is 6 px thinner)
LABEL_LINE = 17  # the label's line, above its bar
AXIS_HEIGHT = 40
PLOT_UNITS = 1000  # a bar's width attribute: its length in a 0-1000 plot (drawn as a percentage)
VALUE_INSIDE = 0.72  # a bar longer than this fraction carries its value inside its end


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _nice_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts ``span`` into about four parts."""
    raw = span / 4 if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def axis_range(values: Sequence[float], max_value: float | None, zoom: bool) -> tuple[float, float]:
    """Where the value axis starts and ends. From 0 normally; with ``zoom``, when all values are positive
    and close together (differences under a quarter of the largest value would look equal from 0), the
    axis starts at a round number below the smallest value so the differences show."""
    top = max(values) if values else 1.0
    hi = max_value if max_value is not None else top
    hi = hi or 1.0
    if not zoom or len(values) < 2 or min(values) <= 0:
        return 0.0, hi
    spread = top - min(values)
    if spread >= 0.25 * top:
        return 0.0, hi
    step = _nice_step(max(spread, top * 0.01) * 2.5)
    lo = max(math.floor((min(values) - max(spread, top * 0.01)) / step) * step, 0.0)
    hi = (
        min(hi, math.ceil((top + max(spread, top * 0.01) * 0.25) / step) * step)
        if max_value
        else math.ceil((top + max(spread, top * 0.01) * 0.25) / step) * step
    )
    return round(lo, 12), round(max(hi, top), 12)


def bar_chart(
    items: Iterable[tuple[Any, Any]],
    *,
    max_value: float | None = None,
    width: int = 560,
    chart_id: str | None = None,
    label: str = "bar chart",
    highlight: Sequence[int] = (),
    zoom: bool = False,
    lower_is_better: bool | Sequence[bool] = False,
) -> Markup:
    """Horizontal bars, one row per ``(label, value)``; non-numbers are listed as ``—`` with no bar.

    ``max_value`` fixes the scale's end (e.g. 1.0 for scores); otherwise the largest value fills the width.
    ``zoom`` lets the axis start above 0 when that hides differences (see :func:`axis_range`); the value
    scale is drawn under the bars either way. ``lower_is_better`` (for the chart, or per row) marks those
    rows with "↓" and says so under the chart. ``highlight`` holds row indexes drawn in the highlight
    colour (e.g. the best model). Labels are never clipped: each has its own line above its bar.

    The chart is as wide as its box (at most ``width`` CSS px) and is never scaled down: positions across
    are percentages (no viewBox), so its text keeps the page's font size on a phone too.
    """
    rows = [(str(name), _number(value)) for name, value in items]
    if not rows:
        return Markup("")
    lower = (
        [bool(lower_is_better)] * len(rows)
        if isinstance(lower_is_better, bool)
        else [bool(x) for x in lower_is_better] + [False] * (len(rows) - len(lower_is_better))
    )
    names = [("↓ " if low else "") + name for (name, _), low in zip(rows, lower)]
    numbers = [abs(v) for _, v in rows if v is not None]
    lo, hi = axis_range(numbers, max_value, zoom)
    span = (hi - lo) or 1.0
    pitch = LABEL_LINE + ROW_HEIGHT
    height = pitch * len(rows) + 4 + AXIS_HEIGHT
    parts = [
        f'<svg class="chart bar-chart" role="img" aria-label="{escape(label)}" width="100%" '
        f'height="{height}" style="max-width: {int(width)}px; height: {height}px" data-axis-start="{format_number(lo)}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + ">"
    ]
    for i, (name, value) in enumerate(rows):
        y = i * pitch + 2
        bar_y = y + LABEL_LINE + 3
        shown = format_number(value) if value is not None else "—"
        direction = " (lower is better)" if lower[i] else ""
        fraction = max(min((abs(value) - lo) / span, 1.0), 0.0) if value is not None else 0.0
        parts.append(
            f'<g class="bar" data-label="{escape(name)}" data-value="{escape(shown)}">'
            f"<title>{escape(name)}: {escape(shown)}{direction}</title>"
            f'<text x="0" y="{y + LABEL_LINE - 4}" class="chart-label">{escape(names[i])}</text>'
            f'<rect x="0" y="{bar_y}" width="100%" height="{ROW_HEIGHT - 6}" class="chart-track"/>'
        )
        if value is not None:
            # the width attribute is the bar's length in a 0-1000 plot; the style draws it as a share of
            # the chart's width (CSS geometry), so the chart stretches without scaling its text
            color = HIGHLIGHT_COLOR if i in highlight else BAR_COLOR
            parts.append(
                f'<rect x="0" y="{bar_y}" width="{fraction * PLOT_UNITS:.1f}" height="{ROW_HEIGHT - 6}" '
                f'rx="2" fill="{color}" style="width: {fraction * 100:.2f}%"/>'
            )
        inside = value is not None and fraction > VALUE_INSIDE
        parts.append(
            f'<text x="{fraction * 100:.1f}%" dx="{-6 if inside else 6}" y="{bar_y + 13}" '
            f'text-anchor="{"end" if inside else "start"}" '
            f'class="chart-value{" inside" if inside else ""}">{escape(shown)}</text></g>'
        )
    axis_y = pitch * len(rows) + 6
    parts.append(f'<g class="chart-scale"><line x1="0" x2="100%" y1="{axis_y}" y2="{axis_y}" stroke="#c8cdd8"/>')
    for k in range(3):
        tick = lo + span * k / 2
        x = f"{50 * k}%"
        anchor = ("start", "middle", "end")[k]
        parts.append(
            f'<line x1="{x}" x2="{x}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#c8cdd8"/>'
            f'<text x="{x}" y="{axis_y + 16}" text-anchor="{anchor}" class="chart-axis tick">'
            f"{escape(format_number(tick, 3))}</text>"
        )
    notes = []
    if lo > 0:
        notes.append(f"axis starts at {format_number(lo, 3)}, not 0")
    if all(lower):
        notes.append("lower is better")
    elif any(lower):
        notes.append("↓ lower is better")
    if notes:
        parts.append(f'<text x="0" y="{axis_y + 33}" class="chart-axis note">{escape("; ".join(notes))}</text>')
    parts.append("</g></svg>")
    return Markup("".join(parts))


def _cell_color(fraction: float) -> str:
    """White to the primary blue."""
    fraction = max(0.0, min(fraction, 1.0))
    start, end = (245, 247, 252), (47, 91, 211)
    r, g, b = (round(s + (e - s) * fraction) for s, e in zip(start, end))
    return f"rgb({r},{g},{b})"


def heatmap(
    matrix: Sequence[Sequence[Any]], labels: Sequence[Any], *, chart_id: str | None = None, cell: int = 64
) -> Markup:
    """A confusion matrix: rows are the actual class, columns the predicted class.

    Each cell shows its count and is shaded by its share of the actual class's row.
    """
    if not matrix or not labels or len(matrix) != len(labels):
        return Markup("")
    n = len(labels)
    cell = min(cell, max(36, 210 // n))  # many classes: smaller cells, so the chart is not scaled down
    left, top = 110, 46
    width, height = left + n * cell + 10, top + n * cell + 10
    parts = [
        f'<svg class="chart heatmap" role="img" aria-label="confusion matrix" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"'
        + (f' id="{escape(chart_id)}"' if chart_id else "")
        + ">",
        f'<text x="{left + n * cell / 2}" y="14" text-anchor="middle" class="chart-axis">predicted</text>',
        f'<text x="14" y="{top + n * cell / 2}" text-anchor="middle" class="chart-axis" '
        f'transform="rotate(-90 14 {top + n * cell / 2})">actual</text>',
    ]
    for j, name in enumerate(labels):
        parts.append(
            f'<text x="{left + j * cell + cell / 2}" y="{top - 10}" text-anchor="middle" '
            f'class="chart-label">{escape(_clip(str(name), 10))}</text>'
        )
    for i, row in enumerate(matrix):
        values = [_number(v) or 0.0 for v in row]
        total = sum(values) or 1.0
        y = top + i * cell
        parts.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end" class="chart-label">'
            f"{escape(_clip(str(labels[i]), 12))}</text>"
        )
        for j, value in enumerate(values):
            share = value / total
            x = left + j * cell
            ink = "#fff" if share > 0.55 else "#1d2330"
            count = format_number(int(value)) if float(value).is_integer() else format_number(value)
            parts.append(
                f'<g class="cell" data-row="{i}" data-col="{j}" data-count="{escape(count)}">'
                f"<title>actual {escape(str(labels[i]))}, predicted {escape(str(labels[j]))}: "
                f"{escape(count)} ({share:.0%} of the row)</title>"
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="3" '
                f'fill="{_cell_color(share)}"/>'
                f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 5}" text-anchor="middle" '
                f'class="chart-count" fill="{ink}">{escape(count)}</text></g>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def register_charts(app: Flask) -> None:
    """Make the charts callable from templates."""
    app.add_template_global(bar_chart)
    app.add_template_global(higher_is_better)
    app.add_template_global(heatmap)
