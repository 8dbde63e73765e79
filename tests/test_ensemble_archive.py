"""An ensemble with its base runs as one signed archive: ``models export ENSEMBLE`` / ``models import``.

Exported from one installation and imported into a fresh one on the same server (its own database and
artifact folder): the same base run ids, the same predictions, the version kept and the stage ``none``.
Base runs already there with the same files are reused; ones with other files refused. A tampered or
unsigned archive and a failure half way leave nothing behind.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models import registry
from models.ensembles.build import create_ensemble, load_ensemble
from models.ensembles.versions import promote
from models.errors import ConflictError, ValidationError
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from tests.helpers import cls_config


@pytest.fixture
def source(database, games_csv):
    from models.training.train import train_config

    store = ConfigStore(database)
    store.create(cls_config("a_lr", games_csv))
    store.create(cls_config("a_nb", games_csv, "naive_bayes"))
    for name in ("a_lr", "a_nb"):
        train_config(database, name)
    create_ensemble(database, "stk", ["a_lr", "a_nb"], "logistic_regression")
    create_ensemble(
        database, "stk", ["a_lr", "a_nb"], "logistic_regression", meta_params={"C": 0.3}, new_version=True
    )
    promote(database, "stk@2")
    return database


def fresh(settings, tmp_path: Path, label: str) -> Database:
    """Another empty installation on the same server (dropped by :func:`drop`)."""
    return Database.connect(
        settings.with_(mongo_db=f"test_{uuid.uuid4().hex[:12]}", artifact_dir=tmp_path / f"{label}_artifacts")
    )


def drop(db: Database) -> None:
    db.client.drop_database(db.settings.mongo_db)
    db.close()


def state(db: Database) -> tuple:
    """What an installation holds: documents per collection and artifact files."""
    folder = db.settings.artifact_dir
    files = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    return (
        db.runs.count_documents({}),
        db.configs.count_documents({}),
        db.ensembles.count_documents({}),
        files,
    )


def members_of(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def repack(members: dict[str, bytes], out: Path) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(gzip.compress(buffer.getvalue()))
    return out


def test_round_trip_into_a_fresh_installation_predicts_the_same(source, settings, other, games_csv, tmp_path):
    archive = tmp_path / "stk.tar.gz"
    result = CliRunner().invoke(
        cli, ["models", "export", "stk", "--out", str(archive), "--json"], obj=AppContext(settings)
    )
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    served = load_ensemble(source, "stk")
    assert exported["kind"] == "ensemble" and exported["version"] == 2  # NAME serves its production version
    assert exported["base_runs"] == [b.run_id for b in served.bases]
    members = members_of(archive)
    manifest = json.loads(members["manifest.json"])
    assert set(manifest["members"]) == set(members) - {"manifest.json", "manifest.sig"}  # one signature, all
    for run_id in exported["base_runs"]:
        assert {f"runs/{run_id}/{n}" for n in ("manifest.json", "run.json", "config.json")} <= set(members)
    assert any(n.startswith("ensemble/") and n.endswith("_ensemble.pkl") for n in members)

    imported = registry.import_archive(other, archive, by="tester")
    assert imported["kind"] == "ensemble" and imported["version"] == 2 and imported["stage"] == "none"
    assert sorted(imported["base_runs_imported"]) == sorted(exported["base_runs"])
    assert sorted(imported["configs_created"]) == ["a_lr", "a_nb"] and imported["base_runs_reused"] == []
    assert imported["trust"]["trusted"] == "this installation"
    copy = load_ensemble(other, "stk")
    assert [b.run_id for b in copy.bases] == exported["base_runs"] and copy.version == 2
    rows = pd.read_csv(games_csv).head(50)
    pd.testing.assert_frame_equal(copy.predict_table(rows), served.predict_table(rows), rtol=0, atol=1e-12)
    doc = EnsembleStore(other).find("stk")
    assert doc["imported"]["original_stage"] == "production" and doc["stage_history"][0]["by"] == "tester"

    before = state(other)
    with pytest.raises(ConflictError, match="is here already"):
        registry.import_archive(other, archive)
    assert state(other) == before

    # version 1 rides on the same base runs: they are reused, and its own number is kept
    v1 = registry.export_archive(source, "stk@1", tmp_path / "stk1.tar.gz")
    again = registry.import_archive(other, v1["path"])
    assert again["version"] == 1 and again["base_runs_imported"] == []
    assert sorted(again["base_runs_reused"]) == sorted(exported["base_runs"])
    assert other.runs.count_documents({}) == 2 and other.ensembles.count_documents({"name": "stk"}) == 2


def test_a_base_run_here_with_other_files_is_refused_and_nothing_written(source, settings, other, tmp_path):
    archive = registry.export_archive(source, "stk", tmp_path / "stk.tar.gz")["path"]
    run_id = load_ensemble(source, "stk").bases[0].run_id
    registry.import_archive(other, archive)
    other.ensembles.delete_many({})
    other.runs.update_one({"run_id": run_id}, {"$set": {"artifacts.model.sha256": "0" * 64}})
    before = state(other)
    with pytest.raises(ConflictError, match=f"base run {run_id} exists here with other files \\(model differ"):
        registry.import_archive(other, archive)
    assert state(other) == before


def test_tampered_unsigned_and_mismatched_archives_are_refused(source, settings, tmp_path):
    archive = Path(registry.export_archive(source, "stk", tmp_path / "stk.tar.gz")["path"])
    members = members_of(archive)
    pickle_member = next(n for n in members if n.startswith("runs/") and n.endswith("_model.pkl"))
    cases = [
        ({**members, pickle_member: members[pickle_member] + b"x"}, f"archive member {pickle_member} fails"),
        ({k: v for k, v in members.items() if k != "manifest.sig"}, "is not signed"),
        ({**members, "runs/20260101_000000_deadbeef/run.json": b"{}"}, "not in the manifest"),
        ({**members, "../evil": b"x"}, "'..'"),
    ]
    target = fresh(settings, tmp_path, "target")
    try:
        before = state(target)
        for i, (changed, message) in enumerate(cases):
            bad = repack(changed, tmp_path / f"bad{i}.tar.gz")
            with pytest.raises(ValidationError, match=message):
                registry.import_archive(target, bad)
            assert state(target) == before, message
        with pytest.raises(ValidationError, match="apply to run archives"):
            registry.import_archive(target, archive, on_conflict="rename")
        assert state(target) == before
    finally:
        drop(target)


def test_a_failure_half_way_removes_the_runs_configs_and_files_it_wrote(source, settings, tmp_path, monkeypatch):
    archive = registry.export_archive(source, "stk", tmp_path / "stk.tar.gz")["path"]
    target = fresh(settings, tmp_path, "half")
    try:
        before = state(target)

        def full_disk(self, record, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(EnsembleStore, "insert", full_disk)
        with pytest.raises(OSError, match="No space"):
            registry.import_archive(target, archive)
        assert state(target) == before
    finally:
        drop(target)


def test_export_from_the_api_and_the_page(source, api, page):
    response = api("GET", "/api/ensembles/stk@1/export")
    assert response.status_code == 200 and response.mimetype == "application/gzip"
    assert 'filename="stk-ensemble-1.tar.gz"' in response.headers["Content-Disposition"]
    assert response.data[:2] == b"\x1f\x8b" and len(response.headers["X-Checksum-SHA256"]) == 64
    assert api("GET", "/api/ensembles/stk/export", auth=False).status_code == 401
    assert api("GET", "/api/ensembles/nope/export").status_code == 404
    html = page.get("/ensembles/stk").get_data(as_text=True)
    assert 'id="export-link"' in html and "/api/ensembles/stk@2/export" in html
