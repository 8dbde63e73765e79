"""Benchmark: predict through our API beside a bare-minimum app and ``mlflow models serve``, same fitted objects.

Trains a random forest and a logistic regression on the demo data, stacks them into an ensemble, then
starts on 127.0.0.1, each as one process:

* **ours**: ``python -m cli serve`` (waitress, ``--threads`` threads): ``POST /api/predict/model/<name>``
  and ``/api/predict/ensemble/<name>`` with the API token, the checks, the verified cache, the JSON answer;
* **bare**: ``bench/bare_app.py`` (waitress, ``--threads`` threads): the same fitted scaler/estimator
  objects loaded with ``pickle.load``, no auth, no validation;
* **mlflow**: ``mlflow models serve -m DIR --env-manager local --workers 1`` (uvicorn, 1 worker: one event
  loop handing each request to asyncio's default thread pool) of the folders ``registry.export_mlflow``
  writes for the model and for the ensemble (what a user of this service would do; one server per folder),
  ``POST /invocations`` with ``{"dataframe_split": ...}``;
* **mlflow-sm** (model only): the same, of ``mlflow.sklearn.save_model(pipeline, DIR,
  serialization_format="pickle")`` of the run's deployment Pipeline (MLflow's own writer, for comparison).

The MLflow servers only run when ``import mlflow`` works in this interpreter (the bench virtualenv, README
"Benchmarks"); otherwise a line says they were skipped. Each round measures, in a shuffled order, for every
server x target (model, ensemble) x batch (1 row, 100 rows): p50/p95 latency of sequential requests from
1 client (one keep-alive connection) and the throughput (requests/s, rows/s) of ``--clients`` concurrent
clients (each with its own keep-alive connection). Medians over the rounds. Predicted labels are compared
between the servers on the same rows. Then, with the servers stopped, a cProfile of our Flask app called
in-process for model and ensemble predicts of 1 and 100 rows (bench/serving_profile.py). Ratios last.

Run: ``/work/wt/bench-venv/bin/python -m bench.bench_serving [--rounds 3] [--seconds 2] [--requests 300]
[--clients 8] [--threads N] [--no-profile]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pickle
import random
import signal
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
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the servers have it, for the in-process profile

from bench.bench_load import HOST, percentile
from bench.common import bench_database
from models import registry
from models.artifacts.cache import ModelCache
from models.artifacts.loading import load_model
from models.demo import FEATURES, generate_games, write_games_csv
from models.ensembles.build import create_ensemble, load_ensemble
from models.store.configs import ConfigStore
from models.store.embedded import free_port
from models.training.train import train_config

TOKEN = "bench-serving-token-0123456789"
TARGETS = ("model", "ensemble")
BATCHES = (1, 100)
COLUMNS = FEATURES[:8]
NAMES = {"model": "serve_rf", "ensemble": "serve_ens"}
DEFAULT_POOL = min(32, (os.cpu_count() or 1) + 4)  # asyncio.to_thread's pool: MLflow's request threads


def _load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"


def _mlflow() -> tuple[object | None, str]:
    try:
        import mlflow
    except ImportError as exc:
        return None, f"{exc.__class__.__name__}: {exc}"
    return mlflow, mlflow.__version__


class Server:
    """One server under test: its routes per target and how its bodies and answers look."""

    def __init__(self, name: str, ports: dict[str, int], paths: dict[str, str], headers: dict, kind: str) -> None:
        self.name, self.ports, self.paths, self.headers, self.kind = name, ports, paths, headers, kind

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t for t in TARGETS if t in self.paths)

    def connect(self, target: str) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.ports[target], timeout=60)

    def post(self, conn: http.client.HTTPConnection, target: str, body: bytes) -> bytes:
        conn.request("POST", self.paths[target], body=body, headers=self.headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{self.name} {target}: HTTP {response.status}: {data[:300]!r}")
        return data

    def labels(self, data: bytes) -> list:
        predictions = json.loads(data)["predictions"]
        return list(predictions) if self.kind == "split" else [p["prediction"] for p in predictions]


def encode(kind: str, rows: list[dict]) -> bytes:
    if kind == "split":  # MLflow's scoring protocol, the columns once
        return json.dumps(
            {"dataframe_split": {"columns": COLUMNS, "data": [[r[c] for c in COLUMNS] for r in rows]}}
        )
    return json.dumps({"rows": rows})


def sequential(server: Server, target: str, bodies: list[bytes], n: int, seconds: float) -> tuple[float, float]:
    """p50 and p95 latency of up to ``n`` requests one after the other (at least 20, at most ``seconds``)."""
    conn = server.connect(target)
    times = []
    stop_at = time.perf_counter() + seconds
    for i in range(n):
        t0 = time.perf_counter()
        server.post(conn, target, bodies[i % len(bodies)])
        times.append(time.perf_counter() - t0)
        if i >= 19 and t0 > stop_at:
            break
    conn.close()
    return percentile(times, 50), percentile(times, 95)


def throughput(server: Server, target: str, bodies: list[bytes], clients: int, seconds: float) -> float:
    """Requests/s of ``clients`` concurrent clients over ``seconds``."""
    counts = [0] * clients
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def loop(i: int) -> None:
        try:
            conn = server.connect(target)
            start.wait()
            k = i
            while time.perf_counter() < stop_at[0]:
                server.post(conn, target, bodies[k % len(bodies)])
                counts[i] += 1
                k += clients
            conn.close()
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    stop_at.append(t0 + seconds)
    start.wait()
    for t in threads:
        t.join(timeout=seconds + 120)
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{server.name} {target}: a client failed: {errors[0]!r}")
    return sum(counts) / wall


def setup(database) -> dict:
    """Train two models and stack them; the bare app's spec (the same fitted objects)."""
    settings = database.settings
    csv = write_games_csv(settings.data_dir / "games.csv", n_games=3000)
    store = ConfigStore(database)
    common = {
        "task": "classification",
        "features": COLUMNS,
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
    return {
        "model": (list(model.features), model.scaler, model.model),
        "ensemble": {
            "bases": [(list(b.features), b.scaler, b.model) for b in ensemble.bases],
            "meta": ensemble.meta_model,
        },
        "pipeline": model.to_pipeline(),  # what mlflow.sklearn.save_model gets (not sent to the bare app)
    }


def save_with_mlflow(mlflow, pipeline, rows: list[dict], out: Path) -> None:
    """``mlflow.sklearn.save_model`` of the Pipeline, pickle format, signature from the rows."""
    import pandas as pd
    from mlflow.models import infer_signature

    frame = pd.DataFrame(rows, columns=COLUMNS)
    mlflow.sklearn.save_model(
        pipeline,
        str(out),
        serialization_format="pickle",
        signature=infer_signature(frame, pipeline.predict(frame)),
        pip_requirements=["scikit-learn", "pandas", "numpy"],  # no inference subprocess: not measured here
    )


def start(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # a file, not a pipe: a full pipe would block the server
    # its own process group: mlflow's CLI runs uvicorn in a child, stopped together by the group id
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def wait_ready(port: int, path: str, proc: subprocess.Popen, log_path: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-1500:]
            raise SystemExit(f"a server exited early (code {proc.returncode}): {' '.join(proc.args)}\n{tail}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{' '.join(proc.args)} did not become ready within {timeout:.0f}s")


def compare(servers: list[Server], bodies: dict, rows_1: list[dict], rows_100: list[list[dict]]) -> list[str]:
    """Predicted labels of every server on the same rows (20 single rows, every 100-row body); mismatch counts.
    Also the largest |probability difference| ours vs bare."""
    lines = []
    ours, bare = servers[0], servers[1]
    for target in TARGETS:
        label_sets: dict[str, list] = {}
        for server in (s for s in servers if target in s.paths):
            conn = server.connect(target)
            got: list = []
            for i in range(20):
                got += server.labels(server.post(conn, target, bodies[(server.kind, 1)][i]))
            for body in bodies[(server.kind, 100)]:
                got += server.labels(server.post(conn, target, body))
            conn.close()
            label_sets[server.name] = got
        reference = label_sets["ours"]
        n = len(reference)
        assert n == 20 + 100 * len(rows_100), n
        parts = [
            f"{name} {sum(a != b for a, b in zip(reference, got))}"
            for name, got in label_sets.items()
            if name != "ours"
        ]
        a, b = ours.connect(target), bare.connect(target)
        worst = 0.0
        for i in range(20):
            x = json.loads(ours.post(a, target, bodies[("rows", 1)][i]))["predictions"][0]
            y = json.loads(bare.post(b, target, bodies[("rows", 1)][i]))["predictions"][0]
            worst = max(worst, *(abs(x[k] - y[k]) for k in y if k.startswith("proba_")))
        a.close()
        b.close()
        lines.append(
            f"same predictions, {target}: {n} rows, label mismatches vs ours: {', '.join(parts)}; "
            f"max |probability difference| ours vs bare {worst:.1e}"
        )
        if any(not p.endswith(" 0") for p in parts):
            raise SystemExit("the servers disagree: " + lines[-1])
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--seconds", type=float, default=2.0, help="length of each throughput run (and sequential cap)"
    )
    ap.add_argument("--requests", type=int, default=300, help="sequential requests per p50/p95 measurement (max)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--threads", type=int, default=DEFAULT_POOL, help="waitress threads of ours and bare")
    ap.add_argument("--profile-requests", type=int, default=500, help="1-row requests per profiled target")
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args(argv)
    mlflow, mlflow_info = _mlflow()
    print(
        f"bench_serving: {os.cpu_count()} cores, load average {_load()} before the run; {args.rounds} rounds, "
        f"batches of {' and '.join(map(str, BATCHES))} rows, p50/p95 sequential at 1 client (<= {args.requests} "
        f"requests or {args.seconds:.0f} s), throughput at {args.clients} clients ({args.seconds:.0f} s), "
        "all jobs shuffled each round"
    )
    print(
        f"servers (one process each): ours = `python -m cli serve --threads {args.threads}` (waitress, "
        f"{args.threads} threads); bare = bench/bare_app.py (waitress, {args.threads} threads)"
        + (
            f"; mlflow {mlflow_info} = `mlflow models serve --env-manager local --workers 1` (uvicorn, 1 worker, "
            f"asyncio default pool of {DEFAULT_POOL} threads) of registry.export_mlflow's folder, one per target; "
            "mlflow-sm = the same of mlflow.sklearn.save_model(pipeline, serialization_format='pickle'), model only"
            if mlflow
            else ""
        )
    )
    if mlflow is None:
        print(
            f"mlflow servers skipped: `import mlflow` fails in {sys.executable} ({mlflow_info}); run with the "
            "bench virtualenv (README 'Benchmarks')"
        )
    all_rows = generate_games(1200, seed=11)[COLUMNS].to_dict(orient="records")
    rows_1 = all_rows[:400]
    rows_100 = [all_rows[400 + 100 * i : 500 + 100 * i] for i in range(8)]
    bodies: dict[tuple[str, int], list[bytes]] = {}
    for kind in ("rows", "split"):
        bodies[(kind, 1)] = [encode(kind, [r]).encode() for r in rows_1]
        bodies[(kind, 100)] = [encode(kind, rows).encode() for rows in rows_100]
    t_start = time.perf_counter()
    profiles: dict[tuple[str, int], dict] = {}
    with bench_database() as database, tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        settings = database.settings
        spec = setup(database)
        pipeline = spec.pop("pipeline")
        spec_path = tmp / "bare_spec.pkl"
        spec_path.write_bytes(pickle.dumps(spec, protocol=5))
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow runs uvicorn
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
        port = {"ours": free_port(), "bare": free_port()}
        launches = [
            (
                "ours",
                port["ours"],
                "/healthz",
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(port["ours"]),
                    "--threads",
                    str(args.threads),
                ],
            ),
            (
                "bare",
                port["bare"],
                "/model",
                [sys.executable, "-m", "bench.bare_app", str(spec_path), str(port["bare"]), str(args.threads)],
            ),
        ]
        if mlflow is not None:
            folders = {}
            for target in TARGETS:
                folders[f"mlflow-{target}"] = tmp / f"mlflow-{target}"
                registry.export_mlflow(database, NAMES[target], folders[f"mlflow-{target}"])
            folders["mlflow-sm-model"] = tmp / "mlflow-sm-model"
            save_with_mlflow(mlflow, pipeline, rows_1[:50], folders["mlflow-sm-model"])
            mlflow_cli = str(Path(sys.executable).parent / "mlflow")
            for key, folder in folders.items():
                port[key] = free_port()
                launches.append(
                    (
                        key,
                        port[key],
                        "/ping",
                        [
                            mlflow_cli,
                            "models",
                            "serve",
                            "-m",
                            str(folder),
                            "--env-manager",
                            "local",
                            "--host",
                            HOST,
                            "-p",
                            str(port[key]),
                            "--workers",
                            "1",
                        ],
                    )
                )
        procs: list[subprocess.Popen] = []
        try:
            for key, _port, _path, cmd in launches:
                procs.append(start(cmd, env, tmp / f"{key}.log"))
            for (key, p, path, _cmd), proc in zip(launches, procs):
                # the bare app answers GET /model with an error until it is up; any HTTP answer means it listens
                if key == "bare":
                    wait_listening(p, proc, tmp / f"{key}.log")
                else:
                    wait_ready(p, path, proc, tmp / f"{key}.log")
            json_headers = {"Content-Type": "application/json"}
            servers = [
                Server(
                    "ours",
                    {t: port["ours"] for t in TARGETS},
                    {t: f"/api/predict/{t}/{NAMES[t]}" for t in TARGETS},
                    {"Authorization": f"Bearer {TOKEN}", **json_headers},
                    "rows",
                ),
                Server(
                    "bare",
                    {t: port["bare"] for t in TARGETS},
                    {"model": "/model", "ensemble": "/ensemble"},
                    json_headers,
                    "rows",
                ),
            ]
            if mlflow is not None:
                servers.append(
                    Server(
                        "mlflow",
                        {t: port[f"mlflow-{t}"] for t in TARGETS},
                        {t: "/invocations" for t in TARGETS},
                        json_headers,
                        "split",
                    )
                )
                servers.append(
                    Server(
                        "mlflow-sm",
                        {"model": port["mlflow-sm-model"]},
                        {"model": "/invocations"},
                        json_headers,
                        "split",
                    )
                )
            same = compare(servers, bodies, rows_1, rows_100)  # also the warm-up: every server has loaded
            print(f"setup and server starts took {time.perf_counter() - t_start:.0f} s")
            results: dict[tuple[str, str, int, str], list[float]] = {}
            for _ in range(args.rounds):
                jobs = [(s, t, b, m) for s in servers for t in s.targets for b in BATCHES for m in ("seq", "tput")]
                random.shuffle(jobs)
                for server, target, batch, measure in jobs:
                    body_list = bodies[(server.kind, batch)]
                    key = (server.name, target, batch)
                    if measure == "seq":
                        p50, p95 = sequential(server, target, body_list, args.requests, args.seconds)
                        results.setdefault((*key, "p50"), []).append(p50)
                        results.setdefault((*key, "p95"), []).append(p95)
                    else:
                        rps = throughput(server, target, body_list, args.clients, args.seconds)
                        results.setdefault((*key, "rps"), []).append(rps)
        finally:
            for proc in procs:
                stop(proc)
        t_measured = time.perf_counter()
        if not args.no_profile:
            profiles = run_profile(database, bodies, args.profile_requests)

    med = {k: statistics.median(v) for k, v in results.items()}
    names = [s.name for s in servers]
    print(f"measurements took {t_measured - t_start:.0f} s in all")
    for line in same:
        print(line)
    print(
        f"{'target':<9}{'rows':>5} {'server':<10}{'p50 ms':>9}{'p95 ms':>9}{'req/s':>9}{'rows/s':>10}"
        f"   (each round: p50 ms / req/s at {args.clients} clients)"
    )
    for target in TARGETS:
        for batch in BATCHES:
            for name in names:
                key = (name, target, batch)
                if (*key, "p50") not in med:
                    continue
                each = ", ".join(
                    f"{p * 1e3:.2f}/{r:.0f}" for p, r in zip(results[(*key, "p50")], results[(*key, "rps")])
                )
                rps = med[(*key, "rps")]
                print(
                    f"{target:<9}{batch:>5} {name:<10}{med[(*key, 'p50')] * 1e3:>9.2f}{med[(*key, 'p95')] * 1e3:>9.2f}"
                    f"{rps:>9.0f}{rps * batch:>10.0f}   ({each})"
                )
    if profiles:
        print(
            "profile of our server (in-process, web.create_app called as waitress calls it, no HTTP or socket; "
            "C and standard-library functions counted for their callers):"
        )
        from bench.serving_profile import print_profile

        for (target, batch), result in profiles.items():
            print_profile(
                target, batch, args.profile_requests if batch == 1 else args.profile_requests // 5, result
            )
    print(f"load average {_load()} after the run")
    print("ratios (medians):")
    ok = True
    for target in TARGETS:
        for batch in BATCHES:
            ours, bare = ("ours", target, batch), ("bare", target, batch)
            rps = med[(*ours, "rps")] / med[(*bare, "rps")]
            p50 = med[(*ours, "p50")] / med[(*bare, "p50")]
            parts = [
                f"throughput ours/bare {rps:.2f}x (target >= 0.9)",
                f"p50 ours/bare {p50:.2f}x (target <= 1.2)",
            ]
            met = rps >= 0.9 and p50 <= 1.2
            rivals = [n for n in ("mlflow", "mlflow-sm") if (n, target, batch, "rps") in med]
            for rival in rivals:
                vs = med[(*ours, "rps")] / med[(rival, target, batch, "rps")]
                vs_p50 = med[(*ours, "p50")] / med[(rival, target, batch, "p50")]
                parts.append(f"throughput ours/{rival} {vs:.2f}x (target >= 1.0), p50 ours/{rival} {vs_p50:.2f}x")
                met &= vs >= 1.0
            ok &= met
            print(f"  {target:<8} {batch:>3} rows: {'; '.join(parts)}  {'met' if met else 'NOT met'}")
    if mlflow is None:
        print("  (ours/mlflow not measured: mlflow servers skipped)")
    print("targets met" if ok else "targets NOT met")
    return 0


def wait_listening(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    """Until ``port`` accepts a connection (the bare app has no health route)."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the bare app exited early: {log_path.read_text(errors='replace')[-1500:]}")
        try:
            socket.create_connection((HOST, port), timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the bare app did not listen in time")


def run_profile(database, bodies: dict[tuple[str, int], list[bytes]], n: int) -> dict[tuple[str, int], dict]:
    """cProfile of our app in-process for model and ensemble predicts of 1 row (``n`` requests) and of 100
    rows (``n // 5``), see bench/serving_profile.py."""
    from bench.serving_profile import InProcess, profile_target
    from models.jobs.default import shutdown_default_runner
    from web import create_app

    settings = database.settings.with_(api_token=TOKEN, admin_password="bench-admin-pw", secret_key="s" * 32)
    app = create_app(settings, database)
    client = InProcess(app, {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        return {
            (t, b): profile_target(
                client, f"/api/predict/{t}/{NAMES[t]}", bodies[("rows", b)], n if b == 1 else n // 5
            )
            for t in TARGETS
            for b in BATCHES
        }
    finally:
        shutdown_default_runner()


if __name__ == "__main__":
    sys.exit(main())
