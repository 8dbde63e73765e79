"""XGBoost and LightGBM models leave the service too: ``models deploy-export`` and ``models export-mlflow``
write files that load where only the libraries are installed (this project not importable), with the same
predictions and probabilities as the service, and pin the boosting library in their requirements.

XGBoost's classifier is wrapped here for any labels (``models.boosting.XGBLabelClassifier``); the exports
turn it into XGBoost's own classifier inside a fitted scikit-learn ``VotingClassifier`` of one that gives the
labels back. An estimator that would still need this project's code is refused, nothing written.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import palmerpenguins
import pandas as pd
import pytest

from models import registry
from models.artifacts.loading import load_model
from models.ensembles.build import create_ensemble, load_ensemble
from models.errors import ValidationError
from models.registry.ensemble_export import Deployable, write_deployment
from models.registry.mlflow_export import export_mlflow
from models.store.configs import ConfigStore
from models.training.train import train_config

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "island", "sex"]


def pin(module: str) -> str:
    """The requirement line of the distribution that provides ``module`` here (``xgboost-cpu==3.2.0``...)."""
    (dist,) = importlib.metadata.packages_distributions()[module]
    return f"{dist}=={importlib.metadata.version(dist)}"


PREDICT = """
import importlib.util, json, sys
import joblib, pandas as pd
assert importlib.util.find_spec("models") is None, "this project must not be importable here"
rows = pd.read_csv(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    est = joblib.load(path)
    out[path] = {"prediction": est.predict(rows).tolist(), "proba": est.predict_proba(rows).tolist()}
print(json.dumps(out))
"""


@pytest.fixture
def boosted(database, tmp_path):
    csv = tmp_path / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(csv, index=False)
    store = ConfigStore(database)
    for name, model_type, params in (
        ("p_xgb", "xgboost", {"n_estimators": 20, "max_depth": 3}),
        ("p_lgbm", "lightgbm", {"n_estimators": 20, "num_leaves": 7}),
        ("p_lr", "logistic_regression", {}),
    ):
        store.create(
            {
                "name": name,
                "task": "classification",
                "model_type": model_type,
                "hyperparameters": params,
                "features": FEATURES,
                "target": "species",
                "training_csv": str(csv),
                "cv_folds": 3,
                "random_state": 5,
            }
        )
        train_config(database, name)
    create_ensemble(database, "p_stack", ["p_xgb", "p_lgbm", "p_lr"], "logistic_regression")
    return csv


def _outside(tmp_path: Path, rows_csv: Path, paths: list[str]) -> dict:
    """Predictions from a process in another folder that cannot import this project (``-I``: no PYTHONPATH)."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", PREDICT, str(rows_csv), *paths],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_boosted_models_and_their_ensemble_export_and_predict_the_same_outside(database, boosted, tmp_path):
    rows = pd.read_csv(boosted)  # every row, blanks included
    rows_csv = tmp_path / "rows.csv"
    rows.to_csv(rows_csv, index=False)
    expected = {}
    for ref, library in (("p_xgb", "xgboost"), ("p_lgbm", "lightgbm")):
        exported = registry.deploy_export(database, ref, tmp_path / "out")
        assert pin(library) in exported["requirements"]
        assert exported["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
        service = load_model(database.settings, ConfigStore(database).get(ref)).model
        expected[exported["pipeline_path"]] = service.predict_table(rows)
    stacked = registry.deploy_export(database, "p_stack", tmp_path / "out")
    assert stacked["kind"] == "StackingClassifier"
    assert {pin("xgboost"), pin("lightgbm"), pin("sklearn")} <= set(stacked["requirements"])
    expected[stacked["pipeline_path"]] = load_ensemble(database, "p_stack").predict_table(rows)

    got = _outside(tmp_path, rows_csv, list(expected))
    for path, table in expected.items():
        labels = np.asarray(got[path]["prediction"])
        assert labels.dtype.kind == "U" and (labels == table["prediction"].to_numpy()).all(), path
        proba = table[[c for c in table.columns if c.startswith("proba_")]].to_numpy()
        np.testing.assert_allclose(np.asarray(got[path]["proba"]), proba, atol=1e-9, rtol=0, err_msg=path)


def test_mlflow_export_of_xgboost_pins_it(database, boosted, tmp_path):
    out = tmp_path / "mlflow-xgb"
    result = export_mlflow(database, "p_xgb", out)
    assert pin("xgboost") in result["requirements"]
    assert pin("xgboost") in (out / "requirements.txt").read_text().splitlines()
    rows_csv = tmp_path / "rows.csv"
    pd.read_csv(boosted).head(40).to_csv(rows_csv, index=False)
    got = _outside(tmp_path, rows_csv, [str(out / "model.pkl")])  # the sklearn flavor's pickle, loaded plainly
    service = load_model(database.settings, ConfigStore(database).get("p_xgb")).model
    assert got[str(out / "model.pkl")]["prediction"] == service.predict(pd.read_csv(rows_csv)).tolist()


def test_an_estimator_that_still_needs_this_projects_code_is_refused_and_nothing_written(
    database, boosted, tmp_path
):
    raw = load_model(database.settings, ConfigStore(database).get("p_xgb")).model.model  # XGBLabelClassifier
    assert type(raw).__module__ == "models.boosting"
    built = Deployable(raw, {"name": "p_xgb"}, {}, {})
    with pytest.raises(ValidationError, match=r"models\.boosting.*outside this project's environment"):
        write_deployment(built, tmp_path / "deploy", "p_xgb-raw", var="pipe", label="raw")
    assert not (tmp_path / "deploy").exists() or list((tmp_path / "deploy").iterdir()) == []
