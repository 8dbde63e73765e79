"""Scale out: training on 1 vs 2 Dask workers (measured, interleaved), a list-scheduling prediction for 8
and 32 workers, and GridFS vs local artifact loads.

Three parts in one run, printed as ratios:

* **training throughput, measured** - 8 configs submitted as training jobs (:func:`submit_training`,
  ids only: the workers train with their own settings) to clusters started from the command line exactly
  as the README says (``python -m cli cluster scheduler`` and ``python -m cli cluster worker ...
  --nworkers N --nthreads 1``), one with 1 worker process and one with 2, both started once and warmed
  up (one training per worker) and then timed **interleaved**: 1, 2, 1, 2, ... (``--repeat`` rounds of
  each), so slow drifts of the machine's load hit both alike. Wall time from the first submit until every
  job has succeeded; the medians and their ratio (median 1-worker / median 2-worker) are printed with the
  load average before and after. Two cores is the ceiling here, so 2.0x is the best possible ratio.

  The workers do not oversubscribe: each worker process has one thread (``--nthreads 1``), ``CV_JOBS=1``
  (the default of :attr:`models.settings.Settings.cv_jobs`: a fit's CV folds run one after another) and
  ``OMP_NUM_THREADS`` = ``OPENBLAS_NUM_THREADS`` = ``MKL_NUM_THREADS`` = 1 in the worker environment (the
  benchmark reads them back from the workers and prints them). ``CV_JOBS=1`` with one-thread workers is
  the measured default that does not oversubscribe: one training per worker process, one worker process
  per core.
* **training, on paper** - from the measured jobs (each job document holds ``created_at`` (submit),
  ``started_at``, ``finished_at`` and ``duration_s``, see :mod:`models.store.jobs`): the per-task
  durations and the dispatch overhead (median time from the moment a job could start, i.e. its submit or
  its worker's previous job's end, whichever is later, to its ``started_at``). :func:`simulate` then
  list-schedules (greedy: each task goes to the first free worker) ``--sim-trainings`` trainings (default
  64), durations drawn cyclically from the 1-worker durations (one training per core, no sharing), each
  plus the overhead, on 1, 2, 8 and 32 workers, and prints the predicted speed-up vs 1 worker next to the
  measured 2-worker ratio.
* **loading the same artifact** (model + scaler + features of one random forest) four ways: GridFS cold
  (empty disk cache, empty in-memory LRU), local folder cold (empty LRU; the OS page cache is warm),
  GridFS with a disk-cache hit (empty LRU) and an in-memory LRU hit.

    .venv/bin/python -m bench.bench_scale [--configs 8] [--rows 8000] [--trees 120] [--repeat 3] [--load-repeat 7]
                                          [--sim-trainings 64]

Not part of the test suite (its simulation is: tests/test_bench_scale_sim.py). Uses its own embedded
server and temporary folders (see :mod:`bench.common`). Point it at a real cluster with ``--scheduler
tcp://host:8786`` (then only that cluster is timed, ``--repeat`` times, and simulated from its durations),
at a real replica set with ``--mongo-uri`` (a fresh database, dropped at the end) and at a folder every
worker reads with ``--data-dir``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

# one thread per worker process, for joblib's folds and for the BLAS/OpenMP pools under numpy and sklearn
ONE_THREAD_ENV = {"CV_JOBS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SIM_WORKERS = (1, 2, 8, 32)


def simulate(durations: Sequence[float], workers: int, overhead: float = 0.0) -> float:
    """Wall time of running ``durations`` (seconds, in submit order) on ``workers`` identical workers by
    greedy list scheduling: each task goes to the first worker that is free (ties: the lowest-numbered),
    and occupies it for its duration plus ``overhead`` (the dispatch cost of one task). 0.0 for no tasks."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if overhead < 0 or any(d < 0 for d in durations):
        raise ValueError("durations and overhead must not be negative")
    free = [(0.0, w) for w in range(workers)]  # (time the worker is free, worker number)
    end = 0.0
    for duration in durations:
        at, w = heapq.heappop(free)
        done = at + overhead + duration
        end = max(end, done)
        heapq.heappush(free, (done, w))
    return end


