"""Import trusts only what it should: an archive signed by this installation or a TRUSTED_KEYS key, or one
the user vouches for with ``--trust``. A crafted archive (pickle swapped, manifest and run.json checksums
rewritten) is refused before anything is written, and its payload never runs."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile

import pandas as pd
import pytest
from bson import json_util

from models.artifacts.signing import get_signer, new_private_key_text
from models.errors import ValidationError
from models.registry.archive import (
    JSON_OPTIONS,
    MANIFEST,
    RUN_MEMBER,
    SIGNATURE,
    export_run,
    import_run,
    read_archive,
)
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import cls_config, run_cli
from tests.test_faults_artifacts import Plant


def write_archive(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def exported(database, games_csv, tmp_path):
    ConfigStore(database).create(cls_config("a", games_csv))
    train_config(database, "a")
    run = database.runs.find_one({"name": "a"})
    out = tmp_path / "a.tar.gz"
    result = export_run(database, run["run_id"], out)
    assert result["signed_by"] == get_signer(database.settings).public_key
    return out


def nothing_new(database, settings, runs_before: int, files_before: set) -> None:
    assert database.runs.count_documents({}) == runs_before
    assert set(p.name for p in settings.artifact_dir.iterdir()) == files_before


def test_own_archive_imports_and_records_who_signed_it(database, settings, exported):
    result = import_run(database, exported, on_conflict="rename", by="tester")
    signer = get_signer(settings)
    assert result["trust"] == {"signed_by": signer.public_key, "trusted": "this installation"}
    run = database.runs.find_one({"run_id": result["run_id"]})
    assert run["imported"]["trust"]["trusted"] == "this installation"
    assert all(signer.artifact_state(ref) == "signed" for ref in run["artifacts"].values())


def test_crafted_archive_is_refused_and_its_payload_never_runs(database, settings, exported, tmp_path, games_csv):
    """The attack of issue 14: swap the model for a pickle that runs code, rewrite the manifest and run.json."""
    marker = tmp_path / "payload-ran"
    evil = pickle.dumps(Plant(marker))
    members = read_archive(exported)
    manifest = json.loads(members[MANIFEST])
    run = json_util.loads(members[RUN_MEMBER].decode(), json_options=JSON_OPTIONS)
    model_member = manifest["artifacts"]["model"]
    members[model_member] = evil
    run["artifacts"]["model"].update(sha256=sha(evil), size=len(evil), chunk_sha256=[sha(evil)])
    members[RUN_MEMBER] = json_util.dumps(run, json_options=JSON_OPTIONS).encode()
    for name in (model_member, RUN_MEMBER):
        manifest["members"][name] = {"sha256": sha(members[name]), "size": len(members[name])}
    members[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode()  # the old manifest.sig stays
    evil_archive = tmp_path / "evil.tar.gz"
    write_archive(evil_archive, members)
    unsigned = tmp_path / "unsigned.tar.gz"
    write_archive(unsigned, {k: v for k, v in members.items() if k != SIGNATURE})
    runs_before = database.runs.count_documents({})
    files_before = set(p.name for p in settings.artifact_dir.iterdir())

    for archive, words in ((evil_archive, "was changed after it was signed"), (unsigned, "is not signed")):
        result = run_cli(settings, "models", "import", str(archive), "--rename")
        assert result.returncode == 2, result.stderr
        assert words in result.stderr and "--trust" in result.stderr and "TRUSTED_KEYS" in result.stderr
        assert "Traceback" not in result.stderr
        nothing_new(database, settings, runs_before, files_before)
    rows = tmp_path / "rows.csv"
    pd.read_csv(games_csv).head(5).to_csv(rows, index=False)
    assert run_cli(settings, "predict", "a", "--csv", str(rows)).returncode == 0  # the real model, untouched
    result = run_cli(settings, "artifacts", "verify", "--json")
    assert result.returncode == 0 and [r["state"] for r in json.loads(result.stdout)] == ["ok"]
    assert not marker.exists()


def test_foreign_archive_needs_trusted_keys_or_explicit_trust(database, settings, games_csv, tmp_path, exported):
    """Another installation (its own key) exports; here it is refused, accepted once its public key is in
    TRUSTED_KEYS, or imported with --trust, which records who vouched and re-signs the files locally."""
    foreign_key = new_private_key_text()
    foreign = Database(
        database.client,
        settings.with_(
            artifact_signing_key=foreign_key,  # it reads our files
            trusted_keys=(get_signer(settings).public_key,),
        ),
    )
    run = database.runs.find_one({"name": "a"})
    archive = tmp_path / "foreign.tar.gz"
    export_run(foreign, run["run_id"], archive)  # its key signs the manifest
    foreign_public = get_signer(foreign.settings).public_key
    runs_before = database.runs.count_documents({})
    files_before = set(p.name for p in settings.artifact_dir.iterdir())
    with pytest.raises(ValidationError) as err:
        import_run(database, archive, on_conflict="rename")
    assert err.value.field == "archive" and "does not trust" in err.value.message
    nothing_new(database, settings, runs_before, files_before)

    trusting = Database(database.client, settings.with_(trusted_keys=(foreign_public,)))
    accepted = import_run(trusting, archive, on_conflict="rename")
    assert accepted["trust"] == {"signed_by": foreign_public, "trusted": "TRUSTED_KEYS"}

    result = run_cli(settings, "models", "import", str(archive), "--rename", "--trust", "--by", "alice", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["trust"]["trusted"] == "explicit" and out["trust"]["trusted_by"] == "alice"
    assert out["trust"]["claimed_key"] == foreign_public and out["trust"]["signed_by"] is None
    doc = database.runs.find_one({"run_id": out["run_id"]})
    assert doc["imported"]["trust"]["trusted_by"] == "alice" and doc["imported"]["trust"]["trusted_at"]
    signer = get_signer(settings)
    assert all(ref["signature"].startswith(f"ed25519:{signer.public_key}:") for ref in doc["artifacts"].values())
    with pytest.raises(ValidationError) as err:
        import_run(database, archive, on_conflict="rename", trust="yes")
    assert err.value.field == "trust"


def test_api_import_needs_an_explicit_trust_field(database, settings, exported, tmp_path):
    import base64

    from tests.helpers import AUTH, PASSWORD, TOKEN
    from web import create_app

    client = create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database).test_client()
    own = base64.b64encode(exported.read_bytes()).decode()
    members = read_archive(exported)
    unsigned = tmp_path / "unsigned.tar.gz"
    write_archive(unsigned, {k: v for k, v in members.items() if k != SIGNATURE})
    body = {"archive_base64": base64.b64encode(unsigned.read_bytes()).decode(), "on_conflict": "rename"}
    assert client.post("/api/registry/import", json=body).status_code == 401
    runs_before = database.runs.count_documents({})
    files_before = set(p.name for p in settings.artifact_dir.iterdir())
    for trust in (None, False, "true"):
        sent = body if trust is None else {**body, "trust": trust}
        resp = client.post("/api/registry/import", json=sent, headers=AUTH)
        assert resp.status_code == 422
        error = resp.get_json()["error"]
        assert error["field"] == ("trust" if trust == "true" else "archive")
        assert trust == "true" or ("is not signed" in error["message"] and "trust" in error["message"])
        nothing_new(database, settings, runs_before, files_before)
    resp = client.post("/api/registry/import", json={**body, "trust": True}, headers=AUTH)
    assert resp.status_code == 403 and "ALLOW_HTTP_TRUST" in resp.get_json()["error"]["message"]
    nothing_new(database, settings, runs_before, files_before)
    allowed = settings.with_(admin_password=PASSWORD, api_token=TOKEN, allow_http_trust=True)
    client = create_app(allowed, database).test_client()
    resp = client.post("/api/registry/import", json={**body, "trust": True}, headers=AUTH)
    assert resp.status_code == 201 and resp.get_json()["trust"]["trusted"] == "explicit"
    assert resp.get_json()["trust"]["trusted_by"]
    resp = client.post("/api/registry/import", json={"archive_base64": own, "on_conflict": "rename"}, headers=AUTH)
    assert resp.status_code == 201 and resp.get_json()["trust"]["trusted"] == "this installation"
    assert database.runs.count_documents({}) == runs_before + 2
