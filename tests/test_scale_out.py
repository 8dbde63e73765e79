"""Scale out on a real Dask ``LocalCluster`` (two worker processes) with artifacts in GridFS.

Shows: training jobs run on the workers (not in this process) while their
state and progress live in MongoDB; artifacts land in GridFS and another
process loads them; a worker killed mid-job leaves the job failed with the
reason, and the same key trains fine when submitted again; an ensemble's
slow-path retrain goes to the cluster and still trains once; CV folds spread
over the workers with joblib's Dask backend and give identical results; and
nothing is half-written (no GridFS file without a document, no document
pointing at a missing file, no stray chunks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import joblib
import numpy as np
import pandas as pd
import pytest

from models import jobs
from models.artifacts.gridfs import is_gridfs_path
from models.artifacts.loading import load_model
from models.artifacts.maintenance import referenced_paths
from models.artifacts.routing import get_store
from models.ensembles.build import create_ensemble, load_ensemble
from models.settings import PROJECT_ROOT
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.runs import RunStore
from models.training.data import load_training_data
from models.training.service import submit_training as service_submit_training
from models.training.train import fit_config, train_config
from tests.helpers import cls_config

distributed = pytest.importorskip("distributed")
from models.jobs.dask_runner import DaskRunner  # noqa: E402  (needs distributed)

pytestmark = pytest.mark.slow

JOB_TIMEOUT = 90


WORKER_DB = f"scale_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cluster(mongo_uri, tmp_path_factory):
    """Two worker processes, one thread each; the project importable there, and settings of their own
    (the workers build ``get_settings()`` from this environment: same database, GridFS, own folders)."""
    worker_root = tmp_path_factory.mktemp("worker")
    env = {
        "PYTHONPATH": str(PROJECT_ROOT),
        "MONGO_URI": mongo_uri,
        "MONGO_DB": WORKER_DB,
        "ARTIFACT_STORE": "gridfs",
        "ARTIFACT_DIR": str(worker_root / "artifacts"),
        "VAR_DIR": str(worker_root / "var"),
        "DATA_DIR": str(worker_root / "data"),
    }
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
        env=env,
        silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def runner(cluster):
    """A DaskRunner on the cluster as the process's default runner (restored afterwards)."""
    cluster.wait_for_workers(2, timeout=60)
    runner = DaskRunner(client=cluster)
    previous = jobs.set_default_runner(runner)
    yield runner
    runner.shutdown(wait=False, cancel_pending=True)
    jobs.set_default_runner(previous)


@pytest.fixture
def db(database, runner):
    """The workers' database with GridFS artifacts and the cluster configured (dropped after each test)."""
    settings = database.settings.with_(
        artifact_store="gridfs", dask_scheduler_address=runner.address, mongo_db=WORKER_DB
    )
    db = Database(database.client, settings)
    db.ensure_indexes(force=True)  # the previous test dropped this database, and its indexes with it
    yield db
    database.client.drop_database(WORKER_DB)


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def submit_training(database: Database, name: str, *, block_at: str | None = None):
    """Queue the training of ``name`` the way the web app does: a closure over the Database."""
    config_id = ConfigStore(database).get(name)["_id"]

    def work(progress):
        def report(fraction, message):
            progress(fraction, message)
            if block_at and block_at in message:
                time.sleep(JOB_TIMEOUT)  # the test kills this worker meanwhile

        run = train_config(database, config_id, progress=report)
        return {"run_id": run["run_id"], "pid": os.getpid()}

    return jobs.submit(database, None, "train", f"train:{name}", work, params={"config": name})


def assert_nothing_half_written(database: Database, damaged: frozenset[str] = frozenset()) -> None:
    """Every referenced file exists and verifies; every GridFS file is referenced; no stray chunks.

    ``damaged``: paths a test removed on purpose (still referenced by an old run).
    """
    store = get_store(database.settings)
    referenced = referenced_paths(database) - damaged
    for col in (database.runs, database.ensembles, database.configs):
        for doc in col.find({}):
            for ref in (doc.get("artifacts") or {}).values():
                if ref["path"] in damaged:
                    continue
                data = store.gridfs.read_bytes(ref["path"])  # no cache: the bytes in GridFS
                assert hashlib.sha256(data).hexdigest() == ref["sha256"], ref["path"]
    files = list(database.db["artifacts.files"].find({}, {"filename": 1}))
    assert {f"gridfs:{f['filename']}" for f in files} == referenced
    ids = {f["_id"] for f in files}
    assert set(database.db["artifacts.chunks"].distinct("files_id")) <= ids
    assert not database.settings.artifact_dir.exists() or not any(database.settings.artifact_dir.iterdir())


