"""Which scikit-learn estimator each ``model_type`` means, and checks on its hyperparameters.

Hyperparameters are checked against the estimator's own parameter constraints
before any data is read, so a typo fails in milliseconds, not after a fit.
"""

from __future__ import annotations

import importlib
import math
import re
from typing import TYPE_CHECKING, Any

from models.settings import get_settings

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

TASKS = ("classification", "regression")

# Defaults applied before the user's hyperparameters (the user's win).
# SVC has no predict_proba of its own: make_pipeline wraps it (see NEEDS_PROBABILITY_WRAPPER).
_CLASSIFIERS: dict[str, tuple[str, dict[str, Any]]] = {
    "logistic_regression": ("sklearn.linear_model:LogisticRegression", {"max_iter": 1000}),
    "random_forest": ("sklearn.ensemble:RandomForestClassifier", {"n_jobs": 1}),
    "extra_trees": ("sklearn.ensemble:ExtraTreesClassifier", {"n_jobs": 1}),
    "gradient_boosting": ("sklearn.ensemble:GradientBoostingClassifier", {}),
    "hist_gradient_boosting": ("sklearn.ensemble:HistGradientBoostingClassifier", {}),
    "svm": ("sklearn.svm:SVC", {}),
    "knn": ("sklearn.neighbors:KNeighborsClassifier", {}),
    "mlp": ("sklearn.neural_network:MLPClassifier", {"max_iter": 500}),
    "naive_bayes": ("sklearn.naive_bayes:GaussianNB", {}),
    "xgboost": ("models.boosting:XGBLabelClassifier", {"n_jobs": 1, "verbosity": 0, "tree_method": "hist"}),
    "lightgbm": ("models.boosting:LGBMClassifier", {"n_jobs": 1, "verbose": -1}),
}
_REGRESSORS: dict[str, tuple[str, dict[str, Any]]] = {
    "linear_regression": ("sklearn.linear_model:LinearRegression", {}),
    "ridge": ("sklearn.linear_model:Ridge", {}),
    "lasso": ("sklearn.linear_model:Lasso", {}),
    "random_forest": ("sklearn.ensemble:RandomForestRegressor", {"n_jobs": 1}),
    "extra_trees": ("sklearn.ensemble:ExtraTreesRegressor", {"n_jobs": 1}),
    "gradient_boosting": ("sklearn.ensemble:GradientBoostingRegressor", {}),
    "hist_gradient_boosting": ("sklearn.ensemble:HistGradientBoostingRegressor", {}),
    "svm": ("sklearn.svm:SVR", {}),
    "knn": ("sklearn.neighbors:KNeighborsRegressor", {}),
    "mlp": ("sklearn.neural_network:MLPRegressor", {"max_iter": 500}),
    "xgboost": ("models.boosting:XGBRegressor", {"n_jobs": 1, "verbosity": 0, "tree_method": "hist"}),
    "lightgbm": ("models.boosting:LGBMRegressor", {"n_jobs": 1, "verbose": -1}),
}
# Classes are named ``"module:Class"`` and imported when first used (estimator_class): a process that
# only validates a config or stacks stored predictions does not import every estimator scikit-learn has.
REGISTRY: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "classification": _CLASSIFIERS,
    "regression": _REGRESSORS,
}


# Classifiers without predict_proba: wrapped in sigmoid calibration (what SVC(probability=True) did).
NEEDS_PROBABILITY_WRAPPER = {("classification", "svm")}


