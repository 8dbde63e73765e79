"""Background jobs against the real server: lifecycle, failures, dedupe, bounded pool, recovery, throttling."""

from __future__ import annotations

import logging
import pickle
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring

from models import jobs
from models.errors import DataError, NotFoundError, ValidationError
from models.store import jobs as store
from models.store.db import Database
from models.timeutil import now
from tests.helpers import poll

TIMEOUT = 10.0


@pytest.fixture
def runner(settings):
    r = jobs.InProcessRunner(settings.job_workers)
    yield r
    r.shutdown(wait=True, cancel_pending=True)


def blocked(gate: threading.Event, started: threading.Event | None = None, result=None, report=None):
    """A work function that waits for ``gate``; reports ``report`` = (fraction, message) first."""

    def work(progress):
        if report:
            progress(*report)
        if started is not None:
            started.set()
        assert gate.wait(TIMEOUT), "test gate never opened"
        return result if result is not None else {"ok": True}

    return work


def test_job_goes_queued_running_succeeded_with_progress_and_result(database, runner, settings):
    assert settings.job_workers == 2
    gates = [threading.Event() for _ in range(3)]
    started = [threading.Event() for _ in range(3)]
    ids = []
    for i in range(3):  # two occupy the pool, the third waits in the queue
        job, created = jobs.submit(
            database,
            runner,
            "train",
            f"train:c{i}",
            blocked(gates[i], started[i], result={"n": i, "at": now()}, report=(0.5, f"fold {i}/2")),
            params={"config": f"c{i}"},
            requested_by="tester",
        )
        assert created and job["status"] == "queued"
        ids.append(job["_id"])
    assert started[0].wait(TIMEOUT) and started[1].wait(TIMEOUT)
    assert jobs.get_job(database, ids[2])["status"] == "queued"

    running = poll(
        lambda: (d := jobs.get_job(database, str(ids[0])))["message"] == "fold 0/2" and d, TIMEOUT, 0.01
    )
    assert running["status"] == "running"
    assert running["progress"] == 0.5
    assert running["started_at"] is not None and running["finished_at"] is None
    assert running["owner"]["pid"] == jobs.current_owner()["pid"]
    assert running["owner"]["host"] == socket.gethostname()
    assert running["active_key"] == "train:c0"

    for g in gates:
        g.set()
    done = jobs.wait(database, ids[0], TIMEOUT)
    assert done["status"] == "succeeded"
    assert done["progress"] == 1.0 and done["message"] == "done"
    assert done["result"]["n"] == 0 and isinstance(done["result"]["at"], str)  # JSON-safe
    assert done["error"] is None
    assert done["kind"] == "train" and done["key"] == "train:c0"
    assert done["params"] == {"config": "c0"} and done["requested_by"] == "tester"
    assert "active_key" not in done
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    assert done["duration_s"] == pytest.approx(
        (done["finished_at"] - done["started_at"]).total_seconds(), abs=0.01
    )
    assert [s["message"] for s in done["steps"]] == ["queued", "started", "fold 0/2", "done"]
    assert jobs.wait(database, ids[2], TIMEOUT)["status"] == "succeeded"

    view = jobs.job_to_json(done)
    assert view["id"] == str(ids[0]) and "active_key" not in view and view["finished_at"].endswith("Z")


def test_failing_job_is_failed_with_the_error_message_and_no_result(database, runner, caplog):
    def bad_data(progress):
        progress(0.2, "loading data")
        raise DataError("column 'winner' is missing", field="label_column")

    def crash(progress):
        raise ValueError("boom")

    job, _ = jobs.submit(database, runner, "train", "train:bad", bad_data)
    with caplog.at_level(logging.ERROR, logger="models.jobs"):
        job2, _ = jobs.submit(database, runner, "train", "train:crash", crash)
        failed2 = jobs.wait(database, job2["_id"], TIMEOUT)
    failed = jobs.wait(database, job["_id"], TIMEOUT)

    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "data_error",
        "message": "column 'winner' is missing",
        "field": "label_column",
    }
    assert failed["result"] is None
    assert failed["progress"] == 0.2  # the last reported progress is kept
    assert failed["message"] == "failed: column 'winner' is missing"
    assert failed["finished_at"] is not None and failed["duration_s"] >= 0
    assert "active_key" not in failed

    assert failed2["status"] == "failed" and failed2["result"] is None
    assert failed2["error"] == {"code": "internal_error", "message": "ValueError: boom"}
    assert "Traceback" not in failed2["error"]["message"]
    logged = [r for r in caplog.records if r.exc_info and str(job2["_id"]) in r.getMessage()]
    assert logged, "the traceback of an unexpected error is logged"


