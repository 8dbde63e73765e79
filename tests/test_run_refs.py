"""Run references (NAME, NAME@VERSION, NAME@production, NAME@latest, latest) work in every registry command
and route: one resolver (models.registry.query.resolve)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.errors import NotFoundError
from models.registry.query import resolve
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config


def run(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


@pytest.fixture
def runs(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(cls_config("b", games_csv, "naive_bayes"))
    a1 = train_config(database, "a")
    a2 = train_config(database, "a")
    b1 = train_config(database, "b")
    return {"a1": a1["run_id"], "a2": a2["run_id"], "b1": b1["run_id"]}


def test_resolver_forms(database, runs):
    assert resolve(database, "a")["run_id"] == runs["a2"]
    assert resolve(database, "a@1.0.0")["run_id"] == runs["a1"]
    assert resolve(database, "a@latest")["run_id"] == runs["a2"]
    assert resolve(database, "latest")["run_id"] == runs["b1"]
    with pytest.raises(NotFoundError, match="'a' has no run in production"):
        resolve(database, "a@production")
    with pytest.raises(NotFoundError, match="no run with id '20990101_000000_deadbeef'"):
        resolve(database, "20990101_000000_deadbeef")


def test_cli_promote_compare_history_by_name(settings, database, runs):
    result = run(settings, "models", "promote", "a", "--to", "production", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] == runs["a2"]
    result = run(settings, "models", "compare", "a@production", "b", "--json")
    assert result.exit_code == 0, result.output
    assert [r["run_id"] for r in json.loads(result.stdout)["runs"]] == [runs["a2"], runs["b1"]]
    result = run(settings, "models", "compare", "a@1.0.0", "a@latest", "--json")
    assert [r["run_id"] for r in json.loads(result.stdout)["runs"]] == [runs["a1"], runs["a2"]]
    result = run(settings, "models", "history", "a@production", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)[-1]["to"] == "production"
    result = run(settings, "models", "compare", "a", runs["a2"])
    assert (
        result.exit_code == 2
        and "run ids given more than once" in result.stderr
        and f"a ({runs['a2']})" in result.stderr
    )


def test_cli_unknown_refs_are_named_and_nothing_changes(settings, database, runs):
    result = run(settings, "models", "compare", "a", "ghost", "ghost2")
    assert result.exit_code == 2 and "no run with id or name 'ghost', 'ghost2'" in result.stderr
    result = run(settings, "models", "promote", "ghost", "--to", "production")
    assert result.exit_code == 2 and "no run with id or name 'ghost'" in result.stderr
    assert database.runs.count_documents({"status": "production"}) == 0


def test_cli_delete_by_reference(settings, database, runs):
    result = run(settings, "models", "delete", "a@1.0.0", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert database.runs.find_one({"run_id": runs["a1"]}) is None
    assert database.runs.find_one({"run_id": runs["a2"]}) is not None


def test_api_takes_references(api, database, runs):
    response = api("GET", "/api/registry/runs/a@1.0.0")
    assert response.status_code == 200 and response.get_json()["run_id"] == runs["a1"]
    response = api("GET", "/api/registry/compare?run_id=a@1.0.0,b")
    assert [r["run_id"] for r in response.get_json()["runs"]] == [runs["a1"], runs["b1"]]
    response = api("POST", "/api/registry/runs/b/status", {"status": "staging"})
    assert response.status_code == 200, response.get_json()
    assert database.runs.find_one({"run_id": runs["b1"]})["status"] == "staging"
