"""Where the CV folds of one fit run: joblib's Dask backend on the cluster when ``CV_JOBS`` asks for it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import joblib
from distributed import get_client

from models.jobs.dask_runner import DaskRunner, in_dask_worker
from models.jobs.default import get_default_runner
from models.settings import Settings


@contextlib.contextmanager
def cluster_folds(settings: Settings) -> Iterator[None]:
    """The joblib backend for the folds when ``CV_JOBS`` is not 1: Dask's, so they spread over the workers.

    On a worker the training task secedes from the worker's thread pool while it waits for its folds
    (joblib's backend does it), so a worker waiting for its folds never starves the cluster; in a process with
    ``DASK_SCHEDULER_ADDRESS`` the default runner's client is used; otherwise joblib's default backend.
    """
    if settings.cv_jobs == 1:
        yield
        return
    if in_dask_worker():
        # joblib's Dask backend secedes this task's thread itself while it waits for the folds
        with joblib.parallel_backend("dask", client=get_client()):
            yield
        return
    runner = get_default_runner(settings) if settings.dask_scheduler_address else None
    if isinstance(runner, DaskRunner):
        with joblib.parallel_backend("dask", client=runner.client):
            yield
        return
    yield
