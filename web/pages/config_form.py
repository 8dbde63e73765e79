"""The config form: from a document to text fields and back, with per-field errors.

Hyperparameters are a JSON object in a textarea, features one per line or
comma-separated, tags comma-separated. Problems found while reading the form
(malformed JSON, a number that is not a number) and problems found by the
schema are reported together, each under its field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from models.errors import ValidationError
from models.estimators import REGISTRY, TASKS
from models.store.schema import (
    CONFIG_STATUSES,
    INPUT_FIELDS,
    SERVER_FIELDS,
    SPLITS,
    TRAINING_FIELDS,
    validate_config,
)
from web.jsonbody import JSONTextError, loads_strict

FORM_FIELDS = INPUT_FIELDS  # every field a user sets is on the form
OPTIONAL_NUMBERS = {"cv_folds": int, "random_state": int, "test_size": float, "gap": int}
OPTIONAL_TEXT = ("time_column", "group_column")
SCALERS = ("standard", "minmax", "robust", "none")
CALIBRATIONS = ("none", "sigmoid", "isotonic")
_SPLIT = re.compile(r"[,\n\r]+")


def choices() -> dict[str, Any]:
    """Options for the selects (model types per task, so the page can narrow the list)."""
    return {
        "tasks": TASKS,
        "model_types": {task: sorted(REGISTRY[task]) for task in TASKS},
        "all_model_types": sorted({m for task in TASKS for m in REGISTRY[task]}),
        "scalers": SCALERS,
        "calibrations": CALIBRATIONS,
        "statuses": CONFIG_STATUSES,
        "splits": SPLITS,
    }


def extra_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The user's own fields: not on the form, not written by training or the server. Kept on edit."""
    return {
        k: v
        for k, v in doc.items()
        if k not in FORM_FIELDS and k not in TRAINING_FIELDS and k not in SERVER_FIELDS
    }


def form_values(doc: Mapping[str, Any]) -> dict[str, str]:
    """A document as the strings the form shows."""
    values = {k: "" if doc.get(k) is None else str(doc.get(k)) for k in FORM_FIELDS}
    values["hyperparameters"] = json.dumps(doc.get("hyperparameters") or {}, indent=2, sort_keys=True, default=str)
    values["features"] = "\n".join(str(f) for f in doc.get("features") or [])
    values["tags"] = ", ".join(str(t) for t in doc.get("tags") or [])
    values["split"] = str(doc.get("split") or "random")
    values["feature_types"] = "\n".join(f"{k}: {v}" for k, v in (doc.get("feature_types") or {}).items())
    values["imputation"] = "\n".join(f"{k}: {v}" for k, v in (doc.get("imputation") or {}).items())
    return values


def _pairs(text: str, field: str, errors: list[dict[str, str]]) -> dict[str, str] | None:
    """``name: value`` lines (or comma-separated) as a dict; a line without ``:`` is an error of ``field``."""
    pairs: dict[str, str] = {}
    for part in _split(text):
        name, sep, value = part.partition(":")
        if not sep or not name.strip() or not value.strip():
            errors.append({"field": field, "message": f"{part!r} is not 'name: value'"})
            return None
        pairs[name.strip()] = value.strip()
    return pairs


def _split(text: str) -> list[str]:
    return [part.strip() for part in _SPLIT.split(text) if part.strip()]


def parse_form(form: Mapping[str, str]) -> tuple[dict[str, Any], list[str], list[dict[str, str]]]:
    """Read the submitted form.

    Returns ``(fields, blank_optional, errors)``: the values that could be read,
    the optional number fields left blank (their defaults apply), and the
    problems found while reading.
    """
    fields: dict[str, Any] = {}
    blank: list[str] = []
    errors: list[dict[str, str]] = []
    for key in ("name", "task", "model_type", "target", "training_csv", "scaler", "calibration", "description"):
        fields[key] = (form.get(key) or "").strip()
    raw_hp = (form.get("hyperparameters") or "").strip()
    if raw_hp:
        try:
            hp = loads_strict(raw_hp)
        except JSONTextError as exc:
            errors.append({"field": "hyperparameters", "message": str(exc)})
        else:
            if isinstance(hp, dict):
                fields["hyperparameters"] = hp
            else:
                errors.append(
                    {
                        "field": "hyperparameters",
                        "message": f'must be a JSON object such as {{"max_depth": 8}}, got {type(hp).__name__}',
                    }
                )
    else:
        fields["hyperparameters"] = {}
    fields["split"] = (form.get("split") or "").strip() or "random"
    for key in OPTIONAL_TEXT:  # a blank column means none (the split decides which one applies)
        if (form.get(key) or "").strip():
            fields[key] = (form.get(key) or "").strip()
        else:
            blank.append(key)
    for key in ("feature_types", "imputation"):  # blank: detected at save / the documented defaults
        pairs = _pairs(form.get(key) or "", key, errors)
        if pairs:
            fields[key] = pairs
        elif pairs is not None:
            blank.append(key)
    fields["features"] = _split(form.get("features") or "")
    if isinstance(fields.get("feature_types"), dict):  # a line for a column taken out of the features goes too
        fields["feature_types"] = {k: v for k, v in fields["feature_types"].items() if k in fields["features"]}
    fields["tags"] = _split(form.get("tags") or "")
    for key, kind in OPTIONAL_NUMBERS.items():
        raw = (form.get(key) or "").strip()
        if not raw:
            blank.append(key)
            continue
        try:
            fields[key] = kind(raw)
        except ValueError:
            errors.append(
                {"field": key, "message": "must be a whole number" if kind is int else "must be a number"}
            )
    applies = {"time_column": "time", "gap": "time", "group_column": "group"}
    for key, split in applies.items():  # the form shows every split's fields: only the chosen split's count
        if fields["split"] != split and key not in blank:
            fields.pop(key, None)
            blank.append(key)
            errors[:] = [e for e in errors if e["field"] != key]
    return fields, blank, errors


def check(document: dict[str, Any], read_errors: list[dict[str, str]]) -> None:
    """Raise one :class:`ValidationError` with the reading problems plus the schema's, if there are any."""
    if not read_errors:
        return
    failed = {e["field"] for e in read_errors}
    errors = list(read_errors)
    try:
        validate_config(document)
    except ValidationError as exc:
        errors.extend(e for e in exc.errors if e["field"].split(".")[0] not in failed)
    raise ValidationError(
        "invalid config: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
    )


def errors_by_field(
    exc: ValidationError, fields: Iterable[str] = FORM_FIELDS
) -> tuple[dict[str, list[str]], list[str]]:
    """Split a validation error into messages per form field (of ``fields``) and messages for the whole form."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    for err in exc.errors:
        field = err.get("field") or ""
        top, _, rest = field.partition(".")
        if top in fields:
            message = err["message"] if not rest or top == "features" else f"{rest}: {err['message']}"
            by_field.setdefault(top, []).append(message)
        else:
            general.append(f"{field}: {err['message']}" if field else err["message"])
    return by_field, general
