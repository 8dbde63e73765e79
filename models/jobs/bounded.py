"""Running a piece of work in a child process that can be stopped: time limit, memory limit, cancel.

Python threads cannot be killed, so a job whose work must be stoppable (training, ensemble
creation) runs that work in a child process started from a ``forkserver`` (never a plain
``fork`` of the threaded service). The calling thread supervises it:

- progress reports come back over a pipe and are passed to the caller's ``progress``;
- past ``timeout`` seconds, or as soon as ``should_stop()`` returns a reason (cancel), the
  child gets SIGTERM, which raises :class:`JobStopped` inside the work, so the work's own
  ``except``/``finally`` blocks remove what they had written (atomic writes remove their
  temp files; training removes the files of its unfinished run); after ``GRACE_S`` it gets
  SIGKILL;
- a config the child left ``training`` is marked ``failed`` with the same reason (its
  previous run is untouched: a training commits only by its final config update);
- the child's address space is capped at ``memory_limit_mb`` (``RLIMIT_AS``) where the OS
  allows it, and a ``MemoryError`` becomes a ``memory_limit`` error naming the setting.

The work function is sent with ``cloudpickle`` (closures included); a
:class:`~models.store.db.Database` it closes over pickles as its settings and reconnects
in the child.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import cloudpickle

from models.errors import ServiceError, error_dict
from models.jobs.context import CANCELLED, PROCESS_DIED, TIMEOUT, JobContext, JobStopped, running_job
from models.jobs.remote import RemoteWork
from models.progress import Progress, no_progress
from models.store.configs import fail_trainings_of
from models.store.db import Database
from models.store.jobs import fail_jobs_of, find_job, stop

log = logging.getLogger(__name__)

GRACE_S = 3.0  # between SIGTERM and SIGKILL
TOLD_S = 0.5  # between telling the child to stop and SIGTERM
POLL_S = 0.2  # how often the supervisor checks the clock and ``should_stop``
PRELOAD = ["numpy", "pandas", "sklearn.ensemble", "sklearn.linear_model", "pymongo", "cloudpickle"]


class ChildError(ServiceError):
    """An error the child process reported, with the code, message and field it had there."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message") or "the work failed"), field=error.get("field"))
        self.code = str(error.get("code") or "internal_error")


def timeout_error(seconds: float) -> dict[str, str]:
    return {
        "code": TIMEOUT,
        "message": f"stopped after {seconds:g} s: the time limit of a job "
        f"(TRAIN_TIMEOUT_SECONDS={seconds:g}) was reached; nothing of it was kept",
    }


def _context() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


# --- the child ---------------------------------------------------------------------------------


