"""How values look on the pages: dates, metrics, "last trained". Registered as Jinja filters."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Flask
from markupsafe import Markup, escape

from models.errors import describe_reason
from models.timeutil import iso
from models.training.headline import headline_metric as primary_metric


def last_trained(doc: dict[str, Any]) -> datetime | str | None:
    """When the config's current model was trained (``trained_at``, else ``artifacts_saved_at``)."""
    return doc.get("trained_at") or doc.get("artifacts_saved_at") or None


def format_time(value: Any, seconds: bool = False) -> str:
    """``2026-11-23 10:15 UTC`` (with ``seconds``: ``10:15:09``) for datetimes, ISO strings shown as they
    are, ``—`` for nothing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, datetime):
        return iso(value).replace("T", " ").removesuffix("Z")[: 19 if seconds else 16] + " UTC"
    return str(value)


def format_time_s(value: Any) -> str:
    """:func:`format_time` to the second (job pages: steps seconds apart)."""
    return format_time(value, seconds=True)


def format_number(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def format_duration(seconds: Any) -> str:
    """``0.42 s``, ``12.3 s``, ``2 min 05 s``; ``—`` for nothing."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return "—"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


def format_size(size: Any) -> str:
    """``812 B``, ``14.2 KB``, ``3.1 MB``; ``—`` for nothing."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        return "—"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def pretty_json(value: Any) -> str:
    """Indented JSON for showing nested values (dates and ids as text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def breakable(value: Any) -> Markup:
    """A name that may wrap only after its ``_`` (a ``<wbr>`` there), never inside a word: long names
    such as ``hist_gradient_boosting_classifier`` fit narrow columns and phones."""
    return Markup("_<wbr>").join(escape("" if value is None else str(value)).split("_"))


def soft_breaks(value: Any) -> str:
    """:func:`breakable` for attribute text (e.g. a ``data-label`` shown by CSS): a zero-width space
    after each ``_``."""
    return ("" if value is None else str(value)).replace("_", "_\u200b")


def register_filters(app: Flask) -> None:
    """Make the helpers available in templates."""
    app.add_template_filter(format_time, "time")
    app.add_template_filter(format_time_s, "time_s")
    app.add_template_filter(format_number, "num")
    app.add_template_filter(pretty_json, "pretty_json")
    app.add_template_filter(format_duration, "duration")
    app.add_template_filter(format_size, "filesize")
    app.add_template_filter(describe_reason, "reason_text")
    app.add_template_filter(breakable, "breakable")
    app.add_template_filter(soft_breaks, "soft_breaks")
    app.add_template_global(primary_metric, "primary_metric")
    app.add_template_global(last_trained)
