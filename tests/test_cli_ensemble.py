import json

import pandas as pd
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, create_then_change_csv, reg_config


def run(settings, *args, input=None):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False, input=input)


def setup_configs(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv))
    store.create(
        cls_config(
            "rf", games_csv, model_type="random_forest", hyperparameters={"n_estimators": 10, "max_depth": 4}
        )
    )
    train_config(database, "lr")  # rf is never trained: the CLI retrains it


def test_create_json_show_list_predict_delete(settings, database, games_csv, tmp_path):
    setup_configs(database, games_csv)
    result = run(settings, "ensemble", "create", "e", "--base", "lr", "--base", "rf", "--meta", "ridge", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert [(b["name"], b["source"], b["reason"]) for b in record["base_models"]] == [
        ("lr", "artifacts", None),
        ("rf", "trained", "field_missing"),  # never trained before: a first training, not a retraining
    ]
    assert record["trained"] == ["rf"] and record["retrained"] == []
    assert all(b["seconds"] > 0 for b in record["base_models"]) and record["seconds"] > 0
    assert record["meta_model"] == "ridge" and len(record["base_run_ids"]) == 2
    assert "rf: trained (no artifacts yet)" in result.stderr  # progress per base model on stderr
    assert "retrained" not in result.stderr
    # said beforehand: which base model is trained first, and why
    assert result.stderr.startswith(
        "will train first: rf (not trained yet): no estimate (no past random_forest runs to go by)"
    )

    result = run(
        settings,
        "ensemble",
        "create",
        "e2",
        "--base",
        "lr",
        "--base",
        "rf",
        "--passthrough",
        "--stack-method",
        "predict",
    )
    assert result.exit_code == 0, result.output
    assert "cache" in result.stdout and "source" in result.stdout and "retrained: none" in result.stdout
    # no --meta-model: classification bases get scikit-learn's StackingClassifier default, and it is said
    assert "meta-model: logistic_regression (default for classification, as scikit-learn's " in result.stderr
    assert "(logistic_regression, run" in result.stdout

    listed = json.loads(run(settings, "ensemble", "list", "--json").stdout)
    assert [d["name"] for d in listed] == ["e", "e2"]
    shown = run(settings, "ensemble", "show", "e2")
    assert shown.exit_code == 0 and "passthrough True" in shown.stdout and "stack method predict" in shown.stdout

    rows = tmp_path / "rows.csv"
    pd.read_csv(games_csv).head(15).to_csv(rows, index=False)
    out = tmp_path / "pred.csv"
    result = run(settings, "ensemble", "predict", "e2", "--csv", str(rows), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["rows"] == 15 and set(payload["predictions"][0]) == {"prediction", "proba_0", "proba_1"}
    assert len(pd.read_csv(out)) == 15 and "prediction" in pd.read_csv(out).columns

    assert run(settings, "ensemble", "delete", "e", input="n\n").exit_code == 1  # asks first
    assert run(settings, "ensemble", "delete", "e", "--yes").exit_code == 0
    assert [d["name"] for d in json.loads(run(settings, "ensemble", "list", "--json").stdout)] == ["e2"]


def test_exit_codes_for_bad_input_and_failures(settings, database, games_csv, tmp_path):
    setup_configs(database, games_csv)
    ConfigStore(database).create(reg_config("reg", games_csv))
    train_config(database, "reg")
    result = run(settings, "ensemble", "create", "x", "--base", "lr", "--base", "nope")
    assert result.exit_code == 2 and "no config named 'nope'" in result.stderr
    result = run(settings, "ensemble", "create", "x", "--base", "lr", "--base", "reg")
    assert result.exit_code == 2 and "task differs" in result.stderr and "target differs" in result.stderr
    result = run(settings, "ensemble", "show", "nothing")
    assert result.exit_code == 2 and "no ensemble named 'nothing'" in result.stderr
    create_then_change_csv(ConfigStore(database), cls_config("gone", tmp_path / "missing.csv"))
    result = run(settings, "ensemble", "create", "x", "--base", "lr", "--base", "gone")
    # the missing CSV makes 'gone' unusable: compatibility cannot tell, loading fails -> operation failed
    assert result.exit_code == 1, result.output
    assert "config 'gone' cannot be loaded or retrained" in result.stderr and "missing.csv" in result.stderr
    assert database.ensembles.count_documents({}) == 0
    result = run(settings, "ensemble", "predict", "x", "--csv", str(tmp_path / "none.csv"))
    assert result.exit_code == 2


def test_regression_bases_without_meta_model_get_ridge_cv(settings, database, games_csv):
    """Issue 25: the default was the classifier's (exit 2 over regression bases); now the task's."""
    store = ConfigStore(database)
    store.create(reg_config("r1", games_csv))
    store.create(reg_config("r2", games_csv, model_type="linear_regression"))
    train_config(database, "r1")
    result = run(settings, "ensemble", "create", "reg", "--base", "r1", "--base", "r2", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["meta_model"] == "ridge_cv" and record["task"] == "regression"
    note = "ridge_cv (default for regression, as scikit-learn's StackingRegressor: RidgeCV)"
    assert record["meta_model_default"] == note and f"meta-model: {note}" in result.stderr
    # r1 was trained before the ensemble, r2 never: r2's training is its first
    assert [(b["name"], b["source"]) for b in record["base_models"]][1] == ("r2", "trained")
    assert "r2: trained (no artifacts yet)" in result.stderr and record["retrained"] == []
    from models.ensembles.build import load_ensemble

    assert type(load_ensemble(database, "reg").meta_model).__name__ == "RidgeCV"


def test_unknown_meta_model_names_the_option_and_the_choices(settings, database, games_csv):
    setup_configs(database, games_csv)
    result = run(settings, "ensemble", "create", "x", "--base", "lr", "--base", "rf", "--meta-model", "magic")
    assert result.exit_code == 2 and "--meta-model" in result.stderr and "'magic' is not one of" in result.stderr
    assert "ridge_cv" in result.stderr and "Traceback" not in result.output
    assert database.ensembles.count_documents({}) == 0 and database.runs.count_documents({}) == 1  # rf untouched
    result = run(settings, "ensemble", "create", "x", "--base", "lr", "--base", "rf", "--meta-model", "ridge_cv")
    assert result.exit_code == 2 and "meta_model 'ridge_cv' is not available for classification" in result.stderr


def test_cli_meta_model_names_are_the_core_s():
    from cli.commands.ensemble import META_MODEL_NAMES, STACK_METHOD_NAMES
    from models.ensembles.stacking import STACK_METHODS, meta_model_names

    assert STACK_METHOD_NAMES == STACK_METHODS

    assert list(META_MODEL_NAMES) == meta_model_names()
