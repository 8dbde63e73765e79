"""What a model reference serves: once a run is promoted, a retrain never changes what NAME or
NAME@production answers with, at every predict entry point, and every answer names its run."""

from __future__ import annotations

import json

import joblib
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models import registry
from models.errors import ConflictError, NotFoundError, ValidationError
from models.registry.serving import resolve_model
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import FEATS, cls_config


def run(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


@pytest.fixture
def promoted(database, games_csv):
    """Run A (1.0.0) promoted to production, then a retrain B (1.0.1) that is the config's current run."""
    ConfigStore(database).create(cls_config("served", games_csv))
    a = train_config(database, "served")
    registry.promote(database, a["run_id"], by="test")
    b = train_config(database, "served")
    assert ConfigStore(database).get("served")["run_id"] == b["run_id"] != a["run_id"]
    return {"A": a, "B": b}


def test_resolver_serves_production_by_default(database, promoted):
    a, b = promoted["A"]["run_id"], promoted["B"]["run_id"]
    assert resolve_model(database, "served").run_id == a
    assert resolve_model(database, "served").chosen_by == "production"
    assert resolve_model(database, "served@production").run_id == a
    assert resolve_model(database, "served@latest").run_id == b
    assert resolve_model(database, "served@1.0.1").run_id == b
    assert resolve_model(database, b).run_id == b
    registry.set_status(database, b, "staging", by="test")
    assert resolve_model(database, "served@staging").run_id == b
    with pytest.raises(NotFoundError, match="'served' has no version 9.9.9"):
        resolve_model(database, "served@9.9.9")
    with pytest.raises(NotFoundError, match="no model or run named 'nothing'"):
        resolve_model(database, "nothing")
    with pytest.raises(ValidationError, match="after '@' give production, staging, latest or a version"):
        resolve_model(database, "served@prod")


def test_without_production_the_latest_training_serves(database, games_csv):
    ConfigStore(database).create(cls_config("fresh", games_csv))
    with pytest.raises(ConflictError, match="'fresh' has not been trained yet"):
        resolve_model(database, "fresh")
    first = train_config(database, "fresh")
    served = resolve_model(database, "fresh")
    assert (served.run_id, served.chosen_by) == (first["run_id"], "current")
    with pytest.raises(NotFoundError, match="'fresh' has no run in production; promote one first"):
        resolve_model(database, "fresh@production")


def test_every_predict_entry_point_keeps_serving_the_promoted_run(
    settings, database, api, promoted, games_csv, tmp_path
):
    a, b = promoted["A"], promoted["B"]
    rows = pd.read_csv(games_csv, nrows=5)[FEATS]
    # the JSON API, by the default and by the alias, and a chosen version
    for ref, want in (("served", a), ("served@production", a), ("served@latest", b)):
        answer = api("POST", f"/api/predict/model/{ref}", {"rows": rows.to_dict(orient="records")})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert (body["run_id"], body["version"]) == (want["run_id"], want["version"])
    assert (
        api("POST", "/api/predict/model/served", {"rows": rows.to_dict(orient="records")}).get_json()["served"]
        == "production"
    )
    # the CLI
    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    for ref, want in (("served", a), ("served@production", a), ("served@1.0.1", b)):
        result = run(settings, "predict", ref, "--csv", str(csv), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["run_id"] == want["run_id"]
        assert f"run {want['run_id']} (version {want['version']}" in result.stderr
    # the hand-over file
    exported = registry.deploy_export(database, "served", tmp_path / "out")
    assert exported["run_id"] == a["run_id"]
    pipeline = joblib.load(exported["pipeline_path"])
    served = registry.load(database, a["run_id"]).model
    assert (pipeline.predict(rows) == served.predict_table(rows)["prediction"].to_numpy()).all()


def test_bad_references_are_refused_by_name(settings, api, promoted, tmp_path):
    answer = api("POST", "/api/predict/model/served@prod", {"rows": [{"x": 1}]})
    assert answer.status_code == 422
    assert "after '@' give production, staging, latest or a version" in answer.get_json()["error"]["message"]
    answer = api("POST", "/api/predict/model/ghost@production", {"rows": [{"x": 1}]})
    assert answer.status_code == 404
    assert "no trained model named 'ghost'" in answer.get_json()["error"]["message"]
    csv = tmp_path / "rows.csv"
    csv.write_text("a\n1\n")
    out = tmp_path / "never.csv"
    result = run(settings, "predict", "ghost", "--csv", str(csv), "--out", str(out))
    assert result.exit_code != 0 and "no model or run named 'ghost'" in result.stderr
    assert not out.exists()
