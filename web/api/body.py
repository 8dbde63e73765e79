"""Reading requests: JSON bodies (malformed JSON or a non-object body is a clear 400) and query numbers."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest

from models.errors import ValidationError
from web.jsonbody import JSONTextError, loads_strict


def json_object() -> dict[str, Any]:
    """The request body as a JSON object (``dict``); raises ``BadRequest`` (400) saying what is wrong."""
    raw = request.get_data(cache=True)  # honours MAX_CONTENT_LENGTH (413)
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        data = loads_strict(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None
    except JSONTextError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(data).__name__}")
    return data


def int_arg(name: str, default: int, minimum: int = 0, maximum: int = 10_000) -> int:
    """A whole-number query parameter; ValidationError (422) naming it when it is not one or out of range."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        shown = raw if len(raw) <= 30 else raw[:27] + "..."
        raise ValidationError(f"{name} must be a whole number, got {shown!r}", field=name) from None
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}", field=name)
    return value
