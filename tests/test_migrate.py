"""``artifacts migrate``: local folder <-> GridFS, verified copies, one update per document, resumable."""

import hashlib
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import models.artifacts.migrate as migrate
from cli.context import AppContext
from cli.main import cli
from models.artifacts.cache import ModelCache
from models.artifacts.gridfs import is_gridfs_path
from models.artifacts.loading import load_model
from models.artifacts.maintenance import referenced_paths
from models.artifacts.migrate import document_slots, migrate_artifacts
from models.artifacts.routing import RoutingStore, get_store
from models.ensembles.build import create_ensemble, load_ensemble
from models.errors import ValidationError
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import cls_config

BASES = [("lr", "logistic_regression", {}), ("nb", "naive_bayes", {})]


@pytest.fixture
def trained(database, games_csv):
    """Two configs trained twice each (so older runs exist too) and an ensemble, all in the local folder."""
    store = ConfigStore(database)
    for name, model_type, params in BASES:
        store.create(cls_config(name, games_csv, model_type=model_type, hyperparameters=params))
        train_config(database, name)
        train_config(database, name)
    create_ensemble(database, "ens", [n for n, _, _ in BASES])
    return database


def predictions(database, games_csv, settings=None):
    """Every model's predictions, loaded cold (no in-memory cache) through ``settings``."""
    settings = settings or database.settings
    db = Database(database.client, settings)
    frame = pd.read_csv(games_csv).head(40)
    out = {
        name: load_model(settings, ConfigStore(db).get(name), cache=ModelCache()).model.predict_proba(frame)
        for name, _, _ in BASES
    }
    out["ens"] = load_ensemble(db, "ens", cache=ModelCache()).predict_proba(frame)
    return out


def all_slots(database):
    for collection in migrate.COLLECTIONS:
        for doc in getattr(database, collection).find({}):
            yield from document_slots(collection, doc)


def assert_consistent(database, backend=None):
    """No document points at a missing or corrupt file; optionally every path is in ``backend``."""
    store = get_store(database.settings)
    for slot in all_slots(database):
        data = store.read_bytes(slot.path)  # raises if missing
        assert hashlib.sha256(data).hexdigest() == slot.sha256, slot
        if backend is not None:
            assert migrate.in_backend(slot.path, backend), slot


def gridfs_names(database):
    return [f["filename"] for f in database.db["artifacts.files"].find({}, {"filename": 1})]


def local_files(settings):
    return sorted(p.name for p in settings.artifact_dir.iterdir()) if settings.artifact_dir.exists() else []


def assert_fully_in(database, backend):
    assert_consistent(database, backend)
    referenced = referenced_paths(database)
    names = gridfs_names(database)
    assert max(Counter(names).values(), default=1) == 1, "a file is duplicated in GridFS"
    if backend == "gridfs":
        assert local_files(database.settings) == []
        assert {f"gridfs:{n}" for n in names} == referenced
    else:
        assert names == [] and database.db["artifacts.chunks"].count_documents({}) == 0
        assert set(local_files(database.settings)) == {p.rsplit("/", 1)[-1] for p in referenced}


def test_migrate_to_gridfs_and_back(trained, games_csv, tmp_path):
    database = trained
    before = predictions(database, games_csv)
    n_files = len(local_files(database.settings))
    report = migrate_artifacts(database, "gridfs")
    assert report.complete and report.errors == []
    assert report.documents == {"runs": 4, "ensembles": 1, "configs": 2}
    assert len(report.files_copied) == n_files == len(report.files_deleted)
    assert any("ARTIFACT_STORE is local" in w for w in report.warnings)
    assert_fully_in(database, "gridfs")
    config = ConfigStore(database).get("lr")
    assert all(is_gridfs_path(config[f]) for f in ("model_artifact_path", "scaler_artifact_path", "features_path"))
    assert all(is_gridfs_path(ref["path"]) for ref in config["artifacts"].values())
    # another machine: its own empty disk cache, GridFS as its store, the deployment's signing key
    other = database.settings.with_(
        artifact_store="gridfs",
        var_dir=tmp_path / "other",
        artifact_signing_key_file=database.settings.signing_key_file,
    )
    after = predictions(database, games_csv, other)
    for name in before:
        assert np.array_equal(before[name], after[name]), name
    # running it again finds nothing to do
    again = migrate_artifacts(database, "gridfs")
    assert again.complete and sum(again.documents.values()) == 0 and not again.files_copied
    # and back to the local folder
    back = migrate_artifacts(database.__class__(database.client, other), "local")
    assert back.complete and back.documents == {"runs": 4, "ensembles": 1, "configs": 2}
    assert_fully_in(database, "local")
    for name, value in predictions(database, games_csv).items():
        assert np.array_equal(before[name], value), name


