"""The registry narrows by a part of the name (any case), by target and by data set, in the core, the CLI,
the API and the page."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models import registry
from models.errors import ValidationError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, reg_config


@pytest.fixture
def runs(database, games_csv, tmp_path):
    other_csv = games_csv.parent / "other_games.csv"
    if not other_csv.exists():
        shutil.copy(games_csv, other_csv)
    store = ConfigStore(database)
    store.create(cls_config("Home_Win_LR", games_csv))
    store.create(cls_config("home_win_nb", other_csv, "naive_bayes"))
    store.create(reg_config("margin_ridge", games_csv))
    return {n: train_config(database, n)["run_id"] for n in ("Home_Win_LR", "home_win_nb", "margin_ridge")}


def names(result):
    return sorted(r["name"] for r in result["items"])


def test_core_filters(database, runs):
    assert names(registry.search(database, q="home_win")) == ["Home_Win_LR", "home_win_nb"]
    assert names(registry.search(database, q="WIN_l")) == ["Home_Win_LR"]
    assert names(registry.search(database, q="a.b")) == []  # a part of the name, not a pattern
    target = ConfigStore(database).get("margin_ridge")["target"]
    assert names(registry.search(database, target=target)) == ["margin_ridge"]
    assert names(registry.search(database, data="OTHER_games")) == ["home_win_nb"]
    assert registry.best(database, "accuracy", data="other_games.csv")["run_id"] == runs["home_win_nb"]
    with pytest.raises(ValidationError, match="q must be a non-empty string"):
        registry.search(database, q=" ")


def test_cli_api_and_page(settings, api, page, runs):
    result = CliRunner().invoke(
        cli, ["models", "list", "--contains", "HOME", "--data", "other", "--json"], obj=AppContext(settings)
    )
    assert result.exit_code == 0, result.output
    assert names(json.loads(result.stdout)) == ["home_win_nb"]
    answer = api("GET", "/api/registry/runs?q=home&target=home_win")
    assert answer.status_code == 200, answer.get_json()
    assert names(answer.get_json()) == ["Home_Win_LR", "home_win_nb"]
    html = page.get("/registry/?q=ridge").get_data(as_text=True)
    assert "margin_ridge" in html and "home_win_nb" not in html
    assert 'name="q" value="ridge"' in html


def test_metric_suggestion_ignores_case(database):
    with pytest.raises(ValidationError, match="unknown metric 'ROC_AUC'; did you mean 'roc_auc'"):
        registry.search(database, sort="ROC_AUC")
