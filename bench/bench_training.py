"""Train vs load: a random forest (300 trees) on 50,000 rows.

Prints the time to train (as the service does: 5-fold CV + final fit), the
cold load from verified artifacts, a bare ``joblib.load`` of the same files,
the checksum's share of the cold load, and a warm cache hit, as ratios
measured in this one run.

    .venv/bin/python -m bench.bench_training [--rows 50000] [--trees 300] [--repeat 7]
"""

from __future__ import annotations

import argparse
import hashlib
import time

import joblib

from bench.common import bench_database, median_time
from models.artifacts.cache import ModelCache
from models.artifacts.loading import load_model
from models.demo import FEATURES, write_games_csv
from models.store.configs import ConfigStore
from models.training.train import train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    with bench_database() as db:
        settings = db.settings
        csv = write_games_csv(settings.data_dir / "games.csv", n_games=args.rows)
        ConfigStore(db).create(
            {
                "name": "bench_rf",
                "task": "classification",
                "model_type": "random_forest",
                "hyperparameters": {"n_estimators": args.trees, "max_depth": 12, "min_samples_leaf": 3},
                "features": FEATURES[:8],
                "target": "home_win",
                "training_csv": str(csv),
                "cv_folds": 5,
            }
        )
        t0 = time.perf_counter()
        run = train_config(db, "bench_rf")
        train_s = time.perf_counter() - t0
        final_fit_s = run["durations"]["final_fit_s"]
        config = ConfigStore(db).get("bench_rf")
        root = settings.artifact_dir
        model_path = root / config["model_artifact_path"]
        scaler_path = root / config["scaler_artifact_path"]

        def bare() -> None:
            joblib.load(model_path)
            joblib.load(scaler_path)

        def cold() -> None:
            load_model(settings, config, cache=ModelCache(), use_cache=True)

        def checksum_only() -> None:
            for p in (model_path, scaler_path, root / config["features_path"]):
                hashlib.sha256(p.read_bytes()).hexdigest()

        def verify_then_load() -> None:  # the simple way: hash every file, then unpickle
            checksum_only()
            bare()

        cold()  # warm the OS page cache so both loads read from memory alike
        bare_s = median_time(bare, args.repeat)
        cold_s = median_time(cold, args.repeat)
        hash_s = median_time(checksum_only, args.repeat)
        sequential_s = median_time(verify_then_load, args.repeat)
        warm_cache = ModelCache()
        load_model(settings, config, cache=warm_cache)
        warm_s = median_time(lambda: load_model(settings, config, cache=warm_cache), 1000)
        size_mb = (model_path.stat().st_size + scaler_path.stat().st_size) / 1e6

        print(f"random forest, {args.trees} trees, {args.rows} rows; model file {size_mb:.1f} MB")
        print(f"train (5-fold CV + final fit)      {train_s:9.3f} s")
        print(f"  final fit alone                  {final_fit_s:9.3f} s")
        print(f"bare joblib.load (model+scaler)    {bare_s * 1e3:9.2f} ms")
        print(f"cold load, verified (read+sha+load){cold_s * 1e3:9.2f} ms  (blocks hashed while unpickling)")
        print(f"  SHA-256 of the files, alone      {hash_s * 1e3:9.2f} ms")
        print(f"  hash everything, then load       {sequential_s * 1e3:9.2f} ms  (for comparison)")
        print(f"warm load (cache hit)              {warm_s * 1e6:9.2f} us")
        print("ratios:")
        print(f"  train / cold load                {train_s / cold_s:9.1f}x")
        print(f"  final fit / cold load            {final_fit_s / cold_s:9.1f}x")
        print(f"  cold verified / bare joblib.load {cold_s / bare_s:9.2f}x  (target <= 1.30x)")
        print(f"  hash-then-load / bare joblib.load{sequential_s / bare_s:9.2f}x")
        print(f"  cold / warm                      {cold_s / warm_s:9.0f}x")
        ok = cold_s / bare_s <= 1.3 and warm_s < 1e-3
        print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
