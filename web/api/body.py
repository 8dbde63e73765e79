"""Reading JSON request bodies: malformed JSON or a body that is not an object is a clear 400."""
from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest

from ..jsonbody import JSONTextError, loads_strict


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
