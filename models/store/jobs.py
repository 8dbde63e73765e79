"""Job documents in ``JOBS_COLLECTION``: their shape, their state changes, and reading them.

One job document is the single truth the web page, the CLI and the API read. Every read and write of
the collection is here. Every state change is a conditional update on ``status`` so two processes
never both move the same job. While a job is queued or running it carries ``active_key`` (its
``claim``, by default its ``key``); a unique partial index on that field makes "one active job per
claim" hold across processes, and the field is removed when the job ends so the claim can be taken
again.

Commit and cancel meet in one document: work that is about to commit (insert its run, its ensemble)
first marks its job ``committing`` (:func:`begin_commit`, conditional on ``running``); cancel and the
time limit end only a job that is not committing (:func:`stop`). So a job reported cancelled has
committed nothing, and one that committed is reported succeeded.

No threads here: see :mod:`models.jobs.worker` for execution.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models.errors import ConflictError, NotFoundError, ServiceError, ValidationError, error_dict
from models.jsonable import to_json
from models.processes import current_owner, owner_is_dead
from models.store.configs import recover_interrupted_trainings
from models.store.db import Database
from models.timeutil import iso, now

log = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)
ACTIVE_STATUSES = (QUEUED, RUNNING)

MAX_STEPS = 50  # the ``steps`` log keeps the newest this many entries
MAX_MESSAGE_CHARS = 500  # progress and error messages are cut to this length
STALE_AFTER_S = 60.0  # a job whose heartbeat is older than this belongs to a dead process
MAX_LIST_LIMIT = 500


class JobTimeoutError(ServiceError):
    """:func:`wait` gave up before the job finished (the job itself goes on)."""

    code = "timeout"
    http_status = 504


class InvalidResultError(ServiceError):
    """A job's work function returned something that is not a JSON-safe dict."""

    code = "invalid_result"
    http_status = 500


# --- small helpers ----------------------------------------------------------------------------


def clip_message(message: Any) -> str:
    text = str(message)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def json_safe_dict(value: Any, *, what: str) -> dict[str, Any]:
    """A JSON-safe copy of ``value`` (ObjectIds and datetimes become strings) or ValueError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a dict, got {type(value).__name__}")
    out = to_json(value)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-safe: {exc}") from None
    return out


def _duration(started_at: datetime | None, finished_at: datetime) -> float | None:
    if started_at is None:
        return None
    return round(max((finished_at - started_at).total_seconds(), 0.0), 3)


def _step(at: datetime, progress: float, message: str) -> dict[str, Any]:
    return {"at": at, "progress": progress, "message": message}


def _push_step(step: dict[str, Any]) -> dict[str, Any]:
    return {"steps": {"$each": [step], "$slice": -MAX_STEPS}}


def parse_job_id(job_id: str | ObjectId) -> ObjectId:
    """The ObjectId of a job id, or NotFoundError naming the id (a malformed id names no job)."""
    if isinstance(job_id, ObjectId):
        return job_id
    try:
        return ObjectId(str(job_id))
    except (InvalidId, TypeError):
        raise NotFoundError(f"no job with id {job_id!r}", field="job_id") from None


# --- creating ---------------------------------------------------------------------------------


def insert_job(
    database: Database,
    kind: str,
    key: str,
    *,
    params: dict[str, Any] | None = None,
    requested_by: str | None = None,
    claim: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Insert a queued job, or return the queued/running job that already holds its claim.

    ``claim`` (default: ``key``) is what at most one active job may hold, e.g. ``train:<config id>``
    while ``key`` names the job for people (``train:<config name>``). Returns ``(job, created)``.
    Atomic across processes thanks to the unique index on ``active_key``.
    """
    if not isinstance(kind, str) or not kind.strip():
        raise ValidationError("a job needs a kind", field="kind")
    if not isinstance(key, str) or not key.strip():
        raise ValidationError("a job needs a key", field="key")
    try:
        clean_params = json_safe_dict(params, what="params")
    except ValueError as exc:
        raise ValidationError(str(exc), field="params") from None
    col = database.jobs
    for _ in range(5):
        stamp = now()
        doc: dict[str, Any] = {
            "kind": kind,
            "key": key,
            "active_key": claim or key,
            "params": clean_params,
            "status": QUEUED,
            "progress": 0.0,
            "message": "queued",
            "steps": [_step(stamp, 0.0, "queued")],
            "error": None,
            "result": None,
            "created_at": stamp,
            "started_at": None,
            "finished_at": None,
            "duration_s": None,
            "owner": current_owner(),
            "heartbeat_at": stamp,
            "requested_by": requested_by,
        }
        try:
            col.insert_one(doc)
        except DuplicateKeyError:
            existing = col.find_one({"active_key": claim or key})
            if existing is not None:
                log.info(
                    "job %s for %s is already %s; not starting another", existing["_id"], key, existing["status"]
                )
                return existing, False
            continue  # it ended between our insert and our read: try again
        log.info("job %s queued: %s %s", doc["_id"], kind, key)
        return doc, True
    raise ServiceError(f"could not queue a job for {key!r}: it keeps changing state; try again")


