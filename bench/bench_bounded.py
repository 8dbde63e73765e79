"""What bounded jobs cost and how fast they stop: training in the job's child process vs in the calling
thread, and the time from cancel (or the time limit) to a free worker.

    .venv/bin/python -m bench.bench_bounded [--rows 5000] [--repeat 5] [--limit 3]
"""

from __future__ import annotations

import argparse
import time

from bench.common import bench_database, median_time
from models import jobs
from models.demo import FEATURES, write_games_csv
from models.store.configs import ConfigStore
from models.training.service import submit_training, train_bounded
from models.training.train import train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=int, default=3, help="TRAIN_TIMEOUT_SECONDS for the runaway job")
    args = parser.parse_args()
    with bench_database() as db:
        csv = write_games_csv(db.settings.data_dir / "games.csv", n_games=args.rows)
        store = ConfigStore(db)
        base = {
            "task": "classification",
            "features": FEATURES[:8],
            "target": "home_win",
            "training_csv": str(csv),
            "cv_folds": 5,
        }
        store.create(
            {
                **base,
                "name": "rf",
                "model_type": "random_forest",
                "hyperparameters": {"n_estimators": 100, "max_depth": 8},
            }
        )
        store.create({**base, "name": "lr", "model_type": "logistic_regression"})
        store.create(
            {**base, "name": "slow", "model_type": "random_forest", "hyperparameters": {"n_estimators": 2000}}
        )
        train_bounded(db, "rf")  # start the forkserver once, as a running service has
        in_thread = median_time(lambda: train_config(db, "rf"), args.repeat)
        in_child = median_time(lambda: train_bounded(db, "rf"), args.repeat)
        print(
            f"train rf (100 trees, {args.rows} rows, 5-fold): in thread {in_thread:.2f}s, "
            f"in a child process {in_child:.2f}s, ratio {in_child / in_thread:.2f}"
        )

        runner = jobs.InProcessRunner(1)
        try:
            job, _ = submit_training(db, "slow", runner=runner)
            nxt, _ = submit_training(db, "rf", runner=runner)
            while store.get("slow")["status"] != "training":
                time.sleep(0.05)
            time.sleep(1.0)
            t0 = time.perf_counter()
            jobs.cancel(db, job["_id"])
            while jobs.get_job(db, nxt["_id"])["status"] == "queued":
                time.sleep(0.02)
            print(f"cancel -> next job started: {time.perf_counter() - t0:.2f}s")
            jobs.wait(db, nxt["_id"], 300)

            db.settings = db.settings.with_(train_timeout_seconds=args.limit)
            job, _ = submit_training(db, "slow", runner=runner)
            nxt, _ = submit_training(db, "lr", runner=runner)
            while jobs.get_job(db, nxt["_id"])["status"] == "queued":
                time.sleep(0.02)
            started = jobs.get_job(db, job["_id"])["started_at"]
            began = jobs.get_job(db, nxt["_id"])["started_at"]
            print(
                f"time limit {args.limit}s -> next job started {(began - started).total_seconds():.2f}s "
                f"after the runaway started (error: {jobs.get_job(db, job['_id'])['error']['code']})"
            )
            jobs.wait(db, nxt["_id"], 300)
        finally:
            runner.shutdown(wait=True, cancel_pending=True)


if __name__ == "__main__":
    main()
