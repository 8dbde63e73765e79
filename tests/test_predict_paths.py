"""One pass per prediction: the fast paths (rows straight to an array; predictions from the probabilities
of the models whose ``predict`` is their argmax; one base-model pass per ensemble prediction) give exactly
what the plain scikit-learn calls give, and bad values still get the DataFrame path's messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from models.artifacts.predictor import TrainedModel, feature_matrix, prediction_frame, prediction_records
from models.errors import ValidationError

FEATURES = ["a", "b", "c"]


def data(seed: int = 0, n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    y = np.where(X["a"] + 0.5 * X["b"] + rng.normal(scale=0.7, size=n) > 0, "win", "loss")
    return X, y


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=15, random_state=0),
        ExtraTreesClassifier(n_estimators=15, random_state=0),
        HistGradientBoostingClassifier(max_iter=20, random_state=0),
        DecisionTreeClassifier(max_depth=4, random_state=0),
        LogisticRegression(),
        KNeighborsClassifier(n_neighbors=7),
    ],
)
def test_one_pass_equals_predict_and_predict_proba(estimator):
    X, y = data()
    scaler = StandardScaler().fit(X.to_numpy())
    model = TrainedModel("r", "classification", FEATURES, scaler, estimator.fit(scaler.transform(X.to_numpy()), y))
    rows = data(seed=1, n=120)[0].to_dict(orient="records")
    Xs = scaler.transform(pd.DataFrame(rows)[FEATURES].to_numpy())
    prediction, proba = model.outputs(rows, with_proba=True)
    assert np.array_equal(prediction, estimator.predict(Xs))
    assert np.allclose(proba, estimator.predict_proba(Xs), rtol=0, atol=1e-12)  # row- vs column-major BLAS
    table = prediction_frame(model.outputs, model.classes, rows)
    records = prediction_records(model.outputs, model.classes, rows)
    assert records == [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in table.to_dict(orient="records")
    ]
    assert set(records[0]) == {"prediction", "proba_loss", "proba_win"}


def test_rows_and_frames_give_the_same_matrix_and_the_same_messages():
    X, _ = data(n=20)
    rows = X.to_dict(orient="records")
    assert np.array_equal(feature_matrix(rows, FEATURES), feature_matrix(X, FEATURES))
    assert feature_matrix([{"a": 1, "b": True, "c": "2.5"}], FEATURES).tolist() == [[1.0, 1.0, 2.5]]
    for bad, words in [
        ({"a": "x", "b": 1, "c": 2}, "non-numeric values in feature columns: a"),
        ({"a": None, "b": 1, "c": 2}, "missing or infinite feature values: a (row 0)"),
        ({"a": float("inf"), "b": 1, "c": 2}, "missing or infinite feature values: a (row 0)"),
        ({"a": 10**400, "b": 1, "c": 2}, "feature value too large in row 0, column a"),
        ({"b": 1, "c": 2}, "missing feature columns: a"),
    ]:
        with pytest.raises(ValidationError) as err:
            feature_matrix([bad], FEATURES)
        assert words in err.value.message


def test_regression_records_are_plain_numbers():
    X, _ = data(n=100)
    y = X["a"] * 2.0 + X["c"]
    scaler = StandardScaler().fit(X.to_numpy())
    est = RandomForestRegressor(n_estimators=5, random_state=0).fit(scaler.transform(X.to_numpy()), y)
    model = TrainedModel("r", "regression", FEATURES, scaler, est)
    records = model.predict_records(X.head(3).to_dict(orient="records"))
    assert [type(r["prediction"]) for r in records] == [float] * 3
    assert [r["prediction"] for r in records] == est.predict(scaler.transform(X.head(3).to_numpy())).tolist()
