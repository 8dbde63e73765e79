"""``GET /healthz``: is the service able to reach MongoDB? For load balancers and monitoring."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from models.errors import DatabaseUnavailableError
from web.auth import public
from web.errors import error_body
from web.services import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@public
def healthz() -> Any:
    """200 ``{"status": "ok"}`` when MongoDB answers a ping, else 503 with the error shape."""
    try:
        get_db().ping()
    except DatabaseUnavailableError as exc:
        response = jsonify({"status": "unavailable", **error_body(exc.code, "the database is not reachable")})
        response.status_code = 503
        return response
    return jsonify(status="ok")
