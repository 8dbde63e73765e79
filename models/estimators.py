"""Which scikit-learn estimator each ``model_type`` means, and checks on its hyperparameters.

Hyperparameters are checked against the estimator's own parameter constraints
before any data is read, so a typo fails in milliseconds, not after a fit.
"""
from __future__ import annotations

import re
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import SVC, SVR

TASKS = ("classification", "regression")

# Defaults applied before the user's hyperparameters (the user's win).
# SVC has no predict_proba of its own: make_pipeline wraps it (see NEEDS_PROBABILITY_WRAPPER).
_CLASSIFIERS: dict[str, tuple[type[BaseEstimator], dict[str, Any]]] = {
    "logistic_regression": (LogisticRegression, {"max_iter": 1000}),
    "random_forest": (RandomForestClassifier, {"n_jobs": 1}),
    "extra_trees": (ExtraTreesClassifier, {"n_jobs": 1}),
    "gradient_boosting": (GradientBoostingClassifier, {}),
    "hist_gradient_boosting": (HistGradientBoostingClassifier, {}),
    "svm": (SVC, {}),
    "knn": (KNeighborsClassifier, {}),
    "mlp": (MLPClassifier, {"max_iter": 500}),
    "naive_bayes": (GaussianNB, {}),
}
_REGRESSORS: dict[str, tuple[type[BaseEstimator], dict[str, Any]]] = {
    "linear_regression": (LinearRegression, {}),
    "ridge": (Ridge, {}),
    "lasso": (Lasso, {}),
    "random_forest": (RandomForestRegressor, {"n_jobs": 1}),
    "extra_trees": (ExtraTreesRegressor, {"n_jobs": 1}),
    "gradient_boosting": (GradientBoostingRegressor, {}),
    "hist_gradient_boosting": (HistGradientBoostingRegressor, {}),
    "svm": (SVR, {}),
    "knn": (KNeighborsRegressor, {}),
    "mlp": (MLPRegressor, {"max_iter": 500}),
}
REGISTRY: dict[str, dict[str, tuple[type[BaseEstimator], dict[str, Any]]]] = {
    "classification": _CLASSIFIERS,
    "regression": _REGRESSORS,
}


# Classifiers without predict_proba: wrapped in sigmoid calibration (what SVC(probability=True) did).
NEEDS_PROBABILITY_WRAPPER = {("classification", "svm")}


def model_types(task: str) -> list[str]:
    return sorted(REGISTRY.get(task, {}))


def all_model_types() -> list[str]:
    return sorted(set(_CLASSIFIERS) | set(_REGRESSORS))


def _random_state_param(cls: type[BaseEstimator]) -> bool:
    return "random_state" in cls().get_params()


def hyperparameter_errors(task: str, model_type: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems with ``params`` for this estimator as ``(parameter, message)`` pairs; empty when fine."""
    if task not in REGISTRY or model_type not in REGISTRY[task]:
        return []  # reported by the model_type check
    cls, _defaults = REGISTRY[task][model_type]
    known = cls().get_params()
    errors: list[tuple[str, str]] = []
    for key in params:
        if key not in known:
            errors.append((key, f"unknown hyperparameter {key!r} for {model_type} "
                                f"({cls.__name__}); valid: {', '.join(sorted(known))}"))
    if errors:
        return errors
    try:
        cls(**params)._validate_params()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        m = re.search(r"The '([^']+)' parameter", msg)
        errors.append((m.group(1) if m else "hyperparameters", msg))
    return errors


def build_estimator(task: str, model_type: str, params: dict[str, Any],
                    random_state: int | None) -> BaseEstimator:
    """A fresh unfitted estimator: registry defaults, then ``random_state``, then the user's params."""
    try:
        cls, defaults = REGISTRY[task][model_type]
    except KeyError:
        raise ValueError(f"unknown model_type {model_type!r} for task {task!r}") from None
    kwargs: dict[str, Any] = dict(defaults)
    if random_state is not None and _random_state_param(cls):
        kwargs["random_state"] = random_state
    kwargs.update(params)
    return cls(**kwargs)


def is_classifier_type(task: str) -> bool:
    return task == "classification"

