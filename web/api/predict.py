"""``POST /api/predict/model/<ref>`` and ``POST /api/predict/ensemble/<ref>``.

``<ref>`` is a reference: for a model ``NAME`` (its production run, else its latest training), ``NAME@1.2.0``...;
for an ensemble ``NAME`` (its production version, else its highest), ``NAME@production``, ``NAME@staging``,
``NAME@latest``, ``NAME@3`` or a version's run id. Every answer names ``run_id``, ``version`` and ``served``.

Body ``{"rows": [{"feature": value, ...}, ...]}``; answer ``{"predictions": [{"prediction", "proba_<class>"...}],
"count", "run_id", ...}``. A body without a list of row objects, or rows missing features, is a 400
(``bad_request`` / ``missing_features``, naming what is missing); non-numeric or empty values, and values so
large that a model overflows on them (naming the row and column), are a 422; an unknown model is a 404; a
config never trained is a 409. ``?format=csv`` answers with a CSV download instead: the rows with the
prediction columns appended, formula-like cells escaped (as ``predict --out`` writes it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from flask import Blueprint, Response, jsonify, request

from models.artifacts.prediction_csv import to_safe_csv
from models.errors import ValidationError
from web.api.body import json_object
from web.predict import predict_with_ensemble, predict_with_model
from web.services import get_db

bp = Blueprint("predict", __name__, url_prefix="/predict")
FORMATS = ("json", "csv")


def _answer(name: str, predict: Callable[..., dict[str, Any]]) -> Any:
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        raise ValidationError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", field="format")
    body = json_object()
    result = predict(get_db(), name, body)
    if fmt == "json":
        return jsonify(result)
    table = pd.concat([pd.DataFrame(body["rows"]), pd.DataFrame(result["predictions"])], axis=1)
    response = Response(to_safe_csv(table), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="predictions.csv"'
    return response


@bp.post("/model/<name>")
def model(name: str) -> Any:
    return _answer(name, predict_with_model)


@bp.post("/ensemble/<name>")
def ensemble(name: str) -> Any:
    return _answer(name, predict_with_ensemble)
