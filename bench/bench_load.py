"""Bounded load test of ``python -m cli serve``: concurrent predictions and config reads on 127.0.0.1.

Starts a throwaway embedded server (bench/common.py), trains a small demo model, starts
``python -m cli serve`` as a subprocess on a free port, then runs ``--clients`` threads (each with
its own keep-alive HTTP connection) for ``--seconds`` seconds or until ``--max-requests``, whichever
comes first, mixing ``POST /api/predict/model/<name>`` (``--rows`` rows each), ``GET
/api/configs/<name>`` and ``GET /api/configs``. Prints requests/s, p50/p99 latency per kind and
overall, and the errors (exit code 1 if there is any). Everything stops by itself.

    .venv/bin/python -m bench.bench_load --seconds 15 --clients 16
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from bench.common import bench_database
from models.demo import FEATURES, generate_games, write_games_csv
from models.store.configs import ConfigStore
from models.store.embedded import free_port
from models.training.train import train_config

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only, by design
TOKEN = "bench-load-token-0123456789"
MODEL = "load_demo"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited early (code {proc.returncode})")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not become healthy within {timeout:.0f}s")


def client_loop(
    port: int, body: bytes, stop_at: float, budget: Budget, out: dict, lock: threading.Lock, offset: int
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    plan = [
        ("predict", "POST", f"/api/predict/model/{MODEL}", body),
        ("predict", "POST", f"/api/predict/model/{MODEL}", body),
        ("config_read", "GET", f"/api/configs/{MODEL}", None),
        ("config_list", "GET", "/api/configs", None),
    ]
    lat: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    i = offset
    while time.monotonic() < stop_at and budget.take():
        kind, method, path, payload = plan[i % len(plan)]
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
            elapsed = time.perf_counter() - t0
            if response.status != 200:
                errors[f"{kind}: HTTP {response.status} {data[:120]!r}"] += 1
            elif kind == "predict" and json.loads(data)["count"] != body.count(b"{") - 1:
                errors[f"{kind}: wrong row count"] += 1
            lat[kind].append(elapsed)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            errors[
                f"{kind}: {exc.__class__.__name__}: {exc} (after {time.perf_counter() - t0:.1f}s, "
                f"{stop_at - time.monotonic():.1f}s before the end)"
            ] += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
    conn.close()
    with lock:
        for k, v in lat.items():
            out["lat"][k].extend(v)
        out["errors"].update(errors)


class Budget:
    """At most ``n`` requests in all (thread-safe)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="how long the load runs (max 300)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent client threads (max 64)")
    ap.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests")
    ap.add_argument("--rows", type=int, default=5, help="rows per prediction request")
    ap.add_argument("--threads", type=int, default=8, help="waitress worker threads of the server")
    args = ap.parse_args(argv)
    seconds, clients = min(args.seconds, 300.0), max(1, min(args.clients, 64))

    with bench_database() as database, tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        settings = database.settings
        csv = write_games_csv(settings.data_dir / "games.csv", n_games=2000)  # inside DATA_ROOTS
        ConfigStore(database).create(
            {
                "name": MODEL,
                "task": "classification",
                "model_type": "random_forest",
                "hyperparameters": {"n_estimators": 50, "max_depth": 6},
                "features": FEATURES[:8],
                "target": "home_win",
                "training_csv": str(csv),
                "cv_folds": 3,
                "random_state": 7,
            }
        )
        train_config(database, MODEL)
        rows = generate_games(args.rows, seed=11)[FEATURES[:8]].to_dict(orient="records")
        body = json.dumps({"rows": rows}).encode()

        port = free_port()
        env = {
            **os.environ,
            "MONGO_URI": settings.effective_mongo_uri,
            "MONGO_DB": settings.mongo_db,
            "ARTIFACT_DIR": str(settings.artifact_dir),
            "VAR_DIR": str(settings.var_dir),
            "ADMIN_PASSWORD": "bench-admin-pw",
            "API_TOKEN": TOKEN,
            "SECRET_KEY": "b" * 32,
            "LOG_LEVEL": "WARNING",
        }
        cmd = [
            sys.executable,
            "-m",
            "cli",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--threads",
            str(args.threads),
        ]
        server_log = open(Path(tmp) / "serve.log", "w+b")  # a file, not a pipe: a full pipe would block the server
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(port, server)
            warm = http.client.HTTPConnection(HOST, port, timeout=30)  # first load of the model: not timed
            warm.request(
                "POST",
                f"/api/predict/model/{MODEL}",
                body=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            assert warm.getresponse().status == 200
            warm.close()

            out: dict = {"lat": defaultdict(list), "errors": Counter()}
            lock = threading.Lock()
            budget = Budget(args.max_requests)
            t0 = time.perf_counter()
            stop_at = time.monotonic() + seconds
            workers = [
                threading.Thread(target=client_loop, args=(port, body, stop_at, budget, out, lock, i), daemon=True)
                for i in range(clients)
            ]
            for w in workers:
                w.start()
            for w in workers:
                w.join(timeout=seconds + 60)
            wall = time.perf_counter() - t0
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
            server_log.seek(0)
            log_lines = server_log.read().decode(errors="replace").splitlines()
            server_log.close()

    all_lat = [x for v in out["lat"].values() for x in v]
    n_err = sum(out["errors"].values())
    total = len(all_lat) + n_err
    print(
        f"load: {clients} clients, {seconds:.0f}s, server `python -m cli serve --threads {args.threads}` "
        f"on {HOST}, {args.rows} rows per prediction, model {MODEL} (random_forest, 50 trees)"
    )
    print(f"{'kind':<12} {'requests':>9} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for kind in ("predict", "config_read", "config_list"):
        v = out["lat"].get(kind, [])
        if v:
            print(
                f"{kind:<12} {len(v):>9} {len(v) / wall:>9.1f} {percentile(v, 50) * 1e3:>9.1f} "
                f"{percentile(v, 99) * 1e3:>9.1f} {max(v) * 1e3:>9.1f}"
            )
    print(
        f"{'all':<12} {len(all_lat):>9} {len(all_lat) / wall:>9.1f} {percentile(all_lat, 50) * 1e3:>9.1f} "
        f"{percentile(all_lat, 99) * 1e3:>9.1f} {max(all_lat, default=0) * 1e3:>9.1f}"
    )
    print(
        f"errors: {n_err}"
        + ("" if not n_err else " -> " + "; ".join(f"{k} x{c}" for k, c in out["errors"].most_common(5)))
    )
    warnings = [line for line in log_lines if "warning" in line.lower() or "error" in line.lower()]
    print(
        f"server log: {len(log_lines)} lines, {len(warnings)} warnings/errors"
        + (f"; e.g. {warnings[0][:160]!r}" if warnings else "")
    )
    print(
        f"wall time {wall:.1f}s; mean latency {statistics.fmean(all_lat) * 1e3 if all_lat else 0:.1f} ms; "
        f"total requests {total}"
    )
    return 1 if n_err or not all_lat else 0


if __name__ == "__main__":
    sys.exit(main())
