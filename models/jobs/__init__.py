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

The job documents themselves (their states, claims, commit marks, recovery) live in
:mod:`models.store.jobs`, like every collection; this room runs jobs.

Holds: ``worker`` (``JobTask``: claim, heartbeat, progress, outcome),
``runner`` (``JobRunner`` and the in-process thread pool), ``bounded`` (work in a child process
that a time limit, a memory limit and cancel can stop), ``dask_runner`` (``DaskRunner``),
``remote`` (``RemoteWork``: work that travels as ids, rebuilt on a worker with its own settings),
``default`` (the process-wide runner chosen by the settings), ``service`` (``submit``), ``timing``
(elapsed time and time left of a job; ``job_to_json``), ``commit`` (``commit_point``: where work
about to commit checks that its job may still commit).

May import: the foundation modules, ``models.store`` and ``models.artifacts``; never training or
ensembles (they hand jobs a work function instead).

Public names: those in ``__all__`` below, as ``jobs.submit``, ``jobs.wait``, ...
"""

from models.jobs.bounded import ChildError, JobStopped, run_bounded
from models.jobs.default import get_default_runner, set_default_runner, shutdown_default_runner
from models.jobs.runner import InProcessRunner, JobRunner, RunnerUnavailableError
from models.jobs.service import submit
from models.jobs.timing import job_to_json
from models.jobs.worker import (
    HEARTBEAT,
    HEARTBEAT_INTERVAL_S,
    PROGRESS_MIN_INTERVAL_S,
    Heartbeat,
    JobFunction,
    JobTask,
    ProgressWriter,
)
from models.store.jobs import (
    ACTIVE_STATUSES,
    FAILED,
    QUEUED,
    RUNNING,
    STALE_AFTER_S,
    STATUSES,
    SUCCEEDED,
    InvalidResultError,
    JobTimeoutError,
    cancel,
    current_owner,
    get_job,
    is_finished,
    latest_job,
    list_jobs,
    recover_stale_jobs,
    wait,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FAILED",
    "HEARTBEAT",
    "HEARTBEAT_INTERVAL_S",
    "PROGRESS_MIN_INTERVAL_S",
    "QUEUED",
    "RUNNING",
    "STALE_AFTER_S",
    "STATUSES",
    "SUCCEEDED",
    "ChildError",
    "Heartbeat",
    "InProcessRunner",
    "InvalidResultError",
    "JobFunction",
    "JobRunner",
    "JobStopped",
    "JobTask",
    "JobTimeoutError",
    "ProgressWriter",
    "RunnerUnavailableError",
    "cancel",
    "current_owner",
    "get_default_runner",
    "get_job",
    "is_finished",
    "job_to_json",
    "latest_job",
    "list_jobs",
    "recover_stale_jobs",
    "run_bounded",
    "set_default_runner",
    "shutdown_default_runner",
    "submit",
    "wait",
]
