"""Where job work runs, behind a small ``concurrent.futures``-style interface.

:class:`InProcessRunner` (the default) is a bounded thread pool in this
process, so one machine needs nothing else. With ``DASK_SCHEDULER_ADDRESS``
set, :class:`~models.jobs.dask_runner.DaskRunner` sends jobs to a Dask cluster
(its ``Client.submit`` also returns futures); job state stays in MongoDB either way.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from models.errors import ServiceError

log = logging.getLogger(__name__)


class RunnerUnavailableError(ServiceError):
    """The runner cannot take work (it was shut down)."""

    code = "runner_unavailable"
    http_status = 503


class JobRunner(ABC):
    """Runs job callables somewhere and hands back a future per job."""

    name = "runner"

    @abstractmethod
    def submit(self, job_id: str, fn: Callable[[], Any]) -> Future:
        """Schedule ``fn()`` (which runs job ``job_id`` end to end) and return its future.

        The future supports ``add_done_callback``, ``cancelled`` and ``exception``
        like :class:`concurrent.futures.Future`. Raises RunnerUnavailableError
        if the runner no longer accepts work.
        """

    @abstractmethod
    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stop accepting work; ``wait`` for running jobs; ``cancel_pending`` drops queued ones."""

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description for health pages and logs."""
        return {"runner": self.name}

    def __enter__(self) -> JobRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)


class InProcessRunner(JobRunner):
    """A bounded :class:`~concurrent.futures.ThreadPoolExecutor`: at most ``workers`` jobs run at once."""

    name = "in-process"

    def __init__(self, workers: int) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"a job runner needs at least one worker, got {workers!r}")
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job-worker")

    def submit(self, job_id: str, fn: Callable[[], Any]) -> Future:
        try:
            return self._executor.submit(fn)
        except RuntimeError as exc:  # "cannot schedule new futures after shutdown"
            raise RunnerUnavailableError(f"the job runner is shut down; job {job_id} cannot run") from exc

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=cancel_pending)

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name, "workers": self.workers}


# --- the process's default runner -------------------------------------------------------------
