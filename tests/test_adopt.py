"""Legacy adoption: reference-system documents (paths, no checksums) become verified runs with OOF predictions,
only after the admin's explicit trust; until then the stacking tool says "legacy artifacts, not adopted"."""

from __future__ import annotations

import hashlib
import json
import pickle

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import StandardScaler

from agents.tools.stacking_tool import StackingTool
from cli.context import AppContext
from cli.main import cli
from models.artifacts.legacy import LEGACY_REASON
from models.ensembles.base_models import fast_load
from models.ensembles.build import create_ensemble, load_ensemble
from models.ensembles.suggest import suggest_ensemble
from models.errors import ArtifactError
from models.store.configs import ConfigStore
from models.training.adopt import adopt_legacy
from models.training.train import train_config
from tests.helpers import FEATS, cls_config

RUN_ID = "20240101_120000_legacy01"


class Tripwire:
    """A pickle that leaves a file behind when it is loaded (loading runs code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def legacy_doc(settings, games_csv, model=None, name="legacy_rf"):
    """Files and a document as the reference system left them: no checksums, no artifacts map, no run."""
    folder = settings.artifact_dir
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(games_csv)
    scaler = StandardScaler().fit(frame[FEATS].to_numpy(float))
    if model is None:
        model = RandomForestClassifier(n_estimators=12, max_depth=4, random_state=3).fit(
            scaler.transform(frame[FEATS].to_numpy(float)), frame["home_win"]
        )
    paths = {}
    for kind, obj in (("model", model), ("scaler", scaler)):
        path = folder / f"{RUN_ID}_{kind}.pkl"
        if isinstance(obj, Tripwire):
            path.write_bytes(pickle.dumps(obj))
        else:
            joblib.dump(obj, path)
        paths[kind] = path
    (folder / f"{RUN_ID}_features.json").write_text(json.dumps(FEATS))
    doc = cls_config(name, games_csv, "random_forest", hyperparameters={"n_estimators": 12, "max_depth": 4})
    doc.update(
        run_id=RUN_ID,
        model_artifact_path=f"{RUN_ID}_model.pkl",
        scaler_artifact_path=f"{RUN_ID}_scaler.pkl",
        features_path=f"{RUN_ID}_features.json",
        artifacts_saved_at="2024-01-01T12:00:00",
    )
    return doc, paths, model, scaler


def run_cli(settings, *args):
    return CliRunner().invoke(cli, list(args), obj=AppContext(settings), catch_exceptions=False)


def test_not_adopted_says_so_then_refused_without_trust_and_nothing_unpickled(
    settings, database, games_csv, tmp_path
):
    marker = tmp_path / "unpickled"
    doc, _, _, _ = legacy_doc(settings, games_csv, model=Tripwire(str(marker)))
    database.configs.insert_one(doc)
    with pytest.raises(ArtifactError) as info:
        fast_load(
            settings, database.configs.find_one({"name": "legacy_rf"}), need_oof=True, load_model_object=False
        )
    assert info.value.reason == LEGACY_REASON and "artifacts adopt legacy_rf --trust" in info.value.message
    result = run_cli(settings, "artifacts", "adopt", "legacy_rf")
    assert result.exit_code == 2, result.output
    assert (
        "--trust" in result.stderr
        and "runs code" in result.stderr
        and "Nothing was read or changed" in result.stderr
    )
    assert not marker.exists()  # nothing was unpickled
    after = database.configs.find_one({"name": "legacy_rf"})
    assert "checksums" not in after and "artifacts" not in after and database.runs.count_documents({}) == 0
    assert sorted(p.name for p in settings.artifact_dir.iterdir()) == sorted(
        [f"{RUN_ID}_model.pkl", f"{RUN_ID}_scaler.pkl", f"{RUN_ID}_features.json"]
    )
    # with --trust the file is loaded (the tripwire fires) and refused as not an estimator; nothing is written
    with pytest.raises(ArtifactError, match="not a scikit-learn estimator"):
        adopt_legacy(database, "legacy_rf", trust=True)
    assert marker.exists() and database.runs.count_documents({}) == 0
    assert "checksums" not in database.configs.find_one({"name": "legacy_rf"})


def test_missing_files_say_file_missing(settings, database, games_csv):
    doc, paths, _, _ = legacy_doc(settings, games_csv)
    database.configs.insert_one(doc)
    paths["scaler"].unlink()
    for trust in (False, True):
        with pytest.raises(ArtifactError) as info:
            adopt_legacy(database, "legacy_rf", trust=trust)
        assert info.value.reason == "file_missing" and f"scaler ({RUN_ID}_scaler.pkl)" in info.value.message
    result = run_cli(settings, "artifacts", "adopt", "legacy_rf", "--trust")
    assert result.exit_code == 1 and "missing" in result.stderr and "nothing was adopted" in result.stderr
    assert database.runs.count_documents({}) == 0


def test_adopt_records_checksums_and_oof_then_joins_ensembles_without_retraining(settings, database, games_csv):
    doc, paths, model, scaler = legacy_doc(settings, games_csv)
    database.configs.insert_one(doc)
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv, "random_forest", hyperparameters={"n_estimators": 8, "max_depth": 3}))
    train_config(database, "lr")
    model_bytes = paths["model"].read_bytes()
    result = run_cli(settings, "artifacts", "adopt", "legacy_rf", "--trust", "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["run_id"] == RUN_ID and run["adopted"]["trusted"] is True
    assert paths["model"].read_bytes() == model_bytes  # the final model is not retrained or rewritten
    config = database.configs.find_one({"name": "legacy_rf"})
    assert config["checksums"]["model"] == hashlib.sha256(model_bytes).hexdigest()
    assert config["artifacts"]["oof"]["path"] and config["fold_spec"]["n_splits"] == 3
    assert config["data_fingerprint"] == database.configs.find_one({"name": "lr"})["data_fingerprint"]
    # the loaded model is the legacy one, verified by its new checksums
    frame = pd.read_csv(games_csv).head(30)
    with StackingTool(settings, database) as tool:
        loaded = tool._load_model_from_config("legacy_rf")
        assert loaded.source in ("artifacts", "cache") and loaded.reason is None
        expected = model.predict_proba(scaler.transform(frame[FEATS].to_numpy(float)))
        assert np.allclose(loaded.model.predict_proba(frame), expected)
    record = create_ensemble(database, "with_legacy", ["legacy_rf", "lr"])
    assert record["retrained"] == [] and {b["source"] for b in record["base_models"]} <= {"artifacts", "cache"}
    suggested = suggest_ensemble(database, "auto_legacy", ["legacy_rf", "lr"], size=5)
    assert {c["name"] for c in suggested["selection"]["candidates"]} == {"legacy_rf", "lr"}
    assert load_ensemble(database, "auto_legacy").predict(frame).shape == (30,)
    again = run_cli(settings, "artifacts", "adopt", "legacy_rf", "--trust")
    assert again.exit_code == 2 and "not a legacy document" in again.stderr


def test_stacking_tool_reason_for_a_legacy_base_model(settings, database, games_csv):
    doc, _, _, _ = legacy_doc(settings, games_csv)
    database.configs.insert_one(doc)
    with StackingTool(settings, database) as tool:
        result = tool._load_model_from_config("legacy_rf")  # not adopted: the slow path retrains it
    assert result.source == "retrained" and result.reason == LEGACY_REASON
    assert "not adopted" in result.detail


def test_adopt_from_the_api_the_tool_and_the_page(settings, database, games_csv):
    from tests.helpers import PASSWORD, TOKEN
    from web import create_app
    from web.testing import csrf_token, login

    doc, _paths, _, _ = legacy_doc(settings, games_csv)
    database.configs.insert_one(doc)
    app = create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/configs/legacy_rf/adopt", json={"trust": True}).status_code == 401
    refused = client.post("/api/configs/legacy_rf/adopt", json={}, headers=auth)
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "trust_required"
    assert refused.get_json()["error"]["field"] == "trust" and database.runs.count_documents({}) == 0
    page = app.test_client()
    assert login(page, PASSWORD).status_code == 302
    html = page.get("/configs/legacy_rf").get_data(as_text=True)
    assert 'id="adopt-form"' in html and "Legacy artifacts, not adopted" in html
    response = page.post("/configs/legacy_rf/adopt", data={"csrf_token": csrf_token(page)}, follow_redirects=True)
    assert "Not adopted" in response.get_data(as_text=True) and database.runs.count_documents({}) == 0
    with StackingTool(settings, database) as tool:
        with pytest.raises(Exception, match="--trust"):
            tool.adopt_legacy("legacy_rf")
        run = tool.adopt_legacy("legacy_rf", trust=True)
    assert run["run_id"] == RUN_ID
    assert 'id="adopt-form"' not in page.get("/configs/legacy_rf").get_data(as_text=True)
    again = client.post("/api/configs/legacy_rf/adopt", json={"trust": True}, headers=auth)
    assert again.status_code == 403 and "ALLOW_HTTP_TRUST" in again.get_json()["error"]["message"]


def test_adopt_through_the_api(settings, database, games_csv):
    from tests.helpers import TOKEN
    from web import create_app

    doc, _, _, _ = legacy_doc(settings, games_csv)
    database.configs.insert_one(doc)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    # trust over HTTP unpickles unverified bytes: off unless the deployment allows it
    client = create_app(settings.with_(api_token=TOKEN), database).test_client()
    refused = client.post("/api/configs/legacy_rf/adopt", json={"trust": True}, headers=auth)
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    assert "ALLOW_HTTP_TRUST" in refused.get_json()["error"]["message"] and database.runs.count_documents({}) == 0
    client = create_app(settings.with_(api_token=TOKEN, allow_http_trust=True), database).test_client()
    response = client.post("/api/configs/legacy_rf/adopt", json={"trust": True}, headers=auth)
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["run_id"] == RUN_ID and body["adopted"] is True and body["cv"]["n_splits"] == 3
    assert database.configs.find_one({"name": "legacy_rf"})["checksums"]["oof"]


def test_adopted_files_are_signed_by_this_installation(settings, database, games_csv):
    from models.artifacts.routing import get_store
    from models.store.runs import RunStore

    doc, _, _, _ = legacy_doc(settings, games_csv)
    database.configs.insert_one(doc)
    adopt_legacy(database, "legacy_rf", trust=True, requested_by="admin")
    run = RunStore(database).find(RUN_ID)
    signer = get_store(settings).signer
    assert run["adopted"]["signature"]["signed"] is True
    assert {kind: signer.artifact_state(ref) for kind, ref in run["artifacts"].items()} == {
        kind: "signed" for kind in run["artifacts"]
    }


def test_adopt_with_a_time_split_given_at_adoption_stacks_with_time_runs(settings, database, games_csv):
    doc, _, _, _ = legacy_doc(settings, games_csv)
    database.configs.insert_one(doc)
    store = ConfigStore(database)
    split = {"split": "time", "time_column": "game_date"}
    store.update("legacy_rf", split)  # the split is given before adopting: its folds are walk-forward
    store.create(cls_config("timed", games_csv, "naive_bayes", **split))
    train_config(database, "timed")
    run = adopt_legacy(database, "legacy_rf", trust=True)
    assert run["fold_spec"]["split"] == "time" and run["data"]["split"] == "time"
    assert run["cv"]["rows_without_oof"] > 0 and len(run["cv"]["folds"]) == 3
    record = create_ensemble(database, "legacy_wf", ["legacy_rf", "timed"])
    assert record["retrained"] == [] and 0 < record["n_meta_rows"] < record["n_train"]


def test_gridfs_paths_are_refused_before_a_byte_is_read_even_with_trust(
    settings, database, games_csv, tmp_path, monkeypatch
):
    """Issue 24, finding 11: a GridFS file's bytes come from whoever can write the database; adoption reads
    only local files inside ARTIFACT_DIR, so a gridfs: path is refused, naming it, before anything is read."""
    from models.artifacts.gridfs import GridFSArtifactStore

    marker = tmp_path / "unpickled"
    doc, _, _, _ = legacy_doc(settings, games_csv)
    planted = GridFSArtifactStore(database.db)  # the database writer's own upload: no signature, no checksum
    planted.write(f"{RUN_ID}_model.pkl", lambda fh: fh.write(pickle.dumps(Tripwire(str(marker)))))
    doc["model_artifact_path"] = f"gridfs:{RUN_ID}_model.pkl"
    database.configs.insert_one(doc)
    before = database.configs.find_one({"name": "legacy_rf"})
    reads = []
    for method in ("read_bytes", "open_stream", "stat"):
        original = getattr(GridFSArtifactStore, method)
        monkeypatch.setattr(
            GridFSArtifactStore,
            method,
            lambda self, *a, _o=original, _m=method, **k: reads.append(_m) or _o(self, *a, **k),
        )
    with pytest.raises(ArtifactError) as info:
        adopt_legacy(database, "legacy_rf", trust=True)
    assert info.value.reason == "path_refused"
    assert f"legacy model file 'gridfs:{RUN_ID}_model.pkl' is not a local file" in info.value.message
    assert "Nothing was read or adopted" in info.value.message
    assert reads == [] and not marker.exists()  # not one GridFS byte (or stat) was asked for
    assert database.configs.find_one({"name": "legacy_rf"}) == before and database.runs.count_documents({}) == 0
    result = run_cli(settings, "artifacts", "adopt", "legacy_rf", "--trust")
    assert result.exit_code != 0 and "is not a local file" in result.output and "Traceback" not in result.output
    assert not marker.exists() and database.runs.count_documents({}) == 0