def test_a_result_that_is_not_json_safe_fails_the_job(database, runner):
    job, _ = jobs.submit(database, runner, "train", "train:obj", lambda progress: {"model": object()})
    failed = jobs.wait(database, job["_id"], TIMEOUT)
    assert failed["status"] == "failed" and failed["error"]["code"] == "invalid_result"
    assert failed["result"] is None


def test_submitting_the_same_key_returns_the_running_job(database, runner):
    gate, started = threading.Event(), threading.Event()
    job, created = jobs.submit(database, runner, "train", "train:dup", blocked(gate, started))
    assert created and started.wait(TIMEOUT)
    ran_second = threading.Event()

    def second(progress):
        ran_second.set()
        return {}

    again, created_again = jobs.submit(database, runner, "train", "train:dup", second)
    assert not created_again
    assert again["_id"] == job["_id"] and again["status"] == "running"
    gate.set()
    assert jobs.wait(database, job["_id"], TIMEOUT)["status"] == "succeeded"
    assert not ran_second.is_set()

    # once it ended, the key is free again
    third, created_third = jobs.submit(database, runner, "train", "train:dup", second)
    assert created_third and third["_id"] != job["_id"]
    assert jobs.wait(database, third["_id"], TIMEOUT)["status"] == "succeeded"
    assert ran_second.is_set()
    assert database.jobs.count_documents({"key": "train:dup"}) == 2


def test_concurrent_submits_of_one_key_create_exactly_one_job(database, runner):
    gate = threading.Event()
    n = 8
    barrier = threading.Barrier(n)
    results, errors = [], []

    def submit_one():
        try:
            barrier.wait(TIMEOUT)
            results.append(jobs.submit(database, runner, "ensemble", "ensemble:e1", blocked(gate)))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    gate.set()
    assert not errors
    assert len(results) == n
    assert sum(created for _, created in results) == 1
    assert len({job["_id"] for job, _ in results}) == 1
    assert database.jobs.count_documents({"key": "ensemble:e1"}) == 1
    assert jobs.wait(database, results[0][0]["_id"], TIMEOUT)["status"] == "succeeded"


def test_the_pool_is_bounded_by_job_workers(database, settings):
    runner = jobs.InProcessRunner(settings.with_(job_workers=2).job_workers)
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def work(progress):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.12)
        with lock:
            state["now"] -= 1
        return {}

    try:
        ids = [jobs.submit(database, runner, "train", f"train:b{i}", work)[0]["_id"] for i in range(5)]
        assert len(jobs.list_jobs(database, status="queued")) >= 1
        for job_id in ids:
            assert jobs.wait(database, job_id, TIMEOUT)["status"] == "succeeded"
    finally:
        runner.shutdown(wait=True)
    assert state["max"] == 2


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(TIMEOUT)
    return proc.pid


def _insert_active(database, key, owner, heartbeat_at, status="running"):
    stamp = now()
    return database.jobs.insert_one(
        {
            "kind": "train",
            "key": key,
            "active_key": key,
            "params": {},
            "status": status,
            "progress": 0.3,
            "message": "fold 1/5",
            "steps": [],
            "error": None,
            "result": None,
            "created_at": stamp,
            "started_at": stamp if status == "running" else None,
            "finished_at": None,
            "duration_s": None,
            "owner": owner,
            "heartbeat_at": heartbeat_at,
            "requested_by": None,
        }
    ).inserted_id


