"""Signed artifacts: the key (file or setting), what a signature covers, legacy runs and ``artifacts sign --all``."""

from __future__ import annotations

import json
import logging
import stat

import pytest

from models.artifacts.cache import ModelCache
from models.artifacts.loading import load_model
from models.artifacts.signing import SigningKeyError, get_signer, new_private_key_text
from models.errors import ArtifactError
from models.settings import Settings
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, run_cli


@pytest.fixture
def trained(database, games_csv):
    ConfigStore(database).create(cls_config("a", games_csv))
    train_config(database, "a")
    return ConfigStore(database).get("a")


def test_key_file_is_made_once_with_mode_0600_and_the_setting_wins(settings):
    settings = settings.with_(artifact_signing_key=None)  # the session's tests share a key; this one makes its own
    signer = get_signer(settings)
    path = settings.signing_key_file
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signer.source == str(path)
    assert get_signer(settings.with_(var_dir=settings.var_dir)).public_key == signer.public_key
    text = new_private_key_text()
    other = settings.with_(var_dir=settings.var_dir / "elsewhere", artifact_signing_key=text)
    from_setting = get_signer(other)
    assert from_setting.source == "ARTIFACT_SIGNING_KEY" and from_setting.public_key != signer.public_key
    assert not (settings.var_dir / "elsewhere").exists()  # no key file made when the setting is given
    with pytest.raises(SigningKeyError, match="ARTIFACT_SIGNING_KEY.*base64"):
        get_signer(settings.with_(artifact_signing_key="not a key"))


def test_every_written_artifact_is_signed_and_a_signature_cannot_move(database, settings, trained, games_csv):
    run = database.runs.find_one({"run_id": trained["run_id"]})
    signer = get_signer(settings)
    assert set(run["artifacts"]) == {"model", "scaler", "features", "metrics", "oof"}
    assert all(signer.artifact_state(ref) == "signed" for ref in run["artifacts"].values())
    assert all(
        ref["signature"].startswith(f"ed25519:{signer.public_key}:") for ref in trained["artifacts"].values()
    )
    ConfigStore(database).create(cls_config("b", games_csv, random_state=3))
    train_config(database, "b")
    other = database.runs.find_one({"name": "b"})
    # b's signature on a's file (or a's whole ref renamed to b's file name) does not verify
    moved = {**run["artifacts"]["model"], "signature": other["artifacts"]["model"]["signature"]}
    renamed = {**run["artifacts"]["model"], "path": other["artifacts"]["model"]["path"]}
    assert signer.artifact_state(moved) == "invalid" and signer.artifact_state(renamed) == "invalid"


def test_another_key_is_refused_unless_trusted(database, settings, trained):
    foreign = get_signer(settings.with_(artifact_signing_key=new_private_key_text()))
    run = database.runs.find_one({"run_id": trained["run_id"]})
    resigned = {k: {**ref, "signature": foreign.sign_ref(ref)} for k, ref in run["artifacts"].items()}
    database.runs.update_one({"_id": run["_id"]}, {"$set": {"artifacts": resigned}})
    doc = database.runs.find_one({"_id": run["_id"]})
    with pytest.raises(ArtifactError) as err:
        load_model(settings, doc, cache=ModelCache())
    assert err.value.reason == "signature_invalid"
    trusting = settings.with_(trusted_keys=(f"ed25519:{foreign.public_key}",))
    assert load_model(trusting, doc, cache=ModelCache()).source == "artifacts"
    with pytest.raises(SigningKeyError, match="TRUSTED_KEYS entry 1"):
        get_signer(settings.with_(trusted_keys=("abc",)))