def _caused_by_memory(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, MemoryError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _die_with_parent() -> None:
    try:  # Linux: SIGKILL this child when the process that forked it goes away
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # other systems: the supervisor's kill is all there is
        pass


class _Watchdog(threading.Thread):
    """In the child: the only reader of the pipe from the supervisor. A ``stop`` message, or the pipe
    closing because the supervisor died (kill -9 of the service), stops the work with SIGTERM, unless
    the work has passed its commit point, which it then finishes (see :mod:`models.jobs.context`)."""

    def __init__(self, conn: Any) -> None:
        super().__init__(name="bounded-watchdog", daemon=True)
        self.conn = conn
        self.reason: dict[str, str] = {"code": CANCELLED, "message": "stopped"}
        self.lost = threading.Event()
        self.told = threading.Event()  # the supervisor's stop message (or its death) has been seen
        self.finished = threading.Event()
        self.lock = threading.Lock()
        self.context: JobContext | None = None

    def orphaned(self) -> bool:
        return self.lost.is_set()

    def run(self) -> None:
        while not self.finished.is_set():
            try:
                kind, value = self.conn.recv()
            except (EOFError, OSError):
                if not self.finished.is_set():
                    self._stop_self(
                        {
                            "code": PROCESS_DIED,
                            "message": "the process supervising this job stopped; nothing of it was kept",
                        },
                        lost=True,
                    )
                return
            if kind == "stop":
                self._stop_self(value)

    def _stop_self(self, reason: dict[str, str], lost: bool = False) -> None:
        with self.lock:
            self.reason = reason
            self.told.set()
            if lost:
                self.lost.set()
            if self.context is not None and self.context.committing.is_set():
                return  # past the commit point: finish it (its job is recovered as succeeded)
            with contextlib.suppress(ProcessLookupError):
                os.kill(os.getpid(), signal.SIGTERM)


def _child_main(payload: bytes, conn: Any, memory_limit_mb: int, job: tuple | None) -> None:
    """Entry point of the child: limits, signal handler, run the work, send back the outcome."""
    _die_with_parent()
    if memory_limit_mb > 0:
        try:
            import resource

            limit = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            log.warning("this system does not allow a memory limit; TRAIN_MEMORY_LIMIT_MB is not enforced")
    watchdog = _Watchdog(conn)
    context = None
    if job is not None:
        database, job_id, owner = job
        context = JobContext(database, job_id, owner, orphaned=watchdog.orphaned)
        context.lock = watchdog.lock  # commit_point and the watchdog decide under one lock
        watchdog.context = context

    def on_term(signum: int, frame: Any) -> None:
        if context is not None and context.committing.is_set():
            return  # the commit runs to its end
        watchdog.told.wait(0.2)  # a SIGTERM from the supervisor follows its message: read the reason first
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise JobStopped(watchdog.reason["code"], watchdog.reason["message"])

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which stops us
    watchdog.start()

    def progress(fraction: float, message: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("progress", (fraction, str(message))))

    try:
        from models.processes import current_owner

        conn.send(("owner", current_owner()))
        work = cloudpickle.loads(payload)
        with running_job(context) if context is not None else contextlib.nullcontext():
            result = work(progress)
        watchdog.finished.set()
        conn.send(("result", result))
    except BaseException as exc:
        watchdog.finished.set()
        error = error_dict(exc)
        error.pop("details", None)
        if memory_limit_mb > 0 and _caused_by_memory(exc):
            error = {
                "code": "memory_limit",
                "message": f"the work ran out of memory: it needed more than the limit of {memory_limit_mb} MB "
                "(TRAIN_MEMORY_LIMIT_MB); use smaller hyperparameters or raise the limit",
            }
        with contextlib.suppress(Exception):
            conn.send(("error", error))
    finally:
        conn.close()


# --- the supervisor ----------------------------------------------------------------------------


def _run_remote_work(target: str, kwargs: dict[str, Any], database: Database, progress: Progress) -> Any:
    return RemoteWork(target, kwargs, database=database)(progress)


def run_bounded(
    work: Callable[[Progress], Any],
    *,
    database: Database | None = None,
    timeout: float | None = None,
    memory_limit_mb: int = 0,
    progress: Progress = no_progress,
    should_stop: Callable[[], dict[str, str] | None] | None = None,
    job: JobContext | None = None,
) -> Any:
    """Run ``work(progress)`` in a child process and return its result.

    Raises :class:`JobStopped` (``timeout``, ``cancelled`` or the code ``should_stop`` gave,
    ``memory_limit``), :class:`ChildError` for an error the work raised (same code, message
    and field), ServiceError when the child died without a word. ``database`` (when given)
    is used to mark configs the child left ``training`` as failed.

    With ``job`` (the job the work runs for) the child runs the work as that job's
    (:func:`models.jobs.context.commit_point` works there), and the time limit ends the job
    document first, atomically, unless the work has begun committing: then it is left to finish.
    """
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    ctx = _context()
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    if isinstance(work, RemoteWork) and work.database is not None:
        # RemoteWork pickles without its database (so a Dask worker uses its own); this child is on
        # this machine and runs with the submitter's database, which pickles as its settings
        work = functools.partial(_run_remote_work, work.target, work.kwargs, work.database)
    payload = cloudpickle.dumps(work)
    job_args = (job.database, job.job_id, job.owner) if job is not None else None
    child = ctx.Process(
        target=_child_main,
        args=(payload, child_conn, int(memory_limit_mb), job_args),
        name="bounded-work",
        daemon=True,
    )
    child.start()
    child_conn.close()
    started = time.monotonic()
    owner: dict[str, Any] | None = None
    outcome: tuple[str, Any] | None = None
    stop_reason: dict[str, str] | None = None
    over_time = False  # the time limit passed while the work was committing: it may finish
    try:
        while outcome is None:
            try:
                ready = parent_conn.poll(POLL_S)
            except (OSError, EOFError):
                ready = False
            if ready:
                try:
                    kind, value = parent_conn.recv()
                except (EOFError, OSError):
                    break  # the child ended (or died) without an outcome
                if kind == "progress":
                    try:
                        progress(*value)
                    except Exception:
                        log.warning("progress callback failed", exc_info=True)
                elif kind == "owner":
                    owner = value
                else:
                    outcome = (kind, value)
                continue
            if not child.is_alive() and not parent_conn.poll():
                break
            if timeout is not None and not over_time and time.monotonic() - started > timeout:
                stop_reason = _time_limit(job, timeout)
                over_time = stop_reason is None
            elif should_stop is not None:
                stop_reason = should_stop()
            if stop_reason is not None:
                # the job document says it ended (it can no longer commit): its configs say so at once,
                # not a second later once the child is gone (a caller reading both saw them disagree)
                _clean_up_after(database, owner, stop_reason)
                _stop(child, parent_conn, stop_reason)
                break
    except BaseException:  # KeyboardInterrupt in the supervisor: do not leave the child running
        _stop(child, parent_conn, {"code": CANCELLED, "message": "the supervising process was interrupted"})
        raise
    finally:
        child.join(GRACE_S if outcome is not None else 0.1)
        if child.is_alive():
            child.kill()
            child.join()
        parent_conn.close()
    if outcome is None or stop_reason is not None:
        error = stop_reason or {
            "code": PROCESS_DIED,
            "message": f"the worker process ended unexpectedly "
            f"(exit code {child.exitcode}); nothing of it was kept",
        }
        _clean_up_after(database, owner, error)
        raise JobStopped(error["code"], error["message"])
    kind, value = outcome
    if kind == "result":
        return value
    if value.get("code") in (CANCELLED, TIMEOUT, "memory_limit"):
        _clean_up_after(database, owner, value)
    raise ChildError(value)


def _time_limit(job: JobContext | None, timeout: float) -> dict[str, str] | None:
    """The stop reason once the time limit has passed; None when the job has begun committing (then it
    may finish: a job that commits is reported succeeded, never timed out)."""
    error = timeout_error(timeout)
    if job is None:
        return error
    try:
        if stop(job.database, job.job_id, error) is not None:
            return error
        current = find_job(job.database, job.job_id, {"status": 1, "committing": 1, "error": 1}) or {}
    except Exception:  # the database is away: the limit still holds
        log.warning("could not record the time limit of job %s", job.job_id, exc_info=True)
        return error
    if current.get("committing") and current.get("status") == "running":
        log.info("job %s passed its time limit while committing; letting it finish", job.job_id)
        return None
    return current.get("error") or error  # ended meanwhile (cancelled): stop with that reason


def _clean_up_after(database: Database | None, owner: dict[str, Any] | None, error: dict[str, Any]) -> None:
    """A stopped child left its configs ``training`` and maybe jobs of its own (a base model it was
    retraining): mark them failed with the same reason."""
    if owner is None or database is None:
        return
    try:
        fail_trainings_of(database, owner, error)
        fail_jobs_of(database, owner, error)
    except Exception:
        log.warning("could not mark the work of a stopped child failed", exc_info=True)


def _stop(child: Any, conn: Any, reason: dict[str, str]) -> None:
    """Tell the child why (its watchdog then stops the work with that reason), SIGTERM it if it has not
    ended after ``TOLD_S``, and SIGKILL it after ``GRACE_S`` more."""
    log.warning("stopping worker process %s: %s", child.pid, reason.get("message"))
    with contextlib.suppress(OSError, ValueError):
        conn.send(("stop", reason))
        child.join(TOLD_S)
    if child.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
        child.join(GRACE_S)
    if child.is_alive():
        child.kill()
        child.join()
