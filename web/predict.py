"""Predictions for the JSON API: rows in, the standard prediction table out, for a model or an ensemble.

The answer has the same shape as the CLI's (``prediction`` plus ``proba_<class>``
for classifiers; :func:`models.artifacts.predictor.prediction_frame`). Rows are checked
before anything is loaded into the model: a body without ``rows`` or with rows
that are not objects is a 400 naming ``rows``; rows missing features are a 400
``missing_features`` naming every missing column and the first rows lacking it.
"""

from __future__ import annotations

from typing import Any

from models.artifacts.loading import load_model
from models.ensembles.build import load_ensemble
from models.registry.serving import resolve_model, serving_cache
from models.store.db import Database
from web.errors import BadRequestError

MAX_ROWS = 10_000


class MissingFeaturesError(BadRequestError):
    code = "missing_features"


def read_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``rows`` of a predict body: a non-empty list of objects (BadRequestError otherwise)."""
    rows = body.get("rows")
    if rows is None:
        raise BadRequestError('send {"rows": [{"feature": value, ...}, ...]}', field="rows")
    if not isinstance(rows, list) or not rows:
        raise BadRequestError("rows must be a non-empty list of objects", field="rows")
    if len(rows) > MAX_ROWS:
        raise BadRequestError(f"at most {MAX_ROWS} rows per request, got {len(rows)}", field="rows")
    bad = [i for i, row in enumerate(rows) if not isinstance(row, dict)]
    if bad:
        raise BadRequestError(
            f"every row must be an object of feature values; rows {bad[:5]} are not", field="rows"
        )
    extra = sorted(set(body) - {"rows"})
    if extra:
        raise BadRequestError(f"unknown field(s): {', '.join(extra)}; send only rows", field=extra[0])
    return rows


def check_features(rows: list[dict[str, Any]], features: list[str]) -> None:
    """MissingFeaturesError naming each feature some row lacks (and the first rows lacking it)."""
    missing: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        for feature in features:
            if feature not in row:
                missing.setdefault(feature, []).append(i)
    if missing:
        parts = [
            f"{f} (rows {', '.join(map(str, idx[:5]))}{', ...' if len(idx) > 5 else ''})"
            for f, idx in missing.items()
        ]
        raise MissingFeaturesError(
            f"missing features: {'; '.join(parts)}",
            field=next(iter(missing)),
            details={"missing": list(missing), "required": list(features)},
        )


def predict_with_model(database: Database, ref: str, body: dict[str, Any]) -> dict[str, Any]:
    """Predict with the run that reference ``ref`` serves (:func:`models.registry.serving.resolve_model`:
    ``NAME`` is its production run, else its latest training; 404 unknown, 409 never trained)."""
    rows = read_rows(body)
    served = serving_cache(database.settings).get(("model", ref), lambda: resolve_model(database, ref))
    loaded = load_model(database.settings, served.doc)
    model = loaded.model
    check_features(rows, model.features)
    predictions = model.predict_records(rows)
    return {
        "model": served.name,
        **served.describe(),
        "task": model.task,
        "source": loaded.source,
        "features": list(model.features),
        "count": len(predictions),
        "predictions": predictions,
        "warnings": list(model.warnings),
    }


def predict_with_ensemble(database: Database, ref: str, body: dict[str, Any]) -> dict[str, Any]:
    """Predict with the ensemble version reference ``ref`` serves (:func:`models.store.references.resolve_ensemble`:
    ``NAME`` is its production version, else its highest; 404 unknown name, version or alias)."""
    rows = read_rows(body)
    ensemble = serving_cache(database.settings).get(("ensemble", ref), lambda: load_ensemble(database, ref))
    check_features(rows, ensemble.features)
    predictions = ensemble.predict_records(rows)
    return {
        "ensemble": ensemble.name,
        **ensemble.served,  # run_id, version, served
        "task": ensemble.task,
        "base_models": list(ensemble.base_names),
        "features": ensemble.features,
        "count": len(predictions),
        "predictions": predictions,
    }
