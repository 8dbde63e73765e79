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
import time
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from models import jobs
from models.errors import ServiceError
from models.jobs.bounded import ChildError
from models.jobs.context import CANCELLED, PROCESS_DIED, TIMEOUT, JobStopped
from models.jobs.remote import RemoteWork
from models.jsonable import to_json
from models.progress import Progress, no_progress
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.locks import LockTimeoutError
from models.store.runs import RunStore
from models.training.train import train_config

TRAIN_KIND = "train"
FOLLOW_POLL_S = 0.2
STOP_CODES = (CANCELLED, TIMEOUT, "memory_limit", PROCESS_DIED)


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
        if current != unless_changed_from and config.get("status") == "trained":
            run = RunStore(database).find(current)
            if run is not None:
                progress(1.0, f"already retrained meanwhile as run {current}")
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


@dataclass
class Followed:
    """How a caller's training request went: the job's result, and whether it joined someone else's."""

    job_id: str
    joined: bool
    waited_seconds: float
    result: dict[str, Any]
    worker: str | None = None  # the Dask worker that ran it, on a cluster


def job_error(job: dict[str, Any]) -> ServiceError:
    """The exception for a failed job: :class:`JobStopped` for a stop (cancel, time limit, memory,
    a dead process), else the training's own error (same code, message and field)."""
    error = job.get("error") or {"code": "failed", "message": "the job failed"}
    if error.get("code") in STOP_CODES:
        return JobStopped(str(error["code"]), str(error.get("message") or "the job was stopped"))
    return ChildError(error)


def follow(
    database: Database,
    job: dict[str, Any],
    *,
    joined: bool,
    progress: Progress = no_progress,
    wait_timeout: float | None = None,
) -> Followed:
    """Wait for ``job`` to end, passing its progress on; its result, or its error raised.

    ``wait_timeout`` bounds the wait for a joined job (someone else's): LockTimeoutError after that
    many seconds (the job itself goes on). A job of our own is bounded by its time limit."""
    started = time.monotonic()
    oid = job["_id"]
    if joined:
        who = f" (started by {job['requested_by']})" if job.get("requested_by") else ""
        progress(float(job.get("progress") or 0.0), f"joined the training already running: job {oid}{who}")
    seen: list[tuple[Any, Any]] = []  # the steps already passed on, oldest first
    while True:
        doc = jobs.get_job(database, oid)
        _pass_on_steps(doc, seen, progress)
        if jobs.is_finished(doc):
            break
        if joined and wait_timeout is not None and time.monotonic() - started > wait_timeout:
            raise LockTimeoutError(
                f"waited {wait_timeout:.0f} s for the training of {doc.get('params', {}).get('config')!r} "
                f"that another caller runs (job {oid}); try again later"
            )
        time.sleep(FOLLOW_POLL_S)
    if doc["status"] != jobs.SUCCEEDED:
        raise job_error(doc)
    return Followed(
        str(oid),
        joined,
        time.monotonic() - started if joined else 0.0,
        doc.get("result") or {},
        (doc.get("worker") or {}).get("address"),
    )


def _pass_on_steps(job: dict[str, Any], seen: list[tuple[Any, Any]], progress: Progress) -> None:
    """Pass each new entry of the job's ``steps`` log to ``progress`` once, in order (every step, however
    short, not only the state at the moment of a poll); the job's own end is the caller's to report."""
    for step in job.get("steps") or []:
        key = (step.get("at"), step.get("message"))
        if key in seen:
            continue
        seen.append(key)
        message = str(step.get("message") or "")
        if message in ("queued", "done") or message.startswith("failed: "):
            continue
        progress(float(step.get("progress") or 0.0), message)


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
