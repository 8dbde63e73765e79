"""Training as a background job: submit a config's training, one job per config at a time.

Thin adapter over :func:`models.training.train_config` and :mod:`models.jobs`:
one job per config at a time (key ``train:<config name>``), so pressing Train
while a job runs hands back the running job instead of starting a second one.
"""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from models import jobs
from models.jobs.remote import RemoteWork
from models.jsonable import to_json
from models.progress import Progress, no_progress
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.train import train_config

TRAIN_KIND = "train"


def train_key(name: str) -> str:
    """The job key of a config's training (one active job per key)."""
    return f"{TRAIN_KIND}:{name}"


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe summary of a run for a job's result."""
    return (
        to_json(
            {
                "run_id": run["run_id"],
                "name": run.get("name"),
                "version": run.get("version"),
                "config_id": run.get("config_id"),
                "metrics": run.get("metrics"),
                "cv": run.get("cv"),
                "durations": run.get("durations"),
            }
        )
        or {}
    )


def train_bounded(
    database: Database,
    ident: Any,
    *,
    progress: Progress = no_progress,
    version: str | None = None,
    requested_by: str | None = None,
) -> dict[str, Any]:
    """:func:`train_config` in a child process under ``TRAIN_TIMEOUT_SECONDS`` and ``TRAIN_MEMORY_LIMIT_MB``
    (what ``cli train`` runs); returns the run document.

    Over the time limit the child is stopped and JobStopped (code ``timeout``) is raised; the
    config is marked failed and keeps its previous run. Errors of the training itself come back
    as ServiceErrors with their code, message and field.
    """
    settings = database.settings

    def work(report: Progress) -> dict[str, Any]:
        return train_config(database, ident, progress=report, version=version, requested_by=requested_by)

    return jobs.run_bounded(
        work,
        database=database,
        timeout=float(settings.train_timeout_seconds) or None,
        memory_limit_mb=settings.train_memory_limit_mb,
        progress=progress,
    )


def run_training(
    database: Database,
    progress: Progress,
    *,
    config_id: str,
    requested_by: str | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """A training job's work: train config ``config_id`` on ``database`` (on a Dask worker: the worker's own)."""
    run = train_config(
        database, ObjectId(config_id), progress=progress, requested_by=requested_by, version=version
    )
    return run_summary(run)


def submit_training(
    database: Database,
    ident: str,
    *,
    runner: jobs.JobRunner | None = None,
    requested_by: str | None = None,
    version: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Queue the training of config ``ident`` (name or id); returns ``(job, created)``.

    ``created`` is False when a training of that config is already queued or running:
    the returned job is that one. NotFoundError (404) for an unknown config. On a Dask
    cluster the worker gets only the config id (:class:`~models.jobs.remote.RemoteWork`)
    and trains with its own settings.
    """
    config = ConfigStore(database).get(ident)
    config_id, name = config["_id"], config["name"]
    work = RemoteWork(
        "models.training.service:run_training",
        {"config_id": str(config_id), "requested_by": requested_by, "version": version},
        database=database,
    )
    return jobs.submit(
        database,
        runner,
        TRAIN_KIND,
        train_key(name),
        work,
        params={"config": name, "config_id": str(config_id)},
        requested_by=requested_by,
        bounded=True,
    )
