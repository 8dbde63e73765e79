"""A loaded model that predicts on a DataFrame: stored features, in stored order, scaled, then the model."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline

from models.errors import ValidationError


def feature_matrix(frame: pd.DataFrame | dict | list, features: list[str]) -> np.ndarray:
    """``frame[features]`` as a float array; every missing or non-numeric column is named in the error."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing_columns(frame, features)
    sub = frame[features]
    try:
        values = sub.to_numpy(dtype=float)
    except (TypeError, ValueError):
        bad = [c for c in features if not pd.api.types.is_numeric_dtype(sub[c])
               and pd.to_numeric(sub[c], errors="coerce").isna().any()]
        raise ValidationError(f"non-numeric values in feature columns: {', '.join(bad) or 'unknown'}",
                              field=bad[0] if bad else None) from None
    if not np.isfinite(values).all():
        bad = ~np.isfinite(values)
        parts = []
        for j in np.flatnonzero(bad.any(axis=0)):
            rows = np.flatnonzero(bad[:, j])
            shown = ", ".join(str(int(r)) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
            parts.append(f"{features[j]} (row{'s' if len(rows) > 1 else ''} {shown})")
        raise ValidationError(f"missing or infinite feature values: {'; '.join(parts)} (rows counted from 0)",
                              field=features[int(np.flatnonzero(bad.any(axis=0))[0])])
    return values


def missing_columns(frame: pd.DataFrame | dict | list, features: list[str]) -> None:
    """ValidationError naming every feature column ``frame`` lacks (before any model runs)."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing = [f for f in features if f not in frame.columns]
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

    @property
    def classes(self) -> list[Any] | None:
        return getattr(self.model, "classes_", None) if self.task == "classification" else None

    def transform(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        return self.scaler.transform(feature_matrix(frame, self.features))

    def predict(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        return self.model.predict(self.transform(frame))

    def predict_proba(self, frame: pd.DataFrame | dict | list) -> np.ndarray:
        if self.task != "classification":
            raise ValidationError("predict_proba applies to classifiers only", field="task")
        return self.model.predict_proba(self.transform(frame))

    def predict_table(self, frame: pd.DataFrame | dict | list) -> pd.DataFrame:
        return prediction_frame(self.predict, self.predict_proba, self.classes, frame)

    def to_pipeline(self) -> Pipeline:
        """A plain scikit-learn Pipeline (select features -> scaler -> model) for deployment."""
        select = ColumnTransformer([("features", "passthrough", list(self.features))], remainder="drop",
                                   verbose_feature_names_out=False)
        select.fit(pd.DataFrame([np.zeros(len(self.features))], columns=self.features))
        return Pipeline([("select", select), ("scaler", self.scaler), ("model", self.model)])


def prediction_frame(predict: Any, predict_proba: Any, classes: list[Any] | None,
                     frame: pd.DataFrame | dict | list) -> pd.DataFrame:
    """Predictions as a table: ``prediction`` plus ``proba_<class>`` columns for classifiers.

    Shared by single models and ensembles, the CLI and the API, so every
    surface answers in the same shape.
    """
    out = pd.DataFrame({"prediction": predict(frame)})
    if classes is not None:
        proba = predict_proba(frame)
        for i, label in enumerate(classes):
            out[f"proba_{label}"] = proba[:, i]
    return out


def with_predictions(frame: pd.DataFrame, table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The input rows with the prediction columns appended, and the input columns they replaced.

    An input that already has a ``prediction`` (or ``proba_<class>``) column, e.g. from an earlier
    run, gets the new values in its place: never two columns of the same name.
    """
    table = table.set_axis(frame.index)
    clash = [c for c in table.columns if c in frame.columns]
    return pd.concat([frame.drop(columns=clash), table], axis=1), clash
