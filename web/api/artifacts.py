"""Run files: ``GET /api/artifacts/<run_id>/info`` (paths, sizes, checksums, exists/verified),
``GET /api/export/<run_id>/model`` (the model file, read through the artifact store and
verified against its recorded SHA-256), ``GET /api/export/<run_id>/report`` (JSON: config,
metrics, artifacts). Paths in answers are the stored relative ones.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from flask import Blueprint, Response, jsonify

from models.artifacts.maintenance import run_artifacts_info
from models.artifacts.routing import get_store
from models.artifacts.verified import read_verified
from models.errors import ArtifactError
from models.jsonable import to_json
from models.store.runs import RunStore
from web.services import get_db

bp = Blueprint("artifacts", __name__)

REPORT_FIELDS = (
    "run_id",
    "name",
    "version",
    "status",
    "task",
    "model_type",
    "config",
    "metrics",
    "cv",
    "feature_importance",
    "data",
    "fold_spec",
    "classes",
    "durations",
    "versions",
    "created_at",
    "requested_by",
)


@bp.get("/artifacts/<run_id>/info")
def info(run_id: str) -> Any:
    return jsonify(to_json(run_artifacts_info(get_db(), run_id)))


@bp.get("/export/<run_id>/model")
def model_file(run_id: str) -> Any:
    """The run's model pickle as a download (verified first: a tampered file is refused, never served)."""
    database = get_db()
    run = RunStore(database).get(run_id)
    ref = (run.get("artifacts") or {}).get("model")
    if not ref or not ref.get("path"):
        raise ArtifactError(f"run {run_id} records no model file", reason="field_missing")
    data = read_verified(get_store(database.settings), ref)
    response = Response(data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="{PurePosixPath(ref["path"]).name}"'
    response.headers["X-Checksum-SHA256"] = ref.get("sha256") or ""
    return response


@bp.get("/export/<run_id>/report")
def report(run_id: str) -> Any:
    """The run as a report: its config snapshot, metrics, CV, importance, data and verified artifacts."""
    database = get_db()
    run = RunStore(database).get(run_id)
    body = {k: run.get(k) for k in REPORT_FIELDS if k in run}
    body["artifacts"] = run_artifacts_info(database, run_id)
    return jsonify(to_json(body))
