"""A loaded model that predicts on a DataFrame: stored features, in stored order, scaled, then the model."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from models.errors import ValidationError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def _overflows(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except OverflowError:
        return True
    except (TypeError, ValueError):
        return False
    return False


def _rows_matrix(rows: list, features: list[str]) -> np.ndarray | None:
    """Rows (a list of dicts, as a JSON body sends them) straight to a float array, without building a
    DataFrame; None when a value needs the DataFrame path (missing column, text, None, a huge integer),
    which then names the problem."""
    try:
        return np.array([[row[f] for f in features] for row in rows], dtype=float)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def feature_matrix(
    frame: pd.DataFrame | dict | list, features: list[str], *, allow_blanks: bool = False
) -> np.ndarray:
    """``frame[features]`` as a float array; every missing or non-numeric column is named in the error.
    ``allow_blanks``: blank cells become NaN (the run's pipeline imputes them); infinite values are refused."""
    if isinstance(frame, list) and all(isinstance(row, dict) for row in frame):
        values = _rows_matrix(frame, features)
        if values is not None and np.isfinite(values).all():
            return values
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing_columns(frame, features)
    sub = frame[features]
    try:
        values = sub.to_numpy(dtype=float)
    except OverflowError:  # an integer beyond any float (hundreds of digits)
        where = [(i, c) for c in features for i, v in enumerate(sub[c]) if _overflows(v)]
        row, column = where[0] if where else (None, features[0])
        raise ValidationError(
            f"feature value too large in row {row}, column {column}: it does not fit a floating-point number",
            field=column,
        ) from None
    except (TypeError, ValueError):
        bad = [
            c
            for c in features
            if not pd.api.types.is_numeric_dtype(sub[c]) and pd.to_numeric(sub[c], errors="coerce").isna().any()
        ]
        raise ValidationError(
            f"non-numeric values in feature columns: {', '.join(bad) or 'unknown'}", field=bad[0] if bad else None
        ) from None
    if not np.isfinite(values).all():
        bad = np.isinf(values) if allow_blanks else ~np.isfinite(values)
        if not bad.any():
            return values
        parts = []
        for j in np.flatnonzero(bad.any(axis=0)):
            rows = np.flatnonzero(bad[:, j])
            shown = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            parts.append(f"{features[j]} (row{'s' if len(rows) > 1 else ''} {shown})")
        raise ValidationError(
            f"missing or infinite feature values: {'; '.join(parts)} (rows counted from 0)",
            field=features[int(np.flatnonzero(bad.any(axis=0))[0])],
        )
    return values


FLOAT32_MAX = float(np.finfo(np.float32).max)  # tree models compute in float32


def check_finite(values: np.ndarray, columns: list[str], what: str, *, allow_nan: bool = False) -> np.ndarray:
    """``values`` when every entry is finite (and fits a float32); otherwise ValidationError naming the
    first bad row and column.

    Feature values that are finite but huge (``1e308``) can overflow once scaled or inside a model;
    they are refused here, with where, instead of reaching a model that raises on NaN/inf.
    """
    arr = np.asarray(values, dtype=float)
    table = arr.reshape(len(arr), -1) if arr.ndim else arr.reshape(1, 1)
    with np.errstate(invalid="ignore"):
        bad = (np.isinf(table) if allow_nan else ~np.isfinite(table)) | (np.abs(table) > FLOAT32_MAX)
    if bad.any():
        rows, cols = np.nonzero(bad)
        row, col = int(rows[0]), int(cols[0])
        name = columns[col] if col < len(columns) else f"column {col}"
        more = len(set(rows.tolist())) - 1
        raise ValidationError(
            f"{what} in row {row}, column {name}{f' (and {more} more rows)' if more > 0 else ''}: "
            "a feature value is too large for the model; send values in the range "
            "the model was trained on",
            field=name,
        )
    return values


NATIVE_MISSING_CLASSES = ("HistGradientBoosting", "XGB", "LGBM")


def _imputes(scaler: Any) -> bool:
    """Whether a run's preprocessing step fills blanks (a ``SimpleImputer`` or a column transformer)."""
    if _is_instance(scaler, "sklearn.compose", "ColumnTransformer"):
        return True
    return _is_instance(scaler, "sklearn.pipeline", "Pipeline") and "impute" in scaler.named_steps


def _is_instance(obj: Any, module: str, name: str) -> bool:
    """``isinstance(obj, module.name)`` without importing ``module``: if it is not loaded, no object of its
    classes exists (keeps scikit-learn's compose and pipeline out of processes that never unpickle a run)."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(obj, getattr(loaded, name))


def typed_rows(frame: pd.DataFrame | dict | list, features: list[str], types: dict[str, str]) -> pd.DataFrame:
    """Rows with strings, blanks and categories as the run's column transformer takes them; a numeric column
    given a value that is not a number is named with its row (rows counted from 0)."""
    from models.preprocess import typed_frame

    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing_columns(frame, features)
    try:
        typed = typed_frame(frame.reset_index(drop=True), {f: types.get(f, "numeric") for f in features})
    except ValueError as exc:
        raise ValidationError(f"non-numeric value: {exc.args[0]}", field=exc.args[1]) from None
    for column in (f for f in features if types.get(f, "numeric") == "numeric"):
        rows = np.flatnonzero(np.isinf(typed[column].to_numpy(dtype=float)))
        if len(rows):
            raise ValidationError(f"infinite feature value: {column} (row {int(rows[0])})", field=column)
    return typed


def missing_columns(frame: pd.DataFrame | dict | list, features: list[str]) -> None:
    """ValidationError naming every feature column ``frame`` lacks (before any model runs)."""
    if isinstance(frame, list) and all(isinstance(row, dict) for row in frame):
        columns = set().union(*frame)
    else:
        columns = set((frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(frame)).columns)
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValidationError(f"missing feature columns: {', '.join(missing)}", field=missing[0])


@dataclass
class TrainedModel:
    """The fitted scaler + model of one run, with the feature list they were trained on."""

    run_id: str
    task: str
    features: list[str]
    scaler: Any
    model: Any
    warnings: list[str] = field(default_factory=list)
    size_bytes: int = 0
    feature_types: dict[str, str] | None = None  # from the run's features file (None: all numeric)

    @property
    def classes(self) -> list[Any] | None:
        return getattr(self.model, "classes_", None) if self.task == "classification" else None

    def transform(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        """The rows as the model sees them: typed, imputed, scaled, encoded (the run's preprocessing)."""
        if self.feature_types and any(k != "numeric" for k in self.feature_types.values()):
            with np.errstate(over="ignore", invalid="ignore"):
                out = self.scaler.transform(typed_rows(frame, self.features, self.feature_types))
            return check_finite(
                out, self.features, "feature values overflow once scaled", allow_nan=self.blanks_pass
            )
        values = feature_matrix(frame, self.features, allow_blanks=self.takes_blanks)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = self.scaler.transform(values)
        return check_finite(
            scaled, self.features, "feature values overflow once scaled", allow_nan=self.blanks_pass
        )

    @property
    def takes_blanks(self) -> bool:
        """Whether blank feature cells are fine: the preprocessing imputes them, or the model takes them."""
        return _imputes(self.scaler) or self.blanks_pass

    @property
    def blanks_pass(self) -> bool:
        """Whether blanks may reach the model as they are (HistGradientBoosting, XGBoost, LightGBM take them)."""
        return type(self.model).__name__.startswith(NATIVE_MISSING_CLASSES)

    def predict(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        return self.outputs(frame, with_proba=False)[0]

    def predict_proba(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        if self.task != "classification":
            raise ValidationError("predict_proba applies to classifiers only", field="task")
        with np.errstate(over="ignore", invalid="ignore"):
            out = self.model.predict_proba(self.transform(frame))
        return self._finite_proba(out)

    def outputs(self, frame: pd.DataFrame | dict | list, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions (and probabilities) from one pass over the features: scaled once, and for models whose
        ``predict`` is the argmax of ``predict_proba`` (scikit-learn's trees and forests), inferred once."""
        X = self.transform(frame)
        with np.errstate(over="ignore", invalid="ignore"):
            if not with_proba:
                out = self.model.predict(X)
                if self.task == "regression":
                    check_finite(out, ["prediction"], "the model's prediction overflows")
                return out, None
            proba = self._finite_proba(self.model.predict_proba(X))
            if isinstance(self.model, _argmax_classifiers()):
                return self.model.classes_.take(np.argmax(proba, axis=1), axis=0), proba
            return self.model.predict(X), proba

    def _finite_proba(self, out: np.ndarray) -> np.ndarray:
        return check_finite(
            out,
            [f"proba_{c}" for c in (self.classes if self.classes is not None else [])],
            "the model's probabilities are not numbers",
        )

    def predict_table(self, frame: pd.DataFrame | dict | list) -> pd.DataFrame:
        return prediction_frame(self.outputs, self.classes, frame)

    def predict_records(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return prediction_records(self.outputs, self.classes, rows)

    def to_pipeline(self) -> Pipeline:
        """A plain scikit-learn Pipeline (select features -> scaler -> model) for deployment. With other than
        numeric columns the run's column transformer selects them by name itself: raw rows with strings and
        blanks go in as a DataFrame."""
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        # a model of this project's own class (XGBoost's any-label classifier) as the libraries' own objects
        to_portable = getattr(self.model, "to_portable", None)
        model = to_portable() if to_portable is not None else self.model
        if self.feature_types and any(k != "numeric" for k in self.feature_types.values()):
            return Pipeline([("scaler", self.scaler), ("model", model)])
        select = ColumnTransformer(
            [("features", "passthrough", list(self.features))], remainder="drop", verbose_feature_names_out=False
        )
        select.fit(pd.DataFrame([np.zeros(len(self.features))], columns=self.features))
        return Pipeline([("select", select), ("scaler", self.scaler), ("model", model)])


def _argmax_classifiers() -> tuple[type, ...]:
    """scikit-learn classifiers whose ``predict`` is ``classes_.take(argmax(predict_proba))`` (their source)."""
    from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    return RandomForestClassifier, ExtraTreesClassifier, HistGradientBoostingClassifier, DecisionTreeClassifier


def prediction_frame(outputs: Any, classes: list[Any] | None, frame: pd.DataFrame | dict | list) -> pd.DataFrame:
    """Predictions as a table: ``prediction`` plus ``proba_<class>`` columns for classifiers.

    ``outputs(frame, with_proba)`` gives both from one pass. Shared by single models and ensembles, the
    CLI and the API, so every surface answers in the same shape.
    """
    prediction, proba = outputs(frame, classes is not None)
    columns: dict[str, Any] = {"prediction": prediction}
    if classes is not None:
        for i, label in enumerate(classes):
            columns[f"proba_{label}"] = proba[:, i]
    return pd.DataFrame(columns)


def prediction_records(
    outputs: Any, classes: list[Any] | None, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of :func:`prediction_frame` as JSON-ready dicts, built without a DataFrame (the API's answer)."""
    prediction, proba = outputs(rows, classes is not None)
    labels = prediction.tolist()
    if proba is None:
        return [{"prediction": label} for label in labels]
    names = [f"proba_{c}" for c in classes]
    return [{"prediction": label, **dict(zip(names, row))} for label, row in zip(labels, proba.tolist())]


def with_predictions(frame: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The input rows with the prediction columns appended, and the input columns they replaced.

    An input that already has a ``prediction`` (or ``proba_<class>``) column, e.g. from an earlier
    run, gets the new values in its place: never two columns of the same name.
    """
    table = table.set_axis(frame.index)
    clash = [c for c in table.columns if c in frame.columns]
    return pd.concat([frame.drop(columns=clash), table], axis=1), clash
