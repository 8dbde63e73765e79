"""The process-wide job runner, chosen by the settings: in-process threads, or a Dask cluster."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading

from models.jobs.runner import InProcessRunner, JobRunner
from models.settings import Settings, get_settings

log = logging.getLogger(__name__)

_default: JobRunner | None = None
_default_lock = threading.Lock()
_atexit_registered = False


def get_default_runner(settings: Settings | None = None) -> JobRunner:
    """The process-wide runner, created on first use and shut down at exit.

    With ``settings.dask_scheduler_address`` (``DASK_SCHEDULER_ADDRESS``) it is a
    :class:`~models.jobs.dask_runner.DaskRunner` on that cluster; otherwise, and inside a task on a
    Dask worker (whose work must not wait on more cluster work), an
    :class:`~models.jobs.runner.InProcessRunner` with ``settings.job_workers`` threads.
    """
    global _default, _atexit_registered
    with _default_lock:
        if _default is None:
            settings = settings or get_settings()
            if settings.dask_scheduler_address and not _in_dask_worker():
                from models.jobs.dask_runner import DaskRunner

                _default = DaskRunner(settings.dask_scheduler_address, settings=settings)
            else:
                _default = InProcessRunner(settings.job_workers)
            log.info("job runner started: %s", _default.describe())
            if not _atexit_registered:
                atexit.register(shutdown_default_runner)
                _atexit_registered = True
        return _default


def _in_dask_worker() -> bool:
    if "distributed" not in sys.modules:  # not imported: certainly not a worker
        return False
    from models.jobs.dask_runner import in_dask_worker

    return in_dask_worker()


def set_default_runner(runner: JobRunner | None) -> JobRunner | None:
    """Replace the process-wide runner (e.g. with another executor); returns the previous one, not shut down."""
    global _default
    with _default_lock:
        previous, _default = _default, runner
        return previous


def shutdown_default_runner(wait: bool = True) -> None:
    """Shut the process-wide runner down (if one was created); the next use creates a fresh one."""
    global _default
    with _default_lock:
        runner, _default = _default, None
    if runner is not None:
        runner.shutdown(wait=wait)


def _forget_default_after_fork() -> None:
    # A forked child does not inherit the parent's worker threads.
    global _default, _default_lock
    _default = None
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_default_after_fork)
