"""Server-rendered charts: small inline SVG (no JavaScript, no CDN), registered as Jinja globals.

People would rather look than read: bar charts for metrics, CV fold scores and
feature importance, a heatmap for the confusion matrix. Every chart is plain
SVG markup with its numbers as text too (and a ``<title>`` per mark), so it
reads without colour and prints well.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from flask import Flask
from markupsafe import Markup, escape

from web.formatting import format_number

BAR_COLOR = "#2f5bd3"
HIGHLIGHT_COLOR = "#1f8a4c"
ROW_HEIGHT = 24
LABEL_WIDTH = 150
VALUE_WIDTH = 70


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def bar_chart(items: Iterable[tuple[Any, Any]], *, max_value: float | None = None, width: int = 460,
              chart_id: str | None = None, label: str = "bar chart", highlight: Sequence[int] = (),
              label_width: int = LABEL_WIDTH) -> Markup:
    """Horizontal bars, one row per ``(label, value)``; non-numbers are listed as ``—`` with no bar.

    ``max_value`` fixes the scale (e.g. 1.0 for scores); otherwise the largest value fills the width.
    ``highlight`` holds row indexes drawn in the highlight colour (e.g. the best model).
    """
    rows = [(str(name), _number(value)) for name, value in items]
    if not rows:
        return Markup("")
    numbers = [abs(v) for _, v in rows if v is not None]
    scale = max_value if max_value is not None else (max(numbers) if numbers else 1.0)
    scale = scale or 1.0
    plot = width - label_width - VALUE_WIDTH
    height = ROW_HEIGHT * len(rows) + 4
    parts = [f'<svg class="chart bar-chart" role="img" aria-label="{escape(label)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"'
             + (f' id="{escape(chart_id)}"' if chart_id else "") + ">"]
    for i, (name, value) in enumerate(rows):
        y = i * ROW_HEIGHT + 2
        text_y = y + ROW_HEIGHT / 2 + 4
        shown = format_number(value) if value is not None else "—"
        parts.append(f'<g class="bar" data-label="{escape(name)}" data-value="{escape(shown)}">'
                     f'<title>{escape(name)}: {escape(shown)}</title>'
                     f'<text x="{label_width - 8}" y="{text_y}" text-anchor="end" class="chart-label">'
                     f'{escape(_clip(name, label_width // 7))}</text>')
        parts.append(f'<rect x="{label_width}" y="{y + 3}" width="{plot}" height="{ROW_HEIGHT - 6}" '
                     'class="chart-track"/>')
        if value is not None:
            length = max(min(abs(value) / scale, 1.0), 0.0) * plot
            color = HIGHLIGHT_COLOR if i in highlight else BAR_COLOR
            parts.append(f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{ROW_HEIGHT - 6}" '
                         f'rx="2" fill="{color}"/>')
        parts.append(f'<text x="{label_width + plot + 6}" y="{text_y}" class="chart-value">{escape(shown)}</text>'
                     "</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _cell_color(fraction: float) -> str:
    """White to the primary blue."""
    fraction = max(0.0, min(fraction, 1.0))
    start, end = (245, 247, 252), (47, 91, 211)
    r, g, b = (round(s + (e - s) * fraction) for s, e in zip(start, end))
    return f"rgb({r},{g},{b})"


def heatmap(matrix: Sequence[Sequence[Any]], labels: Sequence[Any], *, chart_id: str | None = None,
            cell: int = 64) -> Markup:
    """A confusion matrix: rows are the actual class, columns the predicted class.

    Each cell shows its count and is shaded by its share of the actual class's row.
    """
    if not matrix or not labels or len(matrix) != len(labels):
        return Markup("")
    n = len(labels)
    left, top = 110, 46
    width, height = left + n * cell + 10, top + n * cell + 10
    parts = [f'<svg class="chart heatmap" role="img" aria-label="confusion matrix" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"'
             + (f' id="{escape(chart_id)}"' if chart_id else "") + ">",
             f'<text x="{left + n * cell / 2}" y="14" text-anchor="middle" class="chart-axis">predicted</text>',
             f'<text x="14" y="{top + n * cell / 2}" text-anchor="middle" class="chart-axis" '
             f'transform="rotate(-90 14 {top + n * cell / 2})">actual</text>']
    for j, name in enumerate(labels):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 10}" text-anchor="middle" '
                     f'class="chart-label">{escape(_clip(str(name), 10))}</text>')
    for i, row in enumerate(matrix):
        values = [_number(v) or 0.0 for v in row]
        total = sum(values) or 1.0
        y = top + i * cell
        parts.append(f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end" class="chart-label">'
                     f'{escape(_clip(str(labels[i]), 12))}</text>')
        for j, value in enumerate(values):
            share = value / total
            x = left + j * cell
            ink = "#fff" if share > 0.55 else "#1d2330"
            count = format_number(int(value)) if float(value).is_integer() else format_number(value)
            parts.append(f'<g class="cell" data-row="{i}" data-col="{j}" data-count="{escape(count)}">'
                         f'<title>actual {escape(str(labels[i]))}, predicted {escape(str(labels[j]))}: '
                         f'{escape(count)} ({share:.0%} of the row)</title>'
                         f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="3" '
                         f'fill="{_cell_color(share)}"/>'
                         f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 5}" text-anchor="middle" '
                         f'class="chart-count" fill="{ink}">{escape(count)}</text></g>')
    parts.append("</svg>")
    return Markup("".join(parts))


def register_charts(app: Flask) -> None:
    """Make the charts callable from templates."""
    app.add_template_global(bar_chart)
    app.add_template_global(heatmap)
