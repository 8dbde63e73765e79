"""Training on the Dask cluster: a slow-path retrain that runs on a worker instead of in this process."""

from __future__ import annotations

import logging
from typing import Any

from bson import ObjectId

from models.errors import ArtifactError, TrainingError
from models.jobs.dask_runner import DaskRunner, in_dask_worker
from models.jobs.default import get_default_runner
from models.progress import Progress, no_progress
from models.settings import Settings, get_settings
from models.store.db import reconnect
from models.training.train import train_config

log = logging.getLogger(__name__)


def _train_remote(config_id: str, requested_by: str | None) -> str:
    """On a worker: train the config with **this worker's** settings (its database and artifact store);
    return the new run id. Only the config id travels."""
    try:
        return train_config(reconnect(get_settings()), ObjectId(config_id), requested_by=requested_by)["run_id"]
    except ArtifactError as exc:  # its constructor takes keyword arguments: it would not unpickle here
        raise TrainingError(f"artifacts could not be written: {exc.message}") from None


def train_on_cluster(
    settings: Settings, config_id: Any, *, requested_by: str | None = None, progress: Progress = no_progress
) -> str | None:
    """Train config ``config_id`` on a Dask worker and wait; returns the new run id.

    Returns None (the caller trains in place) when this process already is a
    Dask worker (blocking a worker on more cluster work could starve the
    cluster) or the process's default runner is not a :class:`DaskRunner`.
    The worker writes through its own configured artifact store
    (``ARTIFACT_STORE``; GridFS lets every machine read the result).
    """
    if not settings.dask_scheduler_address or in_dask_worker():
        return None
    runner = get_default_runner(settings)
    if not isinstance(runner, DaskRunner):
        log.warning(
            "DASK_SCHEDULER_ADDRESS is set but the job runner is %s; training in place",
            runner.describe().get("runner"),
        )
        return None
    progress(0.0, f"training on the Dask cluster at {runner.address}")
    run_id = runner.call(_train_remote, str(config_id), requested_by)
    progress(1.0, f"trained on the cluster as run {run_id}")
    return run_id
