"""Background jobs: training and ensemble creation run as jobs whose state lives in MongoDB.

A job document holds ``kind``, ``key``, ``params``, ``status`` (queued,
running, succeeded, failed), ``progress`` (0..1), ``message``, ``steps``,
``error``, ``result``, timings, ``owner`` and ``heartbeat_at``; web, CLI and
API all read it. Usage::

    from models import jobs
    job, created = jobs.submit(database, None, "train", f"train:{name}", work,
                               params={"config": name}, requested_by="admin")
    jobs.get_job(database, job["_id"])          # poll (or jobs.wait(database, job_id, 60))

``work(progress) -> dict`` receives ``progress(fraction, message)``. Call
:func:`recover_stale_jobs` when the service starts.
"""
from .runner import (InProcessRunner, JobRunner, RunnerUnavailableError, get_default_runner,
                     set_default_runner, shutdown_default_runner)
from .service import submit
from .store import (ACTIVE_STATUSES, FAILED, QUEUED, RUNNING, STALE_AFTER_S, STATUSES, SUCCEEDED,
                    InvalidResultError, JobTimeoutError, current_owner, get_job, is_finished, job_to_json,
                    list_jobs, recover_stale_jobs, wait)
from .worker import HEARTBEAT, HEARTBEAT_INTERVAL_S, PROGRESS_MIN_INTERVAL_S, Heartbeat, JobFunction, JobTask, ProgressWriter

__all__ = [
    "ACTIVE_STATUSES", "FAILED", "QUEUED", "RUNNING", "STALE_AFTER_S", "STATUSES", "SUCCEEDED",
    "HEARTBEAT", "HEARTBEAT_INTERVAL_S", "PROGRESS_MIN_INTERVAL_S",
    "Heartbeat", "InProcessRunner", "InvalidResultError", "JobFunction", "JobRunner", "JobTask",
    "JobTimeoutError", "ProgressWriter", "RunnerUnavailableError",
    "current_owner", "get_default_runner", "get_job", "is_finished", "job_to_json", "list_jobs",
    "recover_stale_jobs", "set_default_runner", "shutdown_default_runner", "submit", "wait",
]
