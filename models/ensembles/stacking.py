"""The meta-model math of stacking, on stored predictions: no database, no files.

The meta-model is fitted on the base runs' out-of-fold predictions for the
training rows (each made by a fold model that never saw that row), laid out
exactly as scikit-learn's ``StackingClassifier`` / ``StackingRegressor`` lay
them out: one block per base model in order, the first probability column
dropped for binary ``predict_proba``, a single column for ``predict``, and
with ``passthrough`` the raw feature columns appended. Class labels are
encoded as ``0..k-1`` for the meta-model (as ``StackingClassifier`` does).
So, on the same training rows and folds, the result equals a from-scratch
``Stacking*`` fit, without refitting any base model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from models.artifacts.predictor import (
    TrainedModel,
    check_finite,
    feature_matrix,
    missing_columns,
    prediction_frame,
    prediction_records,
)
from models.errors import ValidationError
from models.estimators import SERVICE_SET, load_class, service_and_bound_errors
from models.training.metrics import classification_metrics, regression_metrics

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

# (estimator class, defaults, takes random_state)
# classes as "module:Class", imported when used (models.estimators.load_class)
META_MODELS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "classification": {
        "logistic_regression": ("sklearn.linear_model:LogisticRegression", {"max_iter": 1000}),
        "ridge": ("sklearn.linear_model:RidgeClassifier", {}),
        "random_forest": ("sklearn.ensemble:RandomForestClassifier", {"n_jobs": 1}),
        "gradient_boosting": ("sklearn.ensemble:GradientBoostingClassifier", {}),
    },
    "regression": {
        "ridge": ("sklearn.linear_model:Ridge", {}),
        "ridge_cv": ("sklearn.linear_model:RidgeCV", {}),  # StackingRegressor's final_estimator when none is given
        "linear_regression": ("sklearn.linear_model:LinearRegression", {}),
        "random_forest": ("sklearn.ensemble:RandomForestRegressor", {"n_jobs": 1}),
        "gradient_boosting": ("sklearn.ensemble:GradientBoostingRegressor", {}),
    },
}
STACK_METHODS = ("auto", "predict_proba", "predict")
# The meta-model when none is asked for: scikit-learn's own defaults, so that a stack built here with
# no meta-model is what ``StackingClassifier()`` / ``StackingRegressor()`` would build.
DEFAULT_META_MODELS = {"classification": "logistic_regression", "regression": "ridge_cv"}
_SKLEARN_DEFAULTS = {
    "classification": ("StackingClassifier", "LogisticRegression"),
    "regression": ("StackingRegressor", "RidgeCV"),
}


def default_meta_model(task: str) -> str:
    """The meta-model used for ``task`` when none is given (scikit-learn's ``Stacking*`` default)."""
    return DEFAULT_META_MODELS[task]


def default_meta_model_note(task: str) -> str:
    """Which default meta-model a ``task`` gets and why, for answers that did not name one:
    ``"ridge_cv (default for regression, as scikit-learn's StackingRegressor: RidgeCV)"``."""
    stacker, estimator = _SKLEARN_DEFAULTS[task]
    return f"{DEFAULT_META_MODELS[task]} (default for {task}, as scikit-learn's {stacker}: {estimator})"


def meta_model_names(task: str | None = None) -> list[str]:
    """The meta-model types allowed for ``task`` (all of them when ``task`` is None)."""
    if task is None:
        return sorted({m for t in META_MODELS.values() for m in t})
    return sorted(META_MODELS[task])


def check_options(
    task: str, meta_model: Any, stack_method: Any, passthrough: Any, meta_params: Any = None
) -> list[dict[str, str]]:
    """Every problem with the stacking options as ``{"field", "message"}``; empty when all are fine."""
    errors: list[dict[str, str]] = []
    allowed = META_MODELS.get(task, {})
    if not isinstance(meta_model, str) or meta_model not in allowed:
        hint = ""
        if task == "regression" and meta_model == "logistic_regression":
            hint = (
                " (logistic regression is a classifier; for a regression ensemble use ridge_cv, the default, "
                "ridge or linear_regression)"
            )
        errors.append(
            {
                "field": "meta_model",
                "message": f"meta_model {meta_model!r} is not available for {task}{hint}; "
                f"choose from: {', '.join(sorted(allowed))}",
            }
        )
    if stack_method not in STACK_METHODS:
        errors.append(
            {
                "field": "stack_method",
                "message": f"stack_method must be one of {', '.join(STACK_METHODS)}; got {stack_method!r}",
            }
        )
    elif task == "regression" and stack_method == "predict_proba":
        errors.append(
            {
                "field": "stack_method",
                "message": "stack_method 'predict_proba' applies to classification only; use 'auto' or 'predict'",
            }
        )
    if not isinstance(passthrough, bool):
        errors.append(
            {"field": "passthrough", "message": f"passthrough must be true or false; got {passthrough!r}"}
        )
    if meta_params is not None and not isinstance(meta_params, dict):
        errors.append(
            {"field": "meta_params", "message": "meta_params must be a mapping of parameter names to values"}
        )
    elif meta_params and not errors:
        cls = load_class(allowed[meta_model][0])
        known = cls().get_params()
        unknown = [k for k in meta_params if k not in known]
        huge = [
            k for k, v in meta_params.items() if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63
        ]
        # the bounds compare as floats: an integer beyond a float's range is refused as too large first
        bounded = [] if huge else service_and_bound_errors(meta_params)
        if huge:  # stored with the job (and the ensemble): MongoDB's integers have 8 bytes
            digits = len(str(abs(meta_params[huge[0]])))
            errors.append(
                {
                    "field": f"meta_params.{huge[0]}",
                    "message": f"{huge[0]} is an integer of {digits} digits: too large",
                }
            )
        elif bounded:
            errors.append({"field": f"meta_params.{bounded[0][0]}", "message": bounded[0][1]})
        elif unknown:
            errors.append(
                {
                    "field": f"meta_params.{unknown[0]}",
                    "message": f"unknown parameter {unknown[0]!r} for meta_model {meta_model} "
                    f"({cls.__name__}); valid: {', '.join(sorted(known))}",
                }
            )
        else:
            try:
                cls(**meta_params)._validate_params()
            except (TypeError, ValueError) as exc:
                errors.append({"field": "meta_params", "message": str(exc)})
    return errors


def make_meta_model(
    task: str, meta_model: str, random_state: int | None = None, params: dict[str, Any] | None = None
) -> BaseEstimator:
    """A fresh, unfitted meta-model (the same object a from-scratch ``Stacking*`` would get)."""
    problems = check_options(task, meta_model, "auto", False, params)
    if problems:
        raise ValidationError(problems[0]["message"], errors=problems)
    ref, defaults = META_MODELS[task][meta_model]
    cls = load_class(ref)
    kwargs = dict(defaults)
    if random_state is not None and "random_state" in cls().get_params():
        kwargs["random_state"] = random_state
    kwargs.update(params or {})
    kwargs.update({k: v for k, v in SERVICE_SET.items() if k in kwargs})
    return cls(**kwargs)


def resolve_stack_method(task: str, stack_method: str) -> str:
    """What ``auto`` means here: ``predict_proba`` for classifiers (all ours have it), ``predict`` for regressors."""
    if stack_method == "auto":
        return "predict_proba" if task == "classification" else "predict"
    return stack_method


def prediction_block(pred: np.ndarray, task: str, method: str, n_classes: int) -> np.ndarray:
    """One base model's columns of the meta-features, from its stored (or fresh) predictions.

    ``pred`` is ``predict_proba`` output for classifiers and ``predict`` output for regressors.
    With ``method == "predict"`` a classifier contributes its predicted class index.
    """
    pred = np.asarray(pred, dtype=float)
    if task == "regression":
        return pred.reshape(-1, 1)
    if method == "predict":
        return np.argmax(pred, axis=1).astype(float).reshape(-1, 1)
    return pred[:, 1:] if n_classes == 2 else pred


def meta_features(
    preds: list[np.ndarray], task: str, method: str, n_classes: int, passthrough_X: np.ndarray | None = None
) -> np.ndarray:
    """Base-model blocks side by side, then the raw features when ``passthrough``."""
    blocks = [prediction_block(p, task, method, n_classes) for p in preds]
    if passthrough_X is not None:
        blocks.append(np.asarray(passthrough_X, dtype=float))
    return np.hstack(blocks)


def encode_labels(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Labels as positions in ``classes`` (sorted), as ``StackingClassifier``'s LabelEncoder does."""
    idx = np.searchsorted(classes, y)
    idx = np.clip(idx, 0, len(classes) - 1)
    if not np.all(classes[idx] == y):
        raise ValidationError("the training targets hold labels that the base models never saw", field="target")
    return idx


def label_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray
) -> dict[str, Any]:
    """Classification metrics; without probabilities only the label-based ones."""
    if proba is not None:
        return classification_metrics(y_true, y_pred, proba, classes)
    from sklearn import metrics as skm

    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, average="weighted", zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, average="weighted", zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "labels": [c.item() if hasattr(c, "item") else c for c in classes],
    }