# --- state changes (all conditional on the current status) ------------------------------------


def claim(database: Database, job_id: ObjectId) -> dict[str, Any] | None:
    """Move a queued job to running, owned by this process. None if it is no longer queued."""
    stamp = now()
    return database.jobs.find_one_and_update(
        {"_id": job_id, "status": QUEUED},
        {
            "$set": {
                "status": RUNNING,
                "started_at": stamp,
                "heartbeat_at": stamp,
                "owner": current_owner(),
                "message": "started",
            },
            "$push": _push_step(_step(stamp, 0.0, "started")),
        },
        return_document=ReturnDocument.AFTER,
    )


def write_progress(database: Database, job_id: ObjectId, fraction: float, message: str, *, new_step: bool) -> bool:
    """Record progress of a running job; ``new_step`` also appends to the ``steps`` log."""
    update: dict[str, Any] = {"$set": {"progress": fraction, "message": message}}
    if new_step:
        update["$push"] = _push_step(_step(now(), fraction, message))
    return database.jobs.update_one({"_id": job_id, "status": RUNNING}, update).matched_count == 1


def finish(
    database: Database,
    job_id: ObjectId,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    from_status: tuple[str, ...] = (RUNNING,),
    extra_filter: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """End a job: ``succeeded`` with ``result``, or ``failed`` with ``error``. None if it had already ended."""
    col = database.jobs
    stamp = now()
    current = col.find_one({"_id": job_id}, {"started_at": 1})
    started_at = current.get("started_at") if current else None
    if error is None:
        fields = {"status": SUCCEEDED, "progress": 1.0, "message": "done", "result": result or {}, "error": None}
        step = _step(stamp, 1.0, "done")
    else:
        message = clip_message(f"failed: {error.get('message', '')}")
        fields = {"status": FAILED, "message": message, "error": error, "result": None}
        step = _step(stamp, None, message)
    fields.update(finished_at=stamp, duration_s=_duration(started_at, stamp))
    query: dict[str, Any] = {"_id": job_id, "status": {"$in": list(from_status)}}
    query.update(extra_filter or {})
    return col.find_one_and_update(
        query,
        {"$set": fields, "$unset": {"active_key": "", "committing": ""}, "$push": _push_step(step)},
        return_document=ReturnDocument.AFTER,
    )


def cancel(database: Database, job_id: str | ObjectId, *, requested_by: str | None = None) -> dict[str, Any]:
    """Cancel a queued or running job: it ends ``failed`` with error code ``cancelled`` at once.

    A queued job never starts. A running job's worker sees the change within a second and stops
    the work (a bounded job's child process is killed; nothing of it is committed, see
    :mod:`models.jobs.bounded`); a job on a Dask worker stops at its next progress report.
    ConflictError (409) when the job has already ended; NotFoundError for an unknown id.
    """
    oid = parse_job_id(job_id)
    job = get_job(database, oid)
    if job["status"] in ACTIVE_STATUSES:
        who = f" by {requested_by}" if requested_by else ""
        error = {"code": "cancelled", "message": f"cancelled{who} while {job['status']}; nothing of it was kept"}
        done = stop(database, oid, error, from_status=ACTIVE_STATUSES)
        if done is not None:
            log.info("job %s (%s %s) cancelled%s", oid, job.get("kind"), job.get("key"), who)
            return done
        job = get_job(database, oid)
        if job.get("committing") and job["status"] == RUNNING:
            raise ConflictError(
                f"job {str(oid)!r} is saving its result and can no longer be cancelled; it ends succeeded",
                field="job_id",
            )
    raise ConflictError(
        f"job {str(oid)!r} has already {job['status']}; there is nothing to cancel", field="job_id"
    )


def error_of(exc: BaseException) -> dict[str, Any]:
    """The ``error`` field for an exception (:func:`models.errors.error_dict`, message clipped,
    without ``details``: a job document keeps the short form)."""
    out = error_dict(exc, max_chars=MAX_MESSAGE_CHARS)
    out.pop("details", None)
    return out


def stop(
    database: Database,
    job_id: ObjectId,
    error: dict[str, Any],
    *,
    from_status: tuple[str, ...] = (RUNNING,),
) -> dict[str, Any] | None:
    """End a job as failed with ``error`` (cancel, time limit) unless it has begun committing
    (:func:`begin_commit`); None when it had ended or is committing."""
    return finish(
        database, job_id, error=error, from_status=from_status, extra_filter={"committing": {"$exists": False}}
    )


def begin_commit(
    database: Database, job_id: ObjectId, what: dict[str, Any], owner: dict[str, Any]
) -> dict[str, Any] | None:
    """Mark a running job of ``owner`` (the process that claimed it) as committing ``what`` (e.g.
    ``{"run_id": ...}``): from now on cancel and the time limit leave it alone. None (commit nothing!)
    if the job is no longer running, was cancelled, or is owned by another process."""
    return database.jobs.find_one_and_update(
        {"_id": job_id, "status": RUNNING, "committing": {"$exists": False}, **_owned_by(owner)},
        {"$set": {"committing": {**what, "at": now()}}},
        return_document=ReturnDocument.AFTER,
    )


def _owned_by(owner: dict[str, Any]) -> dict[str, Any]:
    return {"owner.instance": owner.get("instance"), "owner.pid": owner.get("pid")}


def set_worker(database: Database, job_id: ObjectId, worker: dict[str, Any]) -> None:
    """Note which Dask worker took a queued job."""
    database.jobs.update_one({"_id": job_id, "status": QUEUED}, {"$set": {"worker": worker}})


def beat(database: Database, job_ids: list[ObjectId], owner_filter: dict[str, Any]) -> int:
    """Refresh ``heartbeat_at`` of the active ``job_ids`` matching ``owner_filter``; returns how many."""
    return database.jobs.update_many(
        {"_id": {"$in": job_ids}, "status": {"$in": list(ACTIVE_STATUSES)}, **owner_filter},
        {"$set": {"heartbeat_at": now()}},
    ).modified_count


def fail_jobs_of(database: Database, owner: dict[str, Any], error: dict[str, Any]) -> list[dict[str, Any]]:
    """End as failed with ``error`` the active jobs that process ``owner`` ran (e.g. a training that a
    stopped ensemble job's child process had started); returns them."""
    done = []
    for job in database.jobs.find({"status": {"$in": list(ACTIVE_STATUSES)}, **_owned_by(owner)}, {"_id": 1}):
        ended = finish(database, job["_id"], error=error, from_status=ACTIVE_STATUSES)
        if ended is not None:
            done.append(ended)
    return done


# --- reading ----------------------------------------------------------------------------------


def find_job(
    database: Database, job_id: ObjectId, projection: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    return database.jobs.find_one({"_id": job_id}, projection)


def find_active(database: Database, claim: str) -> dict[str, Any] | None:
    """The queued or running job holding ``claim``, or None."""
    return database.jobs.find_one({"active_key": claim})


def get_job(database: Database, job_id: str | ObjectId) -> dict[str, Any]:
    """The job document, or NotFoundError naming the id."""
    doc = database.jobs.find_one({"_id": parse_job_id(job_id)})
    if doc is None:
        raise NotFoundError(f"no job with id {str(job_id)!r}", field="job_id")
    return doc


def list_jobs(
    database: Database,
    *,
    status: str | None = None,
    kind: str | None = None,
    key: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The newest jobs first, optionally filtered by status, kind and key."""
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}; got {status!r}", field="status")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit")
    query: dict[str, Any] = {}
    if status is not None:
        query["status"] = status
    if kind is not None:
        query["kind"] = kind
    if key is not None:
        query["key"] = key
    return list(database.jobs.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit))


def latest_job(database: Database, key: str) -> dict[str, Any] | None:
    """The newest job with ``key`` (running or finished), or None."""
    found = list_jobs(database, key=key, limit=1)
    return found[0] if found else None


def is_finished(job: dict[str, Any]) -> bool:
    return job.get("status") in (SUCCEEDED, FAILED)


def wait(
    database: Database, job_id: str | ObjectId, timeout: float = 60.0, *, poll_s: float = 0.25
) -> dict[str, Any]:
    """Poll until the job has succeeded or failed and return it; JobTimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    delay = min(0.02, poll_s)
    while True:
        job = get_job(database, job_id)
        if is_finished(job):
            return job
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise JobTimeoutError(
                f"job {str(job_id)!r} is still {job['status']} after {timeout:g} s", field="job_id"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, poll_s)


# --- recovery ---------------------------------------------------------------------------------


def _death_reason(job: dict[str, Any], cutoff: datetime) -> str | None:
    owner = job.get("owner") or {}
    host, pid = owner.get("host"), owner.get("pid")
    who = f"pid {pid} on host {host}"
    if owner_is_dead(owner):
        return f"the process running this job stopped ({who})"
    beat = job.get("heartbeat_at") or job.get("started_at") or job.get("created_at")
    if beat is None or beat < cutoff:
        since = iso(beat) if beat else "never"
        return f"the process running this job stopped ({who}; no heartbeat since {since})"
    return None


def recover_stale_jobs(database: Database, *, stale_after_s: float = STALE_AFTER_S) -> list[dict[str, Any]]:
    """Mark failed the queued/running jobs whose process died; call it when the service starts.

    Dead means: owned by a process on this host that no longer exists, or no
    heartbeat for ``stale_after_s`` seconds. Jobs of live processes are left
    alone; the update is conditional on the heartbeat we saw, so a job that
    beats meanwhile is not touched. Returns the jobs it failed.
    """
    if not (isinstance(stale_after_s, (int, float)) and math.isfinite(stale_after_s) and stale_after_s > 0):
        raise ValueError("stale_after_s must be a positive number of seconds")
    cutoff = now() - timedelta(seconds=stale_after_s)
    recovered = []
    for job in database.jobs.find({"status": {"$in": list(ACTIVE_STATUSES)}}):
        reason = _death_reason(job, cutoff)
        if reason is None:
            continue
        done = end_abandoned(database, job, {"code": "process_died", "message": reason})
        if done is not None:
            log.warning("job %s (%s %s) marked failed: %s", job["_id"], job.get("kind"), job.get("key"), reason)
            recovered.append(done)
    # A training killed with its process also left its config "training" (with or without a job).
    recover_interrupted_trainings(database)
    return recovered


def end_abandoned(database: Database, job: dict[str, Any], error: dict[str, Any]) -> dict[str, Any] | None:
    """End ``job`` (as read) whose process is gone: failed with ``error``, or, when it had begun
    committing and its commit landed, succeeded, since its work is kept. A training's commit is its
    config pointing at the run (``committing.config_id``); an ensemble's is its document (``run_id``).
    Conditional on the heartbeat seen, so a live job is not touched."""
    committed = job.get("committing") or {}
    run_id = committed.get("run_id")
    if not run_id:
        landed = False
    elif committed.get("config_id") is not None:
        landed = (
            database.configs.find_one({"_id": committed["config_id"], "run_id": run_id}, {"_id": 1}) is not None
        )
    else:
        landed = database.ensembles.find_one({"run_id": run_id}, {"_id": 1}) is not None
    return finish(
        database,
        job["_id"],
        result={"run_id": run_id, "recovered": "its process stopped after it committed"} if landed else None,
        error=None if landed else error,
        from_status=(job["status"],),
        extra_filter={"heartbeat_at": job.get("heartbeat_at")},
    )
