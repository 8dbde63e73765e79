"""Jobs on a Dask cluster: :class:`DaskRunner` sends each job to a worker with ``distributed.Client.submit``.

Chosen by :func:`~models.jobs.default.get_default_runner` when
``DASK_SCHEDULER_ADDRESS`` is set. Job state stays in MongoDB: the
:class:`~models.jobs.worker.JobTask` that runs on the worker claims the job,
beats its heartbeat and writes progress and outcome to the job document
itself, so the web app shows progress from remote workers exactly as from
local threads. The worker's address and pid are written to the job's
``worker`` field before it starts.

Dask reruns a task whose worker died; the rerun finds the job no longer
queued and does nothing. So when a job's future ends while its document is
still queued or running, no process will finish it any more: the runner marks
it failed (``process_died``) with the worker that held it, and the key can be
submitted again.

What travels to the worker: for a job whose work is a
:class:`~models.jobs.remote.RemoteWork` (every training and ensemble job the
service submits) only the job id, the work's function name and its plain
arguments; the worker builds ``get_settings()`` from its own environment
(its ``MONGO_URI``, ``ARTIFACT_STORE``, ``ARTIFACT_DIR``, data roots) and
connects itself (:func:`run_remote_job`). Any other work function is pickled
as it is (a ``Database`` in it pickles as the submitter's settings).

The scheduler unpickles task graphs, so it must be able to import this
project: start it with ``python -m cli cluster scheduler`` (or with the
checkout on ``PYTHONPATH``); see :mod:`cli.commands.cluster`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from bson import ObjectId
from distributed import Client, get_worker

from models.errors import ValidationError
from models.jobs.remote import RemoteWork
from models.jobs.runner import JobRunner, RunnerUnavailableError
from models.jobs.tls import check_address, security_for
from models.jobs.worker import JobTask
from models.settings import Settings, get_settings
from models.store import jobs as store
from models.store.configs import fail_trainings_of, recover_interrupted_trainings
from models.store.db import Database, reconnect

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0


# --- where we are ------------------------------------------------------------------------------


def in_dask_worker() -> bool:
    """True inside a task on a Dask worker (work there must not block on more cluster work)."""
    try:
        get_worker()
    except ValueError:
        return False
    return True


def worker_identity() -> dict[str, Any]:
    """This process as a Dask worker: its address (None outside a worker), host and pid."""
    try:
        address = get_worker().address
    except ValueError:
        address = None
    return {"address": address, "host": socket.gethostname(), "pid": os.getpid()}


def _run_on_worker(fn: Callable[[], Any]) -> Any:
    """The task a job becomes on the cluster: note which worker took it, then run it end to end."""
    if isinstance(fn, JobTask):
        try:
            store.set_worker(reconnect(fn.settings), ObjectId(fn.job_id), worker_identity())
        except Exception:  # the job can still run; only the note is missing
            log.warning("could not record the worker of job %s", fn.job_id, exc_info=True)
    return fn()


def run_remote_job(
    job_id: str, target: str, kwargs: dict[str, Any], bounded: bool = True
) -> dict[str, Any] | None:
    """On a worker: run job ``job_id`` with this worker's settings (``get_settings()``) and database.

    The submitter sent ids only (see :class:`RemoteWork`); returns the finished job document.
    ``bounded``: cancel and the time limit stop the work (on a worker, at its next progress report).
    """
    settings = get_settings()
    database = reconnect(settings)
    try:
        store.set_worker(database, ObjectId(job_id), worker_identity())
    except Exception:  # the job can still run; only the note is missing
        log.warning("could not record the worker of job %s", job_id, exc_info=True)
    work = RemoteWork(target, kwargs).bind(database)
    return JobTask(settings, job_id, work, database=database, bounded=bounded)()


def fail_abandoned_job(
    database: Database, job_id: str, error: BaseException | None = None, *, lost_scheduler: bool = False
) -> dict[str, Any] | None:
    """Mark job ``job_id`` failed if it is still queued or running although its task has ended.

    Called when the job's future is done: whoever ran it is gone (a killed
    worker) or never got to it. The update is conditional on the status and
    owner seen here, so a job that moves meanwhile is left alone. Configs the
    dead worker left ``training`` are marked failed as well. A job still queued
    whose task raised ``error`` is left to :mod:`models.jobs.service`, which
    records that error itself. Returns the failed job, or None.
    """
    oid = store.parse_job_id(job_id)
    job = store.find_job(database, oid)
    if job is None or job.get("status") not in store.ACTIVE_STATUSES:
        return None
    if job["status"] == store.QUEUED and error is not None and not lost_scheduler:
        return None
    if job.get("committing"):  # its work passed its commit point: it ends succeeded, or stale recovery ends it
        return None
    where = job.get("worker") or job.get("owner") or {}
    who = f"pid {where.get('pid')} on host {where.get('host')}"
    if where.get("address"):
        who = f"Dask worker {where['address']}, {who}"
    why = f"; the cluster said {error.__class__.__name__}: {error}" if error is not None else ""
    if lost_scheduler:
        message = (
            "the connection to the Dask scheduler was lost "
            + ("before a worker started this job" if job["status"] == store.QUEUED else f"while {who} ran it")
            + "; nothing of it was committed, submit it again"
        )
    else:
        message = (
            f"the process running this job stopped before it finished ({who}){why}; "
            "nothing of it was committed, submit it again"
        )
    error_doc = {"code": "process_died", "message": message}
    # first, so whoever sees the job failed sees its config repaired: the configs the dead worker
    # process left training, whatever host it was on, then any of this host's
    if job.get("owner"):
        fail_trainings_of(database, job["owner"], error_doc)
    recover_interrupted_trainings(database)
    done = store.finish(
        database,
        oid,
        error=error_doc,
        from_status=(job["status"],),
        extra_filter={"owner": job.get("owner")},
    )
    if done is not None:
        log.warning("job %s (%s %s) marked failed: %s", job_id, job.get("kind"), job.get("key"), message)
    return done


# --- the runner --------------------------------------------------------------------------------


class DaskRunner(JobRunner):
    """Runs jobs on a Dask cluster through ``Client.submit`` (futures like :mod:`concurrent.futures`).

    Give the scheduler ``address`` (the runner opens and later closes its own client, over TLS when
    ``settings.dask_tls_dir`` is set, see :mod:`models.jobs.tls`) or an existing ``client`` (left open
    at shutdown). A client of its own that gave up on a scheduler that was gone (distributed closes it
    after its reconnect timeout) is opened again on the next submission, so the service heals when
    the scheduler comes back, without a restart.
    """

    name = "dask"

    def __init__(
        self,
        address: str | None = None,
        *,
        client: Client | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        settings: Settings | None = None,
    ) -> None:
        if (address is None) == (client is None):
            raise ValueError("DaskRunner needs either a scheduler address or a client (not both)")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(f"address must be a Dask scheduler address like tcp://host:8786, got {address!r}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, got {connect_timeout!r}")
        self._owns_client = client is None
        self._target = address
        self._connect_timeout = connect_timeout
        self._security = None
        if client is None:
            settings = settings or get_settings()
            try:
                check_address(settings, address)
                self._security = security_for(settings, "client")
            except ValidationError as exc:
                raise RunnerUnavailableError(exc.message) from None
            client = self._connect()
        self.client = client
        self.address: str = client.scheduler.address
        self._futures: set[Any] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.reconnects = 0

    def _connect(self) -> Client:
        try:
            return Client(
                self._target, set_as_default=False, timeout=self._connect_timeout, security=self._security
            )
        except (OSError, TimeoutError) as exc:
            raise RunnerUnavailableError(
                f"cannot reach the Dask scheduler at {self._target} (DASK_SCHEDULER_ADDRESS): "
                f"{exc.__class__.__name__}: {exc}"
            ) from exc

    def _live_client(self) -> Client:
        """The client, opened again if distributed closed it after losing the scheduler (lock held)."""
        if self.client.status in ("closed", "closing") and self._owns_client:
            log.warning("the Dask client had closed (scheduler %s was gone); connecting again", self._target)
            self.client = self._connect()
            self.reconnects += 1
        return self.client

    def state(self) -> str:
        """``connected``, ``reconnecting`` (the scheduler went away; distributed is retrying) or ``closed``."""
        status = self.client.status
        return {"running": "connected", "connecting": "reconnecting"}.get(status, status)

    def submit(self, job_id: str, fn: Callable[[], Any]) -> Any:
        """Send ``fn`` (a :class:`JobTask`) to the cluster; returns its ``distributed.Future``.

        A job whose work is a :class:`RemoteWork` travels as ids only (the worker uses its own settings).
        """
        with self._lock:
            if self._closed:
                raise RunnerUnavailableError(f"the Dask job runner is shut down; job {job_id} cannot run")
            try:
                client = self._live_client()
                if isinstance(fn, JobTask) and isinstance(fn.work, RemoteWork):
                    future = client.submit(
                        run_remote_job,
                        job_id,
                        fn.work.target,
                        fn.work.kwargs,
                        fn.bounded,
                        key=f"job-{job_id}",
                        pure=False,
                    )
                else:
                    future = client.submit(_run_on_worker, fn, key=f"job-{job_id}", pure=False)
            except RunnerUnavailableError:
                raise
            except Exception as exc:  # not picklable, scheduler gone, ...
                raise RunnerUnavailableError(
                    f"the Dask cluster at {self.address} did not accept job {job_id}: "
                    f"{exc.__class__.__name__}: {exc}"
                ) from exc
            self._futures.add(future)
        future.add_done_callback(self._on_done(job_id, fn))
        return future

    def _on_done(self, job_id: str, fn: Callable[[], Any]) -> Callable[[Any], None]:
        def callback(future: Any) -> None:
            with self._lock:
                self._futures.discard(future)
            if not isinstance(fn, JobTask) or (future.cancelled() and self._closed):
                return  # cancelled by our own shutdown: models.jobs.service records that
            try:
                database = fn.database or reconnect(fn.settings)
                if future.cancelled():  # the client lost the scheduler: no one will finish this job
                    fail_abandoned_job(database, job_id, None, lost_scheduler=True)
                else:
                    error = future.exception() if future.status == "error" else None
                    fail_abandoned_job(database, job_id, error)
            except Exception:  # never raise into Dask's callback thread
                log.warning("could not check the end of job %s", job_id, exc_info=True)

        return callback

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stop accepting jobs. Cancelled futures do not stop a job a worker already runs:
        that job still records its outcome in MongoDB."""
        with self._lock:
            self._closed = True
            pending = [f for f in self._futures if not f.done()]
        if cancel_pending and pending:
            self.client.cancel(pending)
        elif wait and pending:
            # each future waits through its own client: distributed.wait would look for a default client, and
            # ours is not one (set_as_default=False), so it raised "No clients found" when a job's future had
            # not arrived yet although MongoDB already said the job ended
            for future in pending:
                try:
                    future.exception()
                except Exception:  # cancelled, or the scheduler went away: the job's outcome is in MongoDB
                    log.debug("job future %s ended without a result", future.key, exc_info=True)
        if self._owns_client:
            self.client.close()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "runner": self.name,
            "scheduler": self.address,
            "state": self.state(),
            "tls": self._security is not None,
            "reconnects": self.reconnects,
        }
        try:
            out["workers"] = len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # a health page must not fail because the scheduler is slow
            out["workers"] = None
        return out
