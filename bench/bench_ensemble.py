"""Benchmark: ensemble creation from artifacts vs from scratch (retraining every base model).

Five mixed base models (logistic regression, random forest, extra trees, histogram gradient
boosting, k-nearest neighbours), each scenario in its own fresh process, interleaved over
``--rounds`` rounds (medians):

* **scratch** - what the service did before: retrain every base model and stack them
  (scikit-learn's ``StackingClassifier`` with the same folds), timed around the fit;
* **cold**    - a fresh process (empty cache): ``StackingTool.create_ensemble`` from the verified
  artifacts and stored out-of-fold predictions, timed around the call;
* **warm**    - the same call again in that process (base models from the cache);
* **CLI end to end** - wall time of ``python -m cli ensemble create ...`` against wall time of the
  from-scratch script (``python -m bench.bench_ensemble --child scratch``), interpreters included.

Then, at ``--memory-rows`` rows (default 200,000; 0 skips it), one scratch and one cold run for
peak memory above each process's start.

Run: ``.venv/bin/python -m bench.bench_ensemble [--rows 50000] [--rounds 5] [--memory-rows 200000]``.
Not part of the test suite. Uses its own embedded server and temporary folders. Prints ratios last.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_ROWS = 50_000
CV_FOLDS = 3
BASES = [
    ("bench_lr", "logistic_regression", {"C": 1.0}),
    ("bench_rf", "random_forest", {"n_estimators": 100, "max_depth": 10}),
    ("bench_et", "extra_trees", {"n_estimators": 100, "max_depth": 10}),
    ("bench_hgb", "hist_gradient_boosting", {"max_iter": 100}),
    ("bench_knn", "knn", {"n_neighbors": 15}),
]
# --heavy: base models as data scientists size them (hundreds of trees, gradient boosting), which is what
# a retrain costs in practice; the default set keeps the benchmark short
HEAVY_BASES = [
    ("bench_rf300", "random_forest", {"n_estimators": 300}),
    ("bench_gb200", "gradient_boosting", {"n_estimators": 200}),
    ("bench_et300", "extra_trees", {"n_estimators": 300}),
]
PREDICT_ROWS = 2000


def _bases(args: dict) -> list[tuple[str, str, dict]]:
    """The first ``--bases`` base models (all five by default) of the default or the ``--heavy`` set."""
    chosen = HEAVY_BASES if args.get("heavy") else BASES
    return chosen[: args.get("bases") or len(chosen)]


def rss_mb() -> float:
    """Peak resident memory of this process image so far, in MB.

    ``VmHWM`` from /proc: a child's ``ru_maxrss`` on Linux starts from the
    high-water mark of the process it was forked from (the mm is copied at
    fork), so it would report the parent's peak; ``VmHWM`` of the exec'd
    image is the child's own. Falls back to ``ru_maxrss`` elsewhere.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return rss_mb()


def _settings(args: dict):
    from models.settings import Settings

    return Settings.from_env({}).with_(
        mongo_uri=args["uri"],
        mongo_db=args["db"],
        artifact_dir=Path(args["artifacts"]),
        var_dir=Path(args["tmp"]) / "var",
        data_roots=(Path(args["csv"]).parent,),
    )


def child_setup(args: dict) -> dict:
    """Write the data and train the base configs once (their artifacts are what the cold scenario uses)."""
    import warnings

    from models.demo import FEATURES, write_games_csv
    from models.store.configs import ConfigStore
    from models.store.db import Database
    from models.training.train import train_config

    warnings.simplefilter("ignore")
    write_games_csv(Path(args["csv"]), n_games=args["rows"])
    database = Database.connect(_settings(args))
    store = ConfigStore(database)
    trained, t0 = [], time.perf_counter()
    for name, model_type, params in _bases(args):
        store.create(
            {
                "name": name,
                "task": "classification",
                "model_type": model_type,
                "hyperparameters": params,
                "features": FEATURES[:8],
                "target": "home_win",
                "training_csv": args["csv"],
                "cv_folds": CV_FOLDS,
                "random_state": 42,
            }
        )
        t = time.perf_counter()
        train_config(database, name)
        trained.append((name, model_type, time.perf_counter() - t))
    return {"trained": trained, "seconds": time.perf_counter() - t0}


