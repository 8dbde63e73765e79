"""Time in one convention: timezone-aware UTC; ISO 8601 with a ``Z`` in documents meant for people."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None = None) -> str:
    """``2026-11-23T10:15:09Z`` (seconds precision, as the seed system wrote ``artifacts_saved_at``)."""
    value = value or now()
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
