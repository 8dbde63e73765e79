"""Waiting for a job from the process that asked for it: its steps passed on as progress, its result
returned or its error raised with the job's own code (the CLI and the stacking tool follow jobs)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from models.errors import ServiceError
from models.jobs.bounded import ChildError
from models.jobs.context import CANCELLED, PROCESS_DIED, TIMEOUT, JobStopped
from models.progress import Progress, no_progress
from models.store import jobs as store
from models.store.db import Database
from models.store.locks import LockTimeoutError

FOLLOW_POLL_S = 0.2
STOP_CODES = (CANCELLED, TIMEOUT, "memory_limit", PROCESS_DIED)


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
        doc = store.get_job(database, oid)
        _pass_on_steps(doc, seen, progress)
        if store.is_finished(doc):
            break
        if joined and wait_timeout is not None and time.monotonic() - started > wait_timeout:
            raise LockTimeoutError(
                f"waited {wait_timeout:.0f} s for the training of {doc.get('params', {}).get('config')!r} "
                f"that another caller runs (job {oid}); try again later"
            )
        time.sleep(FOLLOW_POLL_S)
    if doc["status"] != store.SUCCEEDED:
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
