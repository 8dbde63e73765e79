"""The job a piece of work runs for, and its commit point.

Work that makes a result visible (a training inserting its run, an ensemble inserting its document)
calls :func:`commit_point` right before that write. Inside a job it marks the job ``committing``
(:func:`models.store.jobs.begin_commit`) and from then on cancel and the time limit leave it alone; if
the job was cancelled or timed out first, or the process supervising it is gone, it raises
:class:`JobStopped` and the work removes what it wrote instead of committing. Outside a job (a direct
library call) it does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId

from models.errors import ServiceError
from models.store.db import Database
from models.store.jobs import begin_commit, find_job

CANCELLED = "cancelled"
TIMEOUT = "timeout"
PROCESS_DIED = "process_died"


class JobStopped(ServiceError):
    """The work was stopped from outside: ``cancelled``, ``timeout``, ``memory_limit``, ``process_died``."""

    http_status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class JobContext:
    """The job this thread's work runs for: its id, the owner that claimed it, whether its supervisor is gone."""

    database: Database
    job_id: ObjectId
    owner: dict[str, Any]
    orphaned: Callable[[], bool] = field(default=lambda: False)
    committing: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)  # commit_point vs. a stop from outside


_current: ContextVar[JobContext | None] = ContextVar("current_job", default=None)


@contextmanager
def running_job(context: JobContext) -> Iterator[JobContext]:
    """Run the block as work of ``context``'s job (nested jobs each set their own)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current_job() -> JobContext | None:
    return _current.get()


def committing() -> bool:
    """True once this thread's job has passed its commit point (it must then not be stopped)."""
    context = _current.get()
    return context is not None and context.committing.is_set()


def commit_point(what: dict[str, Any]) -> None:
    """Call right before the write that commits the work's result (``what``: e.g. ``{"run_id": ...}``).

    Raises :class:`JobStopped` when the job was ended meanwhile (cancel, time limit) or its supervising
    process is gone; then nothing may be committed.
    """
    context = _current.get()
    if context is None:
        return
    with context.lock:
        if context.orphaned():
            raise JobStopped(
                PROCESS_DIED,
                "the process supervising this job stopped before it could save; nothing of it was kept",
            )
        if begin_commit(context.database, context.job_id, what, context.owner) is not None:
            context.committing.set()
            return
    job = find_job(context.database, context.job_id, {"error": 1, "status": 1}) or {}
    error = job.get("error") or {}
    raise JobStopped(
        str(error.get("code") or CANCELLED),
        str(error.get("message") or "the job was ended before it could save its result; nothing of it was kept"),
    )
