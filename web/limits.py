"""How large a request may be: ``MAX_CONTENT_LENGTH`` for every route, more for the routes that take a
training file (:func:`upload_route`: ``MAX_TRAINING_CSV_BYTES`` plus room for the form fields around it).

The guard (``web/auth.py``) applies a route's limit before anything reads the body (the CSRF check reads
the form); a body over the limit is a 413 whose message names the limit and the setting
(:func:`too_large_message`), on pages and in the API alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from models.settings import Settings
from models.store.uploads import limit_text

F = TypeVar("F", bound=Callable[..., Any])
UPLOAD_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields sent with the file


def upload_route(view: F) -> F:
    """Mark a view that takes an uploaded training file: its request may hold ``MAX_TRAINING_CSV_BYTES``."""
    view.takes_upload = True  # type: ignore[attr-defined]
    return view


def apply_body_limit(view: Any, settings: Settings) -> None:
    """Raise the request's size limit for an :func:`upload_route` view (before the body is read)."""
    if getattr(view, "takes_upload", False):
        g.upload_limit = settings.max_training_csv_bytes
        request.max_content_length = settings.max_training_csv_bytes + UPLOAD_OVERHEAD


def too_large_message() -> str:
    """What a 413 says: the limit that was passed and the setting that sets it."""
    upload = g.get("upload_limit")
    if upload is not None:
        return (
            f"The file is larger than the upload limit of {limit_text(upload)} "
            "(setting MAX_TRAINING_CSV_BYTES); nothing was stored."
        )
    limit = request.max_content_length or current_app.config.get("MAX_CONTENT_LENGTH")
    if not limit:
        return "The request is too large."
    return f"The request is larger than the limit of {limit_text(limit)} (setting MAX_CONTENT_LENGTH)."
