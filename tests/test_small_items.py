"""The smaller rough edges of the first day: registry filters name unknown metrics, 0 and 1 base models get
the same answer, the meta-model list fits the task, the import conflict names --rename, the admin password
can be reset, configs list shows a metric, bad training data exits 2, gc keeps .gitkeep, no numpy reprs."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.ensembles.compat import check_request
from models.errors import ValidationError
from models.registry.query import search
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, reg_config
from web import create_app
from web.services import get_state
from web.testing import login


def run(settings, *args, input=None):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False, input=input)


def test_unknown_metric_in_a_filter_names_the_valid_ones(database, settings):
    with pytest.raises(ValidationError) as info:
        search(database, min_metrics={"roc": 0.6})
    assert "unknown metric 'roc'; did you mean 'roc_auc'?" in info.value.message
    assert (
        "valid metrics: accuracy, precision, recall, f1, log_loss, brier, roc_auc, mse, rmse, mae, r2"
        in info.value.message
    )
    result = run(settings, "models", "list", "--min", "auc=0.6")
    assert result.exit_code == 2 and "unknown metric 'auc'" in result.stderr


@pytest.mark.parametrize("bases", [[], ["a"]])
def test_none_and_one_base_model_get_the_same_message(bases):
    with pytest.raises(ValidationError) as info:
        check_request("e", bases, "logistic_regression", False, "auto")
    assert info.value.errors == [{"field": "base_models", "message": "an ensemble needs at least two base models"}]


def test_cli_with_no_base_says_the_same(settings, database):
    result = run(settings, "ensemble", "create", "e")
    assert result.exit_code == 2 and "an ensemble needs at least two base models" in result.stderr


def test_meta_model_list_fits_the_task(page, database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(cls_config("b", games_csv, "naive_bayes"))
    train_config(database, "a")
    train_config(database, "b")
    form = page.get("/ensembles/new").get_data(as_text=True)
    select = re.search(r'<select id="meta_model".*?</select>', form, re.S).group(0)
    assert 'data-task="classification"' in select and 'data-task="regression"' not in select
    assert "linear_regression" not in select and "logistic_regression" in select


def test_import_conflict_names_the_rename_flag(settings, database, games_csv, tmp_path):
    ConfigStore(database).create(cls_config("a", games_csv))
    train_config(database, "a")
    assert run(settings, "models", "export", "a", "--out", str(tmp_path / "a.tar.gz")).exit_code == 0
    result = run(settings, "models", "import", str(tmp_path / "a.tar.gz"))
    assert (
        result.exit_code == 2 and "import again with --rename" in result.stderr and "--overwrite" in result.stderr
    )
    assert database.runs.count_documents({}) == 1


def test_admin_password_reset(settings, database):
    app = create_app(settings, database)  # generated password, shown once
    first = get_state(app).credentials.pop_generated()["admin_password"]
    result = run(settings, "web", "reset-password")
    assert result.exit_code == 0, result.output
    new = result.stdout.strip()
    assert len(new) >= 12 and new != first and "shown only this once" in result.stderr
    client = app.test_client()  # the running app takes the new password without a restart
    assert login(client, first).status_code != 302
    assert login(client, new).status_code == 302
    result = run(settings, "web", "reset-password", "--password", input="short\nshort\n")
    assert result.exit_code == 2 and "at least 8 characters" in result.stderr
    result = run(settings.with_(admin_password="from-env"), "web", "reset-password")
    assert result.exit_code == 2 and "ADMIN_PASSWORD is set in the environment" in result.stderr


def test_configs_list_has_a_metric_column(settings, database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(reg_config("r", games_csv))
    train_config(database, "a")
    result = run(settings, "configs", "list")
    assert result.exit_code == 0
    header = next(line for line in result.stdout.splitlines() if "name" in line)
    assert "metric" in header
    row = next(line for line in result.stdout.splitlines() if " a " in line or line.startswith("│ a"))
    assert re.search(r"roc_auc 0\.\d{4}", row)


def test_bad_training_data_exits_2(settings, database, games_csv, tmp_path):
    from tests.helpers import create_then_change_csv

    create_then_change_csv(ConfigStore(database), cls_config("bad", tmp_path / "bad.csv"), "home_win\n1\n")
    result = run(settings, "train", "bad")
    assert result.exit_code == 2 and "lacks columns" in result.stderr


def test_gc_keeps_gitkeep(settings, database, tmp_path):
    settings = settings.with_(artifact_dir=tmp_path / "models")
    settings.artifact_dir.mkdir()
    (settings.artifact_dir / ".gitkeep").write_text("")
    (settings.artifact_dir / "20200101_000000_deadbeef_model.pkl").write_bytes(b"orphan")
    result = run(settings, "artifacts", "gc", "--min-age", "0", "--json")
    assert result.exit_code == 0, result.output
    assert (settings.artifact_dir / ".gitkeep").exists()
    assert not (settings.artifact_dir / "20200101_000000_deadbeef_model.pkl").exists()
    assert ".gitkeep" not in result.stdout


def test_legacy_document_with_missing_files_is_file_missing(settings, database, games_csv):
    from models.artifacts.legacy import LEGACY_REASON
    from models.artifacts.loading import load_model
    from models.errors import ArtifactError

    ConfigStore(database).create(cls_config("t", games_csv))
    train_config(database, "t")
    doc = ConfigStore(database).get("t")
    legacy = {k: v for k, v in doc.items() if k not in ("checksums", "artifacts")}
    with pytest.raises(ArtifactError) as info:  # files there, no checksums: legacy, not adopted
        load_model(settings, legacy, use_cache=False)
    assert info.value.reason == LEGACY_REASON  # issue 17: the reason says so, in words
    gone = {
        **legacy,
        "model_artifact_path": "20200101_000000_deadbeef_model.pkl",
        "scaler_artifact_path": "20200101_000000_deadbeef_scaler.pkl",
        "features_path": "20200101_000000_deadbeef_features.json",
    }
    with pytest.raises(ArtifactError) as info:
        load_model(settings, gone, use_cache=False)
    assert info.value.reason == "file_missing" and "is missing" in info.value.message


def test_blanks_in_one_config_s_features_do_not_split_the_library(database, games_csv, tmp_path):
    import numpy as np
    import pandas as pd

    from models.ensembles.build import create_ensemble

    frame = pd.read_csv(games_csv)
    frame.loc[[4, 9], "home_elo"] = np.nan  # imputed, not dropped: both configs train on the same rows
    path = tmp_path / "holes.csv"
    frame.to_csv(path, index=False)
    store = ConfigStore(database)
    store.create(cls_config("with_elo", path, features=["home_elo", "away_elo"]))
    store.create(cls_config("no_elo", path, features=["home_rest_days", "away_rest_days"]))
    for n in ("with_elo", "no_elo"):
        train_config(database, n)
    assert store.get("with_elo")["data_fingerprint"] == store.get("no_elo")["data_fingerprint"]
    record = create_ensemble(database, "e", ["with_elo", "no_elo"])
    assert record["n_train"] == round(len(frame) * 0.8) and record["retrained"] == []


def test_no_numpy_reprs_in_data_messages(database, games_csv, tmp_path):
    import pandas as pd

    from models.errors import DataError

    frame = pd.read_csv(games_csv)
    frame["one"] = 1
    frame["rare"] = 0
    frame.loc[:1, "rare"] = 1  # class 1 has 2 rows: too few for 3 folds
    frame.to_csv(tmp_path / "c.csv", index=False)
    store = ConfigStore(database)
    store.create(cls_config("single", tmp_path / "c.csv", target="one"))
    store.create(cls_config("rare", tmp_path / "c.csv", target="rare"))
    with pytest.raises(DataError) as info:
        train_config(database, "single")
    assert "has a single class (1)" in info.value.message and "np." not in info.value.message
    with pytest.raises(DataError) as info:
        train_config(database, "rare")
    assert "class 1 of target 'rare' has only 2 rows" in info.value.message and "np." not in info.value.message


def test_unstorable_passthrough_value_is_a_validation_error(database, games_csv):
    doc = {**cls_config("x", games_csv), "run_id": {1, 2}}
    with pytest.raises(ValidationError) as info:
        ConfigStore(database).create(doc)
    assert info.value.field == "run_id" and "cannot be stored in MongoDB" in info.value.message
    assert database.configs.count_documents({}) == 0


def test_meta_model_preselected_per_task(page, database, games_csv):
    """Issue 25: regression bases got the first list item (gradient_boosting); now each task's default
    (scikit-learn's StackingClassifier / StackingRegressor: logistic regression / RidgeCV) is preselected."""
    store = ConfigStore(database)
    for name, model_type in (("r1", "ridge"), ("r2", "linear_regression")):
        store.create(reg_config(name, games_csv, model_type=model_type))
        train_config(database, name)

    def selected(html):
        select = re.search(r'<select id="meta_model".*?</select>', html, re.S).group(0)
        return re.findall(r'<option value="([^"]+)"[^>]*\bselected\b', select), select

    chosen, select = selected(page.get("/ensembles/new").get_data(as_text=True))
    assert chosen == ["ridge_cv"] and 'data-task="classification"' not in select
    assert "default for regression, as scikit-learn&#39;s StackingRegressor" in select
    store.create(cls_config("c1", games_csv))
    store.create(cls_config("c2", games_csv, "naive_bayes"))
    train_config(database, "c1")
    train_config(database, "c2")
    chosen, select = selected(page.get("/ensembles/new?first=c1").get_data(as_text=True))
    assert chosen == ["logistic_regression"]
    chosen, _ = selected(page.get("/ensembles/new?first=r1").get_data(as_text=True))
    assert chosen == ["ridge_cv"]
    # both tasks offered: one selection, each group marks its own default for the script to switch to
    chosen, select = selected(page.get("/ensembles/new").get_data(as_text=True))
    assert chosen == ["logistic_regression"] and select.count("data-default") == 2


def test_run_versions_name_xgboost_and_lightgbm_without_importing_them():
    """Every run and ensemble records the library versions; reading XGBoost's and LightGBM's must not import
    them (50 ms of every ensemble creation), and must give what the modules say."""
    import subprocess
    import sys

    probe = (
        "import sys, json; from models.training.train import environment_versions; v = environment_versions(); "
        "print(json.dumps({'v': v, 'imported': [m for m in ('xgboost', 'lightgbm') if m in sys.modules]}))"
    )
    from models.settings import PROJECT_ROOT

    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    import json

    import lightgbm
    import xgboost

    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["imported"] == []
    assert out["v"]["xgboost"] == xgboost.__version__ and out["v"]["lightgbm"] == lightgbm.__version__
