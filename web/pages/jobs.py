"""Jobs pages: recent background jobs (kind, key, status, progress, duration, error) and one job's detail."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from models import jobs
from models.ensembles.service import RESUBMITTABLE, resubmit_job
from models.errors import ConflictError, ValidationError
from models.jobs.timing import job_timing
from web.redirects import safe_path
from web.services import get_db, job_runner, requested_by

bp = Blueprint("jobs", __name__, url_prefix="/jobs")
NAV = ("Jobs", "pages.jobs.index")

LIMIT = 100


def result_link(job: dict[str, Any]) -> tuple[str, str] | None:
    """``(label, url)`` of what a job worked on (the config it trained, the ensemble it built)."""
    params = job.get("params") or {}
    if job.get("kind") == "train" and params.get("config"):
        return f"config {params['config']}", url_for("pages.configs.detail", ident=params["config"])
    if job.get("kind") == "ensemble" and params.get("name"):
        return f"ensemble {params['name']}", url_for("pages.ensembles.detail", name=params["name"])
    return None


@bp.get("/")
def index() -> Any:
    """The newest jobs, optionally of one status or kind."""
    status = request.args.get("status") or None
    kind = request.args.get("kind") or None
    if status is not None and status not in jobs.STATUSES:
        flash(f"Unknown status {status!r}; showing every status.", "error")
        status = None
    found = jobs.list_jobs(get_db(), status=status, kind=kind, limit=LIMIT)
    return render_template(
        "jobs/index.html", jobs=found, status=status, kind=kind, statuses=jobs.STATUSES, result_link=result_link
    )


@bp.get("/<job_id>")
def detail(job_id: str) -> Any:
    job = jobs.get_job(get_db(), job_id)
    return render_template(
        "jobs/detail.html",
        job=job,
        link=result_link(job),
        timing=job_timing(job),
        can_resubmit=job.get("status") == jobs.FAILED and job.get("kind") in RESUBMITTABLE,
    )


@bp.post("/<job_id>/cancel")
def cancel(job_id: str) -> Any:
    """The Cancel button: the job ends failed (cancelled); back to the page the button was on."""
    try:
        job = jobs.cancel(get_db(), job_id, requested_by=requested_by())
        flash(f"Job cancelled: {job['kind']} {job['key']}.", "info")
    except ConflictError as exc:
        flash(exc.message, "error")
    return redirect(safe_path(request.form.get("next"), url_for("pages.jobs.detail", job_id=job_id)))


@bp.post("/<job_id>/resubmit")
def resubmit(job_id: str) -> Any:
    """The Resubmit button of a failed job (e.g. one that lost its worker): the same work as a new job."""
    try:
        job, created = resubmit_job(get_db(), job_id, runner=job_runner(), requested_by=requested_by())
    except (ConflictError, ValidationError) as exc:
        flash(exc.message, "error")
        return redirect(url_for("pages.jobs.detail", job_id=job_id))
    flash(
        f"Submitted again as job {job['_id']}." if created else "That work is already running; showing it.",
        "success" if created else "info",
    )
    return redirect(url_for("pages.jobs.detail", job_id=str(job["_id"])))
