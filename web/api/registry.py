"""``/api/registry``: the model registry over runs.

- ``GET /runs``: search (``name``, ``model_type``, ``task``, ``status``, ``tag`` (repeat), ``since``,
  ``until``, ``min=f1:0.8`` / ``max=rmse:3.5`` (repeat), ``sort`` (a field or a metric), ``order``,
  ``page``, ``per_page``)
- ``GET /runs/<run_id>``: one run with its status history
- ``GET /best?metric=roc_auc``: the best run (direction aware), ``{"run": null}`` when none qualifies
- ``GET /compare?run_id=a&run_id=b``: side by side, best per row marked
- ``POST /runs/<run_id>/status`` ``{"status": "production", "reason"?, "demote_to"?}``: lifecycle
- ``DELETE /runs/<run_id>`` (``?force=true`` also deletes the ensembles using it; otherwise 409)
- ``GET /runs/<run_id>/export``: the run as a ``.tar.gz`` archive (artifacts, config, signed manifest)
- ``POST /import`` ``{"archive_base64", "filename"?, "on_conflict"?, "trust"?}``: import an archive; one
  no known key signed is refused (422, field ``archive``) unless ``"trust": true``
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from models import registry
from models.errors import ValidationError
from models.jsonable import to_json
from web.api.body import json_object
from web.registry_service import best_args, compare_ids, export_archive, import_archive, search_args
from web.services import get_db, requested_by

bp = Blueprint("registry", __name__, url_prefix="/registry")


@bp.get("/runs")
def search() -> Any:
    return jsonify(to_json(registry.search(get_db(), **search_args(request.args))))


@bp.get("/runs/<run_id>")
def get_run(run_id: str) -> Any:
    database = get_db()
    run = registry.resolve(database, run_id)  # an id or a reference: NAME@production, NAME@1.2.0, ...
    return jsonify(
        to_json(
            {
                **run,
                "history": registry.history(database, run["run_id"]),
                "ensembles": registry.ensembles_using(database, run["run_id"]),
            }
        )
    )


@bp.get("/best")
def best() -> Any:
    return jsonify(run=to_json(registry.best(get_db(), **best_args(request.args))))


@bp.get("/compare")
def compare() -> Any:
    return jsonify(to_json(registry.compare(get_db(), compare_ids(request.args))))


@bp.post("/runs/<run_id>/status")
def set_status(run_id: str) -> Any:
    body = json_object()
    to = body.get("status")
    if not isinstance(to, str) or not to:
        raise ValidationError(f"status is required: one of {', '.join(registry.STATUSES)}", field="status")
    unknown = sorted(set(body) - {"status", "reason", "demote_to"})
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValidationError("reason must be text", field="reason")
    result = registry.set_status(
        get_db(), run_id, to, by=requested_by(), reason=reason, demote_to=body.get("demote_to", "staging")
    )
    return jsonify(to_json(result))


@bp.delete("/runs/<run_id>")
def delete(run_id: str) -> Any:
    force = request.args.get("force", "false").lower()
    if force not in ("true", "false", "1", "0"):
        raise ValidationError("force must be true or false", field="force")
    return jsonify(to_json(registry.delete_run(get_db(), run_id, force=force in ("true", "1"))))


@bp.get("/runs/<run_id>/export")
def export(run_id: str) -> Any:
    data, filename, summary = export_archive(get_db(), run_id)
    response = Response(data, mimetype="application/gzip")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Checksum-SHA256"] = summary["sha256"]
    return response


@bp.post("/import")
def import_() -> Any:
    return jsonify(to_json(import_archive(get_db(), json_object(), requested_by()))), 201
