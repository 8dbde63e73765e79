"""Training from the web: submit a config's training as a background job, and what the page shows after.

Thin adapter over :func:`models.training.train_config` and :mod:`models.jobs`:
one job per config at a time (key ``train:<config name>``), so pressing Train
while a job runs hands back the running job instead of starting a second one.
"""
from __future__ import annotations

from typing import Any

from models import jobs
from models.config_store import ConfigStore
from models.db import Database
from models.jsonable import to_json
from models.maintenance import run_artifacts_info
from models.progress import Progress
from models.runs import RunStore
from models.training import train_config

TRAIN_KIND = "train"
# Metrics that live in 0..1, so their bars share one scale.
BOUNDED_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "brier", "r2")
FEATURE_BARS = 20  # feature importance chart: the top this many


def train_key(name: str) -> str:
    """The job key of a config's training (one active job per key)."""
    return f"{TRAIN_KIND}:{name}"


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe summary of a run for a job's result."""
    return to_json({"run_id": run["run_id"], "name": run.get("name"), "version": run.get("version"),
                    "config_id": run.get("config_id"), "metrics": run.get("metrics"), "cv": run.get("cv"),
                    "durations": run.get("durations")}) or {}


def submit_training(database: Database, ident: str, *, runner: jobs.JobRunner | None = None,
                    requested_by: str | None = None) -> tuple[dict[str, Any], bool]:
    """Queue the training of config ``ident`` (name or id); returns ``(job, created)``.

    ``created`` is False when a training of that config is already queued or running:
    the returned job is that one. NotFoundError (404) for an unknown config.
    """
    config = ConfigStore(database).get(ident)
    config_id, name = config["_id"], config["name"]

    def work(progress: Progress) -> dict[str, Any]:
        run = train_config(database, config_id, progress=progress, requested_by=requested_by)
        return run_summary(run)

    return jobs.submit(database, runner, TRAIN_KIND, train_key(name), work,
                       params={"config": name, "config_id": str(config_id)}, requested_by=requested_by)


def latest_job(database: Database, key: str) -> dict[str, Any] | None:
    """The newest job with ``key`` (running or finished), or None."""
    found = jobs.list_jobs(database, key=key, limit=1)
    return found[0] if found else None


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
    job = latest_job(database, train_key(config["name"]))
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
