"""Bounded work: a job over its time limit, or cancelled, ends failed within seconds, frees its worker
(the next queued job starts), writes nothing and leaves the config on its previous run. Real server,
real child processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from models import jobs
from models.errors import ConflictError, NotFoundError
from models.store import jobs as job_store
from models.store.configs import ConfigStore
from models.training.service import submit_training, train_bounded
from models.training.train import train_config
from tests.helpers import cls_config, create_then_change_csv, poll, run_cli

ROOT = Path(__file__).resolve().parent.parent
# A deliberately slow config on the test data: about a minute of fitting on one core.
SLOW = {"model_type": "random_forest", "hyperparameters": {"n_estimators": 2000, "min_samples_leaf": 1}}
LIMIT_S = 4
SLACK_S = 6  # "within the limit plus a few seconds", on a loaded 2-core machine


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def slow_and_fast(database, games_csv):
    """``slow`` was trained once small (its previous run), then made slow; ``fast`` is quick."""
    store = ConfigStore(database)
    store.create(cls_config("slow", games_csv, "random_forest", hyperparameters={"n_estimators": 3}))
    previous = train_config(database, "slow")
    store.update("slow", SLOW)
    store.create(cls_config("fast", games_csv))
    return previous


@pytest.fixture
def one_worker():
    runner = jobs.InProcessRunner(1)
    yield runner
    runner.shutdown(wait=True, cancel_pending=True)


def _assert_nothing_kept(database, settings, previous, before, code):
    config = ConfigStore(database).get("slow")
    assert config["status"] == "failed"
    assert config["error"]["code"] == code
    assert config["run_id"] == previous["run_id"]  # keeps its previous run
    assert database.runs.count_documents({"name": "slow"}) == 1
    assert files(settings.artifact_dir) == before  # no new file, no temp file


def test_a_job_over_its_time_limit_fails_with_timeout_and_the_next_job_starts(
    database, settings, slow_and_fast, one_worker
):
    database.settings = settings.with_(train_timeout_seconds=LIMIT_S)
    before = files(settings.artifact_dir)
    started = time.monotonic()
    slow, _ = submit_training(database, "slow", runner=one_worker)
    fast, _ = submit_training(database, "fast", runner=one_worker)  # queued behind it (one worker)
    done = jobs.wait(database, slow["_id"], timeout=LIMIT_S + SLACK_S + 10)
    elapsed = time.monotonic() - started
    assert done["status"] == "failed"
    assert done["error"]["code"] == "timeout"
    assert "TRAIN_TIMEOUT_SECONDS" in done["error"]["message"]
    assert elapsed < LIMIT_S + SLACK_S, f"took {elapsed:.1f}s for a {LIMIT_S}s limit"
    nxt = jobs.wait(database, fast["_id"], timeout=60)
    assert nxt["status"] == "succeeded"  # the worker was freed
    assert ConfigStore(database).get("fast")["status"] == "trained"
    fast_run = ConfigStore(database).get("fast")["run_id"]
    assert all(fast_run in f for f in set(files(settings.artifact_dir)) - set(before))  # nothing of "slow"
    config = ConfigStore(database).get("slow")
    assert config["status"] == "failed" and config["error"]["code"] == "timeout"
    assert config["run_id"] == slow_and_fast["run_id"]
    assert database.runs.count_documents({"name": "slow"}) == 1
    assert not [f for f in files(settings.artifact_dir) if f.startswith(".tmp-")]


def test_cancel_stops_a_running_job_within_seconds_and_the_next_job_starts(
    database, settings, slow_and_fast, one_worker
):
    before = files(settings.artifact_dir)
    slow, _ = submit_training(database, "slow", runner=one_worker, requested_by="tester")
    queued, _ = submit_training(database, "fast", runner=one_worker)
    poll(
        lambda: (
            jobs.get_job(database, slow["_id"])["status"] == "running"
            and ConfigStore(database).get("slow")["status"] == "training"
        )
    )
    time.sleep(1.0)  # well inside the fit
    asked = time.monotonic()
    cancelled = jobs.cancel(database, slow["_id"], requested_by="tester")
    assert cancelled["status"] == "failed" and cancelled["error"]["code"] == "cancelled"
    assert "tester" in cancelled["error"]["message"]
    # the worker stops the child and takes the next job within a few seconds
    poll(lambda: jobs.get_job(database, queued["_id"])["status"] != "queued", timeout=SLACK_S)
    assert time.monotonic() - asked < SLACK_S
    assert jobs.wait(database, queued["_id"], timeout=60)["status"] == "succeeded"
    poll(lambda: ConfigStore(database).get("slow")["status"] == "failed", timeout=SLACK_S)
    fast_files = set(files(settings.artifact_dir)) - set(before)
    assert all(ConfigStore(database).get("fast")["run_id"] in f for f in fast_files)
    _assert_nothing_kept(database, settings, slow_and_fast, sorted(set(before) | fast_files), "cancelled")


def test_a_cancelled_queued_job_never_runs(database, settings, slow_and_fast, one_worker):
    database.settings = settings.with_(train_timeout_seconds=LIMIT_S)
    first, _ = submit_training(database, "slow", runner=one_worker)
    second, _ = submit_training(database, "fast", runner=one_worker)
    assert jobs.get_job(database, second["_id"])["status"] == "queued"
    done = jobs.cancel(database, second["_id"])
    assert done["status"] == "failed" and done["error"]["code"] == "cancelled"
    assert "while queued" in done["error"]["message"]
    jobs.wait(database, first["_id"], timeout=LIMIT_S + SLACK_S + 10)
    time.sleep(0.5)
    assert jobs.get_job(database, second["_id"])["started_at"] is None
    assert "run_id" not in ConfigStore(database).get("fast")


def test_cancel_of_an_ended_or_unknown_job_is_refused_by_name(database, settings, games_csv, one_worker):
    ConfigStore(database).create(cls_config("fast", games_csv))
    job, _ = submit_training(database, "fast", runner=one_worker)
    done = jobs.wait(database, job["_id"], timeout=60)
    assert done["status"] == "succeeded"
    with pytest.raises(ConflictError, match="already succeeded"):
        jobs.cancel(database, job["_id"])
    assert jobs.get_job(database, job["_id"])["status"] == "succeeded"
    with pytest.raises(NotFoundError, match="no job with id"):
        jobs.cancel(database, "0123456789abcdef01234567")


def test_train_bounded_honours_the_time_limit(database, settings, slow_and_fast):
    database.settings = settings.with_(train_timeout_seconds=2)
    before = files(settings.artifact_dir)
    started = time.monotonic()
    with pytest.raises(jobs.JobStopped) as caught:
        train_bounded(database, "slow")
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 2 + SLACK_S
    _assert_nothing_kept(database, settings, slow_and_fast, before, "timeout")


def test_errors_of_the_child_come_back_with_their_code_and_field(database, settings, games_csv):
    # the CSV goes away after the config was saved (a missing one is refused at save)
    create_then_change_csv(
        ConfigStore(database), cls_config("gone", games_csv, training_csv=str(games_csv.parent / "nope.csv"))
    )
    with pytest.raises(Exception) as caught:
        train_bounded(database, "gone")
    assert caught.value.code == "data_error"
    assert "nope.csv" in caught.value.message or "not found" in caught.value.message
    assert ConfigStore(database).get("gone")["status"] == "failed"


def test_memory_limit_ends_the_work_with_a_clear_error(database, settings):
    def hog(progress):
        blocks = []
        for _ in range(200):
            blocks.append(bytearray(64 * 1024 * 1024))
        return {"n": len(blocks)}

    with pytest.raises(jobs.ChildError) as caught:
        jobs.run_bounded(hog, memory_limit_mb=1024, timeout=60)
    assert caught.value.code == "memory_limit"
    assert "TRAIN_MEMORY_LIMIT_MB" in caught.value.message


def test_cli_train_stops_at_train_timeout_seconds(database, settings, slow_and_fast):
    before = files(settings.artifact_dir)
    started = time.monotonic()
    out = run_cli(settings, "train", "slow", timeout=120, **{"TRAIN_TIMEOUT_SECONDS": "3"})
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert "TRAIN_TIMEOUT_SECONDS=3" in out.stderr + out.stdout
    # + the CLI's own start-up and its worker process's imports, slow on a loaded machine; the fit
    # itself would take well over a minute
    assert elapsed < 3 + SLACK_S + 20
    _assert_nothing_kept(database, settings, slow_and_fast, before, "timeout")


def test_cli_jobs_list_show_cancel(database, settings, slow_and_fast):
    job, _ = jobs.submit(database, jobs.InProcessRunner(1), "test", "test:held", lambda p: {"ok": True})
    jobs.wait(database, job["_id"], timeout=10)
    queued, _ = job_store.insert_job(database, "train", "train:slow", params={"config": "slow"})
    listed = run_cli(settings, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert str(queued["_id"]) in listed.stdout and str(job["_id"]) in listed.stdout
    shown = run_cli(settings, "jobs", "show", str(queued["_id"]), "--json")
    assert shown.returncode == 0 and '"queued"' in shown.stdout
    out = run_cli(settings, "jobs", "cancel", str(queued["_id"]))
    assert out.returncode == 0, out.stderr
    assert "cancelled" in out.stderr
    after = jobs.get_job(database, queued["_id"])
    assert after["status"] == "failed" and after["error"]["code"] == "cancelled"
    assert "cli" in after["error"]["message"]
    again = run_cli(settings, "jobs", "cancel", str(queued["_id"]))
    assert again.returncode == 2 and "already failed" in again.stderr
    unknown = run_cli(settings, "jobs", "cancel", "nope")
    assert unknown.returncode == 2 and "no job with id 'nope'" in unknown.stderr


def test_where_no_child_can_run_the_work_stops_at_its_next_progress_report(
    database, settings, monkeypatch, one_worker
):
    """A Dask worker process is daemonic and may not start children: there cancel and the time limit
    stop the work at its next progress report (the job document is the signal)."""
    from models.jobs import worker

    monkeypatch.setattr(worker, "can_isolate", lambda: False)
    reports = []

    def slow(progress):
        for i in range(600):
            progress(i / 600, f"step {i}")
            reports.append(i)
            time.sleep(0.05)
        return {"finished": True}

    job, _ = jobs.submit(database, one_worker, "test", "test:coop", slow, bounded=True)
    poll(lambda: len(reports) > 5)
    jobs.cancel(database, job["_id"])
    after = jobs.submit(database, one_worker, "test", "test:next", lambda p: {"ok": True})[0]
    assert jobs.wait(database, after["_id"], timeout=10)["status"] == "succeeded"  # the worker was freed
    stopped_at = len(reports)
    time.sleep(0.3)
    assert len(reports) == stopped_at < 600
    assert jobs.get_job(database, job["_id"])["error"]["code"] == "cancelled"

    database.settings = settings.with_(train_timeout_seconds=1)
    reports.clear()
    job, _ = jobs.submit(database, one_worker, "test", "test:coop2", slow, bounded=True)
    done = jobs.wait(database, job["_id"], timeout=10)
    assert done["status"] == "failed" and done["error"]["code"] == "timeout"
    assert 5 < len(reports) < 600
