"""Suggested ensembles from the CLI, the stacking tool, the JSON API and the web form (test client)."""

from __future__ import annotations

import html
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from agents.tools.stacking_tool import StackingTool
from cli.context import AppContext
from cli.main import cli
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import FEATS, cls_config, reg_config, wait_job
from web.testing import csrf_token


@pytest.fixture
def trained(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv, hyperparameters={"C": 0.3}))
    store.create(
        cls_config("rf", games_csv, "random_forest", hyperparameters={"n_estimators": 15, "max_depth": 4})
    )
    store.create(cls_config("nb", games_csv, "naive_bayes"))
    store.create(reg_config("reg", games_csv))
    for name in ("lr", "rf", "nb", "reg"):
        train_config(database, name)
    return store


def run(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


def test_cli_suggest_table_json_and_predict(settings, database, trained, games_csv, tmp_path):
    result = run(settings, "ensemble", "suggest", "auto", "--from", "lr", "--all-compatible", "--size", "8")
    assert result.exit_code == 0, result.output
    assert "score by step" in result.stdout and "honest log_loss" in result.stdout
    assert "best single" in result.stdout and "weight" in result.stdout
    kept = database.ensembles.find_one({"name": "auto"})["selection"]["kept"]
    assert kept.startswith("kept: ") and " because " in kept and "honest log_loss" in kept
    assert result.stdout.splitlines()[0] == kept  # said first, in one line, as the API and the page say it
    result = run(
        settings,
        "ensemble",
        "suggest",
        "auto2",
        "--from",
        "lr",
        "--from",
        "rf",
        "--from",
        "nb",
        "--method",
        "both",
        "--metric",
        "brier",
        "--json",
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["selection"]["metric"] == "brier" and record["selection"]["method_requested"] == "both"
    assert set(record["selection"]["honest"]["by_method"]) == {"greedy", "stack"}
    rows = tmp_path / "rows.csv"
    pd.read_csv(games_csv).head(12).to_csv(rows, index=False)
    result = run(settings, "ensemble", "predict", "auto", "--csv", str(rows), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 12


def test_cli_suggest_refusals_exit_2_and_write_nothing(settings, database, trained):
    cases = [
        (["--from", "lr", "--from", "reg"], "task differs"),
        (["--from", "lr", "--from", "rf", "--metric", "rmse"], "metric 'rmse' cannot drive selection"),
        ([], "name the candidate configs"),
        (["--from", "ghost", "--from", "lr"], "no config named 'ghost'"),
    ]
    for extra, message in cases:
        result = run(settings, "ensemble", "suggest", "bad", *extra)
        assert result.exit_code == 2, result.output
        assert message in result.stderr and "Traceback" not in result.output
    assert database.ensembles.count_documents({}) == 0


def test_cli_suggest_again_needs_new_version_and_then_adds_one(settings, database, trained):
    first = run(settings, "ensemble", "suggest", "again", "--from", "lr", "--from", "rf", "--size", "4")
    assert first.exit_code == 0, first.output
    refused = run(settings, "ensemble", "suggest", "again", "--from", "lr", "--from", "nb", "--size", "4")
    assert refused.exit_code == 2 and "already exists" in refused.stderr and "--new-version" in refused.stderr
    assert database.ensembles.count_documents({"name": "again"}) == 1
    second = run(
        settings, "ensemble", "suggest", "again", "--from", "lr", "--from", "nb", "--size", "4", "--new-version"
    )
    assert second.exit_code == 0, second.output
    docs = list(database.ensembles.find({"name": "again"}).sort("version", 1))
    assert [d["version"] for d in docs] == [1, 2]
    assert "nb" in docs[1]["base_names"] and "nb" not in docs[0]["base_names"]
    stacked = run(
        settings,
        "ensemble",
        "suggest",
        "again",
        "--from",
        "lr",
        "--from",
        "rf",
        "--method",
        "stack",
        "--new-version",
        "--json",
    )
    assert stacked.exit_code == 0, stacked.output
    assert json.loads(stacked.stdout)["version"] == 3


def test_stacking_tool_suggest(settings, database, trained, games_csv):
    with StackingTool(settings, database) as tool:
        record = tool.suggest_ensemble("tool_auto", ["lr", "rf", "nb"], size=6, metric="accuracy")
        frame = pd.read_csv(games_csv).head(20)
        assert tool.predict("tool_auto", frame, proba=True).shape == (20, 2)
    assert record["kind"] == "weighted" and record["selection"]["greedy"]["best_step"] <= 6


def test_api_suggest_job_then_predict(api, database, trained, games_csv):
    assert (
        api("POST", "/api/ensembles/suggest", {"name": "x", "from": ["lr", "rf"]}, auth=False).status_code == 401
    )
    response = api(
        "POST", "/api/ensembles/suggest", {"name": "api_auto", "from": ["lr"], "all_compatible": True, "size": 5}
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    job = wait_job(api, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["kind"] == "weighted" and job["result"]["honest"]["metric"] == "log_loss"
    assert job["result"]["kept"] == database.ensembles.find_one({"name": "api_auto"})["selection"]["kept"]
    assert job["result"]["kept"].startswith("kept: ")
    doc = api("GET", "/api/ensembles/api_auto").get_json()
    assert doc["selection"]["greedy"]["steps"][0]["step"] == 1
    rows = pd.read_csv(games_csv).head(3)[FEATS].to_dict(orient="records")
    body = api("POST", "/api/predict/ensemble/api_auto", {"rows": rows}).get_json()
    assert body["count"] == 3 and set(body["predictions"][0]) == {"prediction", "proba_0", "proba_1"}


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        ({"name": "b", "from": ["lr", "reg"]}, 422, "task differs"),
        ({"name": "b", "from": ["lr", "rf"], "size": "many"}, 422, "size must be a whole number"),
        ({"name": "b", "from": ["lr", "rf"], "colour": 1}, 422, "colour"),
        ({"name": "b", "from": ["lr", "ghost"]}, 404, "ghost"),
        ({"name": "b!", "from": ["lr", "rf"]}, 422, "name must be"),
    ],
)
def test_api_suggest_refusals_queue_nothing(api, database, trained, body, status, fragment):
    response = api("POST", "/api/ensembles/suggest", body)
    assert response.status_code == status, response.get_data(as_text=True)
    assert fragment in response.get_json()["error"]["message"]
    assert database.jobs.count_documents({}) == 0 and database.ensembles.count_documents({}) == 0


def test_web_form_suggests_and_the_page_shows_weights_and_steps(page, api, database, trained):
    index = html.unescape(page.get("/ensembles/").get_data(as_text=True))
    assert 'id="suggest-ensemble"' in index
    form = html.unescape(page.get("/ensembles/suggest").get_data(as_text=True))
    assert 'value="lr"' in form and "lr, nb, rf" in form  # the classification group; reg alone is not offered
    response = page.post(
        "/ensembles/suggest",
        data={
            "csrf_token": csrf_token(page),
            "name": "web_auto",
            "group": "lr",
            "method": "greedy",
            "size": "6",
            "metric": "",
        },
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/ensembles/web_auto")
    job = database.jobs.find_one({"key": "ensemble:web_auto"})
    assert wait_job(api, str(job["_id"]))["status"] == "succeeded"
    detail = html.unescape(page.get("/ensembles/web_auto").get_data(as_text=True))
    assert 'id="selection-weights"' in detail and 'id="selection-steps"' in detail and "Honest log_loss" in detail
    assert database.ensembles.find_one({"name": "web_auto"})["selection"]["kept"] in detail
    bad = page.post(
        "/ensembles/suggest",
        data={"csrf_token": csrf_token(page), "name": "web_auto", "group": "lr", "method": "greedy", "size": "0"},
    )
    assert bad.status_code == 422 and "size must be a whole number" in html.unescape(bad.get_data(as_text=True))
    assert database.ensembles.count_documents({}) == 1
