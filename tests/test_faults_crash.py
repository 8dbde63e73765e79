"""Kill -9 of a training process at precise points, and of the database itself: nothing is lost.

The training runs in a real subprocess (tests/fault_driver.py) that stops at a marker; the test
SIGKILLs it there and then checks, from the outside, what a restarted service would see.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from models import jobs
from models.artifacts.loading import load_model
from models.artifacts.maintenance import collect_orphans, referenced_paths, run_artifacts_info, scan_configs
from models.artifacts.routing import get_store
from models.store.configs import ConfigStore, recover_interrupted_trainings
from models.store.db import Database
from models.store.embedded import EmbeddedServer, free_port
from models.training.train import train_config
from tests.fault_driver_util import Driver
from tests.helpers import cls_config


def _state(database, name):
    return {e["name"]: e for e in scan_configs(database)}[name]


def _assert_every_reference_is_whole(database, settings):
    """No config or run document points at a missing, partial or refused file."""
    for run in database.runs.find({}):
        info = run_artifacts_info(database, run["run_id"])
        assert info["all_verified"], info
    for entry in scan_configs(database):
        assert entry["state"] in ("ok", "untrained", "stale"), entry
    store = get_store(settings)
    listed = set(store.list_paths())
    assert referenced_paths(database) <= listed
    assert not any(p.split("/")[-1].startswith(".tmp-") for p in listed)  # temp files are never artifacts


@pytest.mark.parametrize(
    "point,as_job",
    [
        ("cv", True),
        ("write", False),
        ("write", True),
        ("before_run", False),
        ("after_run", True),
    ],
)
def test_kill_9_during_training_loses_nothing(database, settings, games_csv, point, as_job):
    ConfigStore(database).create(cls_config("crash", games_csv, cv_folds=3))
    previous = train_config(database, "crash")
    before = ConfigStore(database).get("crash")

    driver = Driver(settings, point, "crash", *(["--job"] if as_job else []))
    job_id = driver.expect("JOB", timeout=60).split()[1] if as_job else None
    driver.expect(f"MARKER {point}", timeout=60)
    mid = ConfigStore(database).get("crash")
    assert mid["status"] == "training"
    if point == "write":
        assert get_store(settings).temp_files(), "the scaler's temp file should be half written"
    driver.kill()

    # What a restarted service sees, before any cleanup: the config still points at the previous run.
    after = ConfigStore(database).get("crash")
    for field in (
        "run_id",
        "model_artifact_path",
        "scaler_artifact_path",
        "features_path",
        "checksums",
        "version",
        "runs_count",
        "rev",
    ):
        assert after[field] == before[field], field
    _assert_every_reference_is_whole(database, settings)
    assert _state(database, "crash")["state"] == "ok"
    loaded = load_model(settings, after, use_cache=False)
    assert loaded.model.run_id == previous["run_id"]
    runs = {r["run_id"] for r in database.runs.find({"name": "crash"})}
    if point == "after_run":  # the run was recorded (complete, verified files) but never made current
        assert len(runs) == 2 and previous["run_id"] in runs
    else:
        assert runs == {previous["run_id"]}

    # Restart: the job and the config left "training" by the dead process are marked failed.
    recovered = jobs.recover_stale_jobs(database)
    if as_job:
        assert [str(j["_id"]) for j in recovered] == [job_id]
        job = jobs.get_job(database, job_id)
        assert job["status"] == "failed" and job["error"]["code"] == "process_died"
        assert "stopped" in job["error"]["message"]
    else:
        assert recovered == []
    doc = ConfigStore(database).get("crash")
    assert doc["status"] == "failed" and doc["error"]["code"] == "process_died", doc.get("error")
    assert "interrupted" in doc["error"]["message"]
    assert "training_owner" not in doc and "training_started_at" not in doc
    assert recover_interrupted_trainings(database) == []  # idempotent

    # Leftovers of the killed run are unreferenced, so maintenance removes them; nothing referenced goes.
    collect_orphans(database, min_age_s=0)
    assert get_store(settings).temp_files() == []
    _assert_every_reference_is_whole(database, settings)

    # A retrain succeeds and becomes current.
    run = train_config(database, "crash")
    doc = ConfigStore(database).get("crash")
    assert doc["status"] == "trained" and doc["run_id"] == run["run_id"] and "error" not in doc
    assert doc["runs_count"] == before["runs_count"] + 1
    assert load_model(settings, doc, use_cache=False).model.run_id == run["run_id"]
    _assert_every_reference_is_whole(database, settings)


def test_a_live_training_is_not_recovered(database, settings, games_csv):
    """Recovery must not fail a training whose process is alive (here: paused at a marker)."""
    ConfigStore(database).create(cls_config("alive", games_csv, cv_folds=3))
    driver = Driver(settings, "cv", "alive")
    try:
        driver.expect("MARKER cv", timeout=60)
        assert recover_interrupted_trainings(database) == []
        assert ConfigStore(database).get("alive")["status"] == "training"
    finally:
        driver.kill()
    assert [d["name"] for d in recover_interrupted_trainings(database)] == ["alive"]


def test_kill_9_of_the_database_keeps_every_acknowledged_write(tmp_path, settings, games_csv):
    """SIGKILL the embedded server while writers run; after a restart every acknowledged write is there."""
    server = EmbeddedServer(storage_path=tmp_path / "mongo", port=free_port(), run_dir=tmp_path)
    server.start()
    own = settings.with_(
        mongo_uri=server.uri, mongo_db=f"crash_{uuid.uuid4().hex[:8]}", server_selection_timeout_ms=1500
    )
    database = Database.connect(own)
    try:
        store = ConfigStore(database)
        store.create(cls_config("counter", games_csv))
        acked_updates: list[int] = []
        acked_creates: list[str] = []
        stop = threading.Event()

        def updater() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    store.update("counter", {"description": f"update {i}"})
                except Exception:
                    return
                acked_updates.append(i)

        def creator() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    store.create(cls_config(f"c{i}", games_csv))
                except Exception:
                    return
                acked_creates.append(f"c{i}")

        threads = [threading.Thread(target=updater), threading.Thread(target=creator)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while (len(acked_updates) < 30 or len(acked_creates) < 30) and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill_hard()  # mid-write: both threads are in the middle of their loops
        stop.set()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive()
        assert len(acked_updates) >= 30 and len(acked_creates) >= 30

        server.start()
        check = ConfigStore(Database.connect(own))
        doc = check.get("counter")
        last = acked_updates[-1]
        # the write in flight at the kill may or may not have been applied, but nothing acknowledged is lost
        assert doc["description"] in (f"update {last}", f"update {last + 1}")
        assert doc["rev"] in (1 + last, 2 + last)
        names = {d["name"] for d in check.col.find({}, {"name": 1})}
        assert set(acked_creates) <= names
        assert len(names - set(acked_creates) - {"counter"}) <= 1
        check.database.close()
    finally:
        database.close()
        server.stop()
