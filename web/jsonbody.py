"""Strict JSON reading shared by the API and the forms: clear messages, no NaN/Infinity."""

from __future__ import annotations

import json
import math
from typing import Any


class JSONTextError(ValueError):
    """The text is not valid JSON; the message says where and why."""


def _reject_constant(name: str) -> Any:
    raise JSONTextError(f"malformed JSON: {name} is not allowed")


MAX_INT_DIGITS = 4300  # Python's own limit for int(str); a longer number is refused, not a 500


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JSONTextError(
            f"malformed JSON: an integer of {digits} digits is too long (at most {MAX_INT_DIGITS} digits)"
        )
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise JSONTextError(
            f"malformed JSON: the number {shown} is too large (beyond the range of a double-precision float)"
        )
    return value


def loads_strict(text: str) -> Any:
    """Parse JSON text; raises :class:`JSONTextError` with a readable message.

    NaN/Infinity, numbers that overflow a float (``1e999``) and integers longer than
    ``MAX_INT_DIGITS`` digits are refused.
    """
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise JSONTextError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise JSONTextError("malformed JSON: nested too deeply") from None
