"""Cancel and commit meet in one atomic state change; work dies with its supervisor.

- A job reported cancelled has committed nothing, and one that committed is reported succeeded:
  cancel lands at random moments of trainings, ensemble creations and suggestions, over many trials.
- After kill -9 of the web server mid-training, the training child never commits (its previous run is
  kept), and it does not outlive the server.

Real server, real web server process, real child processes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from models import jobs
from models.ensembles.service import submit_ensemble
from models.ensembles.suggest import submit_suggestion
from models.errors import ConflictError
from models.store.configs import ConfigStore
from models.store.embedded import free_port
from models.store.ensembles import EnsembleStore
from models.training.service import submit_training
from models.training.train import train_config
from tests.fault_driver_util import ROOT, driver_env
from tests.helpers import cls_config, poll

TRIALS = 10


@pytest.fixture
def runner():
    pool = jobs.InProcessRunner(1)
    yield pool
    pool.shutdown(wait=True, cancel_pending=True)


def files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def cancel_at_random(database, job_id, delay: float) -> bool:
    """Cancel ``job_id`` after ``delay`` s; True when cancel said it cancelled, False when it refused."""
    time.sleep(delay)
    try:
        done = jobs.cancel(database, job_id, requested_by="race")
    except ConflictError as exc:
        assert "already succeeded" in exc.message or "can no longer be cancelled" in exc.message, exc.message
        return False
    assert done["status"] == "failed" and done["error"]["code"] == "cancelled"
    return True


def test_cancel_racing_a_training_commit(database, settings, games_csv, runner):
    store = ConfigStore(database)
    store.create(cls_config("race", games_csv))
    train_config(database, "race")
    rng = random.Random(7)
    outcomes = {"cancelled": 0, "committed": 0}
    for _trial in range(TRIALS):
        before = store.get("race")
        runs_before = database.runs.count_documents({"name": "race"})
        files_before = files(settings.artifact_dir)
        job, _ = submit_training(database, "race", runner=runner)
        said_cancelled = cancel_at_random(database, job["_id"], rng.uniform(0.0, 2.5))
        runner_done = poll(lambda j=job: jobs.is_finished(jobs.get_job(database, j["_id"])) and j, timeout=120)
        assert runner_done
        poll(lambda: store.get("race")["status"] != "training", timeout=60)
        final = jobs.get_job(database, job["_id"])
        after = store.get("race")
        if said_cancelled:
            outcomes["cancelled"] += 1
            assert final["status"] == "failed" and final["error"]["code"] == "cancelled"
            assert after["run_id"] == before["run_id"]  # nothing committed
            assert database.runs.count_documents({"name": "race"}) == runs_before
            time.sleep(0.5)  # the stopped child's cleanup is done once the job has ended; give its files a moment
            assert files(settings.artifact_dir) == files_before
        else:
            outcomes["committed"] += 1
            assert final["status"] == "succeeded", final
            assert after["run_id"] == final["result"]["run_id"] != before["run_id"]
            assert database.runs.count_documents({"name": "race"}) == runs_before + 1
    assert sum(outcomes.values()) == TRIALS


def test_cancel_racing_an_ensemble_commit(database, settings, games_csv, runner):
    store = ConfigStore(database)
    for name, model_type in (("a", "logistic_regression"), ("b", "naive_bayes")):
        store.create(cls_config(name, games_csv, model_type=model_type))
        train_config(database, name)
    rng = random.Random(11)
    for trial in range(TRIALS):
        name = f"race_ens_{trial}"
        job, _ = submit_ensemble(database, {"name": name, "base_models": ["a", "b"]}, runner=runner)
        said_cancelled = cancel_at_random(database, job["_id"], rng.uniform(0.0, 2.0))
        poll(lambda j=job: jobs.is_finished(jobs.get_job(database, j["_id"])), timeout=120)
        final = jobs.get_job(database, job["_id"])
        stored = EnsembleStore(database).find(name)
        if said_cancelled:
            assert final["status"] == "failed" and final["error"]["code"] == "cancelled"
            assert stored is None
        else:
            assert final["status"] == "succeeded", final
            assert stored is not None and stored["run_id"] == final["result"]["run_id"]


def test_a_suggestion_is_a_bounded_job_that_cancel_stops(database, settings, games_csv, runner):
    store = ConfigStore(database)
    for name, model_type in (("a", "logistic_regression"), ("b", "naive_bayes"), ("c", "knn")):
        store.create(cls_config(name, games_csv, model_type=model_type))
        train_config(database, name)
    rng = random.Random(3)
    cancelled = 0
    for trial in range(TRIALS):
        name = f"race_sug_{trial}"
        job, _ = submit_suggestion(database, {"name": name, "from": ["a", "b", "c"]}, runner=runner)
        said_cancelled = cancel_at_random(database, job["_id"], rng.uniform(0.0, 2.0))
        poll(lambda j=job: jobs.is_finished(jobs.get_job(database, j["_id"])), timeout=120)
        final = jobs.get_job(database, job["_id"])
        stored = EnsembleStore(database).find(name)
        if said_cancelled:
            cancelled += 1
            assert final["status"] == "failed" and stored is None
        else:
            assert final["status"] == "succeeded" and stored is not None
    assert cancelled >= 1  # at least one cancel landed while it ran (it runs in a child that can be stopped)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (dead) parent's reaper is gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_kill_9_of_the_web_server_mid_training_commits_nothing(database, settings, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("victim", games_csv, "random_forest", hyperparameters={"n_estimators": 3}))
    previous = train_config(database, "victim")
    store.update("victim", {"hyperparameters": {"n_estimators": 800, "min_samples_leaf": 1}})
    port = free_port()
    token = "kill-test-token-0123456789abcdef"
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=driver_env(settings, API_TOKEN=token, ADMIN_PASSWORD="kill-test-password"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        poll(lambda: _up(url), timeout=60, interval=0.2)
        request = urllib.request.Request(
            f"{url}/api/configs/victim/train", method="POST", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 202
        poll(lambda: (store.get("victim").get("training_owner") or {}).get("pid"), timeout=60)
        child = store.get("victim")["training_owner"]["pid"]
        assert child != server.pid  # the training runs in a child of its own
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        poll(lambda: not _alive(child), timeout=15)  # the child does not outlive the server
        time.sleep(2)
        config = store.get("victim")
        assert config["run_id"] == previous["run_id"]  # the previous run is kept: nothing committed
        assert database.runs.count_documents({"name": "victim"}) == 1
        assert config["status"] in ("failed", "training")  # failed by the child, or repaired at the next start
    finally:
        if server.poll() is None:
            server.kill()


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False
