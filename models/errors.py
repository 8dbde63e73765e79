"""The exceptions the core raises. Every one carries a message meant for a person.

Callers (web, CLI, agents) map them to status codes / exit codes; nothing in
``models`` swallows them silently.
"""
from __future__ import annotations

from typing import Any


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
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.details is not None:
            out["details"] = self.details
        return out


class ValidationError(ServiceError):
    """Bad input. ``errors`` lists every problem as ``{"field": ..., "message": ...}``."""

    code = "validation_error"
    http_status = 422

    def __init__(self, message: str, *, field: str | None = None,
                 errors: list[dict[str, str]] | None = None) -> None:
        self.errors = errors or ([{"field": field or "", "message": message}])
        if field is None and len(self.errors) == 1:
            field = self.errors[0].get("field") or None
        super().__init__(message, field=field, details=self.errors if len(self.errors) > 1 else None)


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

    ``reason`` is one of: ``field_missing``, ``file_missing``, ``path_refused``,
    ``checksum_mismatch``, ``unpickle_error``, ``empty_file``, ``write_error``,
    ``signature_invalid``, ``signature_missing`` (models/artifacts/signing.py).
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


class DatabaseUnavailableError(ServiceError):
    code = "database_unavailable"
    http_status = 503


class EmbeddedServerError(ServiceError):
    code = "embedded_server_error"
    http_status = 503
