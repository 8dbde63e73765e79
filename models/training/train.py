"""Training: a config document in, a verified run out.

Steps: validate the config (before any work), read the data, split off a
held-out test set, k-fold cross-validation on the rest (which yields the
out-of-fold predictions that stacking needs), the final fit on the training
rows, metrics on the held-out rows, then the artifacts and, last, the MongoDB
update that commits the run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import platform
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, RobustScaler, StandardScaler

from models.artifacts.base import (
    ARTIFACT_KINDS,
    ArtifactInfo,
    ArtifactStore,
    artifact_name,
    json_writer,
    npz_writer,
    pickle_writer,
)
from models.artifacts.lease import ArtifactLease, recheck_files
from models.artifacts.routing import get_store
from models.errors import ServiceError, TrainingError, describe_exception, error_dict
from models.estimators import NEEDS_PROBABILITY_WRAPPER, build_estimator
from models.jobs.context import commit_point
from models.preprocess import feature_types_of, imputation_of, is_mixed, make_preprocessor, original_columns
from models.progress import Progress, no_progress, scaled
from models.splits import NO_FOLD, check_split_sizes, cv_splits, fold_spec, holdout_split
from models.store.configs import ConfigStore, training_here
from models.store.db import Database
from models.store.runs import RunStore, config_fields_for_run
from models.store.schema import definition, validate_config
from models.timeutil import now
from models.training.data import TrainingData, load_training_data
from models.training.metrics import classification_metrics, fold_score, primary_metric, regression_metrics
from models.training.sklearn_warnings import scaled_data

log = logging.getLogger(__name__)

CALIBRATION_CV = 3


def new_run_id() -> str:
    """``YYYYMMDD_HHMMSS_<8 hex>`` (UTC)."""
    return now().strftime("%Y%m%d_%H%M%S") + "_" + secrets.token_hex(4)


def make_scaler(kind: str) -> Any:
    if kind == "standard":
        return StandardScaler()
    if kind == "minmax":
        return MinMaxScaler()
    if kind == "robust":
        return RobustScaler()
    return FunctionTransformer()  # "none": identity, still saved so every run has the same files


def make_pipeline(config: dict[str, Any]) -> Pipeline:
    """Preprocessing (imputers, the scaler, encoders, text vectorizers: :mod:`models.preprocess`)
    and model in one pipeline, so each CV fold fits its own preprocessing (no leakage). The first step
    keeps the name ``scaler``: it is what the run saves as ``<run_id>_scaler.pkl``."""
    model = build_estimator(
        config["task"], config["model_type"], config.get("hyperparameters") or {}, config.get("random_state")
    )
    calibration = config.get("calibration", "none")
    from sklearn.calibration import CalibratedClassifierCV  # here: it imports scipy.stats, which most runs skip

    if config["task"] == "classification" and calibration != "none":
        model = CalibratedClassifierCV(model, method=calibration, cv=CALIBRATION_CV)
    elif (config["task"], config["model_type"]) in NEEDS_PROBABILITY_WRAPPER:
        model = CalibratedClassifierCV(model, method="sigmoid", cv=CALIBRATION_CV, ensemble=False)
    preprocessor = make_preprocessor(config, make_scaler(config.get("scaler", "standard")))
    return Pipeline([("scaler", preprocessor), ("model", model)])


def _predict_out(pipe: Pipeline, X: np.ndarray, task: str) -> np.ndarray:
    return pipe.predict_proba(X) if task == "classification" else pipe.predict(X)


@dataclass
class FitResult:
    """What a fit produced, before anything is written."""

    pipeline: Pipeline
    features: list[str]
    classes: list[Any] | None
    train_idx: np.ndarray
    test_idx: np.ndarray
    fold_ids: np.ndarray
    oof: np.ndarray
    test_pred: np.ndarray
    metrics: dict[str, Any]
    cv: dict[str, Any]
    feature_importance: list[dict[str, Any]]
    durations: dict[str, float] = field(default_factory=dict)
    feature_types: dict[str, str] = field(default_factory=dict)
    imputation: dict[str, str] = field(default_factory=dict)
    y_train: np.ndarray | None = None  # targets of the training / held-out rows, kept with the
    y_test: np.ndarray | None = None  # out-of-fold predictions so that stacking needs no CSV


def _fit_fold(
    base: Pipeline, X: np.ndarray, y: np.ndarray, fit_rows: np.ndarray, val_rows: np.ndarray, task: str
) -> np.ndarray:
    """One CV fold: a fresh copy of ``base`` fitted on ``fit_rows``, its predictions for ``val_rows``.

    A module-level function so joblib can ship it to other processes (loky, Dask workers).
    """
    pipe = clone(base).fit(take(X, fit_rows), y[fit_rows])
    return _predict_out(pipe, take(X, val_rows), task)


def take(X: Any, rows: np.ndarray) -> Any:
    """Rows of the features, an array or a typed DataFrame."""
    return X.iloc[rows].reset_index(drop=True) if isinstance(X, pd.DataFrame) else X[rows]


def fit_config(
    config: dict[str, Any],
    data: TrainingData,
    progress: Progress = no_progress,
    *,
    n_jobs: int = 1,
    base: Pipeline | None = None,
) -> FitResult:
    """Cross-validate, fit and evaluate one config on ``data``. Pure computation: writes nothing.

    The folds run through :class:`joblib.Parallel` with ``n_jobs`` (1: one after
    another in this thread, as before); inside ``with joblib.parallel_backend("dask")``
    they spread over the Dask workers. Results are collected in fold order, so
    the out-of-fold predictions and scores are the same whatever runs them.
    ``base`` (unfitted) replaces the pipeline the config describes (adoption clones a legacy model's).
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (1 = sequential, -1 = all workers), got {n_jobs!r}")
    task = config["task"]
    if data.feature_types:  # the types the data was read with (a document from before types has none)
        config = {**config, "feature_types": data.feature_types}
    spec = fold_spec(config)
    t0 = time.perf_counter()
    check_split_sizes(spec, len(data.y))  # at save the whole file was counted: rows may have been dropped since
    train_idx, test_idx = holdout_split(data.y, spec, data.split_values)
    X_tr, y_tr, X_te, y_te = take(data.X, train_idx), data.y[train_idx], take(data.X, test_idx), data.y[test_idx]
    base = make_pipeline(config) if base is None else base
    train_values = None if data.split_values is None else data.split_values[train_idx]
    splits = cv_splits(spec, y_tr, train_values)
    classes = np.unique(y_tr) if task == "classification" else None
    oof = np.zeros((len(y_tr), len(classes))) if classes is not None else np.zeros(len(y_tr))
    fold_ids = np.full(len(y_tr), NO_FOLD, dtype=np.int64)
    metric = primary_metric(task, None if classes is None else len(classes))
    scores = []
    progress(0.0, f"fold 1/{len(splits)}")
    with scaled_data(config.get("scaler", "standard")):
        folds = joblib.Parallel(n_jobs=n_jobs, return_as="generator")(
            joblib.delayed(_fit_fold)(base, X_tr, y_tr, fit_rows, val_rows, task) for fit_rows, val_rows in splits
        )
        for k, ((_, val_rows), predicted) in enumerate(zip(splits, folds)):  # the generator yields in fold order
            oof[val_rows] = predicted
            fold_ids[val_rows] = k
            scores.append(fold_score(metric, y_tr[val_rows], oof[val_rows], classes))
            if k + 1 < len(splits):
                progress((k + 1) / (len(splits) + 1), f"fold {k + 2}/{len(splits)}")
        if (fold_ids == NO_FOLD).any():  # a walk-forward split: the first block has no prediction, and says so
            oof[fold_ids == NO_FOLD] = np.nan
        t_cv = time.perf_counter()
        progress(len(splits) / (len(splits) + 1), "final fit")
        final = clone(base).fit(X_tr, y_tr)
    t_fit = time.perf_counter()
    progress(0.97, "evaluating on held-out rows")
    test_pred = _predict_out(final, X_te, task)
    if task == "classification":
        metrics = classification_metrics(y_te, final.predict(X_te), test_pred, final.classes_)
    else:
        metrics = regression_metrics(y_te, test_pred)
    importance = feature_importance(final, list(config["features"]), X_te, y_te, config)
    t_eval = time.perf_counter()
    cv = {
        "metric": metric,
        "scores": [float(s) for s in scores],
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "n_splits": len(splits),
    }
    if (fold_ids == NO_FOLD).any():
        cv["rows_without_oof"] = int((fold_ids == NO_FOLD).sum())
    if data.split_labels is not None:  # walk-forward: each fold's rows in time order, for the chart
        labels = data.split_labels[train_idx]
        cv["folds"] = [
            {
                "fold": k + 1,
                "score": float(scores[k]),
                "n_fit": int(len(fit_rows)),
                "n_validation": int(len(val_rows)),
                "fit": [str(labels[fit_rows.min()]), str(labels[fit_rows.max()])],
                "validation": [str(labels[val_rows.min()]), str(labels[val_rows.max()])],
            }
            for k, (fit_rows, val_rows) in enumerate(splits)
        ]
    return FitResult(
        pipeline=final,
        features=list(config["features"]),
        classes=None if classes is None else final.classes_.tolist(),
        train_idx=train_idx,
        test_idx=test_idx,
        fold_ids=fold_ids,
        oof=oof,
        test_pred=test_pred,
        metrics=metrics,
        cv=cv,
        feature_importance=importance,
        y_train=y_tr,
        y_test=y_te,
        feature_types=feature_types_of(config),
        imputation=imputation_of(config),
        durations={"cv_s": t_cv - t0, "final_fit_s": t_fit - t_cv, "evaluate_s": t_eval - t_fit},
    )


MISSING_VALUE_POLICY = "rows without a target dropped; blank features imputed"


def types_info(config: dict[str, Any], data: TrainingData) -> dict[str, Any]:
    """The column types and the imputation a run used, and the blanks it imputed."""
    return {
        "feature_types": dict(data.feature_types),
        "imputation": imputation_of(config),
        "blank_cells": dict(data.blank_cells),
    }


def split_info(config: dict[str, Any], data: TrainingData, fit: FitResult) -> dict[str, Any]:
    """How the rows were split, for the run's page: the kind, its column, and for a time split the time
    range of the training and of the held-out rows. Nothing for a random split (runs stay as before)."""
    kind = config.get("split", "random")
    if kind == "random":
        return {}
    info: dict[str, Any] = {"split": kind, "split_column": config.get("time_column") or config.get("group_column")}
    if data.split_labels is not None and data.split_values is not None:
        for part, rows in (("train_range", fit.train_idx), ("test_range", fit.test_idx)):
            values = data.split_values[rows]
            info[part] = [
                str(data.split_labels[rows[values.argmin()]]),
                str(data.split_labels[rows[values.argmax()]]),
            ]
    elif data.split_values is not None:
        info["groups"] = {
            "train": int(len(np.unique(data.split_values[fit.train_idx]))),
            "test": int(len(np.unique(data.split_values[fit.test_idx]))),
        }
    return info


ONE_CLASS_SHARE = 0.99


def result_warnings(fit: FitResult, task: str) -> list[str]:
    """What is suspicious about a fitted result: a classifier that predicts one class for > 99% of the
    held-out rows (it learned little beyond the majority class)."""
    if task != "classification" or fit.classes is None or not len(fit.test_pred):
        return []
    predicted = np.asarray(fit.test_pred).argmax(axis=1)
    counts = np.bincount(predicted, minlength=len(fit.classes))
    share = counts.max() / counts.sum()
    if share <= ONE_CLASS_SHARE:
        return []
    label = fit.classes[int(counts.argmax())]
    return [
        f"predicts class {label!r} for {share:.1%} of the {int(counts.sum())} held-out rows; the model "
        "may have learned little beyond the majority class (check its hyperparameters and the class balance)"
    ]


def feature_importance(
    pipe: Pipeline, features: list[str], X_te: Any, y_te: np.ndarray, config: dict[str, Any]
) -> list[dict[str, Any]]:
    """Impurity importances, else |coefficients|, else permutation importance on held-out rows; per
    original column (a one-hot or TF-IDF block counts for the column it came from).

    A linear model with one coefficient per column (regression, binary classification, numeric columns)
    also gets its signed ``coefficient`` on the scaled column: positive pushes the prediction (the
    positive class) up."""
    model = pipe.named_steps["model"]
    inner = [c.estimator for c in getattr(model, "calibrated_classifiers_", [])] or [model]
    values, method, signed = None, None, None
    if all(hasattr(m, "feature_importances_") for m in inner):
        values, method = np.mean([m.feature_importances_ for m in inner], axis=0), "impurity"
    elif all(hasattr(m, "coef_") for m in inner):
        coefs = [np.abs(np.atleast_2d(m.coef_)).mean(axis=0) for m in inner]
        values, method = np.mean(coefs, axis=0), "coefficients"
        if all(np.atleast_2d(m.coef_).shape[0] == 1 for m in inner):
            signed = np.mean([np.atleast_2d(m.coef_)[0] for m in inner], axis=0)
    else:
        from sklearn.inspection import permutation_importance

        rows = min(len(y_te), 1000)
        result = permutation_importance(
            pipe,
            take(X_te, np.arange(rows)),
            y_te[:rows],
            n_repeats=3,
            random_state=int(config.get("random_state", 0)),
        )
        values, method = result.importances_mean, "permutation"  # already per original column
    values = np.asarray(values, dtype=float)
    if method != "permutation" and len(values) != len(features):
        owners = original_columns(pipe.named_steps["scaler"], features, len(values))
        values = np.array([values[[i for i, o in enumerate(owners) if o == f]].sum() for f in features])
    if signed is not None and len(signed) != len(features):
        signed = None  # an encoded column's coefficients have no one sign
    order = np.argsort(-values)
    return [
        {
            "feature": features[i],
            "importance": float(values[i]),
            "method": method,
            **({"coefficient": float(signed[i])} if signed is not None else {}),
        }
        for i in order
    ]


def features_document(fit: FitResult) -> Any:
    """What ``<run_id>_features.json`` holds: the feature list (as before) for all-numeric runs; with other
    types, the list, the types, the imputation and the fitted categories of each categorical column."""
    if not is_mixed(fit.feature_types):
        return fit.features
    doc: dict[str, Any] = {
        "features": fit.features,
        "feature_types": fit.feature_types,
        "imputation": fit.imputation,
    }
    pre = fit.pipeline.named_steps["scaler"]
    for name, fitted, columns in getattr(pre, "transformers_", []):
        if name == "categorical":
            cats = fitted.named_steps["encode"].categories_
            doc["categories"] = {c: [str(v) for v in values] for c, values in zip(columns, cats)}
    return doc


def environment_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "joblib": joblib.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        **_boosting_versions(),
    }


