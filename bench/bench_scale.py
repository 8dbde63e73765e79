"""Scale out: training on 1 vs 2 Dask workers, and GridFS vs local artifact loads.

Two measurements in one run, printed as ratios:

* **training throughput** - 8 configs submitted as training jobs (ids only:
  the workers train with their own settings) to a cluster started from the
  command line exactly as the README says (``python -m cli cluster
  scheduler`` and ``python -m cli cluster worker ... --nworkers N --nthreads
  1``), with 1 worker process, then with 2; wall time from the first submit
  until every job has succeeded, after one warm-up training per worker. Two
  cores is the ceiling here, so 2.0x is the best possible ratio.
* **loading the same artifact** (model + scaler + features of one random
  forest) four ways: GridFS cold (empty disk cache, empty in-memory LRU),
  local folder cold (empty LRU; the OS page cache is warm), GridFS with a
  disk-cache hit (empty LRU) and an in-memory LRU hit.

    .venv/bin/python -m bench.bench_scale [--configs 8] [--rows 8000] [--trees 120] [--repeat 7]

Not part of the test suite. Uses its own embedded server and temporary folders
(see :mod:`bench.common`). Point it at a real cluster with
``--scheduler tcp://host:8786`` (then only that cluster is timed), at a real
replica set with ``--mongo-uri`` (a fresh database, dropped at the end) and
at a folder every worker reads with ``--data-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import bench_database, median_time
from models import jobs
from models.artifacts.cache import ModelCache
from models.artifacts.loading import PATH_FIELDS, load_model
from models.artifacts.routing import get_store
from models.demo import FEATURES, write_games_csv
from models.settings import Settings, environment_with_project_path
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.embedded import free_port
from models.training.service import submit_training
from models.training.train import train_config


@contextlib.contextmanager
def bench_db(mongo_uri: str | None, data_dir: str | None, mongo_db: str | None = None) -> Iterator[Database]:
    """The embedded throwaway server of :func:`bench.common.bench_database`, or database ``mongo_db`` (default:
    a fresh name) on ``mongo_uri`` (a real replica set; dropped at the end, so never name a database in use).
    Jobs travel as ids and workers use their own ``MONGO_DB``: start a real cluster's workers with
    ``MONGO_DB`` = ``mongo_db``, and give ``data_dir`` = their ``DATA_DIR`` (or a copy of the CSV there)."""
    if not mongo_uri:
        with bench_database() as db:
            if data_dir:
                db.settings = db.settings.with_(data_dir=Path(data_dir))
            yield db
        return
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        settings = Settings.from_env({}).with_(
            mongo_uri=mongo_uri,
            mongo_db=mongo_db or f"bench_{uuid.uuid4().hex[:8]}",
            artifact_dir=Path(tmp) / "artifacts",
            data_dir=Path(data_dir or Path(tmp) / "data"),
            var_dir=Path(tmp) / "var",
        )
        db = Database.connect(settings, autostart=False)
        try:
            yield db
        finally:
            db.client.drop_database(settings.mongo_db)
            db.close()


def train_all(database: Database, runner: Any, names: list[str]) -> tuple[float, set[int], float]:
    """Submit one training job per config (ids only travel), wait for all;
    ``(wall s, worker pids used, s spent in train_config)``."""
    t0 = time.perf_counter()
    submitted = [submit_training(database, n, runner=runner, requested_by="bench")[0] for n in names]
    pids, busy = set(), 0.0
    for job in submitted:
        done = jobs.wait(database, job["_id"], timeout=1800)
        if done["status"] != "succeeded":
            raise SystemExit(f"job {done['key']} failed: {done.get('error')}")
        pids.add(done["owner"]["pid"])
        busy += done["result"]["durations"]["total_s"]
    return time.perf_counter() - t0, pids, busy


@contextlib.contextmanager
def command_line_cluster(database: Database, workers: int, tmp: Path) -> Iterator[str]:
    """A scheduler and ``workers`` worker processes started as the README says
    (``python -m cli cluster scheduler`` / ``cluster worker``), with the workers' own settings."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    s = database.settings
    env = {
        **environment_with_project_path(),
        "MONGO_URI": s.effective_mongo_uri,
        "MONGO_DB": s.mongo_db,
        "ARTIFACT_STORE": "gridfs",
        "DATA_DIR": str(s.data_dir),
        "ARTIFACT_DIR": str(tmp / "worker-artifacts"),
        "VAR_DIR": str(tmp / f"worker-var-{workers}"),
    }
    log = open(tmp / f"cluster-{workers}.log", "ab")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cli", "cluster", "scheduler", "--port", str(port), "--no-dashboard"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    ]
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "cluster",
                "worker",
                address,
                "--nworkers",
                str(workers),
                "--nthreads",
                "1",
                "--no-dashboard",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )
    )
    try:
        yield address
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def on_cluster(
    database: Database, names: list[str], workers: int | None, scheduler: str | None
) -> tuple[float, set[int], float]:
    """Train ``names`` on a fresh command-line cluster of ``workers`` processes (or on ``scheduler``)."""
    from distributed import Client

    from models.jobs.dask_runner import DaskRunner

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-cluster-")))
            scheduler = stack.enter_context(command_line_cluster(database, workers or 1, tmp))
        client = Client(scheduler, set_as_default=False, timeout=120)
        stack.callback(client.close)
        if workers:
            client.wait_for_workers(workers, timeout=120)
        runner = DaskRunner(client=client)
        n = len(client.scheduler_info()["workers"])
        train_all(database, runner, names[:n])  # warm every worker (imports, connection) so only training is timed
        return train_all(database, runner, names)


