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
import time
from collections.abc import Callable
from typing import Any

import cloudpickle

from models.errors import ServiceError, describe_exception
from models.jobs.remote import RemoteWork
from models.progress import Progress, no_progress
from models.store.configs import fail_trainings_of
from models.store.db import Database

log = logging.getLogger(__name__)

GRACE_S = 3.0  # between SIGTERM and SIGKILL
POLL_S = 0.2  # how often the supervisor checks the clock and ``should_stop``
PRELOAD = ["numpy", "pandas", "sklearn.ensemble", "sklearn.linear_model", "pymongo", "cloudpickle"]

CANCELLED = "cancelled"
TIMEOUT = "timeout"


class JobStopped(ServiceError):
    """The work was stopped from outside: ``cancelled``, ``timeout`` or ``memory_limit``."""

    http_status = 409

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


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


def _error_dict(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ServiceError):
        out: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.field is not None:
            out["field"] = exc.field
        return out
    return {"code": "internal_error", "message": describe_exception(exc)}


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


def _child_main(payload: bytes, conn: Any, memory_limit_mb: int) -> None:
    """Entry point of the child: limits, signal handler, run the work, send back the outcome."""
    _die_with_parent()
    if memory_limit_mb > 0:
        try:
            import resource

            limit = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            log.warning("this system does not allow a memory limit; TRAIN_MEMORY_LIMIT_MB is not enforced")

    def on_term(signum: int, frame: Any) -> None:
        reason = {"code": CANCELLED, "message": "stopped"}
        try:
            if conn.poll():
                kind, value = conn.recv()
                if kind == "stop":
                    reason = value
        except Exception:
            pass
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise JobStopped(reason["code"], reason["message"])

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the supervisor, which stops us

    def progress(fraction: float, message: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("progress", (fraction, str(message))))

    try:
        from models.processes import current_owner

        conn.send(("owner", current_owner()))
        work = cloudpickle.loads(payload)
        result = work(progress)
        conn.send(("result", result))
    except BaseException as exc:
        error = _error_dict(exc)
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
) -> Any:
    """Run ``work(progress)`` in a child process and return its result.

    Raises :class:`JobStopped` (``timeout``, ``cancelled`` or the code ``should_stop`` gave,
    ``memory_limit``), :class:`ChildError` for an error the work raised (same code, message
    and field), ServiceError when the child died without a word. ``database`` (when given)
    is used to mark configs the child left ``training`` as failed.
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
    child = ctx.Process(
        target=_child_main, args=(payload, child_conn, int(memory_limit_mb)), name="bounded-work", daemon=True
    )
    child.start()
    child_conn.close()
    started = time.monotonic()
    owner: dict[str, Any] | None = None
    outcome: tuple[str, Any] | None = None
    stop: dict[str, str] | None = None
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
            if timeout is not None and time.monotonic() - started > timeout:
                stop = timeout_error(timeout)
            elif should_stop is not None:
                stop = should_stop()
            if stop is not None:
                _stop(child, parent_conn, stop)
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
    if outcome is None or stop is not None:
        error = stop or {
            "code": "process_died",
            "message": f"the worker process ended unexpectedly "
            f"(exit code {child.exitcode}); nothing of it was kept",
        }
        if owner is not None and database is not None:
            try:
                fail_trainings_of(database, owner, error)
            except Exception:
                log.warning("could not mark the config of a stopped training failed", exc_info=True)
        raise JobStopped(error["code"], error["message"])
    kind, value = outcome
    if kind == "result":
        return value
    if value.get("code") in (CANCELLED, TIMEOUT, "memory_limit") and owner is not None and database is not None:
        fail_trainings_of(database, owner, value)
    raise ChildError(value)


def _stop(child: Any, conn: Any, reason: dict[str, str]) -> None:
    """Tell the child why, SIGTERM it, and SIGKILL it after ``GRACE_S``."""
    log.warning("stopping worker process %s: %s", child.pid, reason.get("message"))
    with contextlib.suppress(OSError, ValueError):
        conn.send(("stop", reason))
    if child.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)
        child.join(GRACE_S)
    if child.is_alive():
        child.kill()
        child.join()
