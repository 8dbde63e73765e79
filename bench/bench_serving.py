"""Benchmark: single-row predict through our API beside a bare-minimum app serving the same objects.

Trains a random forest and a logistic regression on the demo data, stacks them into an ensemble, then
starts two servers on 127.0.0.1 with the same number of waitress threads:

* **ours**: ``python -m cli serve``: ``POST /api/predict/model/<name>`` and ``/api/predict/ensemble/<name>``
  with the API token, the checks, the verified cache, the JSON answer;
* **bare**: ``bench/bare_app.py``: waitress + the same fitted scaler/estimator objects loaded with
  ``pickle.load``, no auth, no validation.

Each round measures, in a shuffled order, for both servers and both targets (model, ensemble): the p50
latency of single-row requests from 1 client (sequential, one keep-alive connection) and the throughput of
16 clients (each with its own connection) over a few seconds. Medians over the rounds; the ratios last.

Run: ``.venv/bin/python -m bench.bench_serving [--rounds 5] [--seconds 3] [--requests 300] [--threads 8]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pickle
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_load import HOST, percentile, wait_healthy
from bench.common import bench_database
from models.artifacts.cache import ModelCache
from models.artifacts.loading import load_model
from models.demo import FEATURES, generate_games, write_games_csv
from models.ensembles.build import create_ensemble, load_ensemble
from models.store.configs import ConfigStore
from models.store.embedded import free_port
from models.training.train import train_config

TOKEN = "bench-serving-token-0123456789"
TARGETS = ("model", "ensemble")


def _load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"


class Server:
    """One server under test: how to reach its two routes."""

    def __init__(self, name: str, port: int, paths: dict[str, str], headers: dict[str, str]) -> None:
        self.name, self.port, self.paths, self.headers = name, port, paths, headers

    def post(self, conn: http.client.HTTPConnection, target: str, body: bytes) -> bytes:
        conn.request("POST", self.paths[target], body=body, headers=self.headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{self.name} {target}: HTTP {response.status}: {data[:300]!r}")
        return data


def p50_latency(server: Server, target: str, bodies: list[bytes], n: int) -> float:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        server.post(conn, target, bodies[i % len(bodies)])
        times.append(time.perf_counter() - t0)
    conn.close()
    return percentile(times, 50)


def throughput(server: Server, target: str, bodies: list[bytes], clients: int, seconds: float) -> float:
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        start.wait()
        k = i
        while time.perf_counter() < stop_at[0]:
            server.post(conn, target, bodies[k % len(bodies)])
            counts[i] += 1
            k += clients
        conn.close()

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at.append(t0 + seconds)
    start.wait()
    for t in threads:
        t.join(timeout=seconds + 60)
    return sum(counts) / (time.perf_counter() - t0)


def setup(database) -> tuple[dict, dict[str, str]]:
    """Train two models and stack them; the bare app's spec (the same fitted objects) and our names."""
    settings = database.settings
    csv = write_games_csv(settings.data_dir / "games.csv", n_games=3000)
    store = ConfigStore(database)
    common = {
        "task": "classification",
        "features": FEATURES[:8],
        "target": "home_win",
        "training_csv": str(csv),
        "cv_folds": 3,
        "random_state": 7,
    }
    store.create(
        {
            "name": "serve_rf",
            "model_type": "random_forest",
            "hyperparameters": {"n_estimators": 50, "max_depth": 6},
            **common,
        }
    )
    store.create({"name": "serve_lr", "model_type": "logistic_regression", "hyperparameters": {}, **common})
    train_config(database, "serve_rf")
    train_config(database, "serve_lr")
    create_ensemble(database, "serve_ens", ["serve_rf", "serve_lr"], "logistic_regression")
    model = load_model(settings, store.get("serve_rf"), cache=ModelCache()).model
    ensemble = load_ensemble(database, "serve_ens", cache=ModelCache())
    spec = {
        "model": (list(model.features), model.scaler, model.model),
        "ensemble": {
            "bases": [(list(b.features), b.scaler, b.model) for b in ensemble.bases],
            "meta": ensemble.meta_model,
        },
    }
    return spec, {"model": "/api/predict/model/serve_rf", "ensemble": "/api/predict/ensemble/serve_ens"}


