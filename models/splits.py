"""How a config's rows are split: the held-out test rows, and the cross-validation folds of the rest.

A config's ``split`` says how (validated at save, :mod:`models.store.schema`):

- ``random`` (the default): a shuffled held-out split (stratified for classification) and shuffled
  (stratified) k-fold CV, exactly as before splits existed.
- ``time`` with ``time_column`` and an optional ``gap``: the rows are ordered by the time column (a
  stable sort: ties keep their order in the CSV); the held-out test rows are the last
  ``ceil(test_size * n)`` of them; the folds are scikit-learn's ``TimeSeriesSplit(n_splits=cv_folds,
  gap=gap)`` over the time-ordered training rows (expanding window), so no fold ever predicts a row from
  a model fitted on later rows. The rows of the first block have no out-of-fold prediction: their fold
  id is ``-1`` (recorded, not filled in) and stacking leaves them out of the meta-model's fit.
- ``group`` with ``group_column``: no group is split between fitting and validation rows
  (``StratifiedGroupKFold`` for classification, ``GroupKFold`` for regression), and the held-out test
  set is made of whole groups (``GroupShuffleSplit``).

The fold spec (:func:`fold_spec`) is what decides which row lands where; runs stack together only when
their specs (and data) are equal.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
    TimeSeriesSplit,
    train_test_split,
)

from models.errors import DataError

NO_FOLD = -1  # the fold id of a training row that no fold validated (the first block of a time split)


def fold_spec(config: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides which rows land in which fold (ensembles need the same spec)."""
    cls = config["task"] == "classification"
    kind = config.get("split", "random")
    n_splits = int(config["cv_folds"])
    test_size = float(config.get("test_size", 0.2))
    seed = int(config["random_state"])
    if kind == "time":
        return {
            "split": "time",
            "method": "TimeSeriesSplit",
            "n_splits": n_splits,
            "gap": int(config.get("gap") or 0),
            "random_state": seed,  # not for the folds (they do not shuffle): for what else needs a seed
            "time_column": config["time_column"],
            "holdout": {"test_size": test_size, "last_rows": True},
        }
    if kind == "group":
        return {
            "split": "group",
            "method": "StratifiedGroupKFold" if cls else "GroupKFold",
            "n_splits": n_splits,
            "shuffle": cls,
            "random_state": seed,
            "group_column": config["group_column"],
            "holdout": {"test_size": test_size, "random_state": seed, "whole_groups": True},
        }
    return {
        "method": "StratifiedKFold" if cls else "KFold",
        "n_splits": n_splits,
        "shuffle": True,
        "random_state": seed,
        "holdout": {"test_size": test_size, "random_state": seed, "stratified": cls},
    }


def split_kind(spec: dict[str, Any]) -> str:
    return spec.get("split", "random")


def split_column(spec: dict[str, Any]) -> str | None:
    """The column a spec orders or groups by (None for a random split)."""
    return spec.get("time_column") or spec.get("group_column")


def make_splitter(spec: dict[str, Any]) -> Any:
    """The scikit-learn splitter of the CV folds of ``spec``."""
    method = spec["method"]
    if method == "TimeSeriesSplit":
        return TimeSeriesSplit(n_splits=spec["n_splits"], gap=spec.get("gap", 0))
    if method == "StratifiedGroupKFold":
        return StratifiedGroupKFold(n_splits=spec["n_splits"], shuffle=True, random_state=spec["random_state"])
    if method == "GroupKFold":
        return GroupKFold(n_splits=spec["n_splits"])
    cls = StratifiedKFold if method == "StratifiedKFold" else KFold
    return cls(n_splits=spec["n_splits"], shuffle=spec["shuffle"], random_state=spec["random_state"])


