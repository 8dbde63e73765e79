"""One error shape for the API and readable error pages for people.

API responses (``/api/...`` and ``/healthz``) are ``{"error": {"code", "message", "field"?}}``
with the status of the error; pages get ``errors/error.html``. Core errors
(:class:`~models.errors.ServiceError`) carry their own code and status;
a lost MongoDB connection becomes ``503 database_unavailable``; anything
unforeseen is logged with its traceback and answered with a plain 500.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from pymongo.errors import ConnectionFailure
from werkzeug.exceptions import HTTPException

from models.errors import DatabaseUnavailableError, ServiceError, error_shape
from web.limits import too_large_message

log = logging.getLogger(__name__)

API_PREFIXES = ("/api/", "/healthz")


class BadRequestError(ServiceError):
    """The request itself is malformed (wrong shape, missing part): 400, naming the field at fault."""

    code = "bad_request"
    http_status = 400


def wants_json() -> bool:
    """True for requests to the JSON API (and the health check)."""
    return request.path == "/api" or request.path.startswith(API_PREFIXES)


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``{"error": {...}}`` body used by every JSON error."""
    return {"error": error_shape(code, message, field, **extra)}


def json_error(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> Response:
    """A JSON error response with ``status``."""
    response = jsonify(error_body(code, message, field, **extra))
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def _page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("errors/error.html", status=status, title=title, message=message), status


def handle_service_error(exc: ServiceError) -> Any:
    if exc.http_status >= 500 and not isinstance(exc, DatabaseUnavailableError):
        log.exception("service error on %s %s", request.method, request.path)
    if wants_json():
        response = jsonify({"error": exc.to_dict()})
        response.status_code = exc.http_status
        return response
    title = "Database unavailable" if isinstance(exc, DatabaseUnavailableError) else "Something went wrong"
    return _page(exc.http_status, title, exc.message)


def handle_connection_failure(exc: ConnectionFailure) -> Any:
    log.warning("MongoDB unreachable on %s %s: %s", request.method, request.path, exc.__class__.__name__)
    return handle_service_error(
        DatabaseUnavailableError("the database is not reachable right now; try again in a moment")
    )


def handle_http_exception(exc: HTTPException) -> Any:
    if exc.code is None or exc.code < 400:
        return exc
    if exc.code == 413:  # name the limit and its setting (web/limits.py), not Werkzeug's generic text
        exc.description = too_large_message()
    if wants_json():
        response = json_error(exc.code, _http_code(exc), exc.description or exc.name)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        if exc.code == 429 and exc.response is not None and exc.response.headers.get("Retry-After"):
            response.headers["Retry-After"] = exc.response.headers["Retry-After"]
        return response
    return _page(exc.code, f"{exc.code} {exc.name}", exc.description or exc.name)


def handle_csrf_error(exc: CSRFError) -> Any:
    if wants_json():
        return json_error(
            400,
            "csrf_failed",
            f"CSRF check failed: {exc.description} "
            "(send the API bearer token, or the X-CSRFToken header from a logged-in page)",
        )
    return _page(
        400,
        "Form expired",
        "This form could not be accepted (its security token is missing or "
        "out of date). Go back, reload the page and try again.",
    )


def handle_unexpected(exc: Exception) -> Any:
    log.exception("unhandled error on %s %s", request.method, request.path)
    if wants_json():
        return json_error(500, "internal_error", "internal server error")
    return _page(500, "Something went wrong", "An unexpected error happened; it has been logged.")


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on ``app`` (called by the app factory)."""
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(ConnectionFailure, handle_connection_failure)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