def cyclic(durations: Sequence[float], n: int) -> list[float]:
    """``n`` durations drawn from ``durations`` in order, starting over at the end."""
    if not durations:
        raise ValueError("no durations to draw from")
    return [durations[i % len(durations)] for i in range(n)]


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


@dataclass
class Round:
    """One timed batch: the wall time seen by the submitter and the finished job documents."""

    workers: int
    wall: float
    docs: list[dict[str, Any]]

    @property
    def durations(self) -> list[float]:
        """Per-task ``duration_s`` (``finished_at - started_at`` on the worker), in submit order."""
        return [float(d["duration_s"]) for d in self.docs]

    @property
    def pids(self) -> set[int]:
        return {d["owner"]["pid"] for d in self.docs}


def train_all(database: Database, runner: Any, names: list[str], workers: int) -> Round:
    """Submit one training job per config (ids only travel), wait for all; the wall time and the jobs."""
    t0 = time.perf_counter()
    submitted = [submit_training(database, n, runner=runner, requested_by="bench")[0] for n in names]
    docs = []
    for job in submitted:
        done = jobs.wait(database, job["_id"], timeout=1800)
        if done["status"] != "succeeded":
            raise SystemExit(f"job {done['key']} failed: {done.get('error')}")
        docs.append(done)
    return Round(workers, time.perf_counter() - t0, docs)


