"""``POST /api/ensembles/suggest``: choose an ensemble from stored out-of-fold predictions, as a background job.

Body: ``name``, ``from`` (config names), ``all_compatible``, ``metric``, ``size``, ``method``
(greedy|stack|both), ``meta_model``, ``stack_top``, ``description``. Bad requests are refused before a
job exists (422 naming the field, 404 unknown configs, 409 a taken name); otherwise ``202`` with the
job (``200`` with the running one when the same name is already being built). The result is a stored
ensemble: ``GET /api/ensembles/<name>`` (its ``selection`` holds the steps, weights and honest scores).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from models.ensembles.suggest import submit_suggestion
from web.api.body import json_object
from web.api.jobs import job_response
from web.services import get_db, job_runner, requested_by

bp = Blueprint("ensemble_suggest", __name__, url_prefix="/ensembles")


@bp.post("/suggest")
def suggest() -> Any:
    job, created = submit_suggestion(get_db(), json_object(), runner=job_runner(), requested_by=requested_by())
    return job_response(job, created)
