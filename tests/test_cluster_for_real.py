"""A cluster run for real: the README's ``cluster certs|scheduler|worker`` commands as subprocesses.

- strangers cannot use it: without the deployment's client certificate (none, another CA's, plain tcp)
  nothing connects; a scheduler or a runner that would be open to the network without TLS is refused;
- it stops what it is told to stop: cancel and the time limit on a real worker process commit nothing,
  over many trials;
- a worker killed on another host (another UTS namespace: another host name) leaves its config failed
  as promptly as on this host;
- it heals: after the scheduler is killed and started again, the web app trains within 30 s of its
  return, without a restart, and the job that lost the scheduler ends with the documented code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from models import jobs
from models.jobs.runner import RunnerUnavailableError
from models.jobs.tls import make_certificates
from models.settings import PROJECT_ROOT
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.embedded import free_port
from models.training.service import submit_training
from models.training.train import train_config
from tests.helpers import AUTH, PASSWORD, TOKEN, cls_config, poll

distributed = pytest.importorskip("distributed")
from distributed.security import Security  # noqa: E402

from models.jobs.dask_runner import DaskRunner  # noqa: E402  (needs distributed)

pytestmark = pytest.mark.slow

START_S = 90
DB_NAME = f"cluster_{uuid.uuid4().hex[:10]}"
WORKER_TIMEOUT_S = 5  # TRAIN_TIMEOUT_SECONDS on the worker
TRIALS = 8
# over a second per fold on one core, five folds: longer than the worker's time limit
SLOW = {
    "model_type": "random_forest",
    "hyperparameters": {"n_estimators": 1200, "min_samples_leaf": 1},
    "cv_folds": 5,
}


def machine_env(root: Path, mongo_uri: str, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "ARTIFACT_STORE", "DASK_", "CV_JOBS"))
    }
    env.update(
        MONGO_URI=mongo_uri,
        MONGO_DB=DB_NAME,
        ARTIFACT_STORE="gridfs",
        ARTIFACT_DIR=str(root / "artifacts"),
        VAR_DIR=str(root / "var"),
        DATA_DIR=str(root / "data"),
        **extra,
    )
    env.pop("PYTHONPATH", None)
    return env


def start(env: dict[str, str], *args: str, log: Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    fh = open(log, "ab")
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(30)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Cluster:
    def __init__(self, root: Path, mongo_uri: str) -> None:
        self.root = root
        self.certs = root / "certs"
        make_certificates(self.certs)
        self.port = free_port()
        self.address = f"tls://127.0.0.1:{self.port}"
        self.env = machine_env(root / "worker", mongo_uri, DASK_TLS_DIR=str(self.certs))
        self.logs = root / "logs"
        self.logs.mkdir()
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def start_scheduler(self) -> None:
        self.scheduler = start(
            self.env,
            "cluster",
            "scheduler",
            "--port",
            str(self.port),
            "--no-dashboard",
            log=self.logs / "scheduler.log",
        )

    def start_worker(self, host_name: str | None = None) -> subprocess.Popen:
        env = {**self.env, "TRAIN_TIMEOUT_SECONDS": str(WORKER_TIMEOUT_S)}
        prefix: tuple[str, ...] = ()
        if host_name:  # another host, as far as host names go: its own UTS namespace
            prefix = ("unshare", "--uts", "sh", "-c", f'hostname {host_name} && exec "$@"', "sh")
        proc = start(
            env,
            "cluster",
            "worker",
            self.address,
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--retry-delay",
            "1",
            log=self.logs / f"worker-{len(self.workers)}.log",
            prefix=prefix,
        )
        self.workers.append(proc)
        return proc

    def security(self) -> Security:
        return Security(
            tls_ca_file=str(self.certs / "ca.pem"),
            tls_client_cert=str(self.certs / "client.pem"),
            tls_client_key=str(self.certs / "client.key"),
            require_encryption=True,
        )

    def client(self, n_workers: int = 1) -> distributed.Client:
        client = distributed.Client(self.address, security=self.security(), timeout=START_S, set_as_default=False)
        client.wait_for_workers(n_workers, timeout=START_S)
        return client

    def log_tail(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.logs.glob("*.log")))

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc is not None:
                stop(proc)


@pytest.fixture(scope="module")
def cluster(mongo_uri, tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), mongo_uri)
    cluster.start_scheduler()
    cluster.start_worker()
    try:
        cluster.client().close()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def db(database, cluster):
    """The workers' database, with the cluster configured for this process's runner (restored after)."""
    settings = database.settings.with_(
        mongo_db=DB_NAME, dask_scheduler_address=cluster.address, dask_tls_dir=cluster.certs
    )
    db = Database(database.client, settings)
    db.ensure_indexes(force=True)  # the previous test dropped this database, and its indexes with it
    previous = jobs.set_default_runner(None)
    yield db
    jobs.shutdown_default_runner(wait=False)
    jobs.set_default_runner(previous)
    database.client.drop_database(DB_NAME)


def files_in_gridfs(db: Database, run_id: str) -> int:
    return db.db["fs.files"].count_documents({"filename": {"$regex": f"^{run_id}"}})


# Each stranger connects from a process of its own: a client's IO loop thread that cannot start within
# distributed's 10 s (a loaded machine, threads left by earlier tests) is not a refusal, so it is retried.
STRANGER = """
import sys
import distributed
from distributed.security import Security

