"""Ensemble selection on stored out-of-fold predictions: the math, no database, no files.

Caruana et al., "Ensemble selection from libraries of models" (ICML 2004): start from nothing,
and at each step add (with replacement) the candidate whose addition makes the running average
of predictions score best; the weights are the selection counts over the total. The ensemble
kept is the best prefix of those steps (so on the rows it was selected on it is never worse than
the best single candidate).

Honest scores: :func:`nested_greedy` selects inside the training folds of the stored fold split
and predicts the held-out fold with the weights found there, so every row's ensemble prediction
comes from a selection that never saw the row; the score of those predictions is comparable to
each single candidate's out-of-fold score on the same rows. :func:`nested_stack` does the same for
a meta-model over the top candidates.

Layout of the predictions: for classification ``P`` is ``(m, n, k)`` probabilities (classes in
sorted order) and ``y`` holds class positions ``0..k-1``; for regression ``P`` is ``(m, n)``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn import metrics as skm

from models.ensembles.stacking import make_meta_model, meta_features
from models.errors import ValidationError
from models.training.metrics import higher_is_better

SELECTION_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("log_loss", "brier", "accuracy", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_METRIC = {"classification": "log_loss", "regression": "rmse"}
METHODS = ("greedy", "stack", "both")
DEFAULT_SIZE = 25
MAX_SIZE = 1000
# probabilities are clipped to [EPS, 1 - EPS] for the log, as sklearn.metrics.log_loss does (float64 eps)
EPS = float(np.finfo(np.float64).eps)


def check_metric(task: str, metric: Any) -> str:
    """The selection metric for ``task`` (its default when ``metric`` is None); ValidationError naming ``metric``."""
    if metric is None or metric == "":
        return DEFAULT_METRIC[task]
    allowed = SELECTION_METRICS[task]
    if metric not in allowed:
        raise ValidationError(
            f"metric {metric!r} cannot drive selection for {task}; choose from: {', '.join(allowed)}",
            field="metric",
        )
    return str(metric)


def check_size(size: Any) -> int:
    """The number of selection steps (1..MAX_SIZE); ValidationError naming ``size``."""
    if size is None:
        return DEFAULT_SIZE
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ValidationError(
            f"size must be a whole number from 1 to {MAX_SIZE} (selection steps); got {size!r}", field="size"
        )
    return size


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise ValidationError(f"method must be one of {', '.join(METHODS)}; got {method!r}", field="method")
    return str(method)


def better(metric: str, a: float, b: float) -> bool:
    """Whether score ``a`` is strictly better than ``b`` for ``metric``."""
    return a > b if higher_is_better(metric) else a < b


# ------------------------------------------------------------------ scores


def score(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    """One prediction's score (probabilities ``(n, k)`` and class positions, or regression values)."""
    pred = np.asarray(pred, dtype=float)
    if metric == "log_loss":
        return float(-np.mean(np.log(np.clip(pred[np.arange(len(y)), y], EPS, 1 - EPS))))
    if metric == "brier":
        if pred.shape[1] == 2:
            return float(np.mean((pred[:, 1] - (y == 1)) ** 2))
        onehot = np.eye(pred.shape[1])[y]
        return float(np.mean(np.sum((pred - onehot) ** 2, axis=1)))
    if metric == "accuracy":
        return float(np.mean(np.argmax(pred, axis=1) == y))
    if metric == "roc_auc":
        if pred.shape[1] == 2:
            return float(skm.roc_auc_score(y == 1, pred[:, 1]))
        return float(
            skm.roc_auc_score(y, pred, multi_class="ovr", average="weighted", labels=np.arange(pred.shape[1]))
        )
    y = np.asarray(y, dtype=float)
    if metric == "rmse":
        return float(np.sqrt(np.mean((pred - y) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(pred - y)))
    if metric == "r2":
        return float(skm.r2_score(y, pred))
    raise ValidationError(f"unknown selection metric {metric!r}", field="metric")


class _BatchScorer:
    """Scores of ``(S + P_j) / (t + 1)`` for every candidate ``j`` at once (the inner loop of selection)."""

    def __init__(self, metric: str, P: np.ndarray, y: np.ndarray, idx: np.ndarray | None = None) -> None:
        """Over the rows ``idx`` of ``P`` and ``y`` (all rows when None), copying only what the metric needs."""
        self.metric = metric
        idx = np.arange(P.shape[1]) if idx is None else idx
        y = y[idx]
        self.y = y
        self.P = None
        if metric == "log_loss":  # only the true class's probability matters; float32 cuts the cost of log
            self.Q = np.ascontiguousarray(P[:, idx, y], dtype=np.float32)
            self.buf = np.empty_like(self.Q)
        elif metric == "accuracy" and P.shape[2] == 2:  # class 1 wins where p1 - p0 > 0
            self.D = np.ascontiguousarray(P[:, idx, 1] - P[:, idx, 0])
            self.y1 = y == 1
        elif metric in ("brier", "rmse", "r2"):
            if metric == "brier":
                target = (y == 1).astype(float) if P.shape[2] == 2 else np.eye(P.shape[2])[y].ravel()
                flat = P[:, idx, 1] if P.shape[2] == 2 else P[:, idx].reshape(P.shape[0], -1)
            else:
                target, flat = np.asarray(y, dtype=float), P[:, idx]
            self.flat = np.ascontiguousarray(flat, dtype=float)
            self.target = target
            self.norms = np.einsum("ij,ij->i", self.flat, self.flat)
            self.var = float(np.var(target)) if metric == "r2" else 1.0
        else:
            self.P = P[:, idx]
        self.n = len(idx)

    def state(self) -> np.ndarray:
        """The running sum, in the shape this scorer keeps."""
        if self.metric == "log_loss":
            return np.zeros(self.Q.shape[1], dtype=np.float32)
        if self.metric in ("brier", "rmse", "r2"):
            return np.zeros(self.flat.shape[1])
        if hasattr(self, "D"):
            return np.zeros(self.D.shape[1])
        return np.zeros(self.P.shape[1:])

    def add(self, S: np.ndarray, j: int) -> np.ndarray:
        if self.metric == "log_loss":
            return S + self.Q[j]
        if self.metric in ("brier", "rmse", "r2"):
            return S + self.flat[j]
        if hasattr(self, "D"):
            return S + self.D[j]
        return S + self.P[j]

    def scores(self, S: np.ndarray, t: int) -> np.ndarray:
        """Score of adding each candidate to the ``t`` already chosen (running sum ``S``)."""
        c = t + 1
        n = self.n
        if self.metric == "log_loss":
            q = self.buf
            np.add(S, self.Q, out=q)
            q *= np.float32(1.0 / c)
            np.maximum(q, np.float32(EPS), out=q)
            np.log(q, out=q)
            return -q.mean(axis=1, dtype=np.float64)
        if self.metric in ("brier", "rmse", "r2"):
            # ||(S + p_j)/c - y||^2 = (||A||^2 + 2 A.p_j + ||p_j||^2) / c^2 with A = S - c*y
            A = S - c * self.target
            sq = (A @ A + 2.0 * (self.flat @ A) + self.norms) / (c * c)
            mse = np.maximum(sq, 0.0) / n
            if self.metric == "rmse":
                return np.sqrt(mse)
            if self.metric == "r2":
                return 1.0 - mse / self.var if self.var > 0 else np.zeros_like(mse)
            return mse
        if hasattr(self, "D"):
            return (((S[None] + self.D) > 0) == self.y1[None]).mean(axis=1)
        avg = (S[None] + self.P) / c
        if self.metric == "accuracy":
            return (np.argmax(avg, axis=2) == self.y[None]).mean(axis=1)
        if self.metric == "mae":
            return np.abs(avg - np.asarray(self.y, dtype=float)[None]).mean(axis=1)
        return np.array([score(self.metric, self.y, a) for a in avg])  # roc_auc: one candidate at a time


@dataclass
class Selection:
    """The result of greedy selection: counts per candidate, the step-by-step trajectory, the kept prefix."""

    metric: str
    counts: np.ndarray
    steps: list[dict[str, Any]]
    best_step: int
    single_scores: np.ndarray = field(repr=False)

    @property
    def weights(self) -> np.ndarray:
        return self.counts / self.counts.sum()

    @property
    def chosen(self) -> list[int]:
        """Candidate positions with a non-zero weight, in order of first selection."""
        seen: list[int] = []
        for step in self.steps[: self.best_step]:
            if step["index"] not in seen:
                seen.append(step["index"])
        return seen

    @property
    def score(self) -> float:
        return self.steps[self.best_step - 1]["score"]

    def first_step_only(self) -> Selection:
        """The selection kept at its first step: the best single candidate on the selection rows."""
        counts = np.zeros_like(self.counts)
        counts[self.steps[0]["index"]] = 1
        return replace(self, counts=counts, best_step=1)


def single_scores(metric: str, P: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([score(metric, y, p) for p in P])


def greedy_select(
    P: np.ndarray,
    y: np.ndarray,
    metric: str,
    size: int = DEFAULT_SIZE,
    *,
    rows: np.ndarray | None = None,
    with_singles: bool = True,
) -> Selection:
    """Forward selection with replacement for ``size`` steps on ``rows`` (a boolean mask; all rows when None);
    keeps the best prefix (the first best on ties)."""
    P = np.asarray(P, dtype=float)
    m = P.shape[0]
    if m < 1:
        raise ValidationError("selection needs at least one candidate", field="base_models")
    idx = np.arange(P.shape[1]) if rows is None else np.flatnonzero(rows)
    scorer = _BatchScorer(metric, P, y, idx)
    y_rows = y[idx]
    hib = higher_is_better(metric)
    S = scorer.state()
    exact = np.zeros((len(idx), *P.shape[2:]))
    counts = np.zeros(m, dtype=np.int64)
    steps: list[dict[str, Any]] = []
    best_step, best_score = 0, None
    for t in range(size):
        cand = scorer.scores(S, t)
        j = int(np.argmax(cand) if hib else np.argmin(cand))
        S = scorer.add(S, j)
        exact += P[j, idx]
        counts[j] += 1
        value = score(metric, y_rows, exact / (t + 1))  # the exact score of the kept average, in float64
        steps.append({"step": t + 1, "index": j, "score": value})
        if best_score is None or better(metric, value, best_score):
            best_step, best_score = t + 1, value
    kept = np.zeros(m, dtype=np.int64)
    for step in steps[:best_step]:
        kept[step["index"]] += 1
    singles = single_scores(metric, P[:, idx] if rows is not None else P, y_rows) if with_singles else np.array([])
    return Selection(metric=metric, counts=kept, steps=steps, best_step=best_step, single_scores=singles)


def weighted_average(P: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_j w_j P_j`` over the first axis."""
    return np.tensordot(np.asarray(weights, dtype=float), np.asarray(P, dtype=float), axes=(0, 0))


def _folds(fold_ids: np.ndarray) -> list[int]:
    folds = sorted(int(f) for f in np.unique(fold_ids))
    if len(folds) < 2 or folds[0] < 0:
        raise ValidationError(
            "nested scoring needs the stored fold of every training row (at least two folds)", field="fold_ids"
        )
    return folds


def outer_folds(fold_ids: np.ndarray, forward: bool = False) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(fold, rows to choose on, rows to score)`` of nested scoring.

    Shuffled folds: each fold is scored by what was chosen on all the others. ``forward`` (a time split):
    each fold is scored by what was chosen on the folds before it, so nothing chosen ever saw a later row;
    the first fold is never scored.
    """
    folds = _folds(fold_ids)
    if forward:
        return [(k, fold_ids < k, fold_ids == k) for k in folds[1:]]
    return [(k, fold_ids != k, fold_ids == k) for k in folds]


@dataclass
class Nested:
    """Predictions for training rows from a selection (or meta-model) that never saw the row.

    ``scored``: the rows that got one (all of them, except the first fold of a forward nesting).
    ``single_pred``: the same rows predicted by the candidate that scored best on the rows chosen on
    (what "just take the best single model" would have given), for greedy selection only.
    """

    pred: np.ndarray
    per_fold: list[dict[str, Any]]
    single_pred: np.ndarray | None = None
    scored: np.ndarray | None = None

    def score(self, metric: str, y: np.ndarray, single: bool = False) -> float:
        rows = self.scored if self.scored is not None else np.ones(len(y), dtype=bool)
        pred = self.single_pred if single else self.pred
        return score(metric, y[rows], pred[rows])


def nested_greedy(
    P: np.ndarray,
    y: np.ndarray,
    fold_ids: np.ndarray,
    metric: str,
    size: int = DEFAULT_SIZE,
    *,
    forward: bool = False,
) -> Nested:
    """For each stored fold: select on the other folds' rows (``forward``: the earlier folds' rows), predict
    this fold's rows with those weights.

    The folds run on a thread each (up to the core count): the selection's work is numpy calls that
    release the GIL.
    """
    P = np.asarray(P, dtype=float)
    pred = np.zeros(P.shape[1:])
    single_pred = np.zeros(P.shape[1:])
    scored = np.zeros(len(y), dtype=bool)
    plan = outer_folds(fold_ids, forward)

    def one(step: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray, Selection]:
        k, inside, held = step
        return k, inside, held, greedy_select(P, y, metric, size, rows=inside, with_singles=False)

    per_fold = []
    with ThreadPoolExecutor(max_workers=max(1, min(len(plan), os.cpu_count() or 1))) as pool:
        for k, inside, held, sel in pool.map(one, plan):
            pred[held] = weighted_average(P[:, held], sel.weights)
            single_pred[held] = P[sel.steps[0]["index"], held]
            scored |= held
            per_fold.append(
                {
                    "fold": k,
                    "rows": int(held.sum()),
                    "selected_on": int(inside.sum()),
                    "score": score(metric, y[held], pred[held]),
                    "weights": {int(i): float(w) for i, w in enumerate(sel.weights) if w > 0},
                }
            )
    return Nested(pred, per_fold, single_pred, scored)


def stack_predict(
    task: str,
    meta_model: str,
    P_fit: np.ndarray,
    y_fit: np.ndarray,
    P_out: np.ndarray,
    n_classes: int,
    random_state: int | None,
) -> np.ndarray:
    """A meta-model fitted on ``P_fit`` (stacking layout, as :mod:`models.ensembles.stacking`) predicting ``P_out``."""
    method = "predict_proba" if task == "classification" else "predict"
    X_fit = meta_features(list(P_fit), task, method, n_classes)
    X_out = meta_features(list(P_out), task, method, n_classes)
    meta = make_meta_model(task, meta_model, random_state)
    if task == "classification":
        meta.fit(X_fit, y_fit)
        proba = np.zeros((len(X_out), n_classes))
        proba[:, meta.classes_] = meta.predict_proba(X_out)  # a class missing from the fit rows keeps 0
        return proba
    meta.fit(X_fit, np.asarray(y_fit, dtype=float))
    return meta.predict(X_out)


def nested_stack(
    task: str,
    meta_model: str,
    P: np.ndarray,
    y: np.ndarray,
    fold_ids: np.ndarray,
    metric: str,
    random_state: int | None = None,
    *,
    forward: bool = False,
) -> Nested:
    """For each stored fold: fit the meta-model on the other folds' rows (``forward``: the earlier ones'),
    predict this fold's rows."""
    P = np.asarray(P, dtype=float)
    n_classes = P.shape[2] if P.ndim == 3 else 0
    pred = np.zeros(P.shape[1:])
    scored = np.zeros(len(y), dtype=bool)
    per_fold = []
    for k, inside, held in outer_folds(fold_ids, forward):
        pred[held] = stack_predict(task, meta_model, P[:, inside], y[inside], P[:, held], n_classes, random_state)
        scored |= held
        per_fold.append(
            {
                "fold": k,
                "rows": int(held.sum()),
                "selected_on": int(inside.sum()),
                "score": score(metric, y[held], pred[held]),
            }
        )
    return Nested(pred, per_fold, None, scored)


@dataclass
class Choice:
    """What to do with a library: which way (``selection``, ``best single``, ``stack``) and its settings."""

    method: str  # "greedy" | "stack" | "both"
    metric: str
    size: int
    task: str
    meta_model: str
    stack_top: int
    random_state: int | None
    forward: bool = False


def choose(P: np.ndarray, y: np.ndarray, fold_ids: np.ndarray, how: Choice) -> tuple[str, dict[str, float]]:
    """The way to take on these rows, chosen by nested scores over their folds: ``(way, scores)``.

    Greedy keeps the best single candidate alone when that scores better than selecting; ``both`` also
    weighs stacking. Too few folds to nest (a forward nesting needs three): selecting, or stacking for
    ``stack``, without a comparison.
    """
    enough = len(np.unique(fold_ids)) >= (3 if how.forward else 2)
    default = "stack" if how.method == "stack" else "selection"
    if not enough:
        return default, {}
    scores: dict[str, float] = {}
    if how.method in ("greedy", "both"):
        nested = nested_greedy(P, y, fold_ids, how.metric, how.size, forward=how.forward)
        scores["selection"] = nested.score(how.metric, y)
        scores["best single"] = nested.score(how.metric, y, single=True)
    if how.method in ("stack", "both"):
        top = top_candidates(single_scores(how.metric, P, y), how.metric, min(how.stack_top, len(P)))
        nested = nested_stack(
            how.task, how.meta_model, P[top], y, fold_ids, how.metric, how.random_state, forward=how.forward
        )
        scores["stack"] = nested.score(how.metric, y)
    way = default
    for name, value in scores.items():  # the first of equal scores wins: selection, best single, stack
        if better(how.metric, value, scores[way]):
            way = name
    return way, scores


def apply_choice(
    way: str, P: np.ndarray, y: np.ndarray, fit: np.ndarray, out: np.ndarray, how: Choice
) -> np.ndarray:
    """Predictions for rows ``out`` of ``way`` fitted (selected, or its meta-model trained) on rows ``fit``."""
    if way == "selection":
        sel = greedy_select(P, y, how.metric, how.size, rows=fit, with_singles=False)
        return weighted_average(P[:, out], sel.weights)
    if way == "best single":
        best = top_candidates(single_scores(how.metric, P[:, fit], y[fit]), how.metric, 1)[0]
        return np.asarray(P[best, out], dtype=float)
    n_classes = P.shape[2] if P.ndim == 3 else 0
    top = top_candidates(single_scores(how.metric, P[:, fit], y[fit]), how.metric, min(how.stack_top, len(P)))
    return stack_predict(
        how.task, how.meta_model, P[top][:, fit], y[fit], P[top][:, out], n_classes, how.random_state
    )


def doubly_nested(P: np.ndarray, y: np.ndarray, fold_ids: np.ndarray, how: Choice) -> Nested:
    """The honest score of the whole procedure, choices included: for each outer fold, every choice
    (selecting vs. the best single candidate, greedy vs. stacking) is made by nested scores over the other
    folds only (``forward``: the earlier ones), then applied to those rows and scored on this fold, which
    no choice ever saw."""
    P = np.asarray(P, dtype=float)
    pred = np.zeros(P.shape[1:])
    scored = np.zeros(len(y), dtype=bool)
    per_fold = []
    for k, inside, held in outer_folds(fold_ids, how.forward):
        way, inner = choose(P[:, inside], y[inside], fold_ids[inside], how)
        pred[held] = apply_choice(way, P, y, inside, held, how)
        scored |= held
        per_fold.append(
            {
                "fold": k,
                "rows": int(held.sum()),
                "chosen_on": int(inside.sum()),
                "choice": way,
                "inner_scores": {name: float(v) for name, v in inner.items()},
                "score": score(how.metric, y[held], pred[held]),
            }
        )
    return Nested(pred, per_fold, None, scored)


def top_candidates(single: np.ndarray, metric: str, n: int) -> list[int]:
    """Positions of the ``n`` best single candidates, best first (stable on ties)."""
    order = np.argsort(-single if higher_is_better(metric) else single, kind="stable")
    return [int(i) for i in order[:n]]


# ----------------------------------------------------------- prediction


class WeightedAverage:
    """The "meta-model" of a weighted ensemble: fixed weights over the base models, nothing fitted.

    It reads the stacking meta-feature layout of :func:`models.ensembles.stacking.meta_features`
    (``predict_proba`` blocks: the positive-class column for binary, every class otherwise; one
    column per base for regression), so a weighted ensemble predicts through the same
    :class:`~models.ensembles.stacking.StackedEnsemble` as a stacked one.
    """

    def __init__(self, weights: list[float] | np.ndarray, task: str, n_classes: int = 0) -> None:
        self.weights = np.asarray(weights, dtype=float)
        self.task = task
        self.n_classes = n_classes

    def fit(self, X: Any = None, y: Any = None) -> WeightedAverage:
        return self

    def _average(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        m = len(self.weights)
        if self.task == "regression" or self.n_classes == 2:
            return X[:, :m] @ self.weights
        blocks = X[:, : m * self.n_classes].reshape(len(X), m, self.n_classes)
        return np.einsum("nmk,m->nk", blocks, self.weights)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        avg = self._average(X)
        if self.n_classes == 2:
            return np.column_stack([1.0 - avg, avg])
        return avg

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class positions (``0..k-1``) for classification, values for regression."""
        if self.task == "regression":
            return self._average(X)
        return np.argmax(self.predict_proba(X), axis=1)
