"""What the training area of a config page shows: current run, its files, charts, history, last job."""
from __future__ import annotations

from typing import Any

from models import jobs
from models.artifacts.maintenance import run_artifacts_info
from models.store.db import Database
from models.store.runs import RunStore
from models.training.service import train_key

# Metrics that live in 0..1, so their bars share one scale.
BOUNDED_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "brier", "r2")
FEATURE_BARS = 20  # feature importance chart: the top this many


def metric_items(metrics: dict[str, Any] | None, names: tuple[str, ...] | None = None) -> list[tuple[str, Any]]:
    """``(name, value)`` for every numeric top-level metric (or only ``names``, in that order)."""
    metrics = metrics or {}
    keys = names if names is not None else tuple(metrics)
    return [(k, metrics[k]) for k in keys
            if k in metrics and isinstance(metrics[k], (int, float)) and not isinstance(metrics[k], bool)]


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
        "metric_rows": metric_items(metrics),
        "feature_items": [(f["feature"], f["importance"]) for f in ((run or {}).get("feature_importance")
                                                                    or [])[:FEATURE_BARS]],
    }