def child_scratch(args: dict) -> dict:
    """Retrain every base model and stack them, as the service did before the artifacts."""
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.ensemble import StackingClassifier

    from models.ensembles.stacking import make_meta_model
    from models.splits import fold_spec, holdout_split, make_splitter
    from models.store.configs import ConfigStore
    from models.store.db import Database
    from models.training.data import load_training_data
    from models.training.train import make_pipeline

    warnings.simplefilter("ignore")
    database = Database.connect(_settings(args))
    baseline = current_rss_mb()
    t0 = time.perf_counter()
    configs = [ConfigStore(database).get(name) for name, _, _ in _bases(args)]
    data = load_training_data(configs[0], database.settings)
    spec = fold_spec(configs[0])
    train_idx, _ = holdout_split(data.y, spec)
    stack = StackingClassifier(
        [(c["name"], make_pipeline(c)) for c in configs],
        final_estimator=make_meta_model("classification", "logistic_regression", spec["random_state"]),
        cv=make_splitter(spec),
        stack_method="predict_proba",
    )
    stack.fit(data.X[train_idx], data.y[train_idx])
    seconds = time.perf_counter() - t0
    if args.get("predict", True):
        frame = pd.read_csv(args["csv"]).head(PREDICT_ROWS)
        np.save(
            Path(args["tmp"]) / "scratch.npy", stack.predict_proba(frame[configs[0]["features"]].to_numpy(float))
        )
    return {
        "seconds": seconds,
        "peak_rss_mb": rss_mb(),
        "baseline_rss_mb": baseline,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def child_artifacts(args: dict) -> dict:
    """Cold (empty cache) then warm ensemble creation through the stacking tool."""
    import numpy as np
    import pandas as pd

    from agents.tools.stacking_tool import StackingTool
    from models.store.db import Database

    database = Database.connect(_settings(args))
    tool = StackingTool(database.settings, database)
    names = [name for name, _, _ in _bases(args)]
    tag = args.get("tag", "")
    baseline = current_rss_mb()
    t0 = time.perf_counter()
    cold = tool.create_ensemble(f"bench_cold{tag}", names, "logistic_regression")
    cold_s = time.perf_counter() - t0
    peak_cold = rss_mb()
    t0 = time.perf_counter()
    warm = tool.create_ensemble(f"bench_warm{tag}", names, "logistic_regression")
    warm_s = time.perf_counter() - t0
    if args.get("predict", True):
        frame = pd.read_csv(args["csv"]).head(PREDICT_ROWS)
        np.save(Path(args["tmp"]) / "artifacts.npy", tool.load_ensemble(f"bench_cold{tag}").predict_proba(frame))
    for name in (f"bench_cold{tag}", f"bench_warm{tag}"):
        tool.delete_ensemble(name)
    return {
        "seconds": cold_s,
        "peak_rss_mb": peak_cold,
        "baseline_rss_mb": baseline,
        "warm_seconds": warm_s,
        "cold_sources": [b["source"] for b in cold["base_models"]],
        "warm_sources": [b["source"] for b in warm["base_models"]],
        "retrained": cold["retrained"] + warm["retrained"],
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ensemble_auc": cold["metrics"].get("roc_auc"),
        "base_auc": {k: v.get("roc_auc") for k, v in cold["base_metrics"].items()},
    }


def run_child(kind: str, args: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_ensemble", "--child", kind, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{kind} scenario failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


def run_cli(args: dict, name: str) -> float:
    """Wall time of ``python -m cli ensemble create`` end to end (interpreter, imports, MongoDB, files)."""
    env = {
        **os.environ,
        "MONGO_URI": args["uri"],
        "MONGO_DB": args["db"],
        "ARTIFACT_DIR": args["artifacts"],
        "VAR_DIR": str(Path(args["tmp"]) / "var"),
        "PYTHONWARNINGS": "ignore",
    }
    cmd = [sys.executable, "-m", "cli", "ensemble", "create", name, "--meta", "logistic_regression", "--json"]
    for base, _, _ in _bases(args):
        cmd += ["--base", base]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cli ensemble create failed:\n{proc.stderr[-3000:]}")
    subprocess.run(
        [sys.executable, "-m", "cli", "ensemble", "delete", name, "--yes"], cwd=ROOT, env=env, capture_output=True
    )
    return wall


def with_server(root: Path, rows: int, fn, bases: int = len(BASES), heavy: bool = False):
    from models.store.embedded import EmbeddedServer, free_port

    server = EmbeddedServer(storage_path=root / "mongo", port=free_port(), run_dir=root)
    server.start()
    try:
        args = {
            "uri": server.uri,
            "db": f"bench_{uuid.uuid4().hex[:8]}",
            "artifacts": str(root / "artifacts"),
            "csv": str(root / "games.csv"),
            "tmp": str(root),
            "rows": rows,
            "bases": bases,
            "heavy": heavy,
        }
        setup = run_child("setup", args)
        return fn(args, setup)
    finally:
        server.stop()


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    import argparse

    import numpy as np

    parser = argparse.ArgumentParser(description="ensemble creation from artifacts vs from scratch")
    parser.add_argument("--rows", type=int, default=N_ROWS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-rows", type=int, default=200_000)
    parser.add_argument(
        "--bases", type=int, default=len(BASES), help="how many of the five base models (in order)"
    )
    parser.add_argument("--heavy", action="store_true", help="300-tree forests and 200-stage gradient boosting")
    opts = parser.parse_args()
    chosen = (HEAVY_BASES if opts.heavy else BASES)[: opts.bases]
    print(
        f"bench_ensemble: {opts.rows:,} rows, {len(chosen)} base models "
        f"({', '.join(t for _, t, _ in chosen)}), cv_folds={CV_FOLDS}, {os.cpu_count()} cores, "
        f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} before the run"
    )

    def speed(args: dict, setup: dict) -> dict:
        for name, model_type, seconds in setup["trained"]:
            print(f"  setup: trained {name:<10} ({model_type}) in {seconds:6.1f}s")
        print(f"  setup total {setup['seconds']:.1f}s (not part of any scenario)")
        runs: dict[str, list] = {"scratch": [], "cold": [], "cli": []}
        for r in range(opts.rounds):  # interleaved: each round runs every scenario once, in a rotating order
            order = ["scratch", "cold", "cli"][r % 3 :] + ["scratch", "cold", "cli"][: r % 3]
            for kind in order:
                if kind == "scratch":
                    runs["scratch"].append(run_child("scratch", {**args, "predict": r == 0}))
                elif kind == "cold":
                    runs["cold"].append(run_child("artifacts", {**args, "predict": r == 0, "tag": str(r)}))
                else:
                    runs["cli"].append(run_cli(args, f"bench_cli{r}"))
        diff = float(
            np.max(
                np.abs(np.load(Path(args["tmp"]) / "scratch.npy") - np.load(Path(args["tmp"]) / "artifacts.npy"))
            )
        )
        return {**runs, "diff": diff}

    def memory(args: dict, setup: dict) -> dict:
        print(f"  memory setup at {opts.memory_rows:,} rows: {setup['seconds']:.1f}s")
        return {
            "scratch": run_child("scratch", {**args, "predict": False}),
            "cold": run_child("artifacts", {**args, "predict": False}),
        }

    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        (Path(tmp) / "speed").mkdir()
        res = with_server(Path(tmp) / "speed", opts.rows, speed, opts.bases, opts.heavy)
    mem = None
    if opts.memory_rows:
        with tempfile.TemporaryDirectory(prefix="bench-ensemble-mem-") as tmp:
            (Path(tmp) / "mem").mkdir()
            mem = with_server(Path(tmp) / "mem", opts.memory_rows, memory, opts.bases, opts.heavy)

    scratch_s = median([r["seconds"] for r in res["scratch"]])
    cold_s = median([r["seconds"] for r in res["cold"]])
    warm_s = median([r["warm_seconds"] for r in res["cold"]])
    scratch_wall = median([r["wall_seconds"] for r in res["scratch"]])
    cli_wall = median(res["cli"])
    arts = res["cold"][0]
    print()
    print(f"{'scenario (medians of ' + str(opts.rounds) + ')':<40}{'time':>10}")
    each_scratch = ", ".join(f"{r['seconds']:.1f}" for r in res["scratch"])
    each_cold = ", ".join(f"{r['seconds']:.3f}" for r in res["cold"])
    print(f"{'from scratch, in process':<40}{scratch_s:>9.2f}s   (each: {each_scratch})")
    print(f"{'from artifacts, cold process':<40}{cold_s:>9.3f}s   (each: {each_cold})")
    print(f"{'from cache, warm (same process)':<40}{warm_s:>9.3f}s")
    print(f"{'from-scratch script, end to end':<40}{scratch_wall:>9.2f}s")
    print(
        f"{'python -m cli ensemble create, end to end':<40}{cli_wall:>9.2f}s   (each: {', '.join(f'{t:.2f}' for t in res['cli'])})"
    )
    print(
        f"sources cold: {arts['cold_sources']}; warm: {arts['warm_sources']}; retrained: {arts['retrained'] or 'none'}"
    )
    print(
        f"held-out roc_auc: ensemble {arts['ensemble_auc']:.4f}; bases "
        + ", ".join(f"{k} {v:.4f}" for k, v in arts["base_auc"].items())
    )
    print(
        f"max |predict_proba difference| scratch vs artifacts ensemble on {PREDICT_ROWS} rows: {res['diff']:.2e}"
    )
    if mem:
        d_s = mem["scratch"]["peak_rss_mb"] - mem["scratch"]["baseline_rss_mb"]
        d_a = mem["cold"]["peak_rss_mb"] - mem["cold"]["baseline_rss_mb"]
        print(
            f"at {opts.memory_rows:,} rows: scratch {mem['scratch']['seconds']:.1f}s, peak {mem['scratch']['peak_rss_mb']:.0f}MB "
            f"({d_s:.0f}MB above start); artifacts {mem['cold']['seconds']:.2f}s, peak {mem['cold']['peak_rss_mb']:.0f}MB "
            f"({d_a:.0f}MB above start)"
        )
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} after the run")
    print()
    speed_x, cli_x = scratch_s / cold_s, scratch_wall / cli_wall
    print(
        f"speed-up in process, cold artifacts vs scratch: {speed_x:.0f}x (target >= 200x: "
        f"{'met' if speed_x >= 200 else 'NOT met'}); warm cache vs scratch {scratch_s / warm_s:.0f}x"
    )
    print(
        f"speed-up end to end, CLI vs from-scratch script: {cli_x:.1f}x (target >= 30x: "
        f"{'met' if cli_x >= 30 else 'NOT met'})"
    )
    if mem:
        ratio = d_a / d_s if d_s > 0 else float("nan")
        print(
            f"peak memory above process start at {opts.memory_rows:,} rows, artifacts/scratch: {ratio:.2f} "
            f"(target <= 0.20: {'met' if ratio <= 0.2 else 'NOT met'})"
        )


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        out = {"setup": child_setup, "scratch": child_scratch, "artifacts": child_artifacts}[sys.argv[2]](
            json.loads(sys.argv[3])
        )
        print(json.dumps(out))
    else:
        main()
