"""Running one job: claim it, beat a heartbeat, report throttled progress, record the outcome.

:class:`JobTask` is the zero-argument callable a :class:`~models.jobs.runner.JobRunner`
executes. It holds only settings, the job id and the work function, so an
executor in another process (Dask) can pickle it; there it opens its own
database connection.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError

from models.errors import ServiceError
from models.jobs.bounded import run_bounded, timeout_error
from models.jobs.context import CANCELLED, TIMEOUT, JobContext, JobStopped, committing, running_job
from models.processes import current_owner, owned_by_me
from models.progress import Progress
from models.settings import Settings
from models.store import jobs as store
from models.store.configs import recover_interrupted_trainings
from models.store.db import Database

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0  # well below store.STALE_AFTER_S
PROGRESS_MIN_INTERVAL_S = 0.2  # at most ~5 progress writes a second while the message stays the same

JobFunction = Callable[[Progress], "dict[str, Any] | None"]
"""The work of a job: gets a ``progress(fraction, message)`` callback, returns a JSON-safe dict."""


class Heartbeat:
    """One daemon thread per process that refreshes ``heartbeat_at`` of the jobs this process holds.

    Jobs are tracked from submission (queued) until they end, so a queued job
    waiting for a free worker is not mistaken for an orphan.
    """

    def __init__(self, interval: float = HEARTBEAT_INTERVAL_S) -> None:
        self.interval = interval
        self._jobs: dict[ObjectId, Database] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def track(self, database: Database, job_id: ObjectId) -> None:
        with self._lock:
            self._jobs[job_id] = database
            if self._closed:
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="job-heartbeat", daemon=True)
                self._thread.start()

    def untrack(self, job_id: ObjectId) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def tracked(self) -> list[ObjectId]:
        with self._lock:
            return list(self._jobs)

    def wake(self) -> None:
        """Beat now (and pick up a changed ``interval``)."""
        self._wake.set()

    def beat(self) -> int:
        """Refresh the heartbeat of every tracked job this process still owns; returns how many."""
        with self._lock:
            groups: dict[tuple, tuple[Database, list[ObjectId]]] = {}
            for job_id, database in self._jobs.items():
                where = (database.settings.effective_mongo_uri, database.settings.mongo_db)
                groups.setdefault(where, (database, []))[1].append(job_id)
        touched = 0
        for database, ids in groups.values():
            try:
                touched += store.beat(database, ids, owned_by_me())
            except Exception:  # a heartbeat must never kill its thread
                log.warning("job heartbeat failed for %d job(s)", len(ids), exc_info=True)
        return touched

    def close(self) -> None:
        """Stop the thread (the process-wide HEARTBEAT normally lives as long as the process)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            if not self._closed and self.tracked():
                self.beat()

    def _reset_after_fork(self) -> None:
        self._jobs = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None


HEARTBEAT = Heartbeat()


