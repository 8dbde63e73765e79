"""Training a config as a job: the one entry point every caller uses (web, API, CLI, stacking tool).

One claim per config: a training is a job that holds the claim ``train:<config id>`` while it is
queued or running (the unique ``active_key`` index of the jobs collection decides races across
processes and machines). Whoever asks for a config's training while one runs gets that job instead
of a second one: the web's Train button shows it, ``cli train`` and the stacking tool's slow path
wait for it and say that they joined. Every training runs bounded (``TRAIN_TIMEOUT_SECONDS``,
``TRAIN_MEMORY_LIMIT_MB``, cancel) in a child process or, on a Dask worker, stopped at its next fold.

- :func:`submit_training`: queue it (or find the running one) and return at once (web, API, sweeps);
- :func:`train_bounded`: queue it (or join it) and wait for its end, forwarding its progress (CLI,
  stacking tool); raises the training's error with its code.
"""

from __future__ import annotations

import contextlib
from typing import Any

from bson import ObjectId

from models import jobs
from models.errors import ServiceError
from models.jobs.follow import follow
from models.jobs.remote import RemoteWork
from models.jsonable import to_json
from models.progress import Progress, no_progress
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.runs import RunStore
from models.training.train import train_config

TRAIN_KIND = "train"


def train_key(name: str) -> str:
    """The job key of a config's training, for people (``train:<name>``)."""
    return f"{TRAIN_KIND}:{name}"


def train_claim(config_id: Any) -> str:
    """What at most one active training of a config holds (``train:<config id>``; renames don't matter)."""
    return f"{TRAIN_KIND}:{config_id}"


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
                "warnings": run.get("warnings") or [],
            }
        )
        or {}
    )


def run_training(
    database: Database,
    progress: Progress,
    *,
    config_id: str,
    requested_by: str | None = None,
    version: str | None = None,
    unless_changed_from: str | None = None,
) -> dict[str, Any]:
    """A training job's work: train config ``config_id`` on ``database`` (on a Dask worker: the worker's own).

    ``unless_changed_from`` (the stacking tool's slow path): if the config no longer points at that run
    id (``""``: at no run), someone else retrained it meanwhile and nothing is trained again: the
    summary of its current run comes back with ``"skipped": true``.
    """
    if unless_changed_from is not None:
        config = ConfigStore(database).get(ObjectId(config_id))
        current = config.get("run_id") or ""
        if current != unless_changed_from:  # whatever its status now, a run newer than the broken one exists
            run = RunStore(database).find(current)
            if run is not None:
                # "" was at no run: that was its first training, not a retraining
                again = "trained" if not unless_changed_from else "retrained"
                progress(1.0, f"already {again} meanwhile as run {current}")
                return {**run_summary(run), "skipped": True}
    run = train_config(
        database, ObjectId(config_id), progress=progress, requested_by=requested_by, version=version
    )
    return run_summary(run)


def submit_training(
    database: Database,
    ident: Any,
    *,
    runner: jobs.JobRunner | None = None,
    requested_by: str | None = None,
    version: str | None = None,
    unless_changed_from: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Queue the training of config ``ident`` (name or id); returns ``(job, created)``.

    ``created`` is False when a training of that config is already queued or running (from any entry
    point, any process): the returned job is that one. NotFoundError (404) for an unknown config. On a
    Dask cluster the worker gets only the config id (:class:`~models.jobs.remote.RemoteWork`) and
    trains with its own settings.
    """
    config = ConfigStore(database).get(ident)
    config_id, name = config["_id"], config["name"]
    kwargs: dict[str, Any] = {"config_id": str(config_id), "requested_by": requested_by, "version": version}
    if unless_changed_from is not None:
        kwargs["unless_changed_from"] = unless_changed_from
    return jobs.submit(
        database,
        runner,
        TRAIN_KIND,
        train_key(name),
        RemoteWork(run_training, kwargs, database=database),
        params={"config": name, "config_id": str(config_id)},
        requested_by=requested_by,
        bounded=True,
        claim=train_claim(config_id),
    )


def train_bounded(
    database: Database,
    ident: Any,
    *,
    progress: Progress = no_progress,
    version: str | None = None,
    requested_by: str | None = None,
    runner: jobs.JobRunner | None = None,
    unless_changed_from: str | None = None,
    wait_timeout: float | None = None,
) -> dict[str, Any]:
    """Train config ``ident`` once and wait: submit its training job, or join the one already running,
    and return the run summary (``joined``: True when it was someone else's job; ``job_id``;
    ``waited_seconds`` spent on someone else's job, at most ``wait_timeout``).

    The training runs bounded like every job (``TRAIN_TIMEOUT_SECONDS``: :class:`JobStopped` code
    ``timeout``, the config keeps its previous run). Its errors come back with their code, message and
    field. Interrupted while waiting (Ctrl-C), a job this call started is cancelled.
    """
    job, created = submit_training(
        database,
        ident,
        runner=runner,
        requested_by=requested_by,
        version=version,
        unless_changed_from=unless_changed_from,
    )
    try:
        followed = follow(database, job, joined=not created, progress=progress, wait_timeout=wait_timeout)
    except KeyboardInterrupt:
        if created:
            with contextlib.suppress(ServiceError):  # it ended meanwhile
                jobs.cancel(database, job["_id"], requested_by=requested_by)
        raise
    return {
        **followed.result,
        "joined": followed.joined,
        "job_id": followed.job_id,
        "waited_seconds": round(followed.waited_seconds, 4),
        "worker": followed.worker,
    }
