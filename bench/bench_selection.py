"""Benchmark: ensemble selection over 50 candidate runs at 50,000 rows, against training one more model.

Synthetic out-of-fold predictions (50 binary classifiers of different quality, 5 stored folds, 50,000
training rows, 12,500 held-out rows) go through exactly what ``ensemble suggest`` runs after loading:

* **selection**      Caruana's greedy selection with replacement (25 steps) on all OOF rows;
* **suggest math**   that, plus the honest score (the same selection nested over the 5 folds) and the
                     held-out comparison (:func:`models.ensembles.suggest.selection_report`).

Then one more candidate is trained the way the service trains one (``fit_config``: 5-fold CV plus the
final fit of a 100-tree random forest on 50,000 rows of the demo data), and the ratio is printed last.

Run: ``.venv/bin/python -m bench.bench_selection [--metric log_loss] [--candidates 50] [--rows 50000]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

from models.demo import FEATURES, write_games_csv
from models.ensembles.base_models import BaseModelResult
from models.ensembles.selection import greedy_select
from models.ensembles.suggest import Library, selection_report
from models.settings import Settings
from models.training.data import load_training_data
from models.training.train import fit_config


def synthetic_library(m: int, n: int, n_test: int, folds: int, seed: int = 0) -> Library:
    """``m`` binary candidates whose probabilities carry the label with different noise levels."""
    rng = np.random.default_rng(seed)

    def probs(y: np.ndarray) -> np.ndarray:
        signal = np.where(y == 1, 0.62, 0.38)
        noise = rng.uniform(0.12, 0.35, size=(m, 1))
        p1 = np.clip(signal[None] + rng.normal(size=(m, len(y))) * noise, 0.01, 0.99)
        return np.stack([1 - p1, p1], axis=2)

    y, y_test = rng.integers(0, 2, n), rng.integers(0, 2, n_test)
    results = [
        BaseModelResult(
            f"cand_{i:02d}", i, f"run_{i:02d}", None, "artifacts", 0.0, config={"model_type": "synthetic"}
        )
        for i in range(m)
    ]
    return Library(
        "classification",
        results,
        probs(y),
        probs(y_test),
        y,
        y_test,
        y_test,
        rng.integers(0, folds, n),
        np.array([0, 1]),
    )


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--metric", default="log_loss")
    parser.add_argument("--size", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
    print(f"machine: {os.cpu_count()} cores, load average {load} before the run")
    lib = synthetic_library(args.candidates, args.rows, args.rows // 4, 5)
    select_s = timed(lambda: greedy_select(lib.P, lib.y, args.metric, args.size), args.repeat)
    report = selection_report(lib, args.metric, args.size, "greedy", "logistic_regression", 5, 0)
    suggest_s = timed(
        lambda: selection_report(lib, args.metric, args.size, "greedy", "logistic_regression", 5, 0), args.repeat
    )
    honest = report["honest"]
    print(
        f"library: {args.candidates} candidates x {args.rows} OOF rows (binary, 5 folds), metric {args.metric}, "
        f"{args.size} steps"
    )
    print(f"  selection (greedy, all OOF rows)               {select_s * 1000:8.1f} ms   (target < 1000 ms)")
    print(f"  suggest math (selection + nested honest score)  {suggest_s * 1000:8.1f} ms")
    print(
        f"  honest {args.metric}: ensemble {honest['ensemble']:.5f}, best single {honest['best_single']:.5f}; "
        f"{len(report['greedy']['chosen'])} models chosen"
    )
    with tempfile.TemporaryDirectory(prefix="bench-sel-") as tmp:
        csv = write_games_csv(Path(tmp) / "games.csv", n_games=int(args.rows / 0.8))
        config = {
            "name": "one_more",
            "task": "classification",
            "model_type": "random_forest",
            "hyperparameters": {"n_estimators": 100, "max_depth": 10},
            "features": FEATURES[:8],
            "target": "home_win",
            "training_csv": str(csv),
            "cv_folds": 5,
            "random_state": 7,
            "scaler": "standard",
            "calibration": "none",
        }
        data = load_training_data(config, Settings.from_env({}).with_(data_dir=Path(tmp)))  # tmp is its data root
        t0 = time.perf_counter()
        fit = fit_config(config, data)
        train_s = time.perf_counter() - t0
    print(
        f"one more model: random_forest 100 trees, 5-fold CV + final fit on {len(fit.train_idx)} rows "
        f"{train_s:8.2f} s"
    )
    print(
        f"ratio: selection / one more model = {select_s / train_s:.4f} "
        f"(suggest math / one more model = {suggest_s / train_s:.4f})"
    )


if __name__ == "__main__":
    main()