def dispatch_overheads(docs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """``(overheads, waits)`` of finished jobs, seconds. A wait is submit (``created_at``) to ``started_at``,
    queueing behind the worker's earlier jobs included; an overhead is the part no training explains: from
    the moment the job could start (its submit, or the end of the previous job of the same worker process,
    whichever is later) to its ``started_at``."""
    waits = [(d["started_at"] - d["created_at"]).total_seconds() for d in docs]
    overheads = []
    by_worker: dict[Any, list[dict[str, Any]]] = {}
    for d in docs:
        by_worker.setdefault((d["owner"]["host"], d["owner"]["pid"]), []).append(d)
    for mine in by_worker.values():
        previous_end = None
        for d in sorted(mine, key=lambda d: d["started_at"]):
            ready = d["created_at"] if previous_end is None else max(d["created_at"], previous_end)
            overheads.append(max((d["started_at"] - ready).total_seconds(), 0.0))
            previous_end = d["finished_at"]
    return overheads, waits


def worker_environment(database: Database, tmp: Path, tag: str) -> dict[str, str]:
    """The environment of the command-line cluster's processes: the workers' own settings, one thread each."""
    s = database.settings
    return {
        **environment_with_project_path(),
        "MONGO_URI": s.effective_mongo_uri,
        "MONGO_DB": s.mongo_db,
        "ARTIFACT_STORE": "gridfs",
        "DATA_DIR": str(s.data_dir),
        "ARTIFACT_DIR": str(tmp / "worker-artifacts"),
        "VAR_DIR": str(tmp / f"worker-var-{tag}"),
        **ONE_THREAD_ENV,
    }


@contextlib.contextmanager
def command_line_cluster(database: Database, workers: int, tmp: Path) -> Iterator[str]:
    """A scheduler and ``workers`` worker processes started as the README says
    (``python -m cli cluster scheduler`` / ``cluster worker --nthreads 1``), with the workers' own settings."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = worker_environment(database, tmp, str(workers))
    log = open(tmp / f"cluster-{workers}.log", "ab")
    common = {"cwd": ROOT, "env": env, "stdout": log, "stderr": log}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cli", "cluster", "scheduler", "--port", str(port), "--no-dashboard"], **common
        )
    ]
    worker_argv = [sys.executable, "-m", "cli", "cluster", "worker", address, "--nworkers", str(workers)]
    procs.append(subprocess.Popen([*worker_argv, "--nthreads", "1", "--no-dashboard"], **common))
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


def _thread_facts() -> dict[str, str]:
    """Run on each worker: what it was given (one thread everywhere)."""
    import os as _os

    return {k: _os.environ.get(k, "unset") for k in ONE_THREAD_ENV}


@contextlib.contextmanager
def cluster_runner(
    database: Database, names: list[str], workers: int | None, scheduler: str | None
) -> Iterator[tuple[Any, int, str]]:
    """``(runner, worker processes, description)`` of a fresh command-line cluster of ``workers`` processes
    (or of ``scheduler``), warmed up: one training per worker (imports, connections), not timed."""
    from distributed import Client

    from models.jobs.dask_runner import DaskRunner

    with contextlib.ExitStack() as own:
        if scheduler is None:
            tmp = Path(own.enter_context(tempfile.TemporaryDirectory(prefix="bench-cluster-")))
            scheduler = own.enter_context(command_line_cluster(database, workers or 1, tmp))
        client = Client(scheduler, set_as_default=False, timeout=120)
        own.callback(client.close)
        if workers:
            client.wait_for_workers(workers, timeout=120)
        info = client.scheduler_info()["workers"]
        n = len(info)
        threads = sorted({w.get("nthreads") for w in info.values()})
        facts = sorted({tuple(sorted(f.items())) for f in client.run(_thread_facts).values()})
        told = "; ".join(", ".join(f"{k}={v}" for k, v in f) for f in facts)
        runner = DaskRunner(client=client)
        train_all(database, runner, names[:n], n)
        yield runner, n, f"{n} worker process(es), nthreads {threads}, {told}"


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


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def measure_training(db: Database, names: list[str], args: argparse.Namespace) -> list[Round]:
    """The timed rounds: interleaved 1, 2, 1, 2, ... on two command-line clusters (or ``--repeat`` rounds
    on ``--scheduler``); prints each round and the medians."""
    rounds: list[Round] = []
    with contextlib.ExitStack() as stack:
        if args.scheduler:
            clusters = [stack.enter_context(cluster_runner(db, names, None, args.scheduler))]
        else:
            clusters = [stack.enter_context(cluster_runner(db, names, w, None)) for w in (1, 2)]
        for *_, told in clusters:
            print(f"  cluster: {told}")
        for r in range(args.repeat):
            for runner, n, _ in clusters:
                rounds.append(train_all(db, runner, names, n))
                done = rounds[-1]
                print(
                    f"  round {r + 1}, {n} worker{'s' if n > 1 else ' '}  {done.wall:8.2f} s  "
                    f"({len(done.pids)} process{'es' if len(done.pids) > 1 else ''} used; per training: "
                    f"median {statistics.median(done.durations):.2f} s; load {os.getloadavg()[0]:.2f})"
                )
    return rounds


def report_training(rounds: list[Round], args: argparse.Namespace) -> None:
    """Medians, the measured ratio, the dispatch overhead, and the list-scheduling prediction."""
    counts = sorted({r.workers for r in rounds})
    wall = {n: statistics.median(r.wall for r in rounds if r.workers == n) for n in counts}
    durations = {n: [d for r in rounds if r.workers == n for d in r.durations] for n in counts}
    base = counts[0]
    for n in counts:
        slower = statistics.median(durations[n]) / statistics.median(durations[base])
        label = f"{n} worker{'s' if n > 1 else ''}, median of {args.repeat}"
        print(
            f"  {label:25}{wall[n]:8.2f} s  "
            f"(per training: median {statistics.median(durations[n]):.2f} s"
            + (f", {slower:.2f}x the {base}-worker one)" if n != base else ")")
        )
    measured = wall[1] / wall[2] if 1 in wall and 2 in wall else None
    if measured is not None:
        print(
            f"  speed-up 2 vs 1 worker   {measured:8.2f}x  (median 1-worker / median 2-worker; ceiling "
            f"{min(2, os.cpu_count() or 1):.2f}x on {os.cpu_count()} idle cores)"
        )
    print(f"  load average after the trainings: {_load()} (1 / 5 / 15 min)")

    docs = [d for r in rounds for d in r.docs]
    overheads, waits = dispatch_overheads(docs)
    overhead = statistics.median(overheads)
    tails = [
        r.wall - (max(d["finished_at"] for d in r.docs) - min(d["created_at"] for d in r.docs)).total_seconds()
        for r in rounds
    ]
    print(f"dispatch (from the {len(docs)} timed job documents: created_at, started_at, finished_at):")
    print(
        f"  submit -> started_at                 median {statistics.median(waits):7.3f} s  "
        "(includes queueing behind the worker's earlier jobs)"
    )
    print(
        f"  overhead: could start -> started_at  median {overhead:7.3f} s  "
        f"(max {max(overheads):.3f} s; after the submit or the worker's previous job)"
    )
    print(
        f"  last finished_at -> submitter sees it median {statistics.median(tails):6.3f} s per batch "
        "(wall minus the jobs' span: polling and the first submit)"
    )

    pool = durations[base]  # one training per core: the 1-worker durations (the 2-worker ones share cores)
    print(
        f"on paper: greedy list scheduling (each task to the first free worker) of durations drawn cyclically "
        f"from the {len(pool)} measured {base}-worker durations, each + {overhead:.3f} s overhead"
    )
    batch = len(rounds[0].docs)
    if measured is not None:
        # each measured round's own durations, scheduled on paper; medians over the rounds like the walls
        ones = [r.durations for r in rounds if r.workers == base]
        one = statistics.median(simulate(d, 1, overhead) for d in ones)
        two = statistics.median(simulate(d, 2, overhead) for d in ones)
        contended = statistics.median(simulate(r.durations, 2, overhead) for r in rounds if r.workers == 2)
        print(
            f"  batch of {batch} (as measured, median over the rounds): 1 worker {one:7.2f} s (measured "
            f"{wall[1]:.2f}), 2 workers {two:7.2f} s (measured {wall[2]:.2f})"
        )
        print(f"  predicted speed-up at 2 workers  {one / two:6.2f}x  vs measured {measured:.2f}x")
        print(
            f"  with the 2-worker rounds' own (slower, cores shared) durations: {one / contended:.2f}x "
            f"({contended:.2f} s)"
        )
    n = args.sim_trainings
    tasks = cyclic(pool, n)
    alone = simulate(tasks, 1, overhead)
    print(f"  batch of {n} trainings:   workers   wall s   speed-up vs 1   efficiency")
    for w in SIM_WORKERS:
        t = simulate(tasks, w, overhead)
        print(f"  {'':24}{w:7d} {t:8.2f}   {alone / t:13.2f}x   {alone / t / w:9.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--trees", type=int, default=120, help="trees per training config")
    parser.add_argument("--load-trees", type=int, default=200, help="trees of the model whose loads are timed")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds of each worker count (interleaved)")
    parser.add_argument("--load-repeat", type=int, default=7, help="loads of each kind (median)")
    parser.add_argument(
        "--sim-trainings", type=int, default=64, help="trainings in the simulated batch (on paper)"
    )
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
    if min(args.repeat, args.load_repeat, args.sim_trainings) < 1:
        parser.error("--repeat, --load-repeat and --sim-trainings must be at least 1")
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

        print(
            f"machine: {os.cpu_count()} cores, load average {_load()} (1 / 5 / 15 min) before the run "
            "(other work on the machine lowers the speed-up)"
        )
        order = "" if args.scheduler else ", interleaved 1, 2, 1, 2, ..."
        print(
            f"training: {args.configs} configs (random forest, {args.trees} trees, {args.rows} rows, 3-fold CV), "
            f"{args.repeat} round{'s' if args.repeat > 1 else ''} each{order}"
        )
        if not args.scheduler:
            print(f"  2 plain CPU-bound processes vs 1, just before: {machine_ceiling():.2f}x")
        rounds = measure_training(gdb, names, args)
        report_training(rounds, args)

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
        cold_grid = statistics.median(gridfs_cold() for _ in range(args.load_repeat))
        cold_local = median_time(lambda: load_model(local, doc_local, cache=ModelCache()), args.load_repeat)
        load_model(settings, doc_grid, cache=ModelCache())  # fills the disk cache
        disk_hit = median_time(lambda: load_model(settings, doc_grid, cache=ModelCache()), args.load_repeat)
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
