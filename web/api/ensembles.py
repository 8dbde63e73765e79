"""``/api/ensembles``: list, read, and create (``POST`` -> ``202`` job; ``200`` with the running job
when a creation of that name is already under way). Bad requests are refused before a job exists:
422 with every problem, 404 for unknown base configs, 409 for a taken name.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from models.ensembles.build import get_ensemble, list_ensembles
from models.ensembles.service import submit_ensemble
from models.jsonable import to_json
from web.api.body import json_object
from web.api.jobs import job_response
from web.services import get_db, job_runner, requested_by

bp = Blueprint("ensembles", __name__, url_prefix="/ensembles")


@bp.get("")
def list_all() -> Any:
    docs = list_ensembles(get_db())
    return jsonify(ensembles=[to_json(d) for d in docs], count=len(docs))


@bp.post("")
def create() -> Any:
    """Body: ``name``, ``base_models`` (config names), ``meta_model``, ``passthrough``, ``stack_method``,
    ``meta_params``, ``description``."""
    job, created = submit_ensemble(get_db(), json_object(), runner=job_runner(), requested_by=requested_by())
    return job_response(job, created)


@bp.get("/<name>")
def get_one(name: str) -> Any:
    return jsonify(to_json(get_ensemble(get_db(), name)))
