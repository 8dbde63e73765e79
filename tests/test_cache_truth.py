"""What a machine serves follows the source of truth: ``verify`` checks GridFS itself and drops this machine's
cached copies of what fails; ``migrate`` never replaces a corrupt GridFS copy from a cache; a config left
``training`` by a killed CLI run is repaired by the next CLI command; cache sizes take units."""

from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner

from cli.context import AppContext
from cli.main import cli
from models.artifacts.cache import get_model_cache
from models.artifacts.gridfs import BUCKET
from models.artifacts.loading import cache_key, load_model
from models.artifacts.maintenance import scan_configs
from models.artifacts.migrate import migrate_artifacts
from models.artifacts.routing import get_store
from models.errors import ArtifactError
from models.settings import Settings, parse_bytes
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import cls_config


@pytest.fixture
def gdb(database, games_csv):
    db = Database(database.client, database.settings.with_(artifact_store="gridfs"))
    ConfigStore(db).create(cls_config("g", games_csv))
    train_config(db, "g")
    return db


def corrupt_in_gridfs(db: Database, stored_path: str) -> None:
    """Flip a byte of the file's first chunk in GridFS itself."""
    files = db.db[f"{BUCKET}.files"].find_one({"filename": stored_path.removeprefix("gridfs:")})
    chunk = db.db[f"{BUCKET}.chunks"].find_one({"files_id": files["_id"], "n": 0})
    data = bytearray(chunk["data"])
    data[len(data) // 2] ^= 0xFF
    db.db[f"{BUCKET}.chunks"].update_one({"_id": chunk["_id"]}, {"$set": {"data": bytes(data)}})


def test_verify_checks_gridfs_itself_and_drops_this_machines_cached_copies(gdb):
    config = ConfigStore(gdb).get("g")
    sha = config["checksums"]["model"]
    load_model(gdb.settings, config)  # fills the disk cache and the in-memory LRU
    disk_entry = gdb.settings.artifact_cache_dir / sha
    key = cache_key(config["run_id"], config["checksums"])
    assert disk_entry.is_file() and key in get_model_cache(gdb.settings)
    corrupt_in_gridfs(gdb, config["model_artifact_path"])
    assert load_model(gdb.settings, config).source == "cache"  # what verify must put an end to

    report = scan_configs(gdb)
    assert report[0]["state"] == "corrupt" and "checksum mismatch" in report[0]["problems"][0]
    assert not disk_entry.exists() and key not in get_model_cache(gdb.settings)
    with pytest.raises(ArtifactError) as info:
        load_model(gdb.settings, config)
    assert info.value.reason == "checksum_mismatch"


def test_migrate_never_replaces_a_corrupt_gridfs_copy_from_a_cache(gdb):
    config = ConfigStore(gdb).get("g")
    load_model(gdb.settings, config)  # the disk cache holds the good bytes
    corrupt_in_gridfs(gdb, config["model_artifact_path"])
    report = migrate_artifacts(gdb, "local")
    assert not report.complete
    assert {e["document"] for e in report.errors} == {"config g", f"run {config['run_id']}"}
    assert all("fails verification at its source" in e["message"] for e in report.errors)
    assert ConfigStore(gdb).get("g")["model_artifact_path"] == config["model_artifact_path"]  # left as it was
    model_name = config["model_artifact_path"].removeprefix("gridfs:")
    assert not (gdb.settings.artifact_dir / model_name).exists()  # no copy made from the cache
    data = get_store(gdb.settings).gridfs.read_bytes(config["model_artifact_path"])
    assert hashlib.sha256(data).hexdigest() != config["checksums"]["model"]  # GridFS still says the truth


def test_a_config_left_training_by_a_killed_cli_run_is_repaired_by_the_next_cli_command(database, games_csv):
    ConfigStore(database).create(cls_config("stuck", games_csv))
    dead = {"host": __import__("socket").gethostname(), "pid": 2**22 + 4321, "instance": "killed-cli"}
    database.configs.update_one({"name": "stuck"}, {"$set": {"status": "training", "training_owner": dead}})
    result = CliRunner().invoke(
        cli, ["configs", "list", "--json"], obj=AppContext(database.settings), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    doc = ConfigStore(database).get("stuck")
    assert doc["status"] == "failed" and doc["error"]["code"] == "process_died"
    assert "training_owner" not in doc


def test_cache_sizes_take_units():
    s = Settings.from_env({"ARTIFACT_CACHE_BYTES": "4GB", "CACHE_MAX_BYTES": "512MiB"})
    assert s.artifact_cache_bytes == 4 * 10**9 and s.cache_max_bytes == 512 * 2**20
    assert parse_bytes("1.5 GiB") == int(1.5 * 2**30) and parse_bytes("4096") == 4096
    with pytest.raises(ValueError, match="ARTIFACT_CACHE_BYTES.*'4 bananas'"):
        Settings.from_env({"ARTIFACT_CACHE_BYTES": "4 bananas"})
    with pytest.raises(ValueError, match="CACHE_MAX_BYTES"):
        Settings.from_env({"CACHE_MAX_BYTES": "-5MB"})
