"""Sweeps: one config per combination of hyperparameter values (CLI, API, web form), all or nothing."""

from __future__ import annotations

import html
import json

import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.errors import ConflictError, ValidationError
from models.store.configs import ConfigStore
from models.training.sweep import create_sweep, parse_grid, sweep_name
from tests.helpers import cls_config
from web.testing import csrf_token


@pytest.fixture
def base(database, games_csv):
    return ConfigStore(database).create(
        cls_config(
            "rf", games_csv, "random_forest", hyperparameters={"n_estimators": 10, "max_depth": 3}, tags=["team"]
        )
    )


def run(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


def names(database):
    return sorted(d["name"] for d in database.configs.find({}, {"name": 1}))


def test_parse_grid_and_names():
    assert parse_grid(["max_depth=4,8", "criterion=gini,entropy", "bootstrap=true,false", "C=0.5"]) == {
        "max_depth": [4, 8],
        "criterion": ["gini", "entropy"],
        "bootstrap": [True, False],
        "C": [0.5],
    }
    assert sweep_name("rf", {"max_depth": 4, "n_estimators": 100}) == "rf__max_depth-4__n_estimators-100"
    assert sweep_name("rf", {"max_features": None}) == "rf__max_features-null"
    long = sweep_name("a" * 90, {"max_depth": 4, "n_estimators": 100})
    assert len(long) <= 100 and long.startswith("a" * 80 + "__sweep-")
    for bad, message in [
        (["max_depth"], "must look like name=value1,value2"),
        (["=4"], "must look like"),
        (["a=1", "a=2"], "more than once"),
        (["a=1,1"], "repeats a value"),
    ]:
        with pytest.raises(ValidationError, match=message):
            parse_grid(bad)


def test_sweep_creates_one_config_per_combination(database, base):
    created = create_sweep(database, "rf", {"max_depth": [4, 8, 16], "n_estimators": [20, 30]})
    assert len(created) == 6
    doc = ConfigStore(database).get("rf__max_depth-8__n_estimators-30")
    assert doc["hyperparameters"] == {"n_estimators": 30, "max_depth": 8}
    for key in ("task", "target", "features", "training_csv", "cv_folds", "random_state", "test_size", "scaler"):
        assert doc[key] == base[key]
    assert doc["tags"] == ["team", "sweep:rf"] and doc["status"] == "new" and "run_id" not in doc
    with pytest.raises(ConflictError, match="already exist; nothing was created"):
        create_sweep(database, "rf", {"max_depth": [5, 4], "n_estimators": [20]})
    assert len(names(database)) == 7


def test_bad_combination_refuses_the_whole_sweep_naming_the_parameter(settings, database, base):
    result = run(settings, "configs", "sweep", "rf", "--grid", "max_depth=4,-2", "--grid", "n_estimators=10,20")
    assert result.exit_code == 2, result.output
    assert "max_depth=-2" in result.stderr and "max_depth" in result.stderr and "nothing created" in result.stderr
    assert "Traceback" not in result.output
    result = run(settings, "configs", "sweep", "rf", "--grid", "colour=red,blue")
    assert result.exit_code == 2 and "unknown hyperparameter 'colour'" in result.stderr
    result = run(settings, "configs", "sweep", "nope", "--grid", "max_depth=4")
    assert result.exit_code == 2 and "nope" in result.stderr
    assert names(database) == ["rf"]


def test_cli_sweep_and_train_in_parallel_jobs(settings, database, base):
    result = run(
        settings,
        "configs",
        "sweep",
        "rf",
        "--grid",
        "max_depth=2,4",
        "--grid",
        "n_estimators=5",
        "--train",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["name"] for r in out] == ["rf__max_depth-2__n_estimators-5", "rf__max_depth-4__n_estimators-5"]
    assert all(r["status"] == "succeeded" and r["cv"]["n_splits"] == 3 for r in out)
    for r in out:
        doc = ConfigStore(database).get(r["name"])
        assert doc["status"] == "trained" and doc["run_id"]
    assert database.jobs.count_documents({"kind": "train"}) == 2
    # the trained sweep is a library for a suggestion
    result = run(settings, "ensemble", "suggest", "from_sweep", "--all-compatible", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["selection"]["candidates"]) == 2


def test_api_sweep(api, database, base):
    assert api("POST", "/api/configs/rf/sweep", {"grid": {"max_depth": [3]}}, auth=False).status_code == 401
    response = api("POST", "/api/configs/rf/sweep", {"grid": {"max_depth": [3, 5]}})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["count"] == 2 and response.get_json()["jobs"] == []
    response = api("POST", "/api/configs/rf/sweep", {"grid": ["max_depth=6,0"]})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert "max_depth=0" in error["message"] and error["field"] == "grid.max_depth"
    assert len(names(database)) == 3


def test_web_sweep_form(page, database, base):
    detail = html.unescape(page.get("/configs/rf").get_data(as_text=True))
    assert 'id="sweep-form"' in detail
    response = page.post("/configs/rf/sweep", data={"csrf_token": csrf_token(page), "grid": "max_depth=3,5\n"})
    assert response.status_code == 302 and "tag=sweep" in response.headers["Location"]
    listing = html.unescape(page.get(response.headers["Location"]).get_data(as_text=True))
    assert "rf__max_depth-3" in listing and "rf__max_depth-5" in listing
    response = page.post(
        "/configs/rf/sweep", data={"csrf_token": csrf_token(page), "grid": "max_depth=7,-1"}, follow_redirects=True
    )
    assert "No sweep was created" in html.unescape(response.get_data(as_text=True))
    assert "max_depth=-1" in html.unescape(response.get_data(as_text=True))
    assert len(names(database)) == 3