BOOSTING_DISTRIBUTIONS = {"xgboost": ("xgboost", "xgboost-cpu"), "lightgbm": ("lightgbm",)}


def _boosting_versions() -> dict[str, str]:
    """XGBoost's and LightGBM's versions: the loaded module's, else its installed distribution's (importing
    both only to read their versions cost an ensemble creation 50 ms)."""
    out = {}
    for module, distributions in BOOSTING_DISTRIBUTIONS.items():
        loaded = sys.modules.get(module)
        if loaded is not None:
            out[module] = loaded.__version__
            continue
        for distribution in distributions:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                out[module] = importlib.metadata.version(distribution)
                break
    return out


def plain_labels(y: np.ndarray | None) -> np.ndarray | None:
    """``y`` as an array that ``np.load(allow_pickle=False)`` reads back equal (object arrays of text
    become unicode arrays); None when it cannot be stored that way (then stacking reads the CSV)."""
    if y is None:
        return None
    if y.dtype != object:
        return y
    if all(isinstance(v, str) for v in y):
        return y.astype(str)
    return None


def oof_arrays(fit: FitResult, fingerprint: str | None = None) -> dict[str, np.ndarray]:
    """The ``oof`` artifact: out-of-fold and held-out predictions, the row split, the fold of each
    training row, and what the meta-model needs besides (targets, and the data fingerprint they belong to)."""
    arrays = {
        "oof": fit.oof,
        "fold_ids": fit.fold_ids,
        "train_idx": fit.train_idx,
        "test_idx": fit.test_idx,
        "test_pred": fit.test_pred,
        "classes": np.asarray(fit.classes if fit.classes is not None else []),
    }
    y_train, y_test = plain_labels(fit.y_train), plain_labels(fit.y_test)
    if fingerprint and y_train is not None and y_test is not None:
        arrays.update(y_train=y_train, y_test=y_test, fingerprint=np.asarray(fingerprint))
    return arrays


