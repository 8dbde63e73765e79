"""The headline metric of a config or run document: what the tables (web and CLI) show first."""

from __future__ import annotations

from typing import Any

# Which metric to show first, per task, when a config's ``metrics`` holds several.
PREFERRED_METRICS = {
    "classification": ("roc_auc", "accuracy", "f1", "log_loss"),
    "regression": ("rmse", "r2", "mae"),
}
# Where training may nest the numbers inside ``metrics``.
_METRIC_SECTIONS = ("cv", "cv_mean", "test", "holdout", "validation")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict) and isinstance(value.get("mean"), (int, float)):
        return float(value["mean"])
    return None


def headline_metric(doc: dict[str, Any]) -> tuple[str, float] | None:
    """The headline metric of a config, as ``(name, value)``, or ``None`` before training.

    Accepts ``metrics`` as a flat mapping of numbers, with the numbers one level
    down (``{"cv": {...}}``), or with an explicit ``{"primary": {"name", "value"}}``.
    """
    metrics = doc.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return None
    primary = metrics.get("primary")
    if isinstance(primary, dict) and _number(primary.get("value")) is not None:
        return str(primary.get("name", "metric")), _number(primary["value"])  # type: ignore[return-value]
    if isinstance(primary, str) and _number(metrics.get(primary)) is not None:
        return primary, _number(metrics[primary])  # type: ignore[return-value]
    sections = [metrics] + [metrics[s] for s in _METRIC_SECTIONS if isinstance(metrics.get(s), dict)]
    preferred = PREFERRED_METRICS.get(doc.get("task", ""), ())
    for name in preferred:
        for section in sections:
            value = _number(section.get(name))
            if value is not None:
                return name, value
    for section in sections:
        for name, value in section.items():
            if _number(value) is not None:
                return str(name), _number(value)  # type: ignore[return-value]
    return None