def test_recovery_fails_jobs_of_dead_processes_and_leaves_live_ones(database, runner):
    host = socket.gethostname()
    dead = _dead_pid()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        fresh = now()
        dead_id = _insert_active(database, "train:dead", {"host": host, "pid": dead, "instance": "gone"}, fresh)
        dead_queued = _insert_active(
            database, "train:deadq", {"host": host, "pid": dead, "instance": "gone"}, fresh, status="queued"
        )
        live_id = _insert_active(database, "train:live", {"host": host, "pid": alive.pid, "instance": "x"}, fresh)
        remote_ok = _insert_active(
            database, "train:remote", {"host": "elsewhere", "pid": 7, "instance": "y"}, fresh
        )
        remote_stale = _insert_active(
            database,
            "train:stale",
            {"host": "elsewhere", "pid": 8, "instance": "z"},
            fresh - timedelta(seconds=120),
        )
        gate, started = threading.Event(), threading.Event()
        mine, _ = jobs.submit(database, runner, "train", "train:mine", blocked(gate, started))
        assert started.wait(TIMEOUT)

        recovered = jobs.recover_stale_jobs(database, stale_after_s=60)

        assert {j["_id"] for j in recovered} == {dead_id, dead_queued, remote_stale}
        failed = jobs.get_job(database, dead_id)
        assert failed["status"] == "failed" and failed["result"] is None
        assert failed["error"]["code"] == "process_died"
        assert failed["error"]["message"] == f"the process running this job stopped (pid {dead} on host {host})"
        assert failed["finished_at"] is not None and "active_key" not in failed
        assert jobs.get_job(database, dead_queued)["status"] == "failed"
        stale = jobs.get_job(database, remote_stale)
        assert stale["error"]["message"].startswith(
            "the process running this job stopped (pid 8 on host elsewhere"
        )
        for job_id in (live_id, remote_ok, mine["_id"]):
            assert jobs.get_job(database, job_id)["status"] == "running"
        assert jobs.get_job(database, live_id)["active_key"] == "train:live"

        # the dead job's key can be trained again
        again, created = jobs.submit(database, runner, "train", "train:dead", lambda progress: {})
        assert created and jobs.wait(database, again["_id"], TIMEOUT)["status"] == "succeeded"
        gate.set()
        assert jobs.wait(database, mine["_id"], TIMEOUT)["status"] == "succeeded"
    finally:
        alive.kill()
        alive.wait(TIMEOUT)


class UpdateCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.updates = 0

    def started(self, event):
        if event.command_name in ("update", "findAndModify"):
            self.updates += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_progress_writes_are_throttled(settings, mongo_uri):
    counter = UpdateCounter()
    database = Database(MongoClient(mongo_uri, tz_aware=True, event_listeners=[counter]), settings)
    database.ensure_indexes()
    runner = jobs.InProcessRunner(1)
    try:

        def tight(progress):
            for i in range(5000):
                progress(i / 5000, "fold 1/1")
            progress(1.0, "saving artifacts")
            return {}

        job, _ = jobs.submit(database, runner, "train", "train:tight", tight)
        done = jobs.wait(database, job["_id"], TIMEOUT)
        assert done["status"] == "succeeded"
        # claim + a few progress writes + finish, not 5000
        assert counter.updates < 15
        assert [s["message"] for s in done["steps"]] == [
            "queued",
            "started",
            "fold 1/1",
            "saving artifacts",
            "done",
        ]
    finally:
        runner.shutdown(wait=True)
        database.client.drop_database(settings.mongo_db)
        database.close()


def test_progress_writer_throttles_by_time_unless_the_message_changes(database):
    job, _ = store.insert_job(database, "train", "train:pw")
    store.claim(database, job["_id"])
    clock = [100.0]
    writer = jobs.ProgressWriter(database, job["_id"], min_interval=0.2, clock=lambda: clock[0])
    writer(0.1, "fold 1/3")
    for f in (0.11, 0.12, 0.13):
        writer(f, "fold 1/3")
    assert writer.writes == 1
    assert jobs.get_job(database, job["_id"])["progress"] == 0.1
    writer(0.34, "fold 2/3")  # a new message is written at once
    assert writer.writes == 2
    writer(0.4, "fold 2/3")
    clock[0] += 0.25
    writer(0.5, "fold 2/3")  # enough time passed
    assert writer.writes == 3
    writer(7, "fold 2/3")  # clamped, held back
    assert jobs.get_job(database, job["_id"])["progress"] == 0.5
    writer.flush()
    doc = jobs.get_job(database, job["_id"])
    assert doc["progress"] == 1.0 and doc["message"] == "fold 2/3"
    assert [s["message"] for s in doc["steps"]] == ["queued", "started", "fold 1/3", "fold 2/3"]


def test_steps_log_is_bounded(database, runner):
    def chatty(progress):
        for i in range(store.MAX_STEPS + 20):
            progress(i / 100, f"step {i}")
        return {}

    job, _ = jobs.submit(database, runner, "train", "train:chatty", chatty)
    done = jobs.wait(database, job["_id"], TIMEOUT)
    assert len(done["steps"]) == store.MAX_STEPS
    assert done["steps"][-1]["message"] == "done"


def test_heartbeat_refreshes_only_active_jobs_of_this_process(database, runner):
    gate, started = threading.Event(), threading.Event()
    job, _ = jobs.submit(database, runner, "train", "train:hb", blocked(gate, started))
    assert started.wait(TIMEOUT)
    old = now() - timedelta(seconds=30)
    other = _insert_active(database, "train:other", {"host": "elsewhere", "pid": 9, "instance": "q"}, old)
    database.jobs.update_one({"_id": job["_id"]}, {"$set": {"heartbeat_at": old}})
    hb = jobs.Heartbeat(interval=0.05)
    hb.track(database, job["_id"])
    hb.track(database, other)
    poll(lambda: jobs.get_job(database, job["_id"])["heartbeat_at"] > old + timedelta(seconds=20), TIMEOUT, 0.01)
    assert jobs.get_job(database, other)["heartbeat_at"] <= old + timedelta(milliseconds=1)
    assert job["_id"] in jobs.HEARTBEAT.tracked()
    gate.set()
    jobs.wait(database, job["_id"], TIMEOUT)
    poll(lambda: job["_id"] not in jobs.HEARTBEAT.tracked(), TIMEOUT, 0.01)
    hb.close()
    assert not hb._thread.is_alive()