def write_run_artifacts(
    store: ArtifactStore, run_id: str, fit: FitResult, summary: dict[str, Any]
) -> dict[str, ArtifactInfo]:
    """Write every file of a run atomically; on failure remove the ones already written and re-raise."""
    files = {
        "model": pickle_writer(fit.pipeline.named_steps["model"]),
        "scaler": pickle_writer(fit.pipeline.named_steps["scaler"]),
        "features": json_writer(features_document(fit)),
        "metrics": json_writer(summary),
        "oof": npz_writer(oof_arrays(fit, (summary.get("data") or {}).get("fingerprint"))),
    }
    written: dict[str, ArtifactInfo] = {}
    try:
        for kind, writer in files.items():
            written[kind] = store.write(artifact_name(run_id, kind), writer)
    except BaseException:
        for info in written.values():
            store.delete(info.path)
        raise
    return written


def _fold_backend(settings: Any) -> Any:
    """The joblib backend of the CV folds: the Dask cluster's when ``CV_JOBS`` asks for parallel folds."""
    if settings.cv_jobs == 1:
        return contextlib.nullcontext()
    from models.training.folds import cluster_folds  # distributed is imported only when folds may spread

    return cluster_folds(settings)


def train_config(
    database: Database,
    name_or_id: Any,
    *,
    progress: Progress = no_progress,
    version: str | None = None,
    requested_by: str | None = None,
    store: ArtifactStore | None = None,
) -> dict[str, Any]:
    """Train a stored config and commit the run; return the run document.

    On failure the config gets ``status: failed`` and the error, no file of the
    failed run remains, and the previous run's fields are left as they were.
    """
    configs = ConfigStore(database)
    config = configs.get(name_or_id)
    config = {
        **validate_config(config, limits=database.settings.hyperparameter_limit),
        "_id": config["_id"],
    }  # before any work
    store = store or get_store(database.settings)
    started = now()
    t0 = time.perf_counter()
    # who trains it: if this process dies, recover_interrupted_trainings() marks the config failed
    training_here(config["_id"], True)
    try:
        return _train(database, config, store, started, t0, progress, version, requested_by)
    finally:
        training_here(config["_id"], False)


