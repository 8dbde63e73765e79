"""``artifacts gc`` against a running training and killed uploads, on the real server: files a training has
written but not yet committed are protected by a lease in MongoDB (expiry by the server's clock), the training
re-checks its files right before its commit point, and chunks of a killed GridFS upload are removed."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from bson import Binary, ObjectId

import models.artifacts.lease as lease_mod
import models.training.train as train_mod
from models.artifacts.gridfs import BUCKET
from models.artifacts.lease import ArtifactLease, leased_names
from models.artifacts.maintenance import collect_orphans
from models.artifacts.routing import get_store
from models.errors import ArtifactError
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.train import train_config
from tests.helpers import cls_config


@pytest.fixture(params=["local", "gridfs"])
def db(database, request):
    return Database(database.client, database.settings.with_(artifact_store=request.param))


def paused_training(db, monkeypatch, name):
    """Train ``name`` in a thread that stops right before its commit point until ``go`` is set."""
    at_commit, go, outcome = threading.Event(), threading.Event(), {}
    real = train_mod.recheck_files

    def pause(store, infos):
        infos = list(infos)
        outcome["infos"] = infos
        at_commit.set()
        assert go.wait(60)
        return real(store, infos)

    monkeypatch.setattr(train_mod, "recheck_files", pause)

    def run():
        try:
            outcome["run"] = train_config(db, name)
        except Exception as exc:  # checked by the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert at_commit.wait(120)
    return thread, go, outcome


def test_gc_never_removes_what_a_running_training_may_still_commit(db, games_csv, monkeypatch):
    ConfigStore(db).create(cls_config("busy", games_csv))
    thread, go, outcome = paused_training(db, monkeypatch, "busy")
    names = {info.path.removeprefix("gridfs:") for info in outcome["infos"]}
    assert names <= leased_names(db)  # the lease names every file before the commit
    result = collect_orphans(db, min_age_s=0)  # unreferenced, brand new, and still kept
    assert result["orphan_files"] == [] and result["orphan_chunks"]["chunks"] == 0
    go.set()
    thread.join(120)
    assert "error" not in outcome, outcome.get("error")
    run = outcome["run"]
    store = get_store(db.settings)
    for ref in run["artifacts"].values():  # committed, whole
        assert hashlib.sha256(store.read_bytes(ref["path"])).hexdigest() == ref["sha256"]
    assert leased_names(db) == set()  # released at the commit
    assert collect_orphans(db, min_age_s=0)["orphan_files"] == []  # referenced now


def test_training_rechecks_its_files_and_commits_nothing_when_an_expired_lease_let_gc_take_them(
    db, games_csv, monkeypatch
):
    ConfigStore(db).create(cls_config("slow", games_csv))
    previous = train_config(db, "slow")
    monkeypatch.setattr(lease_mod, "LEASE_TTL_S", 0.001)  # expires at once, by the server's clock
    thread, go, outcome = paused_training(db, monkeypatch, "slow")
    removed = collect_orphans(db, min_age_s=0)["orphan_files"]
    assert len(removed) == 5  # the lease had expired: gc took the new run's files
    go.set()
    thread.join(120)
    assert isinstance(outcome.get("error"), ArtifactError)
    assert "between writing and the commit point" in outcome["error"].message
    config = ConfigStore(db).get("slow")
    assert config["status"] == "failed" and config["run_id"] == previous["run_id"]  # nothing committed
    assert [r["run_id"] for r in db.runs.find({})] == [previous["run_id"]]
    store = get_store(db.settings)
    for ref in previous["artifacts"].values():  # the previous run is untouched
        assert hashlib.sha256(store.read_bytes(ref["path"])).hexdigest() == ref["sha256"]


def test_orphan_gridfs_chunks_of_a_killed_upload_are_removed_and_uploads_in_progress_kept(database):
    db = Database(database.client, database.settings.with_(artifact_store="gridfs"))
    gridfs_store = get_store(db.settings).gridfs
    chunks = db.db[f"{BUCKET}.chunks"]
    # a killed upload: its chunks written, its files document never inserted
    killed, live = ObjectId(), ObjectId()
    chunks.insert_many([{"files_id": killed, "n": i, "data": Binary(b"x" * 1024)} for i in range(4)])
    # an upload in progress on another machine: its record is written before its first chunk
    gridfs_store.uploads.update_one(
        {"_id": live},
        [{"$set": {"filename": "live_model.pkl", "expires_at": {"$add": ["$$NOW", 60_000]}}}],
        upsert=True,
    )
    chunks.insert_many([{"files_id": live, "n": i, "data": Binary(b"y" * 1024)} for i in range(3)])
    complete = gridfs_store.write("done_model.pkl", lambda fh: fh.write(b"z" * 10))
    db.runs.insert_one({"run_id": "done", "artifacts": {"model": complete.to_dict()}})
    assert chunks.count_documents({"files_id": killed}) == 4

    dry = collect_orphans(db, dry_run=True, min_age_s=0)
    assert dry["orphan_chunks"] == {"files": [str(killed)], "chunks": 4}
    assert chunks.count_documents({"files_id": killed}) == 4  # dry run: nothing removed
    result = collect_orphans(db, min_age_s=0)
    assert result["orphan_chunks"] == {"files": [str(killed)], "chunks": 4}
    assert chunks.count_documents({"files_id": killed}) == 0
    assert chunks.count_documents({"files_id": live}) == 3  # the live upload keeps its chunks
    assert gridfs_store.read_bytes(complete.path) == b"z" * 10
    gridfs_store.uploads.delete_one({"_id": live})  # that upload was killed too: now its chunks go
    assert collect_orphans(db, min_age_s=0)["orphan_chunks"] == {"files": [str(live)], "chunks": 3}
    assert chunks.count_documents({}) == chunks.count_documents({"files_id": {"$ne": live}}) >= 1


def test_a_lease_expires_by_the_servers_clock_and_a_dead_owners_lease_protects_nothing(database):
    lease = ArtifactLease(database, "r1", ttl_s=60)
    lease.add(["r1_model.pkl"])
    assert leased_names(database) == {"r1_model.pkl"}
    database.locks.update_one({"_id": lease.id}, {"$set": {"owner.pid": 2**22 + 12345, "owner.instance": "gone"}})
    assert leased_names(database) == set()  # its process on this host is gone
    short = ArtifactLease(database, "r2", ttl_s=0.001)
    short.add(["r2_model.pkl"])
    time.sleep(0.05)  # past its 1 ms (the server's clock has millisecond steps)
    assert leased_names(database) == set()
    with pytest.raises(ValueError, match="ttl_s"):
        ArtifactLease(database, "r3", ttl_s=0)


KILLED_UPLOAD = r"""
import io, sys, time
import gridfs
from models.settings import Settings
from models.store.db import Database
from models.artifacts.routing import get_store
orig = gridfs.GridFSBucket.upload_from_stream_with_id
class Stalling(io.RawIOBase):  # hands out 60 MB, then hangs: the first 48 MB of chunks reach MongoDB
    def __init__(self, data):
        self.buf, self.sent = io.BytesIO(data), 0
    def read(self, size=-1):
        if self.sent >= 60 * 2**20:
            print("STALLED", flush=True)
            time.sleep(600)
        chunk = self.buf.read(size)
        self.sent += len(chunk)
        return chunk
