"""Linear models' importance carries its sign; `models show` names the data set, the rows dropped and which
score is cross-validated and which held out."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models import registry
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, reg_config


def test_signed_coefficients_for_linear_models_only(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("lin", games_csv))
    store.create(reg_config("ridge", games_csv))
    store.create(cls_config("forest", games_csv, "random_forest", hyperparameters={"n_estimators": 10}))
    for name in ("lin", "ridge"):
        run = train_config(database, name)
        model = registry.load(database, run["run_id"]).model.model
        coef = np.atleast_2d(model.coef_)[0]
        features = run["definition"]["features"] if "definition" in run else store.get(name)["features"]
        by_feature = {f["feature"]: f for f in run["feature_importance"]}
        for i, feature in enumerate(features):
            assert by_feature[feature]["coefficient"] == float(coef[i])
            assert by_feature[feature]["importance"] == abs(float(coef[i]))
        assert any(f["coefficient"] < 0 for f in by_feature.values()) or all(c >= 0 for c in coef)
    forest = train_config(database, "forest")
    assert all("coefficient" not in f for f in forest["feature_importance"])


def test_models_show_labels_scores_and_rows(settings, database, games_csv):
    ConfigStore(database).create(cls_config("shown", games_csv))
    run = train_config(database, "shown")
    result = CliRunner().invoke(cli, ["models", "show", "shown"], obj=AppContext(settings))
    assert result.exit_code == 0, result.output
    out = result.stdout
    data = run["data"]
    assert f"{data['rows_read']} read, {data['rows_used']} used" in out
    assert "cv score (training rows)" in out and "held-out scores" in out
    assert f"accuracy {run['metrics']['accuracy']:.4f}" in out
    assert str(data["training_csv"]) in out


def test_config_page_labels_the_sign(database, page, games_csv):
    ConfigStore(database).create(cls_config("signed_page", games_csv))
    run = train_config(database, "signed_page")
    top = run["feature_importance"][0]
    html = page.get("/configs/signed_page").get_data(as_text=True)
    assert f"{top['feature']} ({'+' if top['coefficient'] >= 0 else '-'})" in html


def test_jobs_page_lists_cli_work_with_who_started_it(settings, database, page, games_csv):
    ConfigStore(database).create(cls_config("from_cli", games_csv))
    result = CliRunner().invoke(cli, ["train", "from_cli", "--json"], obj=AppContext(settings))
    assert result.exit_code == 0, result.output
    html = page.get("/jobs/").get_data(as_text=True)
    row = html.split('id="jobs-table"', 1)[1]
    assert "train:" in row and '<td class="small" data-col="requested-by">cli</td>' in row