def start(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # a file, not a pipe: a full pipe would block the server
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def same_answers(ours: Server, bare: Server, bodies: list[bytes]) -> float:
    """Largest |probability difference| between the two servers on the first rows (they serve the same objects)."""
    a, b = (http.client.HTTPConnection(HOST, s.port, timeout=30) for s in (ours, bare))
    worst = 0.0
    for target in TARGETS:
        for body in bodies[:20]:
            x = json.loads(ours.post(a, target, body))["predictions"][0]
            y = json.loads(bare.post(b, target, body))["predictions"][0]
            if x["prediction"] != y["prediction"]:
                raise SystemExit(f"{target}: the servers disagree on {body!r}: {x} vs {y}")
            worst = max(worst, *(abs(x[k] - y[k]) for k in y if k.startswith("proba_")))
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each 16-client throughput run")
    ap.add_argument("--requests", type=int, default=300, help="sequential requests per p50 measurement")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--threads", type=int, default=8, help="waitress threads of both servers")
    args = ap.parse_args(argv)
    print(
        f"bench_serving: {os.cpu_count()} cores, load average {_load()} before the run; {args.rounds} rounds, "
        f"single-row requests, p50 at 1 client ({args.requests} requests), throughput at {args.clients} "
        f"clients ({args.seconds:.0f} s), both servers waitress with {args.threads} threads, shuffled each round"
    )
    rows = generate_games(400, seed=11)[FEATURES[:8]].to_dict(orient="records")
    bodies = [json.dumps({"rows": [row]}).encode() for row in rows]
    with bench_database() as database, tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        settings = database.settings
        spec, paths = setup(database)
        spec_path = Path(tmp) / "bare_spec.pkl"
        spec_path.write_bytes(pickle.dumps(spec, protocol=5))
        ours_port, bare_port = free_port(), free_port()
        env = {
            **os.environ,
            "MONGO_URI": settings.effective_mongo_uri,
            "MONGO_DB": settings.mongo_db,
            "ARTIFACT_DIR": str(settings.artifact_dir),
            "VAR_DIR": str(settings.var_dir),
            "DATA_DIR": str(settings.data_dir),
            "ADMIN_PASSWORD": "bench-admin-pw",
            "API_TOKEN": TOKEN,
            "SECRET_KEY": "s" * 32,
            "LOG_LEVEL": "WARNING",
            "OMP_NUM_THREADS": "1",
        }
        procs = [
            start(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(ours_port),
                    "--threads",
                    str(args.threads),
                ],
                env,
                Path(tmp) / "ours.log",
            ),
            start(
                [sys.executable, "-m", "bench.bare_app", str(spec_path), str(bare_port), str(args.threads)],
                env,
                Path(tmp) / "bare.log",
            ),
        ]
        try:
            wait_healthy(ours_port, procs[0])
            ours = Server(
                "ours", ours_port, paths, {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            )
            bare = Server(
                "bare",
                bare_port,
                {"model": "/model", "ensemble": "/ensemble"},
                {"Content-Type": "application/json"},
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    diff = same_answers(ours, bare, bodies)  # also the warm-up: both have loaded everything
                    break
                except (ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            results: dict[tuple[str, str, str], list[float]] = {}
            for _ in range(args.rounds):
                jobs = [(s, t, m) for s in (ours, bare) for t in TARGETS for m in ("p50", "rps")]
                random.shuffle(jobs)
                for server, target, measure in jobs:
                    value = (
                        p50_latency(server, target, bodies, args.requests)
                        if measure == "p50"
                        else throughput(server, target, bodies, args.clients, args.seconds)
                    )
                    results.setdefault((server.name, target, measure), []).append(value)
        finally:
            for proc in procs:
                stop(proc)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"same answers: max |probability difference| ours vs bare on 20 rows x 2 targets: {diff:.1e}")
    print(f"{'target':<10}{'server':<7}{'p50 ms':>9}{'req/s':>9}   (each round: p50 ms / req/s)")
    for target in TARGETS:
        for name in ("ours", "bare"):
            each = ", ".join(
                f"{p * 1e3:.2f}/{r:.0f}"
                for p, r in zip(results[(name, target, "p50")], results[(name, target, "rps")])
            )
            print(
                f"{target:<10}{name:<7}{med[(name, target, 'p50')] * 1e3:>9.2f}{med[(name, target, 'rps')]:>9.0f}"
                f"   ({each})"
            )
    print(f"load average {_load()} after the run")
    ok = True
    for target in TARGETS:
        rps = med[("ours", target, "rps")] / med[("bare", target, "rps")]
        p50 = med[("ours", target, "p50")] / med[("bare", target, "p50")]
        met = rps >= 0.8 and p50 <= 1.25
        ok &= met
        print(
            f"{target}: throughput ours/bare {rps:.2f}x (target >= 0.8), p50 ours/bare {p50:.2f}x (target <= 1.25)"
            f"  {'met' if met else 'NOT met'}"
        )
    print("targets met" if ok else "targets NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
