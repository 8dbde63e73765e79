"""``GET /healthz``: is the service able to reach MongoDB, and its job runner? For load balancers and monitoring."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from models.errors import DatabaseUnavailableError, ServiceError
from web.auth import public
from web.errors import error_body
from web.services import current_runner, get_db, get_state, job_runner

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz() -> Any:
    """200 ``{"status": "ok", "runner": {...}}`` when MongoDB answers a ping, else 503 with the error shape.

    ``runner`` says where jobs run; on a Dask cluster its ``state`` (``connected``, ``reconnecting``,
    ``closed``: the next job opens the connection again), whether it uses TLS and how often it
    reconnected. The database decides the status: jobs wait in MongoDB while the runner heals."""
    try:
        get_db().ping()
    except DatabaseUnavailableError as exc:
        response = jsonify({"status": "unavailable", **error_body(exc.code, "the database is not reachable")})
        response.status_code = 503
        return response
    return jsonify(status="ok", runner=runner_state())


def runner_state() -> dict[str, Any]:
    """The runner's description; a cluster runner not connected yet is not connected here (a health
    check must answer at once, not wait for a scheduler)."""
    runner = current_runner()
    if runner is None and get_state().settings.dask_scheduler_address:
        return {"runner": "dask", "state": "not connected yet (the first job connects)"}
    try:
        return (runner or job_runner()).describe()
    except ServiceError as exc:
        return {"state": "unavailable", **exc.to_dict()}