def stored_prediction_metrics(
    task: str, y_true: np.ndarray, pred: np.ndarray, classes: np.ndarray | None
) -> dict[str, Any]:
    """Metrics of a base model from its stored held-out predictions."""
    if task == "regression":
        return regression_metrics(y_true, pred)
    return label_metrics(y_true, classes[np.argmax(pred, axis=1)], pred, classes)


@dataclass
class MetaFit:
    """A fitted meta-model with what it needs at prediction time, and its held-out metrics."""

    model: BaseEstimator
    task: str
    stack_method: str
    classes: np.ndarray | None
    metrics: dict[str, Any]
    base_metrics: list[dict[str, Any]]
    n_meta_features: int


_controller: ThreadpoolController | None = None


def _threadpools() -> ThreadpoolController:
    """The process's thread pools (BLAS, OpenMP), found once: ``threadpool_limits`` looks for them on every
    call (3-10 ms each)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def fit_meta_model(
    task: str,
    meta_model: str,
    stack_method: str,
    *,
    oof: list[np.ndarray],
    test_pred: list[np.ndarray],
    y_train: np.ndarray,
    y_test: np.ndarray,
    classes: np.ndarray | None,
    passthrough_train: np.ndarray | None = None,
    passthrough_test: np.ndarray | None = None,
    random_state: int | None = None,
    params: dict[str, Any] | None = None,
    rows: np.ndarray | None = None,
) -> MetaFit:
    """Fit the meta-model on out-of-fold predictions and score it and every base on the held-out rows.

    ``rows`` (a boolean mask over the training rows) keeps only the rows that have an out-of-fold
    prediction from every base model (a walk-forward split has none for its first block)."""
    method = resolve_stack_method(task, stack_method)
    n_classes = 0 if classes is None else len(classes)
    if rows is not None:
        oof = [np.asarray(o)[rows] for o in oof]
        y_train = np.asarray(y_train)[rows]
        passthrough_train = None if passthrough_train is None else np.asarray(passthrough_train)[rows]
    X_meta = meta_features(oof, task, method, n_classes, passthrough_train)
    X_meta_test = meta_features(test_pred, task, method, n_classes, passthrough_test)
    meta = make_meta_model(task, meta_model, random_state, params)
    # a few columns of meta-features: a multi-threaded BLAS only adds start-up and contention per call
    # (3-10x slower for the logistic meta-model on a busy 2-core machine)
    with _threadpools().limit(limits=1):
        if task == "classification":
            meta.fit(X_meta, encode_labels(y_train, classes))
            y_hat = classes[meta.predict(X_meta_test)]
            proba = meta.predict_proba(X_meta_test) if hasattr(meta, "predict_proba") else None
            metrics = label_metrics(y_test, y_hat, proba, classes)
        else:
            meta.fit(X_meta, np.asarray(y_train, dtype=float))
            metrics = regression_metrics(y_test, meta.predict(X_meta_test))
    base_metrics = [stored_prediction_metrics(task, y_test, p, classes) for p in test_pred]
    return MetaFit(
        model=meta,
        task=task,
        stack_method=method,
        classes=classes,
        metrics=metrics,
        base_metrics=base_metrics,
        n_meta_features=int(X_meta.shape[1]),
    )


@dataclass
class StackedEnsemble:
    """A loaded ensemble: base models (verified, from the cache or artifacts) and the fitted meta-model."""

    name: str
    run_id: str
    task: str
    bases: list[TrainedModel]
    base_names: list[str]
    meta_model: BaseEstimator
    stack_method: str
    classes: np.ndarray | None
    passthrough_features: list[str] | None = None
    record: dict[str, Any] = field(default_factory=dict)
    # which version answered and how it was chosen: {"run_id", "version", "served"} (see load_ensemble)
    served: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> int | None:
        return self.served.get("version") or self.record.get("version")

    @property
    def features(self) -> list[str]:
        """Every column a prediction needs, in first-seen order."""
        cols: list[str] = []
        for base in self.bases:
            cols.extend(c for c in base.features if c not in cols)
        cols.extend(c for c in (self.passthrough_features or []) if c not in cols)
        return cols

    def transform(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        """The meta-features for ``frame`` (what the meta-model sees)."""
        if not isinstance(frame, (pd.DataFrame, list)):
            frame = pd.DataFrame(frame)
        missing_columns(frame, self.features)  # every base model's missing columns at once
        n_classes = 0 if self.classes is None else len(self.classes)
        preds = [b.predict_proba(frame) if self.task == "classification" else b.predict(frame) for b in self.bases]
        extra = feature_matrix(frame, self.passthrough_features) if self.passthrough_features else None
        meta = meta_features(preds, self.task, self.stack_method, n_classes, extra)
        return check_finite(
            meta, [f"meta-feature {i}" for i in range(meta.shape[1])], "the base models' outputs are not numbers"
        )

    def predict(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        return self.outputs(frame, with_proba=False)[0]

    def outputs(self, frame: pd.DataFrame | dict | list, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions (and the meta-model's probabilities) from one pass of the base models."""
        X = self.transform(frame)
        with np.errstate(over="ignore", invalid="ignore"):
            out = self.meta_model.predict(X)
            proba = self.meta_model.predict_proba(X) if with_proba else None
        if self.task == "classification":
            return self.classes[out], proba
        return check_finite(out, ["prediction"], "the ensemble's prediction overflows"), None

    def predict_proba(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        if self.task != "classification":
            raise ValidationError(
                f"ensemble {self.name!r} is a regressor; predict_proba applies to classifiers only", field="task"
            )
        if not hasattr(self.meta_model, "predict_proba"):
            raise ValidationError(
                f"ensemble {self.name!r} uses a meta-model without probabilities "
                f"({type(self.meta_model).__name__}); use predict",
                field="meta_model",
            )
        return self.meta_model.predict_proba(self.transform(frame))

    @property
    def proba_classes(self) -> list[Any] | None:
        """The classes of the ``proba_<class>`` columns; None when the meta-model gives no probabilities."""
        if self.task != "classification" or not hasattr(self.meta_model, "predict_proba"):
            return None
        return [c.item() if hasattr(c, "item") else c for c in self.classes]

    def predict_table(self, frame: pd.DataFrame | dict | list) -> pd.DataFrame:
        """``prediction`` (and ``proba_<class>`` when the meta-model gives probabilities), as for one model."""
        return prediction_frame(self.outputs, self.proba_classes, frame)

    def predict_records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return prediction_records(self.outputs, self.proba_classes, rows)
