"""Strict JSON reading shared by the API and the forms: clear messages, no NaN/Infinity."""
from __future__ import annotations

import json
from typing import Any


class JSONTextError(ValueError):
    """The text is not valid JSON; the message says where and why."""


def _reject_constant(name: str) -> Any:
    raise JSONTextError(f"malformed JSON: {name} is not allowed")


def loads_strict(text: str) -> Any:
    """Parse JSON text; raises :class:`JSONTextError` with a readable message."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise JSONTextError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise JSONTextError("malformed JSON: nested too deeply") from None
