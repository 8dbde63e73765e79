"""The README's "Two machines" scale-out, run as written: a real ``dask scheduler`` and ``dask worker`` (through
``python -m cli cluster scheduler|worker``) as subprocesses, three settings sets with their own folders standing
for three machines (A and C run workers, B submits), one MongoDB.

Checks: a job submitted from B runs on a worker with **that worker's** settings (GridFS, its own cache) although
B says ``ARTIFACT_STORE=local``; ``cli train`` on B uses the cluster; with ``CV_JOBS=-1`` on the workers the CV
folds of one training spread over both workers; no document holds a path of any machine; B builds an ensemble
and verifies from GridFS; the workers survive a scheduler restart and train again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.artifacts.signing import write_key_file
from models.settings import PROJECT_ROOT
from models.store.embedded import free_port

distributed = pytest.importorskip("distributed")
from distributed.security import Security  # noqa: E402

pytestmark = pytest.mark.slow

START_TIMEOUT = 90
CONFIGS = ["home_win_logreg", "home_win_nb"]


def machine_env(root: Path, mongo_uri: str, db_name: str, **extra: str) -> dict[str, str]:
    """One machine's environment: the shared database, its own folders (README: "its own folders"), the
    deployment's signing key file and cluster certificates (made once, copied to every machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGO_", "ARTIFACT_", "DASK_", "CV_JOBS"))}
    # README: every machine of a deployment has the same artifact signing key (here: the session's), as a file
    key_file = root / "secure" / "ec-signing.key"
    if not key_file.exists():
        write_key_file(key_file, os.environ["ARTIFACT_SIGNING_KEY"])
    env["ARTIFACT_SIGNING_KEY_FILE"] = str(key_file)
    env.update(
        {
            "MONGO_URI": mongo_uri,
            "MONGO_DB": db_name,
            "ARTIFACT_DIR": str(root / "artifacts"),
            "VAR_DIR": str(root / "var"),
            "DATA_DIR": str(root / "data"),
            **extra,
        }
    )
    env.pop("PYTHONPATH", None)  # the cluster commands must make the project importable themselves
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m cli ARGS`` from the checkout, as the README runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    fh = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for_workers(address: str, n: int, certs: Path) -> distributed.Client:
    security = Security(
        tls_ca_file=str(certs / "ca.pem"),
        tls_client_cert=str(certs / "client.pem"),
        tls_client_key=str(certs / "client.key"),
        require_encryption=True,
    )
    client = distributed.Client(address, set_as_default=False, timeout=START_TIMEOUT, security=security)
    client.wait_for_workers(n, timeout=START_TIMEOUT)
    return client


def wait_for_stable_workers(client: distributed.Client, n: int, settle: float = 3.0) -> set[str]:
    """The worker addresses once ``n`` of them have stayed the same for ``settle`` seconds: after a scheduler
    restart a worker still closing can be counted for a moment before its restarted process registers."""
    deadline = time.monotonic() + START_TIMEOUT
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = set(client.scheduler_info()["workers"])
        if now != seen:
            seen, since = now, time.monotonic()
        elif len(now) == n and time.monotonic() - since >= settle:
            return now
        time.sleep(0.25)
    raise AssertionError(f"the workers did not settle at {n}: {seen}")


