"""Issue 24, finding 9: every numeric hyperparameter of every model type has a bound, true/false is no number,
hidden_layer_sizes is a flat list of bounded widths, and a sweep's size and estimated cost are bounded."""

from __future__ import annotations

import numbers
import re

import pytest
from sklearn.utils._param_validation import Interval

from models.errors import ValidationError
from models.estimators import FIXED_BOUNDS, NUMERIC, REGISTRY, SERVICE_SET, estimator_class, hyperparameter_errors
from models.settings import DEFAULT_HYPERPARAMETER_LIMITS, PROJECT_ROOT
from models.store.configs import ConfigStore
from models.training.sweep import MAX_COMBINATIONS, create_sweep
from tests.helpers import cls_config, reg_config

ATTACKS = [
    ("classification", "logistic_regression", {"C": 1e300}, r"C = 1e\+300 is outside its bound \[0, 1e\+06\]"),
    (
        "classification",
        "mlp",
        {"batch_size": 1e12},
        r"batch_size = 1e\+12 is above the limit of 100000 \(HYPERPARAMETER_LIMITS batch_size\)",
    ),
    (
        "classification",
        "knn",
        {"leaf_size": 1e12},
        r"leaf_size = 1e\+12 is above the limit of 10000 \(HYPERPARAMETER_LIMITS leaf_size\)",
    ),
    (
        "classification",
        "random_forest",
        {"min_samples_split": 1e15},
        r"min_samples_split = 1e\+15 is above the limit of 1000000",
    ),
    ("classification", "random_forest", {"max_depth": True}, r"max_depth must be a number, got true"),
    (
        "classification",
        "gradient_boosting",
        {"learning_rate": False},
        r"learning_rate must be a number, got false",
    ),
    (
        "classification",
        "mlp",
        {"hidden_layer_sizes": [[100000]]},
        r"hidden_layer_sizes entries must be whole numbers of units .*got \[100000\]",
    ),
    (
        "classification",
        "mlp",
        {"hidden_layer_sizes": [64, True]},
        r"hidden_layer_sizes entries must be whole numbers .*got true",
    ),
    (
        "classification",
        "mlp",
        {"hidden_layer_sizes": [100000]},
        r"a layer of 100000 units, above the limit of 4096",
    ),
    ("regression", "svm", {"coef0": -1e9}, r"coef0 = -1e\+09 is outside its bound \[-1e\+06, 1e\+06\]"),
]


@pytest.mark.parametrize("task,model_type,params,message", ATTACKS)
def test_unbounded_values_are_refused_naming_the_parameter_and_bound(
    database, games_csv, task, model_type, params, message
):
    make = cls_config if task == "classification" else reg_config
    with pytest.raises(ValidationError, match=message) as err:
        ConfigStore(database).create(make("x", games_csv, model_type, hyperparameters=params), from_user=True)
    assert any(e.get("field") == f"hyperparameters.{next(iter(params))}" for e in err.value.errors or []) or (
        err.value.field == f"hyperparameters.{next(iter(params))}"
    )
    assert database.configs.count_documents({}) == 0


def _numeric_params():
    for task, types in REGISTRY.items():
        for model_type in types:
            cls = estimator_class(task, model_type)
            constraints = getattr(cls, "_parameter_constraints", {})
            for key, default in cls().get_params().items():
                numeric_default = isinstance(default, numbers.Number) and not isinstance(default, bool)
                if numeric_default or any(isinstance(c, Interval) for c in constraints.get(key, [])):
                    yield task, model_type, key


@pytest.mark.parametrize("task,model_type,key", sorted(set(_numeric_params())))
def test_every_numeric_hyperparameter_of_every_model_type_has_a_bound(task, model_type, key):
    if key in SERVICE_SET:
        assert hyperparameter_errors(task, model_type, {key: 3})  # the service sets it: never the config
        return
    assert key in NUMERIC, f"{model_type}.{key} has no bound"
    for value in (1e300, True, float("inf")):
        errors = hyperparameter_errors(task, model_type, {key: value if key != "hidden_layer_sizes" else [value]})
        assert errors and errors[0][0] == key, (key, value, errors)
        assert key in errors[0][1]


def test_sensible_values_still_pass():
    for task, model_type, params in [
        ("classification", "logistic_regression", {"C": 10.0, "tol": 1e-4, "max_iter": 500}),
        ("classification", "mlp", {"hidden_layer_sizes": [64, 32], "batch_size": 64, "alpha": 1e-3}),
        ("classification", "mlp", {"hidden_layer_sizes": 16, "batch_size": "auto"}),
        ("classification", "random_forest", {"max_depth": None, "min_samples_split": 0.1, "max_features": "sqrt"}),
        ("regression", "svm", {"C": 1000.0, "gamma": "scale", "degree": 3, "coef0": -1.5}),
        ("regression", "knn", {"n_neighbors": 7, "leaf_size": 40, "p": 1}),
    ]:
        assert hyperparameter_errors(task, model_type, params) == [], (model_type, params)


def test_the_readme_bound_table_names_every_bound():
    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme[readme.index("| hyperparameter | bound |") :].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Za-z_0-9]+)` \| ([^|]+) \|", table, flags=re.M))
    missing = [k for k in [*DEFAULT_HYPERPARAMETER_LIMITS, *FIXED_BOUNDS] if k not in rows]
    assert missing == []
    for key, limit in DEFAULT_HYPERPARAMETER_LIMITS.items():
        assert f"{limit:,}" in rows[key] or str(limit) in rows[key], key


@pytest.fixture
def base(database, games_csv):
    return ConfigStore(database).create(
        cls_config("rf", games_csv, "random_forest", hyperparameters={"n_estimators": 10, "max_depth": 3})
    )


def test_a_sweep_is_bounded_in_size_and_in_estimated_job_hours(database, base):
    too_many = {"max_depth": list(range(1, 12)), "min_samples_leaf": list(range(1, 11))}  # 110 combinations
    with pytest.raises(ValidationError, match=rf"110 combinations; at most {MAX_COMBINATIONS} per sweep"):
        create_sweep(database, "rf", too_many)
    # 60 fresh configs, no past run: each may take TRAIN_TIMEOUT_SECONDS (3600 s) -> 60 job-hours > 48
    with pytest.raises(
        ValidationError,
        match=r"60 trainings would take about 60 h 00 min of job time .*TRAIN_TIMEOUT_SECONDS.*MAX_SWEEP_JOB_HOURS \(48 h\); nothing was created",
    ):
        create_sweep(database, "rf", {"max_depth": list(range(1, 13)), "min_samples_leaf": [1, 2, 3, 4, 5]})
    assert database.configs.count_documents({}) == 1
    assert len(create_sweep(database, "rf", {"max_depth": [2, 4], "min_samples_leaf": [1, 2]})) == 4