def load_class(ref: str) -> type[BaseEstimator]:
    """The class a ``"module:Class"`` reference names (imported on first use)."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def estimator_class(task: str, model_type: str) -> type[BaseEstimator]:
    """The estimator class of a ``model_type`` (KeyError when the task has no such type)."""
    return load_class(REGISTRY[task][model_type][0])


def model_types(task: str) -> list[str]:
    return sorted(REGISTRY.get(task, {}))


def all_model_types() -> list[str]:
    return sorted(set(_CLASSIFIERS) | set(_REGRESSORS))


def _random_state_param(cls: type[BaseEstimator]) -> bool:
    return "random_state" in cls().get_params()


# Hyperparameters that control the server, not the model: the service sets them (a config may not).
SERVICE_SET: dict[str, Any] = {"n_jobs": 1, "verbose": 0, "verbosity": 0, "nthread": 1, "num_threads": 1}
_SERVICE_SET_WHY = {
    "n_jobs": "how many cores a fit uses is set by the service (CV_JOBS, JOB_WORKERS)",
    "nthread": "how many cores a fit uses is set by the service (CV_JOBS, JOB_WORKERS)",
    "num_threads": "how many cores a fit uses is set by the service (CV_JOBS, JOB_WORKERS)",
    "verbose": "the service decides what is logged",
    "verbosity": "the service decides what is logged",
}

# Size-like hyperparameters with an upper bound (see HYPERPARAMETER_LIMITS in models/settings.py).
BOUNDED = (
    "n_estimators",
    "max_iter",
    "max_depth",
    "max_leaf_nodes",
    "n_neighbors",
    "max_bins",
    "cache_size",
    "num_leaves",
    "max_leaves",
    "max_bin",
    "batch_size",
    "leaf_size",
    "min_samples_split",
    "min_samples_leaf",
    "max_samples",
    "max_features",
    "max_fun",
    "n_iter_no_change",
    "degree",
)
# Every other numeric hyperparameter of a REGISTRY estimator: (lowest, highest) allowed, fixed. Far beyond
# any useful value, far below what makes a fit overflow or run for ever (C=1e300, tol=1e200).
FIXED_BOUNDS: dict[str, tuple[float, float]] = {
    "C": (0.0, 1e6),
    "alpha": (0.0, 1e6),
    "gamma": (0.0, 1e6),
    "epsilon": (0.0, 1e6),
    "coef0": (-1e6, 1e6),
    "intercept_scaling": (0.0, 1e6),
    "l1_ratio": (0.0, 1.0),
    "l2_regularization": (0.0, 1e6),
    "ccp_alpha": (0.0, 1e6),
    "min_impurity_decrease": (0.0, 1e6),
    "min_weight_fraction_leaf": (0.0, 0.5),
    "learning_rate": (0.0, 100.0),
    "learning_rate_init": (0.0, 10.0),
    "momentum": (0.0, 1.0),
    "beta_1": (0.0, 1.0),
    "beta_2": (0.0, 1.0),
    "power_t": (0.0, 10.0),
    "p": (0.0, 100.0),
    "quantile": (0.0, 1.0),
    "subsample": (0.0, 1.0),
    "tol": (0.0, 1e3),
    "validation_fraction": (0.0, 1.0),
    "var_smoothing": (0.0, 1e3),
    "random_state": (0, 2**32 - 1),
    # XGBoost and LightGBM (their own checks run only when they fit)
    "colsample_bytree": (0.0, 1.0),
    "colsample_bylevel": (0.0, 1.0),
    "colsample_bynode": (0.0, 1.0),
    "reg_alpha": (0.0, 1e6),
    "reg_lambda": (0.0, 1e6),
    "min_child_weight": (0.0, 1e6),
    "min_child_samples": (0, 10_000_000),
    "min_split_gain": (0.0, 1e6),
    "subsample_for_bin": (1, 100_000_000),
    "subsample_freq": (0, 1_000_000),
    "scale_pos_weight": (0.0, 1e6),
    "max_delta_step": (0.0, 1e6),
    "missing": (-1e12, 1e12),
}
NUMERIC = frozenset(BOUNDED) | frozenset(FIXED_BOUNDS) | {"hidden_layer_sizes"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _layer_errors(layers: Any, limits: dict[str, int]) -> list[tuple[str, str]]:
    """``hidden_layer_sizes``: a whole number of units or a flat list of them, each within the width bound."""
    key, most, widest = "hidden_layer_sizes", limits.get("hidden_layers"), limits.get("hidden_layer_size")
    entries = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if isinstance(layers, (list, tuple)) and most is not None and len(entries) > most:
        return [
            (
                key,
                f"hidden_layer_sizes has {len(entries)} layers, above the limit of {most} (HYPERPARAMETER_LIMITS hidden_layers)",
            )
        ]
    for entry in entries:
        if not _is_number(entry) or not math.isfinite(entry) or entry != int(entry):
            return [
                (
                    key,
                    f"hidden_layer_sizes entries must be whole numbers of units (a flat list such as [64, 32]), got {_show(entry)}",
                )
            ]
        if widest is not None and entry > widest:
            return [
                (
                    key,
                    f"hidden_layer_sizes has a layer of {entry} units, above the limit of {widest} (HYPERPARAMETER_LIMITS hidden_layer_size)",
                )
            ]
    return []


def bound_errors(params: dict[str, Any], limits: dict[str, int]) -> list[tuple[str, str]]:
    """Numeric hyperparameters outside their bound, true/false where a number is expected, and
    ``hidden_layer_sizes`` that is not a flat list of bounded widths, as ``(parameter, message)`` pairs."""
    errors: list[tuple[str, str]] = []
    for key, value in params.items():
        if key not in NUMERIC or value is None or isinstance(value, str):
            continue  # None and strings ("auto", "sqrt", "scale") are the estimator's own choices, checked by it
        if key == "hidden_layer_sizes":
            errors += _layer_errors(value, limits)
            continue
        if not _is_number(value):
            errors.append((key, f"{key} must be a number, got {_show(value)}"))
            continue
        if not math.isfinite(value):
            errors.append((key, f"{key} must be a finite number, got {value!r}"))
            continue
        if key in BOUNDED:
            limit = limits.get(key)
            if limit is None:
                continue
            if key == "max_iter" and value == -1:
                errors.append(
                    (
                        key,
                        f"max_iter = -1 (no limit) is not allowed; use at most {limit} (HYPERPARAMETER_LIMITS max_iter)",
                    )
                )
            elif value > limit:
                errors.append(
                    (
                        key,
                        f"{key} = {_show(value)} is above the limit of {limit} (HYPERPARAMETER_LIMITS {key}); use at most {limit}",
                    )
                )
            continue
        low, high = FIXED_BOUNDS[key]
        if not low <= value <= high:
            errors.append(
                (
                    key,
                    f"{key} = {_show(value)} is outside its bound [{low:g}, {high:g}] (a fixed bound: the README's bound table)",
                )
            )
    return errors


def service_and_bound_errors(
    params: dict[str, Any], limits: dict[str, int] | None = None
) -> list[tuple[str, str]]:
    """Hyperparameters the service sets, then size-like ones above their limit (any estimator)."""
    errors = [
        (k, f"{k} is set by the service, not by a config ({_SERVICE_SET_WHY[k]}); remove it")
        for k in params
        if k in SERVICE_SET
    ]
    return errors or bound_errors(params, limits if limits is not None else get_settings().hyperparameter_limit)


def hyperparameter_errors(
    task: str, model_type: str, params: dict[str, Any], limits: dict[str, int] | None = None
) -> list[tuple[str, str]]:
    """Problems with ``params`` for this estimator as ``(parameter, message)`` pairs; empty when fine.

    Unknown names, hyperparameters the service sets (``n_jobs``, ``verbose``), size-like ones above
    their limit (``limits``, default: the HYPERPARAMETER_LIMITS setting), then the estimator's own checks.
    """
    if task not in REGISTRY or model_type not in REGISTRY[task]:
        return []  # reported by the model_type check
    cls = estimator_class(task, model_type)
    known = cls().get_params()
    errors = [
        (
            key,
            f"unknown hyperparameter {key!r} for {model_type} ({cls.__name__}); valid: "
            f"{', '.join(sorted(k for k in known if k not in SERVICE_SET))}",
        )
        for key in params
        if key not in known and key not in SERVICE_SET
    ]
    errors = errors or service_and_bound_errors(params, limits)
    if errors:
        return errors
    if not hasattr(cls, "_parameter_constraints"):  # XGBoost, LightGBM: their own checks run at fit
        return _plain_type_errors(cls, params)
    try:
        cls(**params)._validate_params()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        m = re.search(r"The '([^']+)' parameter", msg)
        errors.append((m.group(1) if m else "hyperparameters", msg))
    return errors


def _plain_type_errors(cls: type, params: dict[str, Any]) -> list[tuple[str, str]]:
    """For estimators without scikit-learn's parameter constraints: a number where the default is a
    number (booleans are not numbers), a string where it is a string (or None where None is allowed)."""
    defaults = cls().get_params()
    errors = []
    for key, value in params.items():
        default = defaults.get(key)
        if _is_number(default) or key in NUMERIC:  # bounds were checked above (bound_errors)
            if value is not None and not _is_number(value):
                errors.append((key, f"{key} must be a number, got {value!r}"))
        elif isinstance(default, str) and not isinstance(value, str):
            errors.append((key, f"{key} must be a string, got {value!r}"))
    return errors


def build_estimator(task: str, model_type: str, params: dict[str, Any], random_state: int | None) -> BaseEstimator:
    """A fresh unfitted estimator: registry defaults, then ``random_state``, then the user's params."""
    try:
        ref, defaults = REGISTRY[task][model_type]
    except KeyError:
        raise ValueError(f"unknown model_type {model_type!r} for task {task!r}") from None
    cls = load_class(ref)
    kwargs: dict[str, Any] = dict(defaults)
    if random_state is not None and _random_state_param(cls):
        kwargs["random_state"] = random_state
    kwargs.update(params)
    for key, value in SERVICE_SET.items():  # whatever an older stored config says
        if key in kwargs:
            kwargs[key] = defaults.get(key, value)  # the registry's own (LightGBM: verbose=-1)
    return cls(**kwargs)


def is_classifier_type(task: str) -> bool:
    return task == "classification"