def test_dry_run_changes_nothing(trained):
    database = trained
    docs = {c: list(getattr(database, c).find({})) for c in migrate.COLLECTIONS}
    files = local_files(database.settings)
    report = migrate_artifacts(database, "gridfs", dry_run=True)
    assert report.dry_run and report.documents == {"runs": 4, "ensembles": 1, "configs": 2}
    assert len(report.files_copied) == len(files) == len(report.files_deleted)
    assert {c: list(getattr(database, c).find({})) for c in migrate.COLLECTIONS} == docs
    assert local_files(database.settings) == files and gridfs_names(database) == []


def _fail_after(n, what):
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if calls["n"] > n:
            raise RuntimeError(f"injected crash after {n} {what}")

    return check


@pytest.mark.parametrize("stage,n", [("copy", 3), ("update", 1), ("update", 4), ("delete", 5)])
def test_interrupted_migration_finishes_on_the_next_run(trained, games_csv, monkeypatch, stage, n):
    database = trained
    before = predictions(database, games_csv)
    if stage == "copy":
        crash = _fail_after(n, "copies")
        original = migrate._Migration.copy
        monkeypatch.setattr(migrate._Migration, "copy", lambda self, slot: (crash(), original(self, slot))[1])
    elif stage == "update":
        crash = _fail_after(n, "documents")
        original_doc = migrate._Migration.migrate_document

        def after_document(self, plan):
            original_doc(self, plan)
            crash()

        monkeypatch.setattr(migrate._Migration, "migrate_document", after_document)
    else:
        crash = _fail_after(n, "deletions")
        original_delete = RoutingStore.delete
        monkeypatch.setattr(RoutingStore, "delete", lambda self, path: (crash(), original_delete(self, path))[1])
    with pytest.raises(RuntimeError, match="injected crash"):
        migrate_artifacts(database, "gridfs")
    assert_consistent(database)  # mid-way: every document still points at a complete, verified file
    monkeypatch.undo()
    report = migrate_artifacts(database, "gridfs")
    assert report.complete, report.to_dict()
    if stage == "copy":
        assert len(report.files_reused) == n  # the copies made before the crash are reused, not written again
    assert_fully_in(database, "gridfs")
    after = predictions(database, games_csv, database.settings.with_(artifact_store="gridfs"))
    for name in before:
        assert np.array_equal(before[name], after[name]), name


def test_corrupt_source_file_is_reported_and_left_alone(trained):
    database = trained
    config = ConfigStore(database).get("nb")
    path = database.settings.artifact_dir / config["model_artifact_path"].rsplit("/", 1)[-1]
    path.write_bytes(path.read_bytes() + b"tampered")
    report = migrate_artifacts(database, "gridfs")
    assert not report.complete
    failed = {e["document"] for e in report.errors}
    assert failed == {"config nb", f"run {config['run_id']}"}
    assert all("fails verification" in e["message"] for e in report.errors)
    assert path.exists()  # still referenced: never deleted
    fresh = ConfigStore(database).get("nb")
    assert fresh["model_artifact_path"] == config["model_artifact_path"]
    assert ConfigStore(database).get("lr")["model_artifact_path"].startswith("gridfs:")
    assert not any(is_gridfs_path(s.path) for s in document_slots("configs", fresh))  # one update or none


