"""``POST /api/predict/model/<name>`` and ``POST /api/predict/ensemble/<name>``.

Body ``{"rows": [{"feature": value, ...}, ...]}``; answer ``{"predictions": [{"prediction", "proba_<class>"...}],
"count", "run_id", ...}``. A body without a list of row objects, or rows missing features, is a 400
(``bad_request`` / ``missing_features``, naming what is missing); non-numeric or empty values are a
422; an unknown model is a 404; a config never trained is a 409.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from web.api.body import json_object
from web.predict import predict_with_ensemble, predict_with_model
from web.services import get_db

bp = Blueprint("predict", __name__, url_prefix="/predict")


@bp.post("/model/<name>")
def model(name: str) -> Any:
    return jsonify(predict_with_model(get_db(), name, json_object()))


@bp.post("/ensemble/<name>")
def ensemble(name: str) -> Any:
    return jsonify(predict_with_ensemble(get_db(), name, json_object()))
