"""Benchmark: are suggested ensembles at least as good as the best single candidate, honestly scored?

For each of four scikit-learn data sets that ship with the library (nothing is downloaded):
breast cancer (binary), wine and digits (multi-class), diabetes (regression), the data goes to a
CSV, base configs are created, swept (``create_sweep``, at least 8 configs per data set) and trained
through the service (``train_config``), and ``suggest_ensemble`` chooses an ensemble from the
stored out-of-fold predictions. The table shows the honest score (selected inside the training
folds, scored on the held-out fold, nested over the stored folds) beside the best single candidate's
out-of-fold score on the same rows, and the same two on the runs' held-out test rows.
The check: ensemble no worse than the best single candidate by more than 0.005, in every case.

Run: ``.venv/bin/python -m bench.bench_selection_quality [--method greedy|stack|both] [--size 25]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd
from sklearn import datasets

from models.ensembles.suggest import suggest_ensemble
from models.store.configs import ConfigStore
from models.store.db import Database
from models.training.metrics import higher_is_better
from models.training.sweep import create_sweep
from models.training.train import train_config

TOLERANCE = 0.005

# (base model type, base hyperparameters, grid): each data set gets the sweeps of its task
CLASSIFICATION_SWEEPS = [
    ("random_forest", {}, {"max_depth": [3, 8, None], "n_estimators": [50, 150]}),
    ("logistic_regression", {"max_iter": 2000}, {"C": [0.05, 1.0, 20.0]}),
    ("knn", {}, {"n_neighbors": [5, 25]}),
]
REGRESSION_SWEEPS = [
    ("ridge", {}, {"alpha": [0.1, 1.0, 10.0, 100.0]}),
    ("random_forest", {}, {"max_depth": [3, 8], "n_estimators": [100]}),
    ("gradient_boosting", {}, {"n_estimators": [50, 150], "max_depth": [2]}),
    ("knn", {}, {"n_neighbors": [5, 20]}),
]


def sklearn_sets() -> list[tuple[str, str, Any]]:
    return [
        ("breast_cancer", "classification", datasets.load_breast_cancer()),
        ("wine", "classification", datasets.load_wine()),
        ("digits", "classification", datasets.load_digits()),
        ("diabetes", "regression", datasets.load_diabetes()),
    ]


def write_csv(folder: Path, name: str, X: Any, y: Any) -> tuple[Path, list[str]]:
    features = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=features)
    frame["target"] = y
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, features


def build_library(
    database: Database,
    name: str,
    task: str,
    csv: Path,
    features: list[str],
    sweeps: list[tuple[str, dict, dict]],
    cv_folds: int = 5,
) -> list[str]:
    """Base configs, their sweeps, all trained; returns the trained config names."""
    store = ConfigStore(database)
    names: list[str] = []
    for model_type, params, grid in sweeps:
        base = store.create(
            {
                "name": f"{name}_{model_type}",
                "task": task,
                "model_type": model_type,
                "hyperparameters": params,
                "features": features,
                "target": "target",
                "training_csv": str(csv),
                "cv_folds": cv_folds,
                "random_state": 0,
                "scaler": "standard",
            }
        )
        names.extend(c["name"] for c in create_sweep(database, base["_id"], grid))
    for n in names:
        train_config(database, n)
    return names


def within(metric: str, ensemble: float, best: float, tolerance: float = TOLERANCE) -> bool:
    return ensemble >= best - tolerance if higher_is_better(metric) else ensemble <= best + tolerance


# The 0.005 tolerance is on a score's own scale: log loss for classifiers, and r2 (not rmse, whose scale is
# the target's) for regressors. Selecting by r2 is selecting by squared error: same rows, same ranking.
METRICS = {"classification": "log_loss", "regression": "r2"}


def evaluate(
    database: Database, name: str, names: list[str], method: str = "greedy", size: int = 25
) -> dict[str, Any]:
    t0 = time.perf_counter()
    task = database.configs.find_one({"name": names[0]})["task"]
    record = suggest_ensemble(database, f"{name}_suggested", names, method=method, size=size, metric=METRICS[task])
    sel = record["selection"]
    honest, holdout = sel["honest"], sel["holdout"]
    return {
        "data": name,
        "task": record["task"],
        "candidates": len(sel["candidates"]),
        "metric": sel["metric"],
        "method": sel["method"],
        "chosen": len(record["base_names"]),
        "ensemble": honest["ensemble"],
        "best_single": honest["best_single"],
        "holdout_ensemble": holdout["ensemble"],
        "holdout_best": holdout["best_single"],
        "holdout_picked": holdout["picked_single"],
        "ok": within(sel["metric"], honest["ensemble"], honest["best_single"]),
        "holdout_ok": within(sel["metric"], holdout["ensemble"], holdout["best_single"]),
        "seconds": time.perf_counter() - t0,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'data set':<14}{'task':<15}{'cands':>6}{'metric':>9}{'method':>8}{'chosen':>7}"
        f"{'ensemble':>10}{'best 1':>9}{'ok':>4}   {'test ens':>9}{'picked':>9}{'best':>9}"
    )
    for r in rows:
        print(
            f"{r['data']:<14}{r['task']:<15}{r['candidates']:>6}{r['metric']:>9}{r['method']:>8}{r['chosen']:>7}"
            f"{r['ensemble']:>10.4f}{r['best_single']:>9.4f}{'yes' if r['ok'] else 'NO':>4}   "
            f"{r['holdout_ensemble']:>9.4f}{r['holdout_picked']:>9.4f}{r['holdout_best']:>9.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="greedy", choices=("greedy", "stack", "both"))
    parser.add_argument("--size", type=int, default=25)
    args = parser.parse_args()
    from bench.common import bench_database

    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    print(
        f"machine: {os.cpu_count()} cores, load average {load}; method {args.method}, {args.size} steps; "
        f"'ensemble'/'best 1': honest nested score on the OOF rows; 'test': the runs' held-out test rows (ensemble, the candidate picked by its OOF score, the best candidate there)"
    )
    rows = []
    with bench_database() as database:
        folder = database.settings.data_dir  # training CSVs must sit inside DATA_ROOTS
        folder.mkdir(parents=True, exist_ok=True)
        for name, task, bunch in sklearn_sets():
            csv, features = write_csv(folder, name, bunch.data, bunch.target)
            sweeps = CLASSIFICATION_SWEEPS if task == "classification" else REGRESSION_SWEEPS
            names = build_library(database, name, task, csv, features, sweeps)
            rows.append(evaluate(database, name, names, args.method, args.size))
    print_table(rows)
    print(
        f"every data set within {TOLERANCE} of the best single candidate (honest): "
        f"{'yes' if all(r['ok'] for r in rows) else 'NO'}"
    )


if __name__ == "__main__":
    main()
