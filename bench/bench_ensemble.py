"""Benchmark: ensemble creation from artifacts vs from scratch (retraining every base model).

Five base models on 50,000 rows, each scenario in its own process so that its
peak memory (``ru_maxrss`` of that process) is its own:

* **scratch** - what the service did before: retrain every base model and stack
  them (scikit-learn's ``StackingClassifier`` with the same folds);
* **cold**    - a fresh process (empty cache): ``StackingTool.create_ensemble``
  from the verified artifacts and stored out-of-fold predictions;
* **warm**    - the same call again in that process (base models from the cache).

Run: ``.venv/bin/python -m bench.bench_ensemble`` (or ``python bench/bench_ensemble.py``).
Not part of the test suite. Uses its own embedded server and temporary folders.
"""
from __future__ import annotations

import json
import os
import resource
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
SVM_MAX_ITER = 1000
BASES = [
    ("bench_rf", "random_forest", {"n_estimators": 300, "max_depth": 10, "n_jobs": 2}),
    ("bench_et", "extra_trees", {"n_estimators": 200, "max_depth": 10, "n_jobs": 2}),
    ("bench_gb", "gradient_boosting", {"n_estimators": 100, "max_depth": 3}),
    ("bench_lr", "logistic_regression", {"C": 1.0}),
    # SVC is O(n^2) in rows: its solver iterations are capped by a config choice (max_iter)
    ("bench_svm", "svm", {"max_iter": SVM_MAX_ITER}),
]
PREDICT_ROWS = 2000


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
    return Settings.from_env({}).with_(mongo_uri=args["uri"], mongo_db=args["db"],
                                       artifact_dir=Path(args["artifacts"]), var_dir=Path(args["tmp"]) / "var",
                                       data_roots=(Path(args["csv"]).parent,))