def _spin(n: int) -> float:
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def machine_ceiling(n: int = 25_000_000, rounds: int = 3) -> float:
    """How much faster two processes do two CPU-bound loops than one process does them, right now.

    2.0 on two idle cores; less when other work shares the machine. Bounds the
    cluster speed-up measured next, so the two numbers read together (median of ``rounds``).
    """
    import multiprocessing

    ratios = []
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_spin, [1000, 1000])  # start-up is not measured
        for _ in range(rounds):
            one = _spin(n) * 2
            t0 = time.perf_counter()
            pool.map(_spin, [n, n])
            ratios.append(one / (time.perf_counter() - t0))
    return statistics.median(ratios)


def gridfs_doc(database: Database, doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config document whose files are copies of the same bytes in GridFS."""
    store = get_store(database.settings)
    out = {**doc, "artifacts": {}}
    for kind, ref in (doc.get("artifacts") or {}).items():
        data = store.read_bytes(ref["path"])
        info = store.gridfs.write(Path(ref["path"]).name, lambda fh, d=data: fh.write(d))
        assert info.sha256 == ref["sha256"]
        out["artifacts"][kind] = {**ref, "path": info.path}
    for kind, field in PATH_FIELDS.items():
        out[field] = out["artifacts"][kind]["path"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--trees", type=int, default=120, help="trees per training config")
    parser.add_argument("--load-trees", type=int, default=200, help="trees of the model whose loads are timed")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--scheduler", help="time this Dask cluster instead of command-line clusters of 1 and 2 workers"
    )
    parser.add_argument(
        "--mongo-uri",
        help="use a fresh database on this server (e.g. a replica set) instead of "
        "an embedded one; needed when the workers are on other machines",
    )
    parser.add_argument(
        "--mongo-db",
        help="with --scheduler: the MONGO_DB the workers were started with, a database "
        "for the benchmark only (it is dropped at the end)",
    )
    parser.add_argument("--data-dir", help="where the training CSV is written (a folder the workers share)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with bench_db(args.mongo_uri, args.data_dir, args.mongo_db) as db:
        settings = db.settings.with_(artifact_store="gridfs")
        gdb = Database(db.client, settings)
        csv = write_games_csv(settings.data_dir / "games.csv", n_games=args.rows)
        store = ConfigStore(gdb)
        names = [f"c{i:02d}" for i in range(args.configs)]
        for name in names:
            store.create(
                {
                    "name": name,
                    "task": "classification",
                    "model_type": "random_forest",
                    "hyperparameters": {"n_estimators": args.trees, "max_depth": 10},
                    "features": FEATURES[:8],
                    "target": "home_win",
                    "training_csv": str(csv),
                    "cv_folds": 3,
                    "random_state": 7,
                }
            )

        load = os.getloadavg()[0]
        print(
            f"machine: {os.cpu_count()} cores, load average {load:.2f} before the run "
            "(other work on the machine lowers the speed-up)"
        )
        print(f"training: {args.configs} configs (random forest, {args.trees} trees, {args.rows} rows, 3-fold CV)")
        if args.scheduler:
            wall, pids, busy = on_cluster(gdb, names, None, args.scheduler)
            print(
                f"  cluster {args.scheduler}: {wall:8.2f} s  ({len(pids)} worker processes used; "
                f"{busy:.2f} s inside train_config)"
            )
        else:
            ceiling = machine_ceiling()
            one, pids1, busy1 = on_cluster(gdb, names, 1, None)
            two, pids2, busy2 = on_cluster(gdb, names, 2, None)
            print(
                f"  1 worker                 {one:8.2f} s  ({len(pids1)} process; "
                f"{busy1:.2f} s inside train_config)"
            )
            print(
                f"  2 workers                {two:8.2f} s  ({len(pids2)} processes; "
                f"{busy2:.2f} s inside train_config)"
            )
            print(
                f"  speed-up 2 vs 1 worker   {one / two:8.2f}x  (ceiling 2.00x on {os.cpu_count()} idle cores; "
                f"2 plain processes got {ceiling:.2f}x just before)"
            )
            print(f"  load average after the trainings: {os.getloadavg()[0]:.2f} (1 min)")

        # loading: one artifact, the same bytes in the local folder and in GridFS
        local = db.settings  # artifact_store="local"
        store.create(
            {
                "name": "load_rf",
                "task": "classification",
                "model_type": "random_forest",
                "hyperparameters": {"n_estimators": args.load_trees, "max_depth": 12},
                "features": FEATURES[:8],
                "target": "home_win",
                "training_csv": str(csv),
                "cv_folds": 3,
            }
        )
        train_config(db, "load_rf")
        doc_local = ConfigStore(db).get("load_rf")
        doc_grid = gridfs_doc(gdb, doc_local)
        size_mb = sum(r["size"] for k, r in doc_local["artifacts"].items() if k in PATH_FIELDS) / 1e6
        cache_dir = settings.artifact_cache_dir

        def gridfs_cold() -> float:
            shutil.rmtree(cache_dir, ignore_errors=True)
            t0 = time.perf_counter()
            load_model(settings, doc_grid, cache=ModelCache())
            return time.perf_counter() - t0

        load_model(local, doc_local, cache=ModelCache())  # warm the OS page cache for the local files
        cold_grid = statistics.median(gridfs_cold() for _ in range(args.repeat))
        cold_local = median_time(lambda: load_model(local, doc_local, cache=ModelCache()), args.repeat)
        load_model(settings, doc_grid, cache=ModelCache())  # fills the disk cache
        disk_hit = median_time(lambda: load_model(settings, doc_grid, cache=ModelCache()), args.repeat)
        lru = ModelCache()
        load_model(settings, doc_grid, cache=lru)
        memory_hit = median_time(lambda: load_model(settings, doc_grid, cache=lru), 1000)

        print(f"loading one model (random forest, {args.load_trees} trees; {size_mb:.1f} MB of files)")
        print(f"  GridFS cold (no disk cache, no LRU)  {cold_grid * 1e3:9.2f} ms")
        print(f"  local folder cold (no LRU)           {cold_local * 1e3:9.2f} ms")
        print(f"  GridFS, disk-cache hit (no LRU)      {disk_hit * 1e3:9.2f} ms")
        print(f"  in-memory LRU hit                    {memory_hit * 1e6:9.2f} us")
        print("ratios:")
        print(f"  GridFS cold / local cold             {cold_grid / cold_local:9.2f}x")
        print(f"  GridFS cold / disk-cache hit         {cold_grid / disk_hit:9.2f}x")
        print(f"  disk-cache hit / local cold          {disk_hit / cold_local:9.2f}x")
        print(f"  local cold / in-memory hit           {cold_local / memory_hit:9.0f}x")


if __name__ == "__main__":
    main()
