"""Ensembles have the lifecycle models have (issue #25): re-creating a name with new_version makes version
N+1, a version is promoted (one production version per name), history lists them all, and once a version
is in production a retrain and a new version never change what NAME or NAME@production serves, at every
entry point (CLI, API, web upload, stacking tool, deploy-export). Base models are pinned by reference."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from agents.tools.stacking_tool import StackingTool
from cli.context import AppContext
from cli.main import cli
from models import registry
from models.artifacts.cache import ModelCache
from models.artifacts.maintenance import collect_orphans, run_artifacts_info
from models.ensembles import versions
from models.ensembles.build import create_ensemble, load_ensemble
from models.errors import ConflictError, NotFoundError, ValidationError
from models.store.configs import ConfigStore
from models.store.ensembles import EnsembleStore
from models.training.train import train_config
from tests.helpers import FEATS, cls_config
from web.testing import csrf_token


def run(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


@pytest.fixture
def life(database, games_csv):
    """v1 over the first runs, promoted to production; then c_lr retrained and v2 built on the new run."""
    store = ConfigStore(database)
    for doc in (cls_config("c_lr", games_csv), cls_config("c_nb", games_csv, "naive_bayes")):
        store.create(doc)
    first = {n: train_config(database, n) for n in ("c_lr", "c_nb")}
    v1 = create_ensemble(database, "stk", ["c_lr", "c_nb"], "logistic_regression")
    versions.set_stage(database, "stk@1", "production", by="test")
    retrained = train_config(database, "c_lr")
    v2 = create_ensemble(database, "stk", ["c_lr", "c_nb"], "logistic_regression", new_version=True)
    return {"v1": v1, "v2": v2, "first": first, "retrained": retrained}


def _rows(games_csv, n=5):
    return pd.read_csv(games_csv, nrows=n)[FEATS]


def _artifact_files(settings):
    return sorted(p.name for p in settings.artifact_dir.rglob("*") if p.is_file())


def test_new_version_pins_the_base_runs_it_used(database, life):
    v1, v2, first, retrained = life["v1"], life["v2"], life["first"], life["retrained"]
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["base_run_ids"] == [first["c_lr"]["run_id"], first["c_nb"]["run_id"]]
    assert v2["base_run_ids"] == [retrained["run_id"], first["c_nb"]["run_id"]]
    assert v2["base_versions"] == [retrained["version"], first["c_nb"]["version"]]
    assert [b["run_id"] for b in v2["base_models"]] == v2["base_run_ids"]
    # without the flag the name is still refused, saying how to add a version; nothing is written
    with pytest.raises(ConflictError, match="already exists; to add a new version.*--new-version"):
        create_ensemble(database, "stk", ["c_lr", "c_nb"], "logistic_regression")
    assert [d["version"] for d in EnsembleStore(database).versions("stk")] == [1, 2]
    assert EnsembleStore(database).list()[0]["version"] == 1  # the listing shows what NAME serves


def test_name_and_production_keep_serving_v1_everywhere(settings, database, api, page, life, games_csv, tmp_path):
    v1, v2 = life["v1"], life["v2"]
    rows = _rows(games_csv)
    expected = {1: load_ensemble(database, "stk@1").predict_table(rows), 2: None}
    want = {
        "stk": (v1, "production"),
        "stk@production": (v1, "production"),
        "stk@latest": (v2, "latest"),
        "stk@2": (v2, "version"),
        "stk@1": (v1, "version"),
        v2["run_id"]: (v2, "run_id"),
    }
    # the JSON API
    for ref, (doc, served) in want.items():
        answer = api("POST", f"/api/predict/ensemble/{ref}", {"rows": rows.to_dict(orient="records")})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert (body["run_id"], body["version"], body["served"]) == (doc["run_id"], doc["version"], served), ref
        assert body["ensemble"] == "stk"
    body = api("POST", "/api/predict/ensemble/stk", {"rows": rows.to_dict(orient="records")}).get_json()
    assert np.allclose([p["prediction"] for p in body["predictions"]], expected[1]["prediction"])
    # the CLI
    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    for ref in ("stk", "stk@production", "stk@latest"):
        doc, served = want[ref]
        result = run(settings, "ensemble", "predict", ref, "--csv", str(csv), "--json")
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert (answer["run_id"], answer["version"], answer["served"]) == (doc["run_id"], doc["version"], served)
        assert f"stk: run {doc['run_id']} (version {doc['version']}" in result.stderr
    # the stacking tool
    tool = StackingTool(settings, database, cache=ModelCache())
    for ref in ("stk", "stk@production", "stk@latest"):
        doc, served = want[ref]
        answer = tool.predict_answer(ref, rows)
        assert (answer["run_id"], answer["version"], answer["served"]) == (doc["run_id"], doc["version"], served)
        assert tool.load_ensemble(ref).run_id == doc["run_id"]
    assert np.allclose(tool.predict("stk", rows), expected[1]["prediction"])
    # the web upload
    data = rows.to_csv(index=False).encode()
    for ref, doc in (("stk", v1), ("stk@latest", v2)):
        response = page.post(
            f"/ensembles/{ref}/predict",
            data={"csrf_token": csrf_token(page), "csv": (io.BytesIO(data), "rows.csv")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        assert response.headers["X-Ensemble-Run-Id"] == doc["run_id"]
        assert response.headers["X-Ensemble-Version"] == str(doc["version"])
    # the deployment export
    assert registry.deploy_export(database, "stk", tmp_path / "out")["run_id"] == v1["run_id"]
    assert registry.deploy_export(database, "stk@latest", tmp_path / "out2")["run_id"] == v2["run_id"]


def test_history_and_promote_through_cli_and_api(settings, database, api, page, life):
    v1, v2 = life["v1"], life["v2"]
    result = run(settings, "ensemble", "history", "stk", "--json")
    assert result.exit_code == 0, result.output
    hist = json.loads(result.stdout)
    assert [(v["version"], v["stage"]) for v in hist["versions"]] == [(1, "production"), (2, "none")]
    assert hist["serves"] == {"run_id": v1["run_id"], "version": 1, "served": "production"}
    lr = hist["versions"][1]["bases"][0]
    assert (lr["name"], lr["run_id"], lr["version"]) == ("c_lr", life["retrained"]["run_id"], "1.0.1")
    assert hist["versions"][0]["created_at"] and "accuracy" in hist["versions"][0]["metrics"]
    table = run(settings, "ensemble", "history", "stk")
    assert "c_lr@1.0.0" in table.stdout and "c_lr@1.0.1" in table.stdout
    # the page lists the versions with a control to move them
    detail = page.get("/ensembles/stk").get_data(as_text=True)
    assert 'id="versions-table"' in detail and "/ensembles/stk@2/promote" in detail
    # promote v2 in the CLI: v1 goes to staging (as models promote), one production version per name
    result = run(settings, "ensemble", "promote", "stk@2", "--to", "production", "--json")
    assert result.exit_code == 0, result.output
    moved = json.loads(result.stdout)
    assert (moved["version"], moved["from"], moved["to"]) == (2, "none", "production")
    assert moved["demoted"] == {"version": 1, "run_id": v1["run_id"], "from": "production", "to": "staging"}
    body = api("POST", "/api/predict/ensemble/stk", {"rows": [dict.fromkeys(FEATS, 1.0)]}).get_json()
    assert (body["run_id"], body["version"]) == (v2["run_id"], 2)
    # and back through the API, the other one archived
    answer = api("POST", "/api/ensembles/stk@1/promote", {"to": "production", "demote_to": "archived"})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["demoted"]["to"] == "archived"
    stages = {v["version"]: v["stage"] for v in api("GET", "/api/ensembles/stk/history").get_json()["versions"]}
    assert stages == {1: "production", 2: "archived"}
    assert database.ensembles.count_documents({"name": "stk", "stage": "production"}) == 1
    entries = EnsembleStore(database).find_version("stk", 1)["stage_history"]
    assert [(e["from"], e["to"]) for e in entries] == [
        (None, "none"),
        ("none", "production"),
        ("production", "staging"),
        ("staging", "production"),
    ]
    # a page click
    response = page.post("/ensembles/stk@2/promote", data={"csrf_token": csrf_token(page), "to": "staging"})
    assert response.status_code == 302
    assert EnsembleStore(database).find_version("stk", 2)["stage"] == "staging"


def test_gc_keeps_every_version_s_files(settings, database, life):
    v1 = life["v1"]
    v1_files = [a["path"] for a in v1["artifacts"].values()]
    old = time.time() - 7200
    for path in settings.artifact_dir.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    assert collect_orphans(database, min_age_s=0, dry_run=True)["orphan_files"] == []
    result = run(settings, "artifacts", "gc", "--json")
    assert result.exit_code == 0, result.output
    assert all((settings.artifact_dir / p).exists() for p in v1_files)
    for doc in (v1, life["v2"]):  # verification finds each version by its run id
        assert run_artifacts_info(database, doc["run_id"])["all_verified"] is True
    for ref in ("stk@1", "stk@2"):  # both still load, every file verified
        rows = pd.DataFrame([dict.fromkeys(FEATS, 1.0)])
        assert len(load_ensemble(database, ref, cache=ModelCache()).predict(rows)) == 1


def test_bad_references_are_refused_by_name_and_write_nothing(settings, database, api, life, games_csv, tmp_path):
    with pytest.raises(NotFoundError, match=r"ensemble 'stk' has no version 7 \(versions: 1 \(production\), 2"):
        load_ensemble(database, "stk@7")
    with pytest.raises(NotFoundError, match="ensemble 'stk' has no version in staging"):
        load_ensemble(database, "stk@staging")
    with pytest.raises(NotFoundError, match="no ensemble named 'ghost'"):
        load_ensemble(database, "ghost@production")
    answer = api("POST", "/api/predict/ensemble/stk@prod", {"rows": [{"x": 1}]})
    assert answer.status_code == 422
    assert (
        "after '@' give production, staging, latest or a version number" in answer.get_json()["error"]["message"]
    )
    assert api("POST", "/api/predict/ensemble/stk@7", {"rows": [{"x": 1}]}).status_code == 404
    csv = tmp_path / "rows.csv"
    _rows(games_csv).to_csv(csv, index=False)
    out = tmp_path / "never.csv"
    result = run(settings, "ensemble", "predict", "stk@7", "--csv", str(csv), "--out", str(out))
    assert result.exit_code != 0 and "has no version 7" in result.stderr and not out.exists()
    result = run(settings, "ensemble", "promote", "stk@9", "--to", "production")
    assert result.exit_code != 0 and "has no version 9" in result.stderr
    with pytest.raises(ValidationError, match="already in production"):
        versions.set_stage(database, "stk@1", "production")
    # a base reference that resolves to nothing: refused before any work, no document, no file
    files = _artifact_files(settings)
    for base, fragment in (
        ("c_lr@9.9.9", "'c_lr' has no version 9.9.9"),
        ("c_lr@production", "'c_lr' has no run in production"),
        ("ghost@latest", "no trained model named 'ghost'"),
    ):
        with pytest.raises(NotFoundError, match=fragment):
            create_ensemble(database, "stk", [base, "c_nb"], "logistic_regression", new_version=True)
        result = run(settings, "ensemble", "create", "other", "--base", base, "--base", "c_nb")
        assert result.exit_code != 0 and fragment in result.stderr
    assert database.ensembles.count_documents({}) == 2 and _artifact_files(settings) == files
    # a taken name without the flag: refused in the CLI and the API, both naming the flag
    result = run(settings, "ensemble", "create", "stk", "--base", "c_lr", "--base", "c_nb")
    assert result.exit_code != 0 and "--new-version" in result.stderr
    answer = api("POST", "/api/ensembles", {"name": "stk", "base_models": ["c_lr", "c_nb"]})
    assert answer.status_code == 409 and "new_version" in answer.get_json()["error"]["message"]


def test_bases_by_reference_pin_that_run(settings, database, api, life):
    first, retrained = life["first"], life["retrained"]
    lr_first = first["c_lr"]["run_id"]
    # an older version of a base: loaded from that run's own artifacts, not the config's current run
    record = create_ensemble(database, "pinned", ["c_lr@1.0.0", "c_nb"], "logistic_regression")
    assert record["base_run_ids"] == [lr_first, first["c_nb"]["run_id"]]
    assert record["base_refs"] == ["c_lr@1.0.0", "c_nb"] and record["base_models"][0]["pinned_by"] == "version"
    same = load_ensemble(database, "stk@1").predict_proba(pd.DataFrame([dict.fromkeys(FEATS, 1.0)]))
    assert np.allclose(
        load_ensemble(database, "pinned").predict_proba(pd.DataFrame([dict.fromkeys(FEATS, 1.0)])), same
    )
    # a run id, through the CLI; and the plain name of a config with a production run is that run
    registry.promote(database, lr_first, by="test")
    result = run(
        settings, "ensemble", "create", "pinned", "--new-version", "--base", "c_lr", "--base", retrained["run_id"]
    )
    assert result.exit_code != 0 and "more than once" in result.stderr  # two runs of one config
    result = run(settings, "ensemble", "create", "pinned", "--new-version", "--base", "c_lr", "--base", "c_nb")
    assert result.exit_code == 0, result.output
    assert "pinned: version 2" in result.stderr
    doc = EnsembleStore(database).find_version("pinned", 2)
    assert doc["base_run_ids"][0] == lr_first and doc["base_models"][0]["pinned_by"] == "production"
    # the API takes references too
    response = api(
        "POST",
        "/api/ensembles",
        {"name": "pinned", "base_models": ["c_lr@latest", "c_nb"], "new_version": True},
    )
    assert response.status_code == 202, response.get_json()
    from tests.helpers import wait_job

    job = wait_job(api, response.get_json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["version"] == 3
    assert EnsembleStore(database).find_version("pinned", 3)["base_run_ids"][0] == retrained["run_id"]


def test_a_database_from_before_versions_is_migrated(database):
    """One document per name and the unique name index (before versions): the index goes, the documents
    become version 1, and a second version of a name can then be stored."""
    col = database.ensembles
    col.drop_indexes()
    col.create_index("name", unique=True, name="name_unique")
    col.insert_one({"name": "old", "run_id": "20200101_000000_00000000", "base_run_ids": []})
    database.ensure_indexes(force=True)
    indexes = col.index_information()
    assert "name_unique" not in indexes and indexes["name_version_unique"]["unique"] is True
    assert col.find_one({"name": "old"})["version"] == 1
    record = EnsembleStore(database).insert(
        {"name": "old", "run_id": "20200101_000000_00000001", "base_run_ids": []}, new_version=True
    )
    assert record["version"] == 2 and EnsembleStore(database).get("old")["version"] == 2
