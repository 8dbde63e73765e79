"""Forgery through the database: whoever can write MongoDB (and the artifact folder, or GridFS) swaps a
model for a pickle that runs code and rewrites every recorded checksum to match. The signature, made
with a key MongoDB never holds, no longer verifies, so the pickle never runs: not through the CLI
(real subprocesses), the stacking tool, the API, the web pages or ``artifacts verify``.
"""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest

from agents.tools.stacking_tool import StackingTool
from models.artifacts.gridfs import GridFSArtifactStore
from models.artifacts.local import LocalArtifactStore
from models.artifacts.signing import file_name
from models.ensembles.build import create_ensemble
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import AUTH, PASSWORD, TOKEN, cls_config, run_cli
from tests.test_faults_artifacts import Plant
from web import create_app
from web.testing import login

# (artifact store, what the forger does with the signature)
CASES = [("local", "stale"), ("gridfs", "stale"), ("local", "stripped"), ("gridfs", "stripped")]


def forge(database, settings, backend: str, ref: dict, evil: bytes, *, strip: bool) -> dict:
    """Write ``evil`` where ``ref`` points and return the ref rewritten to match it (as a forger would)."""
    name = file_name(ref["path"])
    store = GridFSArtifactStore(database.db) if backend == "gridfs" else LocalArtifactStore(settings.artifact_dir)
    info = store.write(name, lambda fh: fh.write(evil))  # a bare backend: it signs nothing
    assert info.path == ref["path"]
    forged = {**ref, **info.to_dict()}
    if strip:
        forged.pop("signature", None)
    else:
        assert forged["signature"] == ref["signature"]  # the old signature stays; it no longer fits
    return forged


def rewrite(database, config: dict, run_id: str, kind: str, forged: dict) -> None:
    """Every document that points at the file: the run, the config (and its ``checksums``)."""
    database.runs.update_one({"run_id": run_id}, {"$set": {f"artifacts.{kind}": forged}})
    database.configs.update_one(
        {"_id": config["_id"]}, {"$set": {f"artifacts.{kind}": forged, f"checksums.{kind}": forged["sha256"]}}
    )


