"""What the training area of a config page shows: current run, its files, charts, history, last job."""

from __future__ import annotations

import math
from typing import Any

from models import jobs
from models.artifacts.maintenance import run_artifacts_info
from models.store.db import Database
from models.store.runs import RunStore
from models.training.metrics import higher_is_better
from models.training.service import train_key

# Metrics that live in 0..1, so their bars share one scale.
BOUNDED_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "brier", "r2")
FEATURE_BARS = 20  # feature importance chart: the top this many


def _signed_label(item: dict[str, Any]) -> str:
    """A feature's bar label: with a linear model's sign, ``(+)`` raises the prediction, ``(-)`` lowers it."""
    coefficient = item.get("coefficient")
    if coefficient is None:
        return str(item["feature"])
    return f"{item['feature']} ({'+' if coefficient >= 0 else '-'})"


def metric_items(metrics: dict[str, Any] | None, names: tuple[str, ...] | None = None) -> list[tuple[str, Any]]:
    """``(name, value)`` for every numeric top-level metric (or only ``names``, in that order)."""
    metrics = metrics or {}
    keys = names if names is not None else tuple(metrics)
    return [
        (k, metrics[k])
        for k in keys
        if k in metrics and isinstance(metrics[k], (int, float)) and not isinstance(metrics[k], bool)
    ]


def score_chart(run: dict[str, Any] | None) -> dict[str, Any]:
    """The held-out chart of a run: for a classifier its 0..1 scores (lower-is-better ones marked); for a
    regressor its errors in the target's units beside the error of always predicting the mean (the
    baseline that r2 compares against: RMSE / sqrt(1 - r2)), so the bars say how much the model helps."""
    metrics = (run or {}).get("metrics") or {}
    if (run or {}).get("task") != "regression":
        items = metric_items(metrics, BOUNDED_METRICS)
        return {
            "title": "Held-out metrics",
            "items": items,
            "max_value": 1.0,
            "lower": [not higher_is_better(k) for k, _ in items],
        }
    items = metric_items(metrics, ("rmse", "mae"))
    rmse, r2 = metrics.get("rmse"), metrics.get("r2")
    if isinstance(rmse, (int, float)) and isinstance(r2, (int, float)) and r2 < 1:
        items.insert(1, ("rmse of predicting the mean", rmse / math.sqrt(1 - r2)))
    return {
        "title": "Held-out errors (target units)",
        "items": items,
        "max_value": None,
        "lower": [True] * len(items),
    }


def training_context(database: Database, config: dict[str, Any]) -> dict[str, Any]:
    """Everything the training area of a config page shows: current run, its files, history, last job."""
    runs = RunStore(database)
    run = runs.find(config["run_id"]) if config.get("run_id") else None
    job = jobs.latest_job(database, train_key(config["name"]))
    metrics = (run or {}).get("metrics") or {}
    return {
        "run": run,
        "artifacts_info": run_artifacts_info(database, run["run_id"]) if run else None,
        "runs": runs.for_name(config["name"]),
        "job": job,
        "job_active": job is not None and not jobs.is_finished(job),
        "score_items": metric_items(metrics, BOUNDED_METRICS),
        "score_chart": score_chart(run),
        "metric_rows": metric_items(metrics),
        "feature_items": [
            (_signed_label(f), f["importance"])
            for f in ((run or {}).get("feature_importance") or [])[:FEATURE_BARS]
        ],
    }
