"""Disk full and an unwritable artifact folder: training fails cleanly, nothing half-written remains,
the config is ``failed`` with the reason, and the previous run stays intact and loadable."""

from __future__ import annotations

import errno
import os
import stat

import pytest

import models.artifacts.atomic as atomic
from models.artifacts.loading import load_model
from models.artifacts.maintenance import scan_configs
from models.errors import ArtifactError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config


def _files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_fails_cleanly_and_keeps_the_previous_run(database, settings, games_csv, monkeypatch, where):
    ConfigStore(database).create(cls_config("full", games_csv))
    previous = train_config(database, "full")
    before = ConfigStore(database).get("full")
    files_before = _files(settings.artifact_dir)
    calls = {"n": 0}

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "write":  # the disk fills up while the third file (features) is written
        real_init, real = atomic._HashingWriter.__init__, atomic._HashingWriter.write

        def init(self, *a, **k):
            real_init(self, *a, **k)
            calls["n"] += 1
            self.nth = calls["n"]

        def write(self, data):
            if self.nth == 3:
                real(self, bytes(data)[:7])  # a few bytes reach the disk, then it is full
                no_space()
            return real(self, data)

        monkeypatch.setattr(atomic._HashingWriter, "__init__", init)
        monkeypatch.setattr(atomic._HashingWriter, "write", write)
    else:  # the fsync of the second file fails
        real_fsync = atomic.os.fsync

        def fsync(fd):
            if stat.S_ISREG(os.fstat(fd).st_mode):  # files, not the folder's fsync
                calls["n"] += 1
                if calls["n"] == 2:
                    no_space()
            return real_fsync(fd)

        monkeypatch.setattr(atomic.os, "fsync", fsync)

    with pytest.raises(ArtifactError) as info:
        train_config(database, "full")
    monkeypatch.undo()
    assert info.value.reason == "write_error"
    assert "No space left on device" in info.value.message and "could not write artifact" in info.value.message
    assert _files(settings.artifact_dir) == files_before  # nothing half-written, no temp file
    doc = ConfigStore(database).get("full")
    assert doc["status"] == "failed" and "No space left on device" in doc["error"]["message"]
    assert doc["error"]["code"] == "artifact_error"
    for field in ("run_id", "model_artifact_path", "checksums", "version", "runs_count", "rev"):
        assert doc[field] == before[field], field
    assert database.runs.count_documents({"name": "full"}) == 1
    assert load_model(settings, doc, use_cache=False).model.run_id == previous["run_id"]
    assert {e["name"]: e["state"] for e in scan_configs(database)}["full"] == "ok"
    train_config(database, "full")  # space is back: a retrain works
    assert ConfigStore(database).get("full")["status"] == "trained"


def test_unwritable_artifact_folder_fails_cleanly(database, settings, games_csv, tmp_path):
    ConfigStore(database).create(cls_config("ro", games_csv))
    if os.geteuid() == 0:  # root writes anywhere: put a file where the folder should be
        blocked = tmp_path / "blocked"
        blocked.write_text("not a folder")
        own = settings.with_(artifact_dir=blocked)
    else:
        blocked = tmp_path / "ro"
        blocked.mkdir(mode=0o500)
        own = settings.with_(artifact_dir=blocked)
    database.settings = own
    try:
        with pytest.raises(ArtifactError, match="could not write artifact") as info:
            train_config(database, "ro")
    finally:
        database.settings = settings
    assert info.value.reason == "write_error"
    doc = ConfigStore(database).get("ro")
    assert doc["status"] == "failed" and "could not write artifact" in doc["error"]["message"]
    assert not doc.get("run_id") and database.runs.count_documents({}) == 0
    if blocked.is_dir():
        assert list(blocked.iterdir()) == []
    else:
        assert blocked.read_text() == "not a folder"