@pytest.mark.parametrize("backend,signature", CASES)
def test_rewritten_checksums_never_run_the_pickle(database, settings, games_csv, tmp_path, backend, signature):
    strip = signature == "stripped"
    # the defaults: REQUIRE_SIGNED is not set anywhere, so a stripped signature must be refused by default
    settings = settings.with_(artifact_store=backend)
    assert settings.require_signed
    database = database.__class__(database.client, settings)
    env = {"ARTIFACT_STORE": backend}
    reason = "signature_missing" if strip else "signature_invalid"
    words = "is not signed, and unsigned artifacts are refused" if strip else "signature that does not verify"
    store = ConfigStore(database)
    for name in ("a", "b"):
        store.create(cls_config(name, games_csv))
        train_config(database, name)
    create_ensemble(database, "ens", ["a", "b"])
    marker = tmp_path / "payload-ran"
    evil = pickle.dumps(Plant(marker))

    config = store.get("a")
    old_run = config["run_id"]
    forged = forge(database, settings, backend, config["artifacts"]["model"], evil, strip=strip)
    rewrite(database, config, old_run, "model", forged)
    ens = database.ensembles.find_one({"name": "ens"})
    forged_meta = forge(database, settings, backend, ens["artifacts"]["ensemble"], evil, strip=strip)
    database.ensembles.update_one(
        {"_id": ens["_id"]},
        {"$set": {"artifacts.ensemble": forged_meta, "checksums.ensemble": forged_meta["sha256"]}},
    )
    rows = pd.read_csv(games_csv).head(5)
    rows.to_csv(tmp_path / "rows.csv", index=False)

    # the CLI, as real processes
    result = run_cli(settings, "predict", "a", "--csv", str(tmp_path / "rows.csv"), timeout=240, **env)
    assert result.returncode == 1 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(settings, "artifacts", "verify", "--json", timeout=240, **env)
    assert result.returncode == 1, result.stderr
    states = {r["name"]: r for r in json.loads(result.stdout)}
    assert states["a"]["state"] == "corrupt" and states["b"]["state"] == "ok"
    assert any(("signature" if not strip else "not signed") in p for p in states["a"]["problems"])
    result = run_cli(settings, "artifacts", "info", old_run, "--json", timeout=240, **env)
    model = json.loads(result.stdout)["files"]["model"]
    assert model["verified"] is False and model["state"] == ("unsigned" if strip else "corrupt")
    assert model["signature"] == ("unsigned" if strip else "invalid")
    assert not marker.exists()

    # the API and the web pages, in this process
    app = create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database)
    client = app.test_client()
    body = {"rows": json.loads(rows.to_json(orient="records"))}
    for path in ("/api/predict/model/a", "/api/predict/ensemble/ens"):
        resp = client.post(path, json=body, headers=AUTH)
        assert resp.status_code == 422, (path, resp.get_json())
        assert resp.get_json()["error"]["reason"] == reason and words in resp.get_json()["error"]["message"]
    resp = client.get(f"/api/export/{old_run}/model", headers=AUTH)
    assert resp.status_code == 422 and resp.get_json()["error"]["reason"] == reason
    assert login(client, PASSWORD).status_code == 302
    for path in (f"/configs/{config['_id']}", f"/registry/runs/{old_run}", "/ensembles/ens"):
        resp = client.get(path)
        assert resp.status_code == 200, path
    assert not marker.exists()

    # the stacking tool's slow path: refused like a checksum failure, then retrained
    with StackingTool(database=database, lock_timeout=60) as tool:
        loaded = tool._load_model_from_config(store.get("a"))
    assert loaded.source == "retrained" and loaded.reason == reason and words in loaded.detail
    fresh = store.get("a")
    assert fresh["run_id"] != old_run
    assert not marker.exists()

    # ensembles: predicting with the forged one is refused; creating one over the retrained model works
    result = run_cli(
        settings, "ensemble", "predict", "ens", "--csv", str(tmp_path / "rows.csv"), timeout=240, **env
    )
    assert result.returncode == 1 and words in result.stderr, result.stderr
    result = run_cli(
        settings, "ensemble", "create", "ens2", "--base", "a", "--base", "b", "--json", timeout=240, **env
    )
    assert result.returncode == 0, result.stderr
    result = run_cli(
        settings, "ensemble", "predict", "ens2", "--csv", str(tmp_path / "rows.csv"), timeout=240, **env
    )
    assert result.returncode == 0, result.stderr
    # its base models intact, its meta-model forged: refused too (a fresh app: nothing cached)
    ens2 = database.ensembles.find_one({"name": "ens2"})
    forged_meta = forge(database, settings, backend, ens2["artifacts"]["ensemble"], evil, strip=strip)
    database.ensembles.update_one(
        {"_id": ens2["_id"]},
        {"$set": {"artifacts.ensemble": forged_meta, "checksums.ensemble": forged_meta["sha256"]}},
    )
    result = run_cli(
        settings, "ensemble", "predict", "ens2", "--csv", str(tmp_path / "rows.csv"), timeout=240, **env
    )
    assert result.returncode == 1 and words in result.stderr and "_ensemble.pkl" in result.stderr, result.stderr
    fresh_app = create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database)
    resp = fresh_app.test_client().post("/api/predict/ensemble/ens2", json=body, headers=AUTH)
    assert resp.status_code == 422 and resp.get_json()["error"]["reason"] == reason
    assert not marker.exists()


def test_forged_config_through_ensemble_create_is_retrained_not_unpickled(database, settings, games_csv, tmp_path):
    """``ensemble create`` (a real process) over a base model whose config and run were forged: the slow path
    retrains it with reason signature_invalid; the payload never runs."""
    store = ConfigStore(database)
    for name in ("a", "b"):
        store.create(cls_config(name, games_csv))
        train_config(database, name)
    marker = tmp_path / "payload-ran"
    config = store.get("a")
    forged = forge(
        database, settings, "local", config["artifacts"]["model"], pickle.dumps(Plant(marker)), strip=False
    )
    rewrite(database, config, config["run_id"], "model", forged)
    result = run_cli(settings, "ensemble", "create", "ens", "--base", "a", "--base", "b", "--json", timeout=240)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    sources = {b["name"]: (b["source"], b.get("reason")) for b in doc["base_models"]}
    assert sources["a"] == ("retrained", "signature_invalid") and sources["b"][0] in ("artifacts", "cache")
    result = run_cli(settings, "ensemble", "predict", "ens", "--csv", str(games_csv), timeout=240)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
