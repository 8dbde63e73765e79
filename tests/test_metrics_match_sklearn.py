"""Every metric a run records equals scikit-learn's function of the same name on the same predictions.

GaussianNB on the digits gives probabilities of exactly 0 and 1 (and far below 1e-15) for many rows: a
log loss clipped anywhere but at scikit-learn's float64 epsilon differs from ``sklearn.metrics.log_loss``.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB

from models.ensembles.selection import score
from models.training.metrics import (
    RUN_METRICS,
    classification_metrics,
    fold_score,
    regression_metrics,
    sklearn_classification_metrics,
)


def reference(name, y, y_pred, proba, classes):
    """scikit-learn's function of ``name`` (the averaging the service documents: weighted, one-vs-rest)."""
    if name == "accuracy":
        return skm.accuracy_score(y, y_pred)
    if name in ("precision", "recall", "f1"):
        fn = getattr(skm, f"{name}_score")
        return fn(y, y_pred, average="weighted", zero_division=0)
    if name == "log_loss":
        return skm.log_loss(y, proba, labels=classes)
    if name == "brier":
        return skm.brier_score_loss(y, proba[:, 1], pos_label=classes[1])
    if name == "roc_auc":
        if len(classes) == 2:
            return skm.roc_auc_score(y == classes[1], proba[:, 1])
        return skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted", labels=classes)
    if name == "mse":
        return skm.mean_squared_error(y, y_pred)
    if name == "rmse":
        return skm.root_mean_squared_error(y, y_pred)
    if name == "mae":
        return skm.mean_absolute_error(y, y_pred)
    if name == "r2":
        return skm.r2_score(y, y_pred)
    raise AssertionError(f"no scikit-learn reference for recorded metric {name!r}")


def naive_bayes(loader, labels=None):
    X, y = loader(return_X_y=True)
    if labels is not None:
        y = np.asarray(labels)[y]
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    model = GaussianNB().fit(X_tr, y_tr)
    return y_te, model.predict(X_te), model.predict_proba(X_te), model.classes_


def assert_all_equal(recorded, y, y_pred, proba, classes):
    numeric = {k for k, v in recorded.items() if isinstance(v, float)}
    assert numeric and numeric <= set(RUN_METRICS)
    for name in sorted(numeric):
        assert recorded[name] == pytest.approx(reference(name, y, y_pred, proba, classes), rel=1e-12, abs=1e-12), (
            name
        )


@pytest.mark.parametrize(
    "loader,labels",
    [(load_digits, None), (load_breast_cancer, None), (load_breast_cancer, np.array(["benign", "malignant"]))],
)
def test_classification_metrics_equal_scikit_learns(loader, labels):
    y, y_pred, proba, classes = naive_bayes(loader, labels)
    eps = np.finfo(float).eps
    assert np.mean(proba < 1e-15) > 0.01  # the extreme probabilities the old 1e-15 floor got wrong
    for compute in (classification_metrics, sklearn_classification_metrics):
        recorded = compute(y, y_pred, proba, classes)
        assert recorded["roc_auc"] is not None and ("brier" in recorded) == (len(classes) == 2)
        assert_all_equal(recorded, y, y_pred, proba, classes)
    if loader is load_digits:
        # the value issue 25 reported for scikit-learn (the old clipping recorded 2.2256)
        picked = np.clip(proba, eps, 1 - eps)[np.arange(len(y)), np.searchsorted(classes, y)]
        assert classification_metrics(y, y_pred, proba, classes)["log_loss"] == pytest.approx(
            -np.mean(np.log(picked)), rel=1e-12
        )
        old = -np.mean(np.log(np.clip(proba, 1e-15, 1)[np.arange(len(y)), np.searchsorted(classes, y)]))
        assert abs(old - skm.log_loss(y, proba, labels=classes)) > 1e-3


def test_regression_metrics_equal_scikit_learns():
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    pred = LinearRegression().fit(X_tr, y_tr).predict(X_te)
    recorded = regression_metrics(y_te, pred)
    assert set(recorded) == {"mse", "rmse", "mae", "r2"}
    assert_all_equal(recorded, y_te, pred, None, None)
    assert fold_score("rmse", y_te, pred, None) == pytest.approx(
        skm.root_mean_squared_error(y_te, pred), rel=1e-12
    )


def test_selection_log_loss_equals_scikit_learns():
    """The score ensemble selection records for log_loss is scikit-learn's too (class positions 0..k-1)."""
    y, _, proba, classes = naive_bayes(load_digits)
    positions = np.searchsorted(classes, y)
    assert score("log_loss", positions, proba) == pytest.approx(
        skm.log_loss(positions, proba, labels=np.arange(len(classes))), rel=1e-12
    )


def test_average_ranks_equal_scipy_rankdata():
    from scipy.stats import rankdata

    from models.training.metrics import average_ranks

    rng = np.random.default_rng(0)
    for values in (rng.normal(size=500), rng.integers(0, 4, size=500).astype(float), np.array([1.0]), np.ones(5)):
        assert np.array_equal(average_ranks(values), rankdata(values))