def test_unsigned_runs_are_refused_by_default_load_with_a_warning_only_when_opted_out(
    database, settings, trained, caplog
):
    """Runs from before signing: refused by default (the database alone is never the trust root), a
    warning only with REQUIRE_SIGNED=0, and ``artifacts sign --all`` (a real process) signs them after
    re-checking their files."""
    unset = {f"artifacts.{k}.signature": "" for k in trained["artifacts"]}
    database.runs.update_one({"run_id": trained["run_id"]}, {"$unset": unset})
    database.configs.update_one({"_id": trained["_id"]}, {"$unset": unset})
    legacy = ConfigStore(database).get("a")
    strict = settings.with_(require_signed=True)
    assert Settings.from_env({}).require_signed, "unsigned artifacts must be refused by default"
    with pytest.raises(ArtifactError) as err:
        load_model(strict, legacy, cache=ModelCache())
    assert err.value.reason == "signature_missing" and "REQUIRE_SIGNED" in err.value.message
    assert err.value.message.count("artifacts sign --all") == 1 and "artifacts adopt" in err.value.message
    opted_out = settings.with_(require_signed=False)
    with caplog.at_level(logging.WARNING, logger="models.artifacts.signing"):
        assert load_model(opted_out, legacy, cache=ModelCache()).source == "artifacts"
    assert any("is not signed" in r.getMessage() and "REQUIRE_SIGNED=0" in r.getMessage() for r in caplog.records)

    result = run_cli(settings, "artifacts", "verify", "--json")
    assert result.returncode == 1 and json.loads(result.stdout)[0]["state"] == "corrupt"
    result = run_cli(settings, "artifacts", "sign", "--all", "--dry-run", "--json")
    assert result.returncode == 0 and len(json.loads(result.stdout)["signed"]) == 10
    assert "signature" not in database.runs.find_one({"run_id": trained["run_id"]})["artifacts"]["model"]
    result = run_cli(settings, "artifacts", "sign", "--all", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["signed"]) == 10 and report["failed"] == [] and report["invalid"] == []
    signed = ConfigStore(database).get("a")
    assert load_model(strict, signed, cache=ModelCache()).source == "artifacts"
    result = run_cli(settings, "artifacts", "verify", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)[0]["state"] == "ok"
    again = run_cli(settings, "artifacts", "sign", "--all", "--json")
    assert json.loads(again.stdout)["signed"] == [] and json.loads(again.stdout)["already_signed"] == 10


def test_sign_all_never_signs_a_file_that_fails_its_checksum(database, settings, trained):
    unset = {f"artifacts.{k}.signature": "" for k in trained["artifacts"]}
    database.runs.update_one({"run_id": trained["run_id"]}, {"$unset": unset})
    database.configs.update_one({"_id": trained["_id"]}, {"$unset": unset})
    path = settings.artifact_dir / trained["model_artifact_path"].rsplit("/", 1)[-1]
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    result = run_cli(settings, "artifacts", "sign", "--all")
    assert result.returncode == 1
    assert "not signed:" in result.stderr and "model" in result.stderr and "checksum mismatch" in result.stderr
    run = database.runs.find_one({"run_id": trained["run_id"]})
    assert "signature" not in run["artifacts"]["model"] and "signature" in run["artifacts"]["scaler"]
    assert "signature" not in database.configs.find_one({"_id": trained["_id"]})["artifacts"]["model"]