def test_two_machines_as_the_readme_says(mongo_uri, tmp_path):
    db_name = f"two_{os.getpid()}_{int(time.time())}"
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    roots = {m: tmp_path / f"machine-{m}" for m in "ABC"}
    # README: once, the deployment's certificates (python -m cli cluster certs --out DIR), copied to every machine
    certs = tmp_path / "certs"
    made_certs = cli(machine_env(tmp_path / "once", mongo_uri, db_name), "cluster", "certs", "--out", str(certs))
    assert made_certs.returncode == 0, made_certs.stderr
    tls = {"DASK_TLS_DIR": str(certs)}
    # A and C run workers (GridFS, folds over the cluster); B submits and still says ARTIFACT_STORE=local
    env = {
        m: machine_env(roots[m], mongo_uri, db_name, ARTIFACT_STORE="gridfs", CV_JOBS="-1", **tls) for m in "AC"
    }
    env["B"] = machine_env(
        roots["B"], mongo_uri, db_name, ARTIFACT_STORE="local", DASK_SCHEDULER_ADDRESS=address, **tls
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    client = None
    try:
        # README: scheduler machine, from the checkout
        scheduler = start(
            env["A"],
            "cluster",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
            log=logs / "scheduler.log",
        )
        procs.append(scheduler)
        # README: each worker machine, from its checkout
        for m in "AC":
            procs.append(
                start(
                    env[m],
                    "cluster",
                    "worker",
                    address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    log=logs / f"worker-{m}.log",
                )
            )
        client = wait_for_workers(address, 2, certs)
        workers = set(client.scheduler_info()["workers"])

        # README: the data set on every machine (its own data root), configs from any machine
        for m in "ABC":
            done = cli(env[m], "demo", "--games", "1500", "--json")
            assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["csv"] == str(roots["C"] / "data" / "nba_games.csv")

        # README: train from B; with CV_JOBS=-1 on the workers each training's folds spread over them
        with distributed.get_task_stream(client=client) as stream:
            trained = cli(env["B"], "train", *CONFIGS, "--json")
        assert trained.returncode == 0, trained.stderr + (logs / "worker-A.log").read_text()[-3000:]
        assert "on the Dask cluster at " + address in trained.stderr
        results = json.loads(trained.stdout)
        assert [r["status"] for r in results] == ["trained", "trained"]
        assert {r["worker"] for r in results} <= workers
        fold_workers = {t["worker"] for t in stream.data if "_fit_fold" in str(t["key"])}
        assert len([t for t in stream.data if "_fit_fold" in str(t["key"])]) >= 2
        assert fold_workers == workers  # the folds ran on both workers

        from pymongo import MongoClient

        mongo = MongoClient(mongo_uri)
        db = mongo[db_name]
        # ... with the workers' settings: GridFS, their own disk caches; nothing in B's folders
        cached = {p.name for m in "AC" for p in (roots[m] / "var" / "artifact-cache").glob("*")}
        for config in db.model_config.find({"name": {"$in": CONFIGS}}):
            assert config["status"] == "trained" and config["model_artifact_path"].startswith("gridfs:")
            assert config["training_csv"] == "@data/nba_games.csv"
            assert config["checksums"]["model"] in cached  # written through a worker's own disk cache
        assert not (roots["B"] / "artifacts").exists() and not (roots["B"] / "var" / "artifact-cache").exists()
        jobs = list(db.jobs.find({"kind": "train"}))
        assert len(jobs) == 2 and all(
            j["status"] == "succeeded" and j["worker"]["address"] in workers for j in jobs
        )

        # README: any machine uses the models: B builds an ensemble and verifies, from GridFS
        made = cli(
            env["B"], "ensemble", "create", "two_stack", *[a for c in CONFIGS for a in ("--base", c)], "--json"
        )
        assert made.returncode == 0, made.stderr
        assert "on the Dask cluster" in made.stderr  # README: created by a worker, through GridFS
        assert {b["source"] for b in json.loads(made.stdout)["base_models"]} <= {"artifacts", "cache"}
        ensemble_doc = json.loads(made.stdout)
        assert all(a["path"].startswith("gridfs:") for a in ensemble_doc["artifacts"].values())
        # README: another machine predicts with it (A has never seen its files)
        rows = roots["A"] / "data" / "nba_games.csv"
        predicted = cli(
            env["A"], "ensemble", "predict", "two_stack", "--csv", str(rows), "--out", str(tmp_path / "p.csv")
        )
        assert predicted.returncode == 0, predicted.stderr
        assert (tmp_path / "p.csv").read_text().count("\n") > 100
        verified = cli(env["B"], "artifacts", "verify", "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert {r["state"] for r in json.loads(verified.stdout) if r["name"] in CONFIGS} == {"ok"}

        # no document holds a path that only one machine understands
        everything = json.dumps(
            [list(db[c].find({})) for c in ("model_config", "model_runs", "ensembles")], default=str
        )
        for root in (*roots.values(), PROJECT_ROOT):
            assert str(root) not in everything
        assert "cli/models" not in everything

        # README: a restarted scheduler gets its workers back; training goes on
        stop(scheduler)
        procs[0] = scheduler = start(
            env["A"],
            "cluster",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
            log=logs / "scheduler.log",
        )
        client.close()
        client = wait_for_workers(address, 2, certs)
        wait_for_stable_workers(client, 2)
        again = cli({**env["A"], "DASK_SCHEDULER_ADDRESS": address}, "train", "home_win_logreg", "--json")
        if again.returncode != 0:
            # README: a job that a worker was running when it went away ends process_died; submit it again
            first = json.loads(again.stdout)[0] if again.stdout.strip() else {}
            assert first.get("error", {}).get("code") == "process_died", (
                again.stdout[-2000:]
                + again.stderr[-2000:]
                + "".join((logs / f"worker-{m}.log").read_text()[-2000:] for m in "AC")
            )
            assert "worker" in first["error"]["message"]
            again = cli({**env["A"], "DASK_SCHEDULER_ADDRESS": address}, "train", "home_win_logreg", "--json")
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
        assert json.loads(again.stdout)[0]["worker"] in set(client.scheduler_info()["workers"])
        mongo.drop_database(db_name)
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):
            stop(proc)