address, certs = sys.argv[1], sys.argv[2]
security = None
if certs:
    security = Security(
        tls_ca_file=certs + "/ca.pem",
        tls_client_cert=certs + "/client.pem",
        tls_client_key=certs + "/client.key",
        require_encryption=True,
    )
try:
    client = distributed.Client(address, security=security, timeout=5, set_as_default=False)
except (OSError, TimeoutError, TypeError, ValueError) as exc:
    print("refused", type(exc).__name__)
    sys.exit(0)
except AssertionError:
    print("loop did not start")
    sys.exit(3)
try:
    print("connected, ran on", len(client.run(lambda: 1)), "worker(s)")
finally:
    client.close()
"""


def _connect_as_stranger(address: str, certs: Path | None, tries: int = 3) -> str:
    for _ in range(tries):
        done = subprocess.run(
            [sys.executable, "-c", STRANGER, address, str(certs or "")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 3:
            return (done.stdout.strip() or done.stderr.strip()[-500:]) or f"exit {done.returncode}"
    return "the client's IO loop never started"


def test_strangers_cannot_use_the_scheduler(cluster, tmp_path, settings):
    # no certificate at all, plain tcp, and a client certificate of another deployment: all refused
    other = tmp_path / "other-ca"
    make_certificates(other)
    attempts = [
        (cluster.address, None),
        (f"tcp://127.0.0.1:{cluster.port}", None),
        (cluster.address, other),
    ]
    for address, certs in attempts:
        outcome = _connect_as_stranger(address, certs)
        assert outcome.startswith("refused "), f"{address} with {certs}: {outcome}"
    # the same probe with the deployment's own certificates gets in, so the refusals above are real
    assert _connect_as_stranger(cluster.address, cluster.certs).startswith("connected"), cluster.log_tail()
    # the deployment's own client runs work on the worker, which holds no signing key in its environment
    client = cluster.client()
    try:
        assert list(client.run(lambda: "ARTIFACT_SIGNING_KEY" in os.environ).values()) == [False]
        assert list(client.run(lambda: bool(os.environ.get("ARTIFACT_SIGNING_KEY_FILE"))).values()) == [True]
    finally:
        client.close()
    # open to the network without TLS: refused by the commands and by the runner
    env = {k: v for k, v in cluster.env.items() if k != "DASK_TLS_DIR"}
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "cluster", "scheduler", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "without TLS" in refused.stderr and "DASK_TLS_DIR" in refused.stderr
    with pytest.raises(RunnerUnavailableError, match="DASK_ALLOW_INSECURE"):
        DaskRunner("tcp://10.255.0.1:8786", settings=settings)


def _trial_config(db, games_csv, name: str) -> dict:
    store = ConfigStore(db)
    store.create(cls_config(name, games_csv, "random_forest", hyperparameters={"n_estimators": 3}))
    previous = train_config(db, name)
    store.update(name, {k: v for k, v in SLOW.items()})
    return previous


def _nothing_committed(db, name: str, previous: dict, code: str) -> None:
    config = ConfigStore(db).get(name)
    assert config["status"] == "failed" and config["error"]["code"] == code, config.get("error")
    assert config["run_id"] == previous["run_id"]
    assert db.runs.count_documents({"name": name}) == 1


def test_cancel_on_a_real_worker_commits_nothing(db, cluster, games_csv):
    previous = _trial_config(db, games_csv, "cancel_me")
    for _trial in range(TRIALS):
        job, _ = submit_training(db, "cancel_me")
        poll(lambda j=job: "fold 2/5" in (jobs.get_job(db, j["_id"]).get("message") or ""), timeout=START_S)
        cancelled_at = time.monotonic()
        jobs.cancel(db, job["_id"], requested_by="test")
        poll(lambda: ConfigStore(db).get("cancel_me")["status"] == "failed", timeout=30)
        stopped_after = time.monotonic() - cancelled_at
        assert stopped_after < 8, f"the worker took {stopped_after:.1f}s to stop (more than a fold or two)"
        time.sleep(1)
        _nothing_committed(db, "cancel_me", previous, "cancelled")
        assert jobs.get_job(db, job["_id"])["error"]["code"] == "cancelled"


def test_the_time_limit_on_a_real_worker_commits_nothing(db, cluster, games_csv):
    previous = _trial_config(db, games_csv, "too_slow")
    for _trial in range(TRIALS):
        job, _ = submit_training(db, "too_slow")
        done = poll(lambda j=job: jobs.is_finished(d := jobs.get_job(db, j["_id"])) and d, timeout=START_S)
        assert done["status"] == "failed" and done["error"]["code"] == "timeout", done.get("error")
        assert f"TRAIN_TIMEOUT_SECONDS={WORKER_TIMEOUT_S}" in done["error"]["message"]
        assert done["duration_s"] < WORKER_TIMEOUT_S + 6
        poll(lambda: ConfigStore(db).get("too_slow")["status"] == "failed", timeout=30)
        time.sleep(1)
        _nothing_committed(db, "too_slow", previous, "timeout")


def test_a_worker_killed_on_another_host_leaves_its_config_failed(db, cluster, games_csv):
    for proc in cluster.workers:  # only the other host's worker takes this job
        stop(proc)
    cluster.workers.clear()
    cluster.start_worker(host_name="other-host")
    try:
        client = cluster.client()
        client.close()
        previous = _trial_config(db, games_csv, "far_away")
        job, _ = submit_training(db, "far_away")
        running = poll(lambda: (d := jobs.get_job(db, job["_id"]))["status"] == "running" and d, timeout=START_S)
        assert running["owner"]["host"] == "other-host"
        poll(lambda: ConfigStore(db).get("far_away")["status"] == "training", timeout=30)
        killed_at = time.monotonic()
        subprocess.run(["kill", "-9", str(running["owner"]["pid"])], check=True)  # the worker process itself
        poll(lambda: ConfigStore(db).get("far_away")["status"] == "failed", timeout=60)
        repaired_after = time.monotonic() - killed_at
        config = ConfigStore(db).get("far_away")
        assert config["error"]["code"] == "process_died" and config["run_id"] == previous["run_id"]
        assert repaired_after < 30, f"repaired after {repaired_after:.1f}s"
        job = poll(lambda: jobs.is_finished(d := jobs.get_job(db, job["_id"])) and d, timeout=60)
        assert job["status"] == "failed" and job["error"]["code"] == "process_died"
    finally:
        for proc in cluster.workers:
            stop(proc)
        cluster.workers.clear()
        cluster.start_worker()
        cluster.client().close()


def test_the_web_app_heals_when_the_scheduler_comes_back(db, cluster, games_csv):
    from web import create_app

    app = create_app(db.settings.with_(admin_password=PASSWORD, api_token=TOKEN), db)
    api = app.test_client()
    ConfigStore(db).create(cls_config("quick", games_csv))
    previous = _trial_config(db, games_csv, "in_flight")
    first = api.post("/api/configs/quick/train", headers=AUTH)
    assert first.status_code == 202, first.get_data(as_text=True)
    poll(lambda: jobs.is_finished(jobs.get_job(db, first.get_json()["job_id"])), timeout=START_S)
    assert api.get("/healthz").get_json()["runner"]["state"] == "connected"
    in_flight = api.post("/api/configs/in_flight/train", headers=AUTH).get_json()["job_id"]
    poll(lambda: jobs.get_job(db, in_flight)["status"] == "running", timeout=START_S)

    stop(cluster.scheduler, signal.SIGKILL)
    # the job that lost the scheduler ends with the documented code, and its config keeps its run
    lost = poll(lambda: jobs.is_finished(d := jobs.get_job(db, in_flight)) and d, timeout=60)
    assert lost["status"] == "failed" and lost["error"]["code"] == "process_died", lost["error"]
    poll(lambda: ConfigStore(db).get("in_flight")["status"] == "failed", timeout=60)
    assert ConfigStore(db).get("in_flight")["run_id"] == previous["run_id"]
    time.sleep(12)  # longer than the client's reconnect timeout: distributed closes the client
    # no scheduler: a clear 503, or (when the client has not noticed yet) a job that ends process_died
    down = api.post("/api/configs/quick/train", headers=AUTH)
    assert down.status_code in (202, 503), down.get_data(as_text=True)
    if down.status_code == 202:
        ended = poll(lambda: jobs.is_finished(d := jobs.get_job(db, down.get_json()["job_id"])) and d, timeout=60)
        assert ended["status"] == "failed" and ended["error"]["code"] == "process_died", ended["error"]

    cluster.start_scheduler()
    back = time.monotonic()
    job_id = None
    while job_id is None and time.monotonic() - back < 30:
        answer = api.post("/api/configs/quick/train", headers=AUTH)
        if answer.status_code == 202:
            job_id = answer.get_json()["job_id"]
        else:
            time.sleep(1)
    assert job_id, "no training accepted within 30 s of the scheduler's return\n" + cluster.log_tail()
    done = poll(lambda: jobs.is_finished(d := jobs.get_job(db, job_id)) and d, timeout=START_S)
    assert done["status"] == "succeeded", done.get("error")
    assert time.monotonic() - back < 30 + 60
    health = api.get("/healthz").get_json()["runner"]
    assert health["state"] == "connected" and health["tls"] is True and health["reconnects"] >= 1
