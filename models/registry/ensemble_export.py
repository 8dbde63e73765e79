"""An ensemble out of the service: one file that plain scikit-learn loads and predicts with on raw rows.

A stacked ensemble becomes a fitted ``StackingClassifier``/``StackingRegressor`` and a weighted one a
``VotingClassifier`` (soft)/``VotingRegressor`` with the weights: their base estimators are the base runs'
deployment pipelines (:meth:`models.artifacts.predictor.TrainedModel.to_pipeline`) and their final
estimator is the ensemble's own fitted meta-model, nothing refitted. scikit-learn has no public way to
assemble such an estimator from fitted parts (``cv="prefit"`` is gone, ``FrozenEstimator`` still refits the
final estimator), so the fitted attributes its ``predict`` reads are set here; the test in
``tests/test_ensemble_export.py`` proves the file predicts what the service predicts, in a virtualenv that
has only scikit-learn, numpy, pandas and joblib.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import StackingClassifier, StackingRegressor, VotingClassifier, VotingRegressor
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch

from models.artifacts.atomic import atomic_write
from models.artifacts.base import json_writer, pickle_writer
from models.ensembles.build import load_ensemble
from models.ensembles.selection import WeightedAverage
from models.ensembles.stacking import StackedEnsemble
from models.errors import ValidationError
from models.registry.portable import pickled, requirements
from models.store.db import Database
from models.timeutil import iso

log = logging.getLogger(__name__)


def numeric_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """The plain-number metrics of a run or ensemble document, for a deployment's metadata JSON."""
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def to_sklearn(ensemble: StackedEnsemble) -> Any:
    """The ensemble as one fitted scikit-learn estimator taking a DataFrame of raw rows."""
    if ensemble.passthrough_features:
        raise ValidationError(
            f"ensemble {ensemble.name!r} passes raw features to its meta-model (passthrough); scikit-learn's "
            "stacking would pass every input column, so it cannot be exported as one scikit-learn estimator",
            field="passthrough",
        )
    pipes = [
        (f"base{i}_{name}", base.to_pipeline())
        for i, (name, base) in enumerate(zip(ensemble.base_names, ensemble.bases))
    ]
    fitted = [p for _, p in pipes]
    classes = ensemble.classes
    classification = ensemble.task == "classification"
    encoder = LabelEncoder().fit(np.asarray(classes)) if classification else None
    meta = ensemble.meta_model
    if isinstance(meta, WeightedAverage):
        weights = [float(w) for w in meta.weights]
        if not np.isclose(sum(weights), 1.0):
            raise ValidationError(f"ensemble {ensemble.name!r} has weights that do not sum to 1", field="weights")
        if classification:
            est: Any = VotingClassifier(pipes, voting="soft", weights=weights)
            est.le_, est.classes_ = encoder, encoder.classes_
        else:
            est = VotingRegressor(pipes, weights=weights)
    elif classification:
        if ensemble.stack_method != "predict_proba":
            raise ValidationError(
                f"ensemble {ensemble.name!r} stacks predicted labels (stack_method {ensemble.stack_method!r}); "
                "only predict_proba stacking is exported",
                field="stack_method",
            )
        est = StackingClassifier(pipes, final_estimator=meta, stack_method="predict_proba")
        est._label_encoder, est.classes_ = encoder, encoder.classes_
        est.stack_method_ = ["predict_proba"] * len(pipes)
        est.final_estimator_ = meta
    else:
        est = StackingRegressor(pipes, final_estimator=meta)
        est.stack_method_ = ["predict"] * len(pipes)
        est.final_estimator_ = meta
    est.estimators_ = fitted
    est.named_estimators_ = Bunch(**dict(pipes))
    return est


@dataclass(frozen=True)
class Deployable:
    """What a deployment export writes, before any file: the fitted scikit-learn estimator and its metadata.

    ``meta`` holds the fields every export's metadata shares (run id, name or ensemble, task, features,
    classes, metrics...); ``feature_types`` is each input column's kind (``numeric``, ``categorical``,
    ``text``); ``served`` says which run answered and how (:meth:`models.registry.serving.Served.describe`).
    """

    estimator: Any
    meta: dict[str, Any]
    feature_types: dict[str, str]
    served: dict[str, Any]

    @property
    def is_ensemble(self) -> bool:
        return "ensemble" in self.meta


def _plain(values: Any) -> list[Any] | None:
    """Class labels as JSON-ready Python values (None for a regressor)."""
    return [c.item() if hasattr(c, "item") else c for c in values] if values is not None else None


def ensemble_deployable(database: Database, name: str) -> Deployable:
    """The ensemble version reference ``name`` serves (NAME: production, else highest; NAME@3...) as one
    fitted scikit-learn estimator (:func:`to_sklearn`) with its metadata."""
    ensemble = load_ensemble(database, name)
    estimator = to_sklearn(ensemble)
    record = ensemble.record
    meta = {
        "ensemble": ensemble.name,
        "run_id": ensemble.run_id,
        "version": ensemble.version,
        "kind": type(estimator).__name__,
        "task": ensemble.task,
        "features": list(ensemble.features),
        "classes": _plain(ensemble.classes),
        "base_models": [
            {"name": n, "run_id": b.run_id} for n, b in zip(ensemble.base_names, ensemble.bases, strict=True)
        ],
        "meta_model": type(ensemble.meta_model).__name__,
        "metrics": numeric_metrics(record.get("metrics")),
    }
    kinds: dict[str, str] = {}
    for base in ensemble.bases:
        for feature in base.features:
            kinds.setdefault(feature, (base.feature_types or {}).get(feature, "numeric"))
    served = dict(ensemble.served)  # run_id, version and how the version was chosen
    return Deployable(estimator, meta, kinds, served)


def deploy_export_ensemble(database: Database, name: str, out_dir: Path) -> dict[str, Any]:
    """Write ``<name>-ensemble-<version>.joblib`` (see :func:`to_sklearn`) and its metadata JSON to ``out_dir``
    (one file per version, as for models: exporting version 2 never overwrites version 1's file)."""
    built = ensemble_deployable(database, name)
    return write_deployment(
        built,
        Path(out_dir),
        f"{built.meta['ensemble']}-ensemble-{built.meta['version'] or 1}",
        var="est",
        label=f"ensemble {built.meta['ensemble']}",
    )


def write_deployment(built: Deployable, out_dir: Path, stem: str, *, var: str, label: str) -> dict[str, Any]:
    """Write ``<stem>.joblib`` (the estimator, refused unless it loads outside this project) and ``<stem>.json``
    (its metadata, with ``requirements``: the packages the pickle names, pinned) to ``out_dir``, each
    atomically; the metadata plus ``{"pipeline_path", "metadata_path"}``."""
    path, meta_path = out_dir / f"{stem}.joblib", out_dir / f"{stem}.json"
    pins = requirements(pickled(built.estimator)[1])  # refused when it would need this project's code
    written = atomic_write(path, pickle_writer(built.estimator))
    meta = {
        **built.meta,
        "requirements": pins,
        "pipeline_file": path.name,
        "sha256": written.sha256,
        "size": written.size,
        "exported_at": iso(),
        "usage": f"import joblib, pandas as pd; {var} = joblib.load({path.name!r}); "
        f"{var}.predict(pd.DataFrame(rows))  # rows need the listed feature columns",
    }
    atomic_write(meta_path, json_writer(meta))
    log.info("deployment export of %s to %s", label, path)
    return {**meta, "pipeline_path": str(path), "metadata_path": str(meta_path)}
