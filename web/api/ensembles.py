"""``/api/ensembles``: list, read, and create (``POST`` -> ``202`` job; ``200`` with the running job
when a creation of that name is already under way). Bad requests are refused before a job exists:
422 with every problem, 404 for unknown base configs, 409 for a taken name (unless ``"new_version": true``:
then the name gets its next version).

``<ref>`` is an ensemble reference: NAME (its production version, else its highest), NAME@production,
NAME@staging, NAME@latest, NAME@3 or a version's run id. ``POST /api/ensembles/<ref>/promote`` with
``{"to": "production"|"staging"|"archived"|"none", "reason", "demote_to"}`` moves a version (a plain name:
its highest); ``GET /api/ensembles/<name>/history`` lists every version; ``GET /api/ensembles/<ref>/export``
downloads the version with its base runs as one signed archive (``POST /api/import`` takes it).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from models.ensembles import versions
from models.ensembles.build import get_ensemble, list_ensembles
from models.ensembles.service import submit_ensemble
from models.errors import ValidationError
from models.jsonable import to_json
from web.api.body import json_object
from web.api.jobs import job_response
from web.registry_service import export_ensemble_archive
from web.services import get_db, job_runner, requested_by

PROMOTE_FIELDS = ("to", "reason", "demote_to")

bp = Blueprint("ensembles", __name__, url_prefix="/ensembles")


@bp.get("")
def list_all() -> Any:
    docs = list_ensembles(get_db())
    return jsonify(ensembles=[to_json(d) for d in docs], count=len(docs))


@bp.post("")
def create() -> Any:
    """Body: ``name``, ``base_models`` (model references: NAME, NAME@production, NAME@1.2.0, a run id),
    ``meta_model``, ``passthrough``, ``stack_method``, ``meta_params``, ``description``, ``new_version``."""
    job, created = submit_ensemble(get_db(), json_object(), runner=job_runner(), requested_by=requested_by())
    return job_response(job, created)


@bp.get("/<name>")
def get_one(name: str) -> Any:
    return jsonify(to_json(get_ensemble(get_db(), name)))


@bp.get("/<name>/export")
def export(name: str) -> Any:
    """The ensemble version ``name`` serves (NAME, NAME@3, NAME@production) with its base runs: one signed
    ``.tar.gz`` that ``POST /api/import`` and ``models import`` take."""
    data, filename, summary = export_ensemble_archive(get_db(), name)
    response = Response(data, mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Checksum-SHA256"] = summary["sha256"]
    return response


@bp.get("/<name>/history")
def history(name: str) -> Any:
    return jsonify(to_json(versions.history(get_db(), name)))


@bp.post("/<name>/promote")
def promote(name: str) -> Any:
    body = json_object()
    unknown = sorted(set(body) - set(PROMOTE_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(PROMOTE_FIELDS)}", field=unknown[0]
        )
    if not isinstance(body.get("to"), str):
        raise ValidationError('send {"to": "production"} (or staging, archived, none)', field="to")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValidationError("reason must be text", field="reason")
    result = versions.set_stage(
        get_db(), name, body["to"], by=requested_by(), reason=reason, demote_to=body.get("demote_to", "staging")
    )
    return jsonify(to_json({k: v for k, v in result.items() if k != "ensemble"}))