def holdout_split(
    y: np.ndarray, spec: dict[str, Any], split_values: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(training rows, held-out rows)`` as positions into ``y``.

    Random: both sorted. Time: the training rows in time order (the folds walk forward over them) and the
    last ``ceil(test_size * n)`` rows held out. Group: whole groups held out, both sorted.
    """
    h = spec["holdout"]
    kind = split_kind(spec)
    if kind == "time":
        order = np.argsort(np.asarray(split_values), kind="stable")
        n_test = math.ceil(h["test_size"] * len(y))
        return order[: len(y) - n_test], np.sort(order[len(y) - n_test :])
    idx = np.arange(len(y))
    if kind == "group":
        splitter = GroupShuffleSplit(n_splits=1, test_size=h["test_size"], random_state=h["random_state"])
        train_idx, test_idx = next(splitter.split(idx, y, groups=split_values))
        return np.sort(train_idx), np.sort(test_idx)
    train_idx, test_idx = train_test_split(
        idx, test_size=h["test_size"], random_state=h["random_state"], stratify=y if h["stratified"] else None
    )
    return np.sort(train_idx), np.sort(test_idx)


def cv_splits(
    spec: dict[str, Any], y_train: np.ndarray, train_values: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(fit rows, validation rows)`` of each fold, as positions into the training rows."""
    splitter = make_splitter(spec)
    X_dummy = np.zeros((len(y_train), 1))
    if split_kind(spec) == "group":
        return list(splitter.split(X_dummy, y_train, groups=train_values))
    return list(splitter.split(X_dummy, y_train))


def check_split_sizes(spec: dict[str, Any], n_rows: int, field: str = "gap") -> None:
    """DataError naming ``field`` when the split leaves a fold (or the held-out set) without rows."""
    n_test = math.ceil(spec["holdout"]["test_size"] * n_rows)
    n_train = n_rows - n_test
    if split_kind(spec) != "time":
        return
    n_splits, gap = spec["n_splits"], spec.get("gap", 0)
    block = n_train // (n_splits + 1)
    first = n_train - n_splits * block - gap
    if block < 1 or first < 1:
        raise DataError(
            f"gap={gap} with cv_folds={n_splits} leaves a fold without rows: {n_train} training rows give "
            f"validation blocks of {block} and {max(first, 0)} rows to fit the first fold on; use a smaller "
            "gap or fewer folds",
            field=field if gap else "cv_folds",
        )


def order_values(values: pd.Series, column: str, csv_name: str) -> np.ndarray:
    """A time column as sortable numbers: numbers as they are, dates and times (any common format) as
    nanoseconds. DataError naming the column and the rows when some cannot be read or are blank."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce").astype(float)
        bad = np.flatnonzero(~np.isfinite(numbers.to_numpy()))
    else:
        parsed = parse_times(values.astype("string"))
        bad = np.flatnonzero(parsed.isna().to_numpy())
        numbers = parsed.astype("int64").astype(float) if not len(bad) else None
    if len(bad):
        rows = ", ".join(str(int(i) + 2) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise DataError(
            f"time_column {column!r} of {csv_name!r} has {len(bad)} value(s) that are blank or not a date, a time or "
            f"a number (line(s) {rows}); every row needs its time to be ordered",
            field="time_column",
        )
    return np.asarray(numbers, dtype=float)


def parse_times(text: pd.Series) -> pd.Series:
    """Dates and times in one format for the whole column, inferred from its values (so that 05/01/2024
    means the same day in every row: day first when a value like 13/01/2024 says so); a column mixing
    formats is read value by value. Unreadable values become NaT."""
    import warnings

    for dayfirst in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "could not infer format": tried below
                return pd.to_datetime(text, errors="raise", dayfirst=dayfirst, utc=True)
        except (ValueError, TypeError, OverflowError):
            continue
    return pd.to_datetime(text, errors="coerce", format="mixed", utc=True)


def group_values(values: pd.Series, column: str, csv_name: str) -> np.ndarray:
    """A group column as labels; DataError naming the column when some rows have no group."""
    blank = np.flatnonzero(values.isna().to_numpy())
    if len(blank):
        rows = ", ".join(str(int(i) + 2) for i in blank[:5]) + (" ..." if len(blank) > 5 else "")
        raise DataError(
            f"group_column {column!r} of {csv_name!r} is blank on {len(blank)} row(s) (line(s) {rows}); every row "
            "needs its group",
            field="group_column",
        )
    return values.astype(str).to_numpy()
