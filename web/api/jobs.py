"""``/api/jobs``: background jobs (training, ensemble creation) as the worker records them in MongoDB.

``GET /api/jobs`` lists the newest first (filters ``status``, ``kind``, ``key``;
``limit`` 1..500, default 50); ``GET /api/jobs/<id>`` is one job (poll it until
``status`` is ``succeeded`` or ``failed``). ``POST /api/jobs/<id>/cancel``
cancels a queued or running job (it ends ``failed`` with error code ``cancelled``;
409 when it has already ended). Submitting routes answer with :func:`job_response`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for

from models import jobs
from models.ensembles.service import resubmit_job as resubmit
from web.api.body import int_arg
from web.services import get_db, job_runner, requested_by

bp = Blueprint("jobs", __name__, url_prefix="/jobs")


def job_response(job: dict[str, Any], created: bool) -> Response:
    """The answer to a job submission.

    ``202 Accepted`` when a new job was queued; ``200 OK`` when the same work was
    already queued or running: the body then describes *that* job (``created: false``),
    so pressing a button twice never starts the work twice. ``Location`` is the job's URL.
    """
    body = {
        "job_id": str(job["_id"]),
        "created": created,
        "status": job["status"],
        "kind": job["kind"],
        "key": job["key"],
        "job_url": url_for("api.jobs.get_job", job_id=str(job["_id"])),
    }
    params = job.get("params") or {}
    if "train_first" in params:  # an ensemble: which base models are trained first, and about how long
        body["train_first"] = params["train_first"]
        body["train_first_summary"] = params.get("train_first_summary")
    if params.get("meta_model_default"):  # an ensemble that named no meta-model: which default, and why
        body["meta_model"] = params.get("meta_model")
        body["meta_model_default"] = params["meta_model_default"]
    response = jsonify(body)
    response.status_code = 202 if created else 200
    response.headers["Location"] = body["job_url"]
    return response


@bp.get("")
def list_jobs() -> Any:
    status = request.args.get("status") or None
    found = jobs.list_jobs(
        get_db(),
        status=status,
        kind=request.args.get("kind") or None,
        key=request.args.get("key") or None,
        limit=int_arg("limit", 50, 1, 500),
    )
    return jsonify(jobs=[jobs.job_to_json(j) for j in found], count=len(found))


@bp.get("/<job_id>")
def get_job(job_id: str) -> Any:
    return jsonify(jobs.job_to_json(jobs.get_job(get_db(), job_id)))


@bp.post("/<job_id>/cancel")
def cancel_job(job_id: str) -> Any:
    """Cancel a queued or running job; answers with the job, now ``failed`` (``cancelled``)."""
    return jsonify(jobs.job_to_json(jobs.cancel(get_db(), job_id, requested_by=requested_by())))


@bp.post("/<job_id>/resubmit")
def resubmit_job(job_id: str) -> Any:
    """Submit a failed training or ensemble job again (202 with the new job; 200 when the same work is
    already queued or running, with that job)."""
    job, created = resubmit(get_db(), job_id, runner=job_runner(), requested_by=requested_by())
    response = jsonify({**jobs.job_to_json(job), "created": created})
    response.status_code = 202 if created else 200
    return response
