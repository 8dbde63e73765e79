"""Submitting a job: one call that records it, dedupes it by ``key`` and hands it to a runner."""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from bson import ObjectId

from models.errors import ServiceError
from models.jobs.default import get_default_runner
from models.jobs.runner import JobRunner, RunnerUnavailableError
from models.jobs.worker import HEARTBEAT, JobFunction, JobTask
from models.processes import owned_by_me
from models.store import jobs as store
from models.store.db import Database

log = logging.getLogger(__name__)


def submit(
    database: Database,
    runner: JobRunner | None,
    kind: str,
    key: str,
    fn: JobFunction,
    *,
    params: dict[str, Any] | None = None,
    requested_by: str | None = None,
    bounded: bool = False,
    claim: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Queue job ``kind`` on ``key`` running ``fn(progress) -> dict``; returns ``(job, created)``.

    If a job holding the same ``claim`` (default: ``key``) is already queued or running, that job is
    returned with ``created=False`` and ``fn`` is not run. ``runner=None``
    means the process's default runner. Returns at once; read the job's state
    with :func:`~models.store.jobs.get_job` or :func:`~models.store.jobs.wait`.
    ``bounded=True`` runs ``fn`` in a child process under the time limit
    (``TRAIN_TIMEOUT_SECONDS``), the memory limit and cancel (see :mod:`models.jobs.bounded`);
    ``fn`` and what it closes over must then pickle with cloudpickle.
    """
    job, created = store.insert_job(database, kind, key, params=params, requested_by=requested_by, claim=claim)
    if not created:
        return job, False
    job_id: ObjectId = job["_id"]
    HEARTBEAT.track(database, job_id)
    runner = runner or get_default_runner(database.settings)
    task = JobTask(database.settings, str(job_id), fn, database=database, bounded=bounded)
    try:
        future = runner.submit(str(job_id), task)
    except Exception as exc:
        HEARTBEAT.untrack(job_id)
        err = (
            exc
            if isinstance(exc, ServiceError)
            else RunnerUnavailableError(f"the job runner did not accept job {job_id}: {exc.__class__.__name__}")
        )
        store.finish(database, job_id, error=store.error_of(err), from_status=(store.QUEUED,))
        log.error("job %s could not be handed to the runner: %s", job_id, err.message)
        raise err from exc
    future.add_done_callback(_on_done(database, job_id))
    return job, True


def _on_done(database: Database, job_id: ObjectId):
    """Future callback: stop the heartbeat; a job cancelled before it started is marked failed."""

    def callback(future: Future) -> None:
        HEARTBEAT.untrack(job_id)
        try:
            if future.cancelled():
                store.finish(
                    database,
                    job_id,
                    from_status=(store.QUEUED,),
                    error={"code": "cancelled", "message": "the service stopped before this job started"},
                )
            elif future.exception() is not None:  # e.g. the database was unreachable at claim time
                exc = future.exception()
                log.error("job %s: its task itself failed", job_id, exc_info=exc)
                store.finish(
                    database,
                    job_id,
                    error=store.error_of(exc),
                    from_status=store.ACTIVE_STATUSES,
                    extra_filter=owned_by_me(),
                )
        except Exception:  # never raise into the executor's callback machinery
            log.warning("could not record the end of job %s", job_id, exc_info=True)

    return callback
