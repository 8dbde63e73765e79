"""An ensemble leaves the service as one file that plain scikit-learn loads: `models deploy-export ENSEMBLE`
writes a fitted StackingClassifier/StackingRegressor or VotingClassifier/VotingRegressor, and a fresh
virtualenv with only scikit-learn, numpy, pandas and joblib predicts exactly what the service predicts."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.ensembles.build import create_ensemble, load_ensemble
from models.ensembles.selection import WeightedAverage
from models.errors import ValidationError
from models.registry import deploy_export
from models.registry.ensemble_export import to_sklearn
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import FEATS, cls_config, reg_config


@pytest.fixture
def ensembles(database, games_csv):
    store = ConfigStore(database)
    for doc in (
        cls_config("c_lr", games_csv),
        cls_config("c_nb", games_csv, "naive_bayes"),
        reg_config("r_ridge", games_csv),
        reg_config("r_knn", games_csv, "knn"),
    ):
        store.create(doc)
        train_config(database, doc["name"])
    create_ensemble(database, "stack_cls", ["c_lr", "c_nb"], "logistic_regression")
    create_ensemble(database, "stack_reg", ["r_ridge", "r_knn"], "ridge")
    create_ensemble(database, "stack_pass", ["c_lr", "c_nb"], "logistic_regression", passthrough=True)
    return ["stack_cls", "stack_reg"]


def _fresh_venv(root: Path) -> Path:
    """A virtualenv holding only scikit-learn, numpy, pandas and joblib (this project's versions)."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    pins = [
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"joblib=={joblib.__version__}",
    ]
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True, timeout=600)
    return python


def test_exported_ensembles_predict_what_the_service_predicts_in_plain_sklearn(
    settings, database, ensembles, games_csv, tmp_path
):
    rows = pd.read_csv(games_csv, nrows=200)
    rows_csv = tmp_path / "rows.csv"
    rows.to_csv(rows_csv, index=False)
    expected = {}
    for name in ensembles:
        exported = deploy_export(database, name, tmp_path / "out")
        assert exported["ensemble"] == name and Path(exported["pipeline_path"]).is_file()
        service = load_ensemble(database, name)
        table = service.predict_table(rows)
        expected[name] = (exported["pipeline_path"], table, service.task)
        assert exported["kind"] == (
            "StackingClassifier" if service.task == "classification" else "StackingRegressor"
        )
        assert [b["run_id"] for b in exported["base_models"]] == [b.run_id for b in service.bases]
    script = tmp_path / "predict.py"
    script.write_text(
        "import json, sys, joblib, pandas as pd\n"
        "rows = pd.read_csv(sys.argv[1])\n"
        "out = {}\n"
        "for path in sys.argv[2:]:\n"
        "    est = joblib.load(path)\n"
        "    got = {'prediction': est.predict(rows).tolist()}\n"
        "    if hasattr(est, 'predict_proba'):\n"
        "        got['proba'] = est.predict_proba(rows).tolist()\n"
        "    out[path] = got\n"
        "print(json.dumps(out))\n"
    )
    python = _fresh_venv(tmp_path / "plain-venv")
    # outside this project: its own directory, no PYTHONPATH, no project module importable
    done = subprocess.run(
        [str(python), "-I", str(script), str(rows_csv), *[p for p, _, _ in expected.values()]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    for name, (path, table, task) in expected.items():
        prediction = np.asarray(got[path]["prediction"])
        if task == "classification":
            assert (prediction == table["prediction"].to_numpy()).all(), name
            proba_cols = [c for c in table.columns if c.startswith("proba_")]
            np.testing.assert_allclose(
                np.asarray(got[path]["proba"]), table[proba_cols].to_numpy(), atol=1e-9, rtol=0
            )
        else:
            np.testing.assert_allclose(prediction, table["prediction"].to_numpy(), atol=1e-9, rtol=0)
    assert set(rows.columns) >= set(FEATS)


def test_cli_deploy_export_takes_an_ensemble_and_refuses_passthrough(settings, database, ensembles, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["models", "deploy-export", "stack_reg", "--out", str(tmp_path / "d"), "--json"],
        obj=AppContext(settings),
    )
    assert result.exit_code == 0, result.output
    meta = json.loads(result.stdout)
    assert meta["kind"] == "StackingRegressor" and Path(meta["metadata_path"]).is_file()
    assert Path(meta["pipeline_path"]).name == "stack_reg-ensemble-1.joblib"
    by_run = deploy_export(database, load_ensemble(database, "stack_cls").run_id, tmp_path / "r")
    assert by_run["ensemble"] == "stack_cls"
    # a second version gets a file of its own: exporting it keeps version 1's file as it was
    create_ensemble(database, "stack_reg", ["r_ridge", "r_knn"], "ridge", new_version=True)
    first = (tmp_path / "d" / "stack_reg-ensemble-1.joblib").read_bytes()
    second = deploy_export(database, "stack_reg@2", tmp_path / "d")
    assert Path(second["pipeline_path"]).name == "stack_reg-ensemble-2.joblib" and second["version"] == 2
    assert (tmp_path / "d" / "stack_reg-ensemble-1.joblib").read_bytes() == first
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "stack_reg-ensemble-1.joblib",
        "stack_reg-ensemble-1.json",
        "stack_reg-ensemble-2.joblib",
        "stack_reg-ensemble-2.json",
    ]
    with pytest.raises(ValidationError, match="passthrough"):
        deploy_export(database, "stack_pass", tmp_path / "p")
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


@pytest.mark.parametrize("name, weights", [("stack_cls", [0.25, 0.75]), ("stack_reg", [0.6, 0.4])])
def test_weighted_ensembles_become_voting_estimators_with_the_same_answers(
    database, ensembles, games_csv, name, weights
):
    stacked = load_ensemble(database, name)
    n_classes = 0 if stacked.classes is None else len(stacked.classes)
    weighted = dataclasses.replace(stacked, meta_model=WeightedAverage(weights, stacked.task, n_classes))
    estimator = to_sklearn(weighted)
    rows = pd.read_csv(games_csv, nrows=300)
    table = weighted.predict_table(rows)
    assert type(estimator).__name__ == (
        "VotingClassifier" if stacked.task == "classification" else "VotingRegressor"
    )
    if stacked.task == "classification":
        assert (estimator.predict(rows) == table["prediction"].to_numpy()).all()
        np.testing.assert_allclose(
            estimator.predict_proba(rows), table[[c for c in table if c.startswith("proba_")]], atol=1e-9, rtol=0
        )
    else:
        np.testing.assert_allclose(estimator.predict(rows), table["prediction"], atol=1e-9, rtol=0)
    with pytest.raises(ValidationError, match="weights that do not sum to 1"):
        to_sklearn(dataclasses.replace(stacked, meta_model=WeightedAverage([1.0, 1.0], stacked.task, n_classes)))