def _pickled_work(progress):
    progress(0.5, "remote half")
    return {"where": "elsewhere"}


def test_a_job_task_pickles_without_its_connection_and_runs_on_its_own(database, settings):
    """What another executor (Dask) needs: the task crosses a process boundary and connects itself."""
    job, _ = store.insert_job(database, "train", "train:pickled")
    task = jobs.JobTask(settings, str(job["_id"]), _pickled_work, database=database)
    clone = pickle.loads(pickle.dumps(task))
    assert clone.database is None and clone.settings == settings
    done = clone()
    assert done["status"] == "succeeded" and done["result"] == {"where": "elsewhere"}
    assert "remote half" in [s["message"] for s in done["steps"]]
    assert clone() is None  # a job runs once: it is no longer queued


def test_unknown_job_id_is_not_found_and_named(database):
    missing = str(ObjectId())
    with pytest.raises(NotFoundError, match=missing):
        jobs.get_job(database, missing)
    with pytest.raises(NotFoundError, match="not-an-id"):
        jobs.get_job(database, "not-an-id")


def test_list_jobs_filters_and_validates(database, runner):
    a, _ = jobs.submit(database, runner, "train", "train:l1", lambda p: {})
    b, _ = jobs.submit(database, runner, "ensemble", "ensemble:l2", lambda p: {})
    jobs.wait(database, a["_id"], TIMEOUT)
    jobs.wait(database, b["_id"], TIMEOUT)
    assert [j["_id"] for j in jobs.list_jobs(database)] == [b["_id"], a["_id"]]
    assert [j["_id"] for j in jobs.list_jobs(database, kind="train")] == [a["_id"]]
    assert jobs.list_jobs(database, status="failed") == []
    assert len(jobs.list_jobs(database, limit=1)) == 1
    with pytest.raises(ValidationError):
        jobs.list_jobs(database, status="bogus")
    with pytest.raises(ValidationError):
        jobs.submit(database, runner, "train", "", lambda p: {})
    with pytest.raises(ValidationError):
        jobs.submit(database, runner, "train", "train:x", lambda p: {}, params={"f": object()})


def test_wait_times_out_naming_the_job(database, runner):
    gate = threading.Event()
    job, _ = jobs.submit(database, runner, "train", "train:slow", blocked(gate))
    try:
        with pytest.raises(jobs.JobTimeoutError, match=str(job["_id"])):
            jobs.wait(database, job["_id"], timeout=0.1)
    finally:
        gate.set()
    jobs.wait(database, job["_id"], TIMEOUT)


def test_shut_down_runner_refuses_and_cancelled_jobs_fail(database, settings):
    runner = jobs.InProcessRunner(1)
    gate, started = threading.Event(), threading.Event()
    first, _ = jobs.submit(database, runner, "train", "train:s1", blocked(gate, started))
    queued, _ = jobs.submit(database, runner, "train", "train:s2", lambda p: {})
    assert started.wait(TIMEOUT)
    runner.shutdown(wait=False, cancel_pending=True)
    gate.set()
    assert jobs.wait(database, first["_id"], TIMEOUT)["status"] == "succeeded"
    cancelled = jobs.wait(database, queued["_id"], TIMEOUT)
    assert cancelled["status"] == "failed" and cancelled["error"]["code"] == "cancelled"
    with pytest.raises(jobs.RunnerUnavailableError):
        jobs.submit(database, runner, "train", "train:s3", lambda p: {})
    refused = jobs.list_jobs(database, key="train:s3")[0]
    assert refused["status"] == "failed" and refused["error"]["code"] == "runner_unavailable"


def test_default_runner_is_created_once_from_settings(settings):
    jobs.shutdown_default_runner()
    try:
        r = jobs.get_default_runner(settings.with_(job_workers=3))
        assert isinstance(r, jobs.InProcessRunner) and r.workers == 3
        assert jobs.get_default_runner(settings) is r
    finally:
        jobs.shutdown_default_runner()
    assert jobs.get_default_runner(settings) is not r
    jobs.shutdown_default_runner()