def test_bad_target_is_refused(database):
    with pytest.raises(ValidationError) as info:
        migrate_artifacts(database, "s3")
    assert info.value.field == "to"


def test_cli_migrate_json_and_exit_code(trained, settings):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["artifacts", "migrate", "--to", "gridfs", "--dry-run", "--json"],
        obj=AppContext(settings),
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] and data["documents"]["configs"] == 2
    result = runner.invoke(
        cli, ["artifacts", "migrate", "--to", "gridfs"], obj=AppContext(settings), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "updated 4 runs, 1 ensembles, 2 configs" in result.stderr
    assert_fully_in(trained, "gridfs")
    result = runner.invoke(cli, ["artifacts", "migrate", "--to", "nowhere"], obj=AppContext(settings))
    assert result.exit_code == 2


def test_migrate_to_local_writes_only_names_it_derives_and_never_overwrites(trained, games_csv):
    """Issue 24, finding 10: a database writer cannot plant or overwrite files in ARTIFACT_DIR through
    ``migrate --to local``: the GridFS names it chose are never used, an existing local file is never replaced."""
    from models.artifacts.gridfs import GridFSArtifactStore
    from models.store.runs import RunStore

    database = trained
    folder = database.settings.artifact_dir
    files_before = {p.name: p.read_bytes() for p in folder.iterdir()}
    before = predictions(database, games_csv)
    lr_run = ConfigStore(database).get("lr")["run_id"]
    nb_runs = [r["run_id"] for r in RunStore(database).for_name("nb")]
    evil, planted = b"not lr's model", b"planted by the database"
    bare = GridFSArtifactStore(database.db)  # what whoever can write MongoDB can do
    bare.write(f"{lr_run}_model.pkl", lambda fh: fh.write(evil))
    bare.write("planted_by_db.pkl", lambda fh: fh.write(planted))
    sha = {data: hashlib.sha256(data).hexdigest() for data in (evil, planted)}
    forged = {
        nb_runs[0]: ("model", f"gridfs:{lr_run}_model.pkl", sha[evil]),  # another run's file name
        nb_runs[1]: ("scaler", "gridfs:planted_by_db.pkl", sha[planted]),  # a new name in ARTIFACT_DIR
        lr_run: ("model", f"gridfs:{lr_run}_model.pkl", sha[evil]),  # its own name, but the local file exists
    }
    for run_id, (kind, path, digest) in forged.items():
        database.runs.update_one(
            {"run_id": run_id}, {"$set": {f"artifacts.{kind}.path": path, f"artifacts.{kind}.sha256": digest}}
        )
    report = migrate_artifacts(database, "local")
    assert not report.complete
    errors = {e["document"]: e["message"] for e in report.errors}
    assert set(errors) == {f"run {r}" for r in forged}
    assert (
        f"names this file '{lr_run}_model.pkl', but its run id and kind give {nb_runs[0]}_model.pkl"
        in (errors[f"run {nb_runs[0]}"])
    )
    assert (
        f"names this file 'planted_by_db.pkl', but its run id and kind give {nb_runs[1]}_scaler.pkl"
        in (errors[f"run {nb_runs[1]}"])
    )
    assert "already exists in ARTIFACT_DIR with other content" in errors[f"run {lr_run}"]
    assert "never overwritten" in errors[f"run {lr_run}"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files_before  # nothing planted, nothing replaced
    for run_id, (kind, path, _) in forged.items():  # the forged documents are left as they were
        assert RunStore(database).get(run_id)["artifacts"][kind]["path"] == path
    frame = pd.read_csv(games_csv).head(40)
    for name, _, _ in BASES:  # the configs (not forged) still load their own, unchanged local files
        model = load_model(database.settings, ConfigStore(database).get(name), cache=ModelCache()).model
        assert np.array_equal(before[name], model.predict_proba(frame)), name
