"""``POST /api/configs/<id>/train``: train a config in the background.

Answers ``202 {"job_id", "created": true, ...}`` when a job was queued, or
``200`` with the running job (``created: false``) when that config is already
being trained; poll ``GET /api/jobs/<job_id>``. Unknown config: 404.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from models.training.service import submit_training
from web.api.jobs import job_response
from web.services import get_db, job_runner, requested_by

bp = Blueprint("training", __name__, url_prefix="/configs")


@bp.post("/<ident>/train")
def train(ident: str) -> Any:
    job, created = submit_training(get_db(), ident, runner=job_runner(), requested_by=requested_by())
    return job_response(job, created)
