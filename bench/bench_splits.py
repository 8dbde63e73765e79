"""The leakage a shuffled split hides: the demo's models cross-validated with shuffled folds and with
walk-forward (time-ordered) folds, side by side, with the held-out score of each.

For each demo model (the NBA games, ordered by ``game_date``) two configs that differ only in ``split``
are trained: ``random`` (shuffled stratified k-fold, a random held-out set) and ``time`` (walk-forward
``TimeSeriesSplit`` folds, the last games held out). The gap between a model's shuffled CV score and
its walk-forward one is what the shuffled split lets leak from the future; the held-out score on the
last games says which of the two a user should have believed.

    .venv/bin/python -m bench.bench_splits [--games 8000] [--folds 5]

Not part of the test suite. Uses its own embedded server and temporary folders (see :mod:`bench.common`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import bench_database
from models.demo import demo_configs, drifting_series, write_games_csv
from models.ensembles.build import create_ensemble
from models.store.configs import ConfigStore
from models.training.train import train_config

SPLIT_FIELDS = ("split", "time_column", "gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=8000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--drift-rows", type=int, default=600)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} before the run")
    with bench_database() as db:
        csv = write_games_csv(db.settings.data_dir / "games.csv", n_games=args.games)
        store = ConfigStore(db)
        rows = []
        names: dict[str, dict[str, list[str]]] = {}
        for config in demo_configs(str(csv)):
            results = {}
            for split in ("random", "time"):
                doc = {k: v for k, v in config.items() if k not in SPLIT_FIELDS}
                doc.update(name=f"{config['name']}_{split}", cv_folds=args.folds)
                if split == "time":
                    doc.update(split="time", time_column="game_date")
                store.create(doc)
                run = train_config(db, doc["name"])
                names.setdefault(config["task"], {}).setdefault(split, []).append(doc["name"])
                results[split] = run
            metric = results["random"]["cv"]["metric"]
            rows.append(
                (
                    config["name"],
                    metric,
                    results["random"]["cv"]["mean"],
                    results["random"]["metrics"][metric],
                    results["time"]["cv"]["mean"],
                    results["time"]["metrics"][metric],
                )
            )
        print(
            f"{args.games} games, {args.folds} folds; CV = mean over folds, held out = 20% (random rows | last games)"
        )
        print(
            f"{'model':<20} {'metric':<8} {'shuffled CV':>12} {'held out':>9} {'walk-fwd CV':>12} {'last games':>11}"
        )
        for name, metric, cv_r, ho_r, cv_t, ho_t in rows:
            print(f"{name:<20} {metric:<8} {cv_r:>12.4f} {ho_r:>9.4f} {cv_t:>12.4f} {ho_t:>11.4f}")
        drift_csv = db.settings.data_dir / "drift.csv"
        drifting_series(args.drift_rows).to_csv(drift_csv, index=False)
        drift = {
            "task": "regression",
            "model_type": "knn",
            "hyperparameters": {"n_neighbors": 5},
            "features": ["t"],
            "target": "y",
            "training_csv": str(drift_csv),
            "cv_folds": 4,
            "random_state": 1,
        }
        store.create({**drift, "name": "drift_random"})
        store.create({**drift, "name": "drift_time", "split": "time", "time_column": "day"})
        shuffled, walk = train_config(db, "drift_random"), train_config(db, "drift_time")
        print(
            f"{'drifting series (kNN)':<20} {'rmse':<8} {shuffled['cv']['mean']:>12.4f} "
            f"{shuffled['metrics']['rmse']:>9.4f} {walk['cv']['mean']:>12.4f} {walk['metrics']['rmse']:>11.4f}"
        )
        print("stacking (logistic regression over the classifiers; ridge over the regressors), held out:")
        for task, meta in (("classification", "logistic_regression"), ("regression", "ridge")):
            for split in ("random", "time"):
                record = create_ensemble(db, f"stack_{task}_{split}", names[task][split], meta)
                metric = "roc_auc" if task == "classification" else "rmse"
                extra = (
                    f", meta-model fitted on {record['n_meta_rows']} of {record['n_train']} rows"
                    if "n_meta_rows" in record
                    else ""
                )
                print(f"  {task:<15} {split:<7} {metric} {record['metrics'][metric]:.4f}{extra}")


if __name__ == "__main__":
    main()
