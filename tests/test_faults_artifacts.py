"""Damaged or planted artifacts through the stacking tool: never unpickled, a clear reason, and the
slow path (retraining from the CSV) takes over with that reason. Refusal by the loader itself is
covered in tests/test_artifacts.py; this adds the fallback and the cases it lacks."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from agents.tools.stacking_tool import StackingTool
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, spy_unpickling


class Plant:
    """Unpickling this creates ``path`` (a visible side effect that must never happen)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def tool(database):
    with StackingTool(database=database, lock_timeout=60) as t:
        yield t


@pytest.fixture
def unpickled(monkeypatch):
    """Every byte string handed to the unpickler by the loader."""
    return spy_unpickling(monkeypatch)


@pytest.mark.parametrize(
    "how,reason,words",
    [
        ("truncate", "checksum_mismatch", "fails verification"),
        ("empty", "empty_file", "is empty"),
        ("flip", "checksum_mismatch", "fails verification"),
        ("malicious", "checksum_mismatch", "fails verification"),
        ("forged_db", "signature_invalid", "signature that does not verify"),  # checksums rewritten to match
        ("symlink_out", "path_refused", "resolves outside the artifact folder"),
        ("dotdot", "path_refused", "contains '..'"),
        ("absolute", "path_refused", "is absolute"),
    ],
)
def test_bad_model_artifact_is_never_unpickled_and_is_retrained(
    tool, database, settings, games_csv, tmp_path, unpickled, how, reason, words
):
    ConfigStore(database).create(cls_config("base", games_csv))
    train_config(database, "base")
    doc = ConfigStore(database).get("base")
    path = settings.artifact_dir / doc["model_artifact_path"]
    marker = tmp_path / "side-effect"
    evil = pickle.dumps(Plant(marker))
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flip":
        path.write_bytes(data[:50] + bytes([data[50] ^ 0x20]) + data[51:])
    elif how == "malicious":
        path.write_bytes(evil)
    elif how == "forged_db":  # whoever can write MongoDB makes every recorded checksum match the payload
        path.write_bytes(evil)
        sha = hashlib.sha256(evil).hexdigest()
        forged = {**doc["artifacts"]["model"], "sha256": sha, "size": len(evil), "chunk_sha256": [sha]}
        database.configs.update_one(
            {"_id": doc["_id"]}, {"$set": {"artifacts.model": forged, "checksums.model": sha}}
        )
        database.runs.update_one({"run_id": doc["run_id"]}, {"$set": {"artifacts.model": forged}})
    elif how == "symlink_out":
        outside = tmp_path / "outside_model.pkl"
        outside.write_bytes(evil)
        path.unlink()
        path.symlink_to(outside)
    else:  # a planted document path (the file outside holds the malicious pickle)
        (tmp_path / "evil_model.pkl").write_bytes(evil)
        planted = "../evil_model.pkl" if how == "dotdot" else str(tmp_path / "evil_model.pkl")
        database.configs.update_one({"_id": doc["_id"]}, {"$set": {"model_artifact_path": planted}})
    bad = ConfigStore(database).get("base")

    result = tool._load_model_from_config(bad)
    assert result.source == "retrained" and result.reason == reason
    assert words in result.detail
    assert not marker.exists()  # the planted pickle never ran
    assert evil not in unpickled and all(len(b) > 0 for b in unpickled)
    fresh = ConfigStore(database).get("base")
    assert fresh["run_id"] != doc["run_id"] and fresh["status"] == "trained"
    assert fresh["model_artifact_path"] != bad["model_artifact_path"]
    assert ".." not in fresh["model_artifact_path"] and not fresh["model_artifact_path"].startswith("/")
    again = tool._load_model_from_config("base")  # the next call takes the fast path
    assert again.source in ("cache", "artifacts") and again.run_id == fresh["run_id"]
    assert database.runs.count_documents({"name": "base"}) == 2
    assert not marker.exists()
