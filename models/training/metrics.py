"""Metrics for classifiers and regressors, and which of them is primary and which way is better."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics as skm

HIGHER_IS_BETTER = {
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "r2",
    "cv_mean_accuracy",
    "balanced_accuracy",
}
LOWER_IS_BETTER = {"log_loss", "brier", "mse", "rmse", "mae"}
# every metric a run records (classifiers: accuracy ... roc_auc; regressors: mse ... r2)
RUN_METRICS = ("accuracy", "precision", "recall", "f1", "log_loss", "brier", "roc_auc", "mse", "rmse", "mae", "r2")


def higher_is_better(metric: str) -> bool:
    """Direction of a metric; unknown names count as higher-is-better unless they look like a loss."""
    base = metric.split(".")[-1]
    return not (base in LOWER_IS_BETTER or any(w in base for w in ("loss", "error", "mse", "mae", "brier")))


def primary_metric(task: str, n_classes: int | None) -> str:
    if task == "regression":
        return "rmse"
    return "roc_auc" if n_classes == 2 else "accuracy"


def fold_score(metric: str, y_true: np.ndarray, pred: np.ndarray, classes: np.ndarray | None) -> float:
    if metric == "rmse":
        return float(skm.root_mean_squared_error(y_true, pred))
    if metric == "roc_auc":
        return float(skm.roc_auc_score(y_true == classes[1], pred[:, 1]))
    return float(skm.accuracy_score(y_true, classes[np.argmax(pred, axis=1)]))


def label_positions(y: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """Each label's position in the sorted ``classes``; None if some label is not among them."""
    y = np.asarray(y)
    if len(classes) == 0:
        return None
    try:
        idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
        found = classes[idx] == y
    except TypeError:  # labels that do not compare with the classes
        return None
    return idx if np.all(found) else None


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    safe = np.where(den == 0, 1, den)
    return np.where(den == 0, 0.0, num / safe)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank: ``scipy.stats.rankdata(values)`` (method
    "average"), in numpy alone (scipy.stats costs a CLI command 0.3 s to import)."""
    values = np.asarray(values).ravel()
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    edges = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((edges[:-1] + edges[1:] + 1) / 2.0, np.diff(edges))
    return ranks


def binary_roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve as the Mann-Whitney statistic (ties count half): the value
    ``roc_auc_score`` gives (to rounding), without its input checks that dominate on stored predictions."""
    ranks = average_ranks(score)  # average ranks for ties
    n_pos = int(np.count_nonzero(positive))
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> dict[str, Any]:
    """Accuracy, weighted precision/recall/F1, log loss, confusion matrix, Brier and ROC AUC.

    Each equals scikit-learn's function of the same name on the same predictions (``accuracy_score``,
    ``precision_score``/``recall_score``/``f1_score`` with ``average="weighted"``, ``log_loss``,
    ``brier_score_loss`` on the positive class, ``roc_auc_score``; multiclass: one-vs-rest, weighted).

    The labels are encoded once and every label metric comes from one confusion matrix (the same
    numbers scikit-learn's functions give, each of which would re-derive the labels with ``np.unique``);
    labels outside ``classes`` take scikit-learn's general path.
    """
    classes = np.asarray(classes)
    t, p = label_positions(y_true, classes), label_positions(y_pred, classes)
    if t is None or p is None:
        return sklearn_classification_metrics(y_true, y_pred, proba, classes)
    k = len(classes)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp, true_sum, pred_sum = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    present = (true_sum + pred_sum) > 0  # the labels scikit-learn averages over (unique_labels)
    tp, true_sum, pred_sum = tp[present], true_sum[present], pred_sum[present]
    precision = _divide(tp, pred_sum)
    recall = _divide(tp, true_sum)
    f1 = _divide(2.0 * tp.astype(float), 1.0 * true_sum.astype(float) + pred_sum.astype(float))
    proba = np.asarray(proba, dtype=float)
    # as sklearn.metrics.log_loss: clipped to [eps, 1 - eps] with the float64 machine epsilon, and
    # nothing else (an earlier floor of 1e-15 gave smaller losses for confident mistakes)
    eps = np.finfo(proba.dtype).eps
    picked = np.clip(proba, eps, 1 - eps)[np.arange(len(t)), t]
    out: dict[str, Any] = {
        "accuracy": float(np.average(t == p)),
        "precision": float(np.average(precision, weights=true_sum)),
        "recall": float(np.average(recall, weights=true_sum)),
        "f1": float(np.average(f1, weights=true_sum)),
        "log_loss": float(np.average(-np.log(picked))),
        "confusion_matrix": cm.tolist(),
        "labels": [c.item() if hasattr(c, "item") else c for c in classes],
    }
    n_present = int(np.count_nonzero(np.bincount(t, minlength=k)))
    if k == 2:
        positive = t == 1
        out["brier"] = float(np.average((positive - proba[:, 1]) ** 2))
        out["roc_auc"] = binary_roc_auc(positive, proba[:, 1]) if n_present == 2 else None
    elif n_present == k:
        out["roc_auc"] = float(
            skm.roc_auc_score(y_true, proba, multi_class="ovr", average="weighted", labels=classes)
        )
    else:
        out["roc_auc"] = None
    return out


def sklearn_classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> dict[str, Any]:
    """The same metrics through scikit-learn's functions (the reference, and the path for odd labels)."""
    out: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, average="weighted", zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, average="weighted", zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "log_loss": float(skm.log_loss(y_true, np.asarray(proba, dtype=float), labels=classes)),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=classes).tolist(),
        "labels": [c.item() if hasattr(c, "item") else c for c in classes],
    }
    present = np.unique(y_true)
    if len(classes) == 2:
        positive = y_true == classes[1]
        out["brier"] = float(skm.brier_score_loss(positive, proba[:, 1]))
        out["roc_auc"] = float(skm.roc_auc_score(positive, proba[:, 1])) if len(present) == 2 else None
    elif len(present) == len(classes):
        out["roc_auc"] = float(
            skm.roc_auc_score(y_true, proba, multi_class="ovr", average="weighted", labels=classes)
        )
    else:
        out["roc_auc"] = None
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MSE, RMSE, MAE and R² of a regressor: each scikit-learn's function of that name."""
    return {
        "mse": float(skm.mean_squared_error(y_true, y_pred)),
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
    }
