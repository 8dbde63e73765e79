import hashlib

import pandas as pd
import pytest

from models.artifacts.gridfs import DiskCache, GridFSArtifactStore
from models.artifacts.loading import load_model
from models.artifacts.routing import get_store
from models.errors import ArtifactError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config


@pytest.fixture
def gridfs_settings(settings):
    return settings.with_(artifact_store="gridfs")


def test_training_writes_to_gridfs_and_another_process_style_load_reads_it(
    database, gridfs_settings, games_csv, tmp_path
):
    from models.store.db import Database

    db = Database(database.client, gridfs_settings)
    ConfigStore(db).create(cls_config("g", games_csv))
    train_config(db, "g")
    doc = ConfigStore(db).get("g")
    assert doc["model_artifact_path"].startswith("gridfs:")
    assert not gridfs_settings.artifact_dir.exists() or not any(gridfs_settings.artifact_dir.iterdir())
    # another machine: its own (empty) disk cache, same database, the deployment's signing key
    other = gridfs_settings.with_(
        var_dir=tmp_path / "other-var", artifact_signing_key_file=gridfs_settings.signing_key_file
    )
    loaded = load_model(other, doc, use_cache=False)
    assert loaded.source == "artifacts"
    frame = pd.read_csv(games_csv).head(50)
    assert loaded.model.predict(frame).shape == (50,)
    cache_files = list(other.artifact_cache_dir.iterdir())
    assert {p.name for p in cache_files} >= {doc["checksums"]["model"], doc["checksums"]["scaler"]}


def test_gridfs_checksum_mismatch_and_missing(database, gridfs_settings, games_csv):
    from models.store.db import Database

    db = Database(database.client, gridfs_settings)
    ConfigStore(db).create(cls_config("g", games_csv))
    train_config(db, "g")
    doc = ConfigStore(db).get("g")
    bad = {**doc, "checksums": {**doc["checksums"], "model": "0" * 64}}
    with pytest.raises(ArtifactError, match="signature that does not verify") as info:
        load_model(gridfs_settings, bad, use_cache=False)  # the signed checksum no longer matches the document's
    assert info.value.reason == "signature_invalid"
    get_store(gridfs_settings).delete(doc["model_artifact_path"])
    for cached in gridfs_settings.artifact_cache_dir.glob("*"):
        cached.unlink()  # the local cache would still serve it; a fresh machine has none
    with pytest.raises(ArtifactError, match="is missing") as info:
        load_model(gridfs_settings, doc, use_cache=False)
    assert info.value.reason == "file_missing"


def test_gridfs_paths_are_plain_names(database):
    store = GridFSArtifactStore(database.db)
    for bad in ("gridfs:../x", "gridfs:a/b", "gridfs:", "cli/models/x"):
        with pytest.raises(ArtifactError) as info:
            store.read_bytes(bad)
        assert info.value.reason == "path_refused"


def test_disk_cache_is_bounded_and_drops_corrupt_entries(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=250)
    blobs = [bytes([i]) * 100 for i in range(3)]
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]
    for sha, blob in zip(shas, blobs):
        cache.put(sha, blob)
    assert cache.size() <= 250 and cache.get(shas[2]) == blobs[2]
    (tmp_path / shas[2]).write_bytes(b"x" * 100)
    assert cache.get(shas[2]) is None and not (tmp_path / shas[2]).exists()


def test_rewrite_replaces_and_lists(database):
    store = GridFSArtifactStore(database.db)
    a = store.write("r_model.pkl", lambda fh: fh.write(b"one"))
    b = store.write("r_model.pkl", lambda fh: fh.write(b"two"))
    assert store.read_bytes(b.path) == b"two" and a.path == b.path
    assert store.list_paths() == ["gridfs:r_model.pkl"]
    assert store.stat(b.path)["size"] == 3
    assert store.delete(b.path) and not store.stat(b.path)["exists"]