class ProgressWriter:
    """The ``progress(fraction, message)`` callback handed to a job's work function.

    Writes go to the job document, at most one per ``min_interval`` seconds
    unless the message changes (a new message is a new entry in ``steps``).
    The latest skipped report is kept and written by :meth:`flush`.
    Thread-safe; a failed write is logged, never raised into the work.
    """

    def __init__(
        self,
        database: Database,
        job_id: ObjectId,
        *,
        min_interval: float = PROGRESS_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = database
        self.job_id = job_id
        self.min_interval = min_interval
        self.clock = clock
        self.writes = 0
        self._lock = threading.Lock()
        self._last_at = -math.inf
        self._last_message: str | None = None
        self._fraction = 0.0
        self._pending: tuple[float, str] | None = None

    def __call__(self, fraction: float, message: str) -> None:
        try:
            value = float(fraction)
        except (TypeError, ValueError):
            value = math.nan
        message = store.clip_message(message)
        with self._lock:
            if math.isfinite(value):
                self._fraction = min(max(value, 0.0), 1.0)
            changed = message != self._last_message
            if not changed and self.clock() - self._last_at < self.min_interval:
                self._pending = (self._fraction, message)
                return
            self._write(self._fraction, message, changed)

    def flush(self) -> None:
        """Write the last report that throttling held back, if any."""
        with self._lock:
            if self._pending is not None:
                self._write(*self._pending, False)

    def _write(self, fraction: float, message: str, new_step: bool) -> None:
        self._pending = None
        self._last_at = self.clock()
        self._last_message = message
        self.writes += 1
        try:
            store.write_progress(self.database, self.job_id, fraction, message, new_step=new_step)
        except PyMongoError:
            log.warning("could not record progress of job %s", self.job_id, exc_info=True)


@dataclass
class JobTask:
    """Runs job ``job_id``: claim it, call ``work(progress)``, store the result or the error.

    ``database`` is used when given (in-process); it is not pickled, so a
    remote executor connects with ``settings`` instead.
    """

    settings: Settings
    job_id: str
    work: JobFunction
    database: Database | None = field(default=None, repr=False, compare=False)
    heartbeat: Heartbeat | None = field(default=None, repr=False, compare=False)
    bounded: bool = False  # run the work where it can be stopped (time limit, memory limit, cancel)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["database"] = None
        state["heartbeat"] = None
        return state

    def __call__(self) -> dict[str, Any] | None:
        """Run the job; returns the finished job document (None if it was no longer queued)."""
        database = self.database
        own_connection = database is None
        if own_connection:
            database = Database.connect(self.settings, autostart=False)
        try:
            return self._run(database)
        finally:
            if own_connection:
                database.close()

    def _bounded(self, database: Database, oid: ObjectId, progress: Progress, context: JobContext) -> Any:
        """Run the work in a child process that the time limit and cancel can stop (see
        :mod:`models.jobs.bounded`); where no child can be started (a Dask worker), here, stopped at its
        next progress report."""
        timeout = float(self.settings.train_timeout_seconds) or None
        should_stop = _StopCheck(database, oid)
        if not can_isolate():
            with running_job(context):
                return self.work(_cooperative(progress, should_stop, timeout, database, oid))
        return run_bounded(
            self.work,
            database=database,
            timeout=timeout,
            memory_limit_mb=self.settings.train_memory_limit_mb,
            progress=progress,
            should_stop=should_stop,
            job=context,
        )

    def _run(self, database: Database) -> dict[str, Any] | None:
        oid = store.parse_job_id(self.job_id)
        job = store.claim(database, oid)
        if job is None:
            log.info("job %s is no longer queued; not running it", self.job_id)
            return None
        heartbeat = self.heartbeat or HEARTBEAT
        heartbeat.track(database, oid)
        progress = ProgressWriter(database, oid)
        context = JobContext(database, oid, job.get("owner") or current_owner())
        log.info("job %s started: %s %s", self.job_id, job.get("kind"), job.get("key"))
        try:
            try:
                if self.bounded:
                    raw = self._bounded(database, oid, progress, context)
                else:
                    with running_job(context):
                        raw = self.work(progress)
                try:
                    result = store.json_safe_dict(raw, what="the job's result")
                except ValueError as exc:
                    raise store.InvalidResultError(str(exc)) from None
            except BaseException as exc:
                if isinstance(exc, ServiceError):
                    log.warning("job %s failed: %s", self.job_id, exc.message)
                else:
                    log.exception("job %s failed with an unexpected error", self.job_id)
                progress.flush()
                done = store.finish(database, oid, error=store.error_of(exc), extra_filter=owned_by_me())
                _repair_trainings(database)
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt / SystemExit: recorded, then let it through
            else:
                done = store.finish(database, oid, result=result, extra_filter=owned_by_me())
                if done is not None:
                    log.info("job %s succeeded in %s s", self.job_id, done.get("duration_s"))
            if done is None:
                log.warning(
                    "job %s had already been ended by someone else; its outcome was not recorded", self.job_id
                )
            return done
        finally:
            heartbeat.untrack(oid)


def _repair_trainings(database: Database) -> None:
    """A failed job may have left its config ``training`` (e.g. the database went away): repair it."""
    try:
        recover_interrupted_trainings(database)
    except Exception:  # the database may still be away; the next start repairs it
        log.warning("could not check for configs left training", exc_info=True)


def can_isolate() -> bool:
    """Whether this process may start child processes (a daemonic one, e.g. a Dask worker, may not)."""
    return not multiprocessing.current_process().daemon


class _StopCheck:
    """``should_stop()`` for a running job: its document left ``running`` (cancelled) -> the reason.

    Reads the job document at most every ``interval`` seconds.
    """

    def __init__(self, database: Database, job_id: ObjectId, interval: float = 0.5) -> None:
        self.database, self.job_id, self.interval = database, job_id, interval
        self._next = 0.0

    def __call__(self) -> dict[str, str] | None:
        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.interval
        try:
            job = store.find_job(self.database, self.job_id, {"status": 1, "error": 1})
        except PyMongoError:
            return None  # cannot tell now; the time limit still holds
        if job is None or job.get("status") != store.RUNNING:
            error = (job or {}).get("error") or {}
            return {
                "code": str(error.get("code") or CANCELLED),
                "message": str(error.get("message") or "the job was cancelled"),
            }
        return None


def _cooperative(
    progress: Progress, should_stop: _StopCheck, timeout: float | None, database: Database, job_id: ObjectId
) -> Progress:
    """Where no child process can run: stop the work at its next progress report (never once it has
    passed its commit point). The time limit ends the job document first, atomically, like cancel."""
    deadline = time.monotonic() + timeout if timeout else None

    def report(fraction: float, message: str) -> None:
        progress(fraction, message)
        if committing():
            return
        if deadline is not None and time.monotonic() > deadline:
            error = timeout_error(timeout)
            if store.stop(database, job_id, error) is not None:
                raise JobStopped(TIMEOUT, error["message"])
        reason = should_stop()
        if reason is not None:
            raise JobStopped(reason["code"], reason["message"])

    return report


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=HEARTBEAT._reset_after_fork)