def child_setup(args: dict) -> dict:
    """Write the data and train the base configs once (their artifacts are what the cold scenario uses)."""
    import warnings

    from models.demo import FEATURES, write_games_csv
    from models.store.configs import ConfigStore
    from models.store.db import Database
    from models.training.train import train_config
    warnings.simplefilter("ignore")
    write_games_csv(Path(args["csv"]), n_games=N_ROWS)
    database = Database.connect(_settings(args))
    store = ConfigStore(database)
    trained, t0 = [], time.perf_counter()
    for name, model_type, params in BASES:
        store.create({"name": name, "task": "classification", "model_type": model_type,
                      "hyperparameters": params, "features": FEATURES[:8], "target": "home_win",
                      "training_csv": args["csv"], "cv_folds": CV_FOLDS, "random_state": 42})
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
    from models.store.configs import ConfigStore
    from models.store.db import Database
    from models.training.data import load_training_data
    from models.training.train import (
        fold_spec,
        holdout_split,
        make_pipeline,
        make_splitter,
    )
    warnings.simplefilter("ignore")
    database = Database.connect(_settings(args))
    baseline = current_rss_mb()
    t0 = time.perf_counter()
    configs = [ConfigStore(database).get(name) for name, _, _ in BASES]
    data = load_training_data(configs[0])
    spec = fold_spec(configs[0])
    train_idx, _ = holdout_split(data.y, spec)
    stack = StackingClassifier([(c["name"], make_pipeline(c)) for c in configs],
                               final_estimator=make_meta_model("classification", "logistic_regression",
                                                               spec["random_state"]),
                               cv=make_splitter(spec), stack_method="predict_proba")
    stack.fit(data.X[train_idx], data.y[train_idx])
    seconds = time.perf_counter() - t0
    frame = pd.read_csv(args["csv"]).head(PREDICT_ROWS)
    np.save(Path(args["tmp"]) / "scratch.npy", stack.predict_proba(frame[configs[0]["features"]].to_numpy(float)))
    return {"seconds": seconds, "peak_rss_mb": rss_mb(), "baseline_rss_mb": baseline,
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_artifacts(args: dict) -> dict:
    """Cold (empty cache) then warm ensemble creation through the stacking tool."""
    import numpy as np
    import pandas as pd

    from agents.tools.stacking_tool import StackingTool
    from models.store.db import Database
    database = Database.connect(_settings(args))
    tool = StackingTool(database.settings, database)
    names = [name for name, _, _ in BASES]
    baseline = current_rss_mb()
    t0 = time.perf_counter()
    cold = tool.create_ensemble("bench_cold", names, "logistic_regression")
    cold_s = time.perf_counter() - t0
    peak_cold = rss_mb()
    t0 = time.perf_counter()
    warm = tool.create_ensemble("bench_warm", names, "logistic_regression")
    warm_s = time.perf_counter() - t0
    frame = pd.read_csv(args["csv"]).head(PREDICT_ROWS)
    np.save(Path(args["tmp"]) / "artifacts.npy", tool.load_ensemble("bench_cold").predict_proba(frame))
    return {"seconds": cold_s, "peak_rss_mb": peak_cold, "baseline_rss_mb": baseline, "warm_seconds": warm_s,
            "cold_sources": [b["source"] for b in cold["base_models"]],
            "warm_sources": [b["source"] for b in warm["base_models"]],
            "retrained": cold["retrained"] + warm["retrained"],
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ensemble_auc": cold["metrics"].get("roc_auc"),
            "base_auc": {k: v.get("roc_auc") for k, v in cold["base_metrics"].items()}}


def run_child(kind: str, args: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.bench_ensemble", "--child", kind, json.dumps(args)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} scenario failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np

    from models.store.embedded import EmbeddedServer, free_port
    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        root = Path(tmp)
        server = EmbeddedServer(storage_path=root / "mongo", port=free_port(), run_dir=root)
        server.start()
        try:
            args = {"uri": server.uri, "db": f"bench_{uuid.uuid4().hex[:8]}", "artifacts": str(root / "artifacts"),
                    "csv": str(root / "games.csv"), "tmp": tmp}
            print(f"bench_ensemble: {N_ROWS:,} rows, {len(BASES)} base models, cv_folds={CV_FOLDS}, "
                  f"{os.cpu_count()} CPUs")
            print(f"note: the SVM's solver is capped at max_iter={SVM_MAX_ITER} (a config choice; SVC is O(n^2) "
                  "in rows) - it trains on all rows, the cap applies to both scenarios")
            setup = run_child("setup", args)
            for name, model_type, seconds in setup["trained"]:
                print(f"  setup: trained {name:<10} ({model_type}) in {seconds:6.1f}s")
            print(f"  setup total {setup['seconds']:.1f}s (not part of either scenario)")
            scratch = run_child("scratch", args)
            arts = run_child("artifacts", args)
            diff = float(np.max(np.abs(np.load(root / "scratch.npy") - np.load(root / "artifacts.npy"))))
        finally:
            server.stop()
    speed = scratch["seconds"] / arts["seconds"]
    mem = arts["peak_rss_mb"] / scratch["peak_rss_mb"]
    d_s = scratch["peak_rss_mb"] - scratch["baseline_rss_mb"]
    d_a = arts["peak_rss_mb"] - arts["baseline_rss_mb"]
    print()
    print(f"{'scenario':<34}{'time':>10}{'peak RSS':>12}{'above start':>14}")
    print(f"{'from scratch (retrain all 5)':<34}{scratch['seconds']:>9.2f}s{scratch['peak_rss_mb']:>10.0f}MB"
          f"{d_s:>12.0f}MB")
    print(f"{'from artifacts, cold process':<34}{arts['seconds']:>9.2f}s{arts['peak_rss_mb']:>10.0f}MB"
          f"{d_a:>12.0f}MB")
    print(f"{'from cache, warm (same process)':<34}{arts['warm_seconds']:>9.3f}s")
    print()
    print(f"speed-up cold artifacts vs scratch: {speed:.1f}x   (target >= 50x: {'met' if speed >= 50 else 'NOT met'})")
    print(f"speed-up warm cache vs scratch:     {scratch['seconds'] / arts['warm_seconds']:.0f}x")
    print(f"peak memory artifacts/scratch:      {mem:.2f} of scratch (whole process; target <= 0.20: "
          f"{'met' if mem <= 0.2 else 'NOT met'})")
    if d_s > 0:
        print(f"memory above process start:         {d_a / d_s:.2f} of scratch ({d_a:.0f}MB vs {d_s:.0f}MB)")
    print(f"(ru_maxrss of the children, which Linux seeds with the forking parent's peak: scratch "
          f"{scratch['ru_maxrss_mb']:.0f}MB, artifacts {arts['ru_maxrss_mb']:.0f}MB)")
    print(f"sources cold: {arts['cold_sources']}; warm: {arts['warm_sources']}; retrained: {arts['retrained'] or 'none'}")
    print(f"held-out roc_auc: ensemble {arts['ensemble_auc']:.4f}; bases "
          + ", ".join(f"{k} {v:.4f}" for k, v in arts["base_auc"].items()))
    print(f"max |predict_proba difference| scratch vs artifacts ensemble on {PREDICT_ROWS} rows: {diff:.2e}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        out = {"setup": child_setup, "scratch": child_scratch, "artifacts": child_artifacts}[sys.argv[2]](json.loads(sys.argv[3]))
        print(json.dumps(out))
    else:
        main()
