"""How long a job has run and, while it runs, about how long it has left (from its progress so far)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models.jsonable import to_json
from models.timeutil import now

MIN_PROGRESS_FOR_ETA = 0.02  # below this the rate says nothing yet


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def job_timing(job: dict[str, Any], at: datetime | None = None) -> dict[str, float | None]:
    """``{"elapsed_s", "eta_s"}``: seconds since the job started (its duration once finished) and, for a
    running job, the remaining time if it keeps its pace so far (None when it cannot be told)."""
    started = job.get("started_at")
    if not isinstance(started, datetime):
        return {"elapsed_s": None, "eta_s": None}
    end = job.get("finished_at") if isinstance(job.get("finished_at"), datetime) else (at or now())
    elapsed = max((_aware(end) - _aware(started)).total_seconds(), 0.0)
    eta = None
    progress = job.get("progress")
    if (
        job.get("status") == "running"
        and isinstance(progress, (int, float))
        and MIN_PROGRESS_FOR_ETA <= progress < 1
    ):
        eta = elapsed * (1 - progress) / progress
    return {"elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1)}


def job_to_json(job: dict[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-safe view of a job for the API and the CLI (``id`` as a string, ISO times, timing)."""
    if job is None:
        return None
    return to_json({**{k: v for k, v in job.items() if k != "active_key"}, **job_timing(job)})
