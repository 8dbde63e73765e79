"""JSON-safe copies of MongoDB documents for the API, the CLI's --json and reports."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
from bson import ObjectId

from models.timeutil import iso


def to_json(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-safe copy of a document: ObjectIds to strings, datetimes to ISO 8601."""
    if doc is None:
        return None
    return _jsonable(doc)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out["id" if k == "_id" else k] = _jsonable(v)
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
