"""The exceptions the core raises. Every one carries a message meant for a person.

Callers (web, CLI, agents) map them to status codes / exit codes; nothing in
``models`` swallows them silently.
"""

from __future__ import annotations

import sys
from typing import Any


def error_shape(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one shape of an error everywhere (API bodies, job and config documents, CLI ``--json``):
    ``{"code", "message", "field"?, ...extra}``; None values are left out."""
    out: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        out["field"] = field
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


class ServiceError(Exception):
    """Base class. ``code`` is a stable machine-readable name; ``field`` names the input at fault."""

    code = "error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", "field"?, "details"?}`` (see :func:`error_shape`)."""
        return error_shape(self.code, self.message, self.field, details=self.details)


class ValidationError(ServiceError):
    """Bad input. ``errors`` lists every problem as ``{"field": ..., "message": ...}``."""

    code = "validation_error"
    http_status = 422

    def __init__(
        self, message: str, *, field: str | None = None, errors: list[dict[str, str]] | None = None
    ) -> None:
        self.errors = errors or ([{"field": field or "", "message": message}])
        if field is None and len(self.errors) == 1:
            field = self.errors[0].get("field") or None
        super().__init__(message, field=field, details=self.errors if len(self.errors) > 1 else None)


class ForbiddenError(ServiceError):
    """The caller may not do this here (e.g. a trust decision over HTTP); the message says where it may."""

    code = "forbidden"
    http_status = 403


class NotFoundError(ServiceError):
    code = "not_found"
    http_status = 404


class ConflictError(ServiceError):
    code = "conflict"
    http_status = 409


class DataError(ServiceError):
    """The training data cannot be used (missing file, missing columns, ...)."""

    code = "data_error"
    http_status = 422


class TrainingError(ServiceError):
    code = "training_error"
    http_status = 500


class ArtifactError(ServiceError):
    """An artifact is missing, outside the artifact folder, or fails verification.

    ``reason`` is one of :data:`ARTIFACT_REASONS` (``field_missing``, ``file_missing``, ...);
    :func:`describe_reason` says it in words.
    """

    code = "artifact_error"
    http_status = 422

    def __init__(self, message: str, *, reason: str, path: str | None = None) -> None:
        super().__init__(message, field=None)
        self.reason = reason
        self.path = path

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["reason"] = self.reason
        return out


# why an artifact could not be used, for a person (the codes stay the machine-readable part)
ARTIFACT_REASONS = {
    "field_missing": "not trained yet",
    "oof_missing": "trained before out-of-fold predictions were kept",
    "checksum_missing": "legacy artifacts, not adopted (no checksums recorded)",
    "file_missing": "an artifact file is missing",
    "path_refused": "an artifact path points outside the artifact folder",
    "checksum_mismatch": "an artifact file changed since training (checksum mismatch)",
    "unpickle_error": "an artifact file cannot be read",
    "empty_file": "an artifact file is empty",
    "write_error": "an artifact could not be written",
    "signature_invalid": "an artifact's signature does not verify (forged or changed)",
    "signature_missing": "an artifact is not signed (run `artifacts sign --all`)",
}


def describe_reason(reason: str | None) -> str:
    """An artifact problem's reason code in words; unknown codes come back as they are."""
    return ARTIFACT_REASONS.get(reason or "", reason or "")


class DatabaseUnavailableError(ServiceError):
    code = "database_unavailable"
    http_status = 503


class EmbeddedServerError(ServiceError):
    code = "embedded_server_error"
    http_status = 503


MAX_CAUSE_CHARS = 300


def database_error_kind(exc: BaseException) -> str | None:
    """``"unavailable"`` for a pymongo error that means the server did not answer (connection lost,
    timeouts, no server selectable), ``"refused"`` for any other pymongo or bson error (a duplicate key,
    a failed operation, a bad document), None for other exceptions. Classified with ``isinstance`` on
    pymongo's own classes; pymongo is not imported for this (an error of it exists only once it is)."""
    errors = sys.modules.get("pymongo.errors")
    if errors is None:
        return None
    if isinstance(exc, (errors.ConnectionFailure, errors.ExecutionTimeout, errors.WTimeoutError)):
        return "unavailable"
    bson_errors = sys.modules.get("bson.errors")
    if isinstance(exc, errors.PyMongoError) or (
        bson_errors is not None and isinstance(exc, bson_errors.BSONError)
    ):
        return "refused"
    return None


def describe_exception(exc: BaseException) -> str:
    """A short cause for an unexpected exception: ``Name: text``, cut to ``MAX_CAUSE_CHARS``.

    A database driver error says only that the database did not answer (or refused): pymongo's own
    text carries the topology (hosts, ports, timeouts), which is for the logs, not for users.
    """
    name = type(exc).__name__
    kind = database_error_kind(exc)
    if kind == "unavailable":
        return f"{name}: the database did not answer"
    if kind == "refused":
        return f"{name}: the database refused the operation"
    text = " ".join(str(exc).split())
    out = f"{name}: {text}" if text else name
    return out if len(out) <= MAX_CAUSE_CHARS else out[: MAX_CAUSE_CHARS - 3] + "..."


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (ending in ``...`` when cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_dict(
    exc: BaseException, *, unexpected_code: str = "internal_error", max_chars: int | None = None
) -> dict[str, Any]:
    """The error shape of any exception (:func:`error_shape`), for documents and answers.

    A :class:`ServiceError` keeps its code, message, field and details (an ArtifactError its reason);
    a pymongo error that means the server did not answer is ``database_unavailable``, any other
    pymongo error ``database_error``; anything else ``unexpected_code`` with a short cause. With
    ``max_chars`` the message is cut to that length.
    """
    if isinstance(exc, ServiceError):
        out = exc.to_dict()
    else:
        kind = database_error_kind(exc)
        code = {"unavailable": "database_unavailable", "refused": "database_error"}.get(
            kind or "", unexpected_code
        )
        out = error_shape(code, describe_exception(exc))
    if max_chars is not None:
        out["message"] = clip(str(out["message"]), max_chars)
    return out