def test_default_runner_follows_the_setting(settings, cluster):
    previous = jobs.set_default_runner(None)
    try:
        assert isinstance(jobs.get_default_runner(settings), jobs.InProcessRunner)
        jobs.shutdown_default_runner()
        address = cluster.scheduler.address
        runner = jobs.get_default_runner(settings.with_(dask_scheduler_address=address))
        assert isinstance(runner, DaskRunner)
        assert runner.describe() == {
            "runner": "dask",
            "scheduler": address,
            "workers": 2,
            "state": "connected",
            "tls": False,
            "reconnects": 0,
        }
    finally:
        jobs.shutdown_default_runner()
        jobs.set_default_runner(previous)
    with pytest.raises(jobs.RunnerUnavailableError, match="DASK_SCHEDULER_ADDRESS"):
        DaskRunner("tcp://127.0.0.1:9", connect_timeout=1)
    with pytest.raises(ValueError, match="address"):
        DaskRunner("  ")


def test_jobs_run_on_workers_and_artifacts_land_in_gridfs(db, cluster, games_csv, tmp_path):
    store = ConfigStore(db)
    names = ["lr", "nb"]
    store.create(cls_config("lr", games_csv))
    # one of them validated in time order: the worker reads the split from the config like the rest
    store.create(cls_config("nb", games_csv, model_type="naive_bayes", split="time", time_column="game_date"))
    submitted = [service_submit_training(db, n, requested_by="test") for n in names]  # ids only travel
    assert all(created for _, created in submitted)
    pids = worker_pids(cluster)
    workers = set(cluster.scheduler_info()["workers"])
    for job, _ in submitted:
        done = jobs.wait(db, job["_id"], timeout=JOB_TIMEOUT)
        assert done["status"] == "succeeded", done.get("error")
        # ran on a worker, not here: the job document says so
        assert done["owner"]["pid"] != os.getpid() and done["owner"]["pid"] in pids
        assert done["owner"]["pid"] == done["worker"]["pid"]
        assert done["worker"]["address"] in workers
        # progress written by the worker, readable here (what the web page shows)
        messages = [s["message"] for s in done["steps"]]
        assert "fold 2/3" in messages and "saving artifacts" in messages and done["progress"] == 1.0
    for name in names:
        config = store.get(name)
        assert config["status"] == "trained"
        assert config["fold_spec"].get("split", "random") == ("time" if name == "nb" else "random")
        assert all(
            is_gridfs_path(config[f]) for f in ("model_artifact_path", "scaler_artifact_path", "features_path")
        )
    assert_nothing_half_written(db)

    # another process (fresh disk cache, no artifact folder) loads the models and predicts
    rows = tmp_path / "rows.csv"
    pd.read_csv(games_csv).head(25).to_csv(rows, index=False)
    env = {
        **os.environ,
        "MONGO_URI": db.settings.effective_mongo_uri,
        "MONGO_DB": db.settings.mongo_db,
        "ARTIFACT_STORE": "gridfs",
        "VAR_DIR": str(tmp_path / "other-var"),
        "ARTIFACT_SIGNING_KEY_FILE": str(db.settings.signing_key_file),  # one key per deployment
        "ARTIFACT_DIR": str(tmp_path / "other-artifacts"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    script = (
        "import json, sys, pandas as pd\n"
        "from models.settings import get_settings\nfrom models.store.db import Database\n"
        "from models.store.configs import ConfigStore\nfrom models.artifacts.loading import load_model\n"
        "s = get_settings(); db = Database.connect(s, autostart=False)\n"
        "out = {n: load_model(s, ConfigStore(db).get(n)).model.predict_proba(pd.read_csv(sys.argv[1])).tolist()"
        " for n in sys.argv[2:]}\nprint(json.dumps({'pid': __import__('os').getpid(), 'out': out}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(rows), *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    assert answer["pid"] != os.getpid()
    frame = pd.read_csv(rows)
    for name in names:
        here = load_model(db.settings, store.get(name), use_cache=False).model.predict_proba(frame)
        assert np.array_equal(np.asarray(answer["out"][name]), here)
    assert (tmp_path / "other-var" / "artifact-cache").is_dir()  # it read GridFS through its own disk cache
    assert not (tmp_path / "other-artifacts").exists()


def test_killed_worker_leaves_the_job_failed_and_retryable(db, cluster, games_csv):
    ConfigStore(db).create(
        cls_config(
            "victim", games_csv, model_type="random_forest", hyperparameters={"n_estimators": 10, "max_depth": 4}
        )
    )
    job, _ = submit_training(db, "victim", block_at="fold 2/3")
    deadline = time.monotonic() + JOB_TIMEOUT
    while True:
        doc = jobs.get_job(db, job["_id"])
        if doc["status"] == "running" and doc.get("message") == "fold 2/3":
            break
        assert doc["status"] in ("queued", "running") and time.monotonic() < deadline, doc
        time.sleep(0.1)
    pid = doc["owner"]["pid"]
    assert pid != os.getpid() and pid in worker_pids(cluster)
    assert ConfigStore(db).get("victim")["status"] == "training"
    os.kill(pid, signal.SIGKILL)

    failed = jobs.wait(db, job["_id"], timeout=JOB_TIMEOUT)
    assert failed["status"] == "failed" and failed["error"]["code"] == "process_died"
    assert f"pid {pid}" in failed["error"]["message"] and "Dask worker" in failed["error"]["message"]
    assert "active_key" not in failed
    config = ConfigStore(db).get("victim")
    assert config["status"] == "failed" and not config.get("run_id")  # never reached its commit point
    assert_nothing_half_written(db)

    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    retry, created = submit_training(db, "victim")
    assert created and retry["_id"] != job["_id"]
    done = jobs.wait(db, retry["_id"], timeout=JOB_TIMEOUT)
    assert done["status"] == "succeeded", done.get("error")
    assert ConfigStore(db).get("victim")["status"] == "trained"
    assert RunStore(db).for_name("victim") and len(RunStore(db).for_name("victim")) == 1
    assert_nothing_half_written(db)


def test_ensemble_retrain_runs_on_the_cluster_once(db, games_csv, monkeypatch):
    store = ConfigStore(db)
    for name, model_type in (("a", "logistic_regression"), ("b", "naive_bayes")):
        store.create(cls_config(name, games_csv, model_type=model_type))
        train_config(db, name)
    broken = store.get("b")
    get_store(db.settings).gridfs.delete(broken["model_artifact_path"])
    for cached in db.settings.artifact_cache_dir.glob("*"):
        cached.unlink()

    def not_here(*args, **kwargs):
        raise AssertionError("the retrain ran in the test process, not on the cluster")

    monkeypatch.setattr(jobs.InProcessRunner, "submit", not_here)

    records, errors = {}, []

    def create(name):
        try:
            records[name] = create_ensemble(db, name, ["a", "b"])
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in ("e1", "e2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOB_TIMEOUT)
    assert not errors and set(records) == {"e1", "e2"}
    sources = sorted(next(b["source"] for b in r["base_models"] if b["name"] == "b") for r in records.values())
    assert sources[1] == "retrained" and sources[0] in ("artifacts", "cache", "retrained")
    runs = RunStore(db).for_name("b")
    assert len(runs) == 2 and runs[0]["requested_by"] == "stacking"  # trained once more, not twice
    assert store.get("b")["run_id"] == runs[0]["run_id"]
    frame = pd.read_csv(games_csv).head(10)
    assert load_ensemble(db, "e1").predict_proba(frame).shape == (10, 2)
    assert_nothing_half_written(db, damaged=frozenset({broken["model_artifact_path"]}))


def test_cv_folds_spread_over_workers_with_identical_results(cluster, games_csv, settings):
    config = {
        **cls_config(
            "folds", games_csv, model_type="random_forest", hyperparameters={"n_estimators": 8, "max_depth": 4}
        ),
        "cv_folds": 4,
    }
    data = load_training_data(config, settings)
    here = fit_config(config, data)
    with distributed.get_task_stream(client=cluster) as stream, joblib.parallel_backend("dask", client=cluster):
        spread = fit_config(config, data, n_jobs=-1)
    fold_tasks = [t for t in stream.data if "_fit_fold" in str(t["key"])]
    assert len(fold_tasks) == 4
    assert {t["worker"] for t in fold_tasks} <= set(cluster.scheduler_info()["workers"])
    assert np.array_equal(here.oof, spread.oof) and np.array_equal(here.fold_ids, spread.fold_ids)
    assert here.cv["scores"] == spread.cv["scores"] and np.array_equal(here.test_pred, spread.test_pred)
    with pytest.raises(ValueError, match="n_jobs"):
        fit_config(config, data, n_jobs=0)


def test_shutdown_waits_for_a_job_still_running_through_the_runners_own_client(cluster):
    """The CLI shuts its runner down right after MongoDB says the job ended; the job's future may not have
    arrived yet. Waiting for it must use the runner's client (not a default one, which there is none of)."""
    import functools

    runner = DaskRunner(client=cluster)
    future = runner.submit("000000000000000000000000", functools.partial(time.sleep, 1.5))
    started = time.monotonic()
    runner.shutdown(wait=True)  # raised "ValueError: No clients found" with distributed.wait
    assert future.done() and time.monotonic() - started >= 1.0
