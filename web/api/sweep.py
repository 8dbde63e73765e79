"""``POST /api/configs/<name or id>/sweep``: one config per combination of hyperparameter values.

Body ``{"grid": {"max_depth": [4, 8, 16], "n_estimators": [100, 300]}, "train": false}`` (``grid`` may also
be a list of ``"name=v1,v2"`` strings). ``201`` with the new configs (and their training jobs when
``train`` is true). A combination that fails validation is a 422 naming the parameter; names already
taken are a 409; either way nothing is created.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from models.errors import ValidationError
from models.training.sweep import check_grid, create_sweep, parse_grid, submit_sweep_training
from web.api.body import json_object
from web.services import get_db, job_runner, requested_by

bp = Blueprint("config_sweep", __name__, url_prefix="/configs")


@bp.post("/<ident>/sweep")
def sweep(ident: str) -> Any:
    body = json_object()
    unknown = sorted(set(body) - {"grid", "train"})
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}; allowed: grid, train", field=unknown[0])
    grid = body.get("grid")
    grid = parse_grid(grid) if isinstance(grid, list) else check_grid(grid)
    train = body.get("train", False)
    if not isinstance(train, bool):
        raise ValidationError(f"train must be true or false; got {train!r}", field="train")
    created = create_sweep(get_db(), ident, grid)
    queued = (
        submit_sweep_training(get_db(), created, runner=job_runner(), requested_by=requested_by()) if train else []
    )
    response = jsonify(
        configs=[{"name": c["name"], "hyperparameters": c["hyperparameters"]} for c in created],
        count=len(created),
        jobs=[str(j["_id"]) for j in queued],
    )
    response.status_code = 201
    return response