def test_key_command_prints_the_public_key(settings):
    result = run_cli(settings, "artifacts", "key", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["public_key"] == get_signer(settings).public_key and data["source"] == get_signer(settings).source
    fresh = run_cli(settings, "artifacts", "key", "--generate").stdout.strip()
    assert get_signer(settings.with_(artifact_signing_key=fresh)).public_key != data["public_key"]


def test_a_bad_signing_key_stops_the_web_app_and_the_cli_with_one_clear_line(settings, database):
    from web import create_app

    with pytest.raises(SigningKeyError, match="ARTIFACT_SIGNING_KEY"):
        create_app(settings.with_(artifact_signing_key="short", admin_password="pw", api_token="t" * 32), database)
    result = run_cli(settings, "artifacts", "key", ARTIFACT_SIGNING_KEY="c2hvcnQ=")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "must be 32 bytes" in result.stderr and "ARTIFACT_SIGNING_KEY" in result.stderr


def _as_format_1(settings, database, doc, kinds=None):
    """Rewrite a document's refs as the previous version wrote them: SHA-256 of 256 KiB blocks, signed then."""
    from models.artifacts.blocks import digests_of

    signer = get_signer(settings)
    old = {}
    for kind, ref in doc["artifacts"].items():
        if kinds and kind not in kinds:
            continue
        data = (settings.artifact_dir / ref["path"].rsplit("/", 1)[-1]).read_bytes()
        ref = {k: v for k, v in ref.items() if k not in ("chunk_blake3", "format", "signature")}
        ref.update(chunk_size=256 * 1024, chunk_sha256=digests_of(data, 256 * 1024, "sha256"))
        old[kind] = {**ref, "signature": signer.sign_ref(ref)}
    update = {"$set": {f"artifacts.{k}": v for k, v in old.items()}}
    database.runs.update_one({"run_id": doc["run_id"]}, update)
    database.configs.update_one({"_id": doc["_id"]}, update)
    return old


def test_format_1_artifacts_load_and_sign_all_converts_them_to_format_2(database, settings, trained):
    """Artifacts written before BLAKE3 (format 1: SHA-256 blocks) keep loading and verifying as they are;
    ``artifacts sign --all`` converts them after checking them, and the converted refs load and verify."""
    old = _as_format_1(settings, database, trained)
    legacy = ConfigStore(database).get("a")
    assert legacy["artifacts"]["model"]["chunk_sha256"] and "chunk_blake3" not in legacy["artifacts"]["model"]
    assert load_model(settings, legacy, cache=ModelCache()).source == "artifacts"

    dry = run_cli(settings, "artifacts", "sign", "--all", "--dry-run", "--json")
    assert dry.returncode == 0 and len(json.loads(dry.stdout)["upgraded"]) == 10
    assert database.runs.find_one({"run_id": trained["run_id"]})["artifacts"]["model"] == old["model"]
    result = run_cli(settings, "artifacts", "sign", "--all")
    assert result.returncode == 0, result.stderr
    assert "converted 10 signed artifacts to artifact format 2" in result.stderr
    for collection in (database.runs, database.configs):
        refs = collection.find_one({"run_id": trained["run_id"]})["artifacts"]
        assert all(r["format"] == 2 and r["chunk_blake3"] and "chunk_sha256" not in r for r in refs.values())
        assert all(get_signer(settings).artifact_state(r) == "signed" for r in refs.values())
    assert load_model(settings, ConfigStore(database).get("a"), cache=ModelCache()).source == "artifacts"
    again = json.loads(run_cli(settings, "artifacts", "sign", "--all", "--json").stdout)
    assert again["upgraded"] == [] and again["signed"] == [] and again["already_signed"] == 10


def test_a_format_1_file_that_fails_its_checksums_is_not_converted(database, settings, trained):
    old = _as_format_1(settings, database, trained, kinds={"model"})
    path = settings.artifact_dir / trained["model_artifact_path"].rsplit("/", 1)[-1]
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ArtifactError) as err:  # the format-1 blocks catch it on load, too
        load_model(settings, ConfigStore(database).get("a"), cache=ModelCache())
    assert err.value.reason == "checksum_mismatch"
    result = run_cli(settings, "artifacts", "sign", "--all")
    assert result.returncode == 1 and "not signed:" in result.stderr and "checksum mismatch" in result.stderr
    assert database.runs.find_one({"run_id": trained["run_id"]})["artifacts"]["model"] == old["model"]


def test_a_format_2_ref_cannot_be_passed_off_as_format_1(database, settings, trained):
    """Swapping a signed ref's BLAKE3 blocks for SHA-256 ones (or dropping its format) breaks the signature."""
    from models.artifacts.blocks import digests_of

    signer = get_signer(settings)
    ref = database.runs.find_one({"run_id": trained["run_id"]})["artifacts"]["model"]
    data = (settings.artifact_dir / ref["path"].rsplit("/", 1)[-1]).read_bytes()
    downgraded = {k: v for k, v in ref.items() if k not in ("chunk_blake3", "format")}
    downgraded["chunk_sha256"] = digests_of(data, ref["chunk_size"], "sha256")
    assert signer.artifact_state(downgraded) == "invalid"
    assert signer.artifact_state({k: v for k, v in ref.items() if k != "format"}) == "invalid"
    assert signer.artifact_state(ref) == "signed"