gridfs.GridFSBucket.upload_from_stream_with_id = (
    lambda self, file_id, name, source, **kw: orig(self, file_id, name, Stalling(source), **kw))
s = Settings.from_env({}).with_(mongo_uri=sys.argv[1], mongo_db=sys.argv[2], artifact_store="gridfs",
                                var_dir=__import__("pathlib").Path(sys.argv[3]))
get_store(s).gridfs.write("killed_model.pkl", lambda fh: fh.write(b"k" * (80 * 2**20)))
"""


def test_chunks_of_an_upload_killed_with_kill_9_are_removed(database, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from models.settings import PROJECT_ROOT

    db = Database(database.client, database.settings.with_(artifact_store="gridfs"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_UPLOAD,
            db.settings.effective_mongo_uri,
            db.settings.mongo_db,
            str(tmp_path / "var"),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "STALLED"
        chunks = db.db[f"{BUCKET}.chunks"]
        deadline = time.monotonic() + 60
        while chunks.count_documents({}) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        # while its writer lives, the upload is in progress: gc leaves its chunks alone
        assert collect_orphans(db, min_age_s=0)["orphan_chunks"]["chunks"] == 0
        stored = chunks.count_documents({})
        assert stored > 0 and db.db[f"{BUCKET}.files"].count_documents({}) == 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    result = collect_orphans(db, min_age_s=0)  # its writer died on this host: the chunks are garbage
    assert result["orphan_chunks"]["chunks"] == stored and len(result["orphan_chunks"]["files"]) == 1
    assert db.db[f"{BUCKET}.chunks"].count_documents({}) == 0
    assert db.db[f"{BUCKET}.uploads"].count_documents({}) == 0