def _train(
    database: Database,
    config: dict[str, Any],
    store: ArtifactStore,
    started: Any,
    t0: float,
    progress: Progress,
    version: str | None,
    requested_by: str | None,
) -> dict[str, Any]:
    configs = ConfigStore(database)
    configs.mark_training(config["_id"], started)
    written: dict[str, ArtifactInfo] = {}
    lease: ArtifactLease | None = None
    run_recorded = False
    try:
        progress(0.0, "loading data")
        data = load_training_data(config, database.settings)
        t_load = time.perf_counter()
        with _fold_backend(database.settings):
            fit = fit_config(config, data, scaled(progress, 0.05, 0.9), n_jobs=database.settings.cv_jobs)
        run_id = new_run_id()
        spec = fold_spec(config)
        fingerprint = data.fingerprint(config["target"])
        data_info = {
            "training_csv": config["training_csv"],
            "file_sha256": data.file_sha256,
            "fingerprint": fingerprint,
            "rows_read": data.rows_read,
            "rows_used": data.rows_used,
            "rows_dropped": data.rows_dropped,
            "missing_value_policy": MISSING_VALUE_POLICY,
            "n_train": int(len(fit.train_idx)),
            "n_test": int(len(fit.test_idx)),
            **types_info(config, data),
        }
        data_info.update(split_info(config, data, fit))
        if config["task"] == "classification":
            labels, counts = np.unique(data.y, return_counts=True)
            data_info["class_distribution"] = {str(k): int(v) for k, v in zip(labels, counts)}
        progress(0.92, "saving artifacts")
        t_save = time.perf_counter()
        summary = {
            "run_id": run_id,
            "name": config["name"],
            "metrics": fit.metrics,
            "cv": fit.cv,
            "feature_importance": fit.feature_importance,
            "data": data_info,
            "fold_spec": spec,
            "versions": environment_versions(),
        }
        # a lease on the files before they exist: `artifacts gc` leaves them alone until the commit point
        lease = ArtifactLease(database, run_id)
        lease.add(artifact_name(run_id, kind) for kind in ARTIFACT_KINDS)
        written = write_run_artifacts(store, run_id, fit, summary)
        saved_at = now()
        durations = {"load_s": t_load - t0, **fit.durations, "save_s": time.perf_counter() - t_save}
        durations["total_s"] = time.perf_counter() - t0
        durations = {k: round(v, 4) for k, v in durations.items()}
        artifacts = {k: v.to_dict() for k, v in written.items()}
        run = {
            "run_id": run_id,
            "config_id": config["_id"],
            "name": config["name"],
            "task": config["task"],
            "model_type": config["model_type"],
            "definition": definition(config),
            "config": {k: v for k, v in config.items() if k != "_id"},
            "tags": config.get("tags", []),
            "artifacts": artifacts,
            "metrics": fit.metrics,
            "cv": fit.cv,
            "feature_importance": fit.feature_importance,
            "data": data_info,
            "fold_spec": spec,
            "classes": fit.classes,
            "durations": durations,
            "versions": environment_versions(),
            "warnings": result_warnings(fit, config["task"]),
            "status": "trained",
            "created_at": saved_at,
            "requested_by": requested_by,
            "status_history": [{"status": "trained", "at": saved_at, "by": requested_by}],
        }
        lease.renew()
        recheck_files(store, written.values())  # still there, still the bytes written: then commit
        commit_point(
            {"run_id": run_id, "config_id": config["_id"]}
        )  # inside a job: not cancelled, now it cannot be
        RunStore(database).insert_versioned(run, version)
        run_recorded = True  # from here on the files belong to a recorded run: never delete them
        progress(0.98, "updating config")
        configs.record_run(config["_id"], config_fields_for_run(run), saved_at)
        lease.close()
        progress(1.0, "done")
        for warning in run["warnings"]:
            log.warning("%s: %s", config["name"], warning)
        log.info(
            "trained %s as run %s (version %s) in %.2fs",
            config["name"],
            run_id,
            run["version"],
            durations["total_s"],
        )
        return run
    except BaseException as exc:
        if not run_recorded:
            for info in written.values():
                store.delete(info.path)
        if lease is not None:
            lease.close()
        error = error_dict(exc, unexpected_code="training_error")
        error.pop("details", None)
        error["at"] = now()
        configs.mark_failed(config["_id"], error)
        if isinstance(exc, ServiceError) or not isinstance(exc, Exception):
            raise
        raise TrainingError(f"training {config['name']} failed: {describe_exception(exc)}") from exc
