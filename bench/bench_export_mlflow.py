"""Benchmark: ``models export-mlflow`` beside ``mlflow.sklearn.save_model`` of the same estimator.

Trains a 50-tree random forest and a logistic regression on the demo data and stacks them. For the forest
(``model``) and the stacked ensemble (``ensemble``), each round measures, in a shuffled order:

* **export**: ``registry.export_mlflow(db, REF, DIR)`` (ours: resolves the reference, loads the verified
  run(s), builds the deploy-export estimator, writes the folder) vs ``mlflow.sklearn.save_model(estimator,
  DIR, serialization_format="pickle", signature=infer_signature(rows, estimator.predict(rows)))`` of the
  same estimator, already built (how a user would do it by hand after ``models deploy-export``; MLflow's
  default infers the pip requirements, in a subprocess);
* **load + predict**: ``mlflow.pyfunc.load_model(DIR).predict(rows)`` on 1,000 rows of the feature
  columns (what a client sends), for both folders; both check the rows against their signature.

Medians over the rounds; predictions of both folders are compared with the service's own
(``TrainedModel``/``StackedEnsemble``). Needs MLflow: run with the bench virtualenv (README "Benchmarks"):
``/work/wt/bench-venv/bin/python -m bench.bench_export_mlflow [--rounds 5] [--rows 1000]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

from bench.common import bench_database
from models import registry
from models.demo import FEATURES, generate_games, write_games_csv
from models.ensembles.build import create_ensemble, load_ensemble
from models.store.configs import ConfigStore
from models.training.train import train_config

TARGETS = {"model": "mlf_rf", "ensemble": "mlf_stack"}
METHODS = ("ours", "mlflow")


def _load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "?"


def setup(database) -> None:
    """The forest, a logistic regression, and their stacked ensemble."""
    csv = write_games_csv(database.settings.data_dir / "games.csv", n_games=3000)
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
            "name": "mlf_rf",
            "model_type": "random_forest",
            "hyperparameters": {"n_estimators": 50, "max_depth": 6},
            **common,
        }
    )
    store.create({"name": "mlf_lr", "model_type": "logistic_regression", "hyperparameters": {}, **common})
    train_config(database, "mlf_rf")
    train_config(database, "mlf_lr")
    create_ensemble(database, "mlf_stack", ["mlf_rf", "mlf_lr"], "logistic_regression")


def service_predictions(database, target: str, rows) -> np.ndarray:
    ref = TARGETS[target]
    if target == "ensemble":
        return load_ensemble(database, ref).predict_table(rows)["prediction"].to_numpy()
    return registry.load(database, ref).model.predict(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1000, help="rows per predict call")
    args = ap.parse_args(argv)
    try:
        import mlflow
        import mlflow.pyfunc
        import mlflow.sklearn
        from mlflow.models import infer_signature
    except ImportError:
        raise SystemExit("bench_export_mlflow needs MLflow: run it with /work/wt/bench-venv/bin/python") from None
    warnings.simplefilter("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    print(
        f"bench_export_mlflow: {os.cpu_count()} cores, load average {_load()} before the run; "
        f"mlflow {mlflow.__version__}; {args.rounds} rounds, methods shuffled each round, "
        f"predict on {args.rows} rows"
    )
    rows = generate_games(args.rows, seed=11)[FEATURES[:8]]
    times: dict[tuple[str, str, str], list[float]] = {}
    equal: dict[tuple[str, str], bool] = {}
    with bench_database() as database, tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        setup(database)
        estimators = {t: registry.deployable(database, ref).estimator for t, ref in TARGETS.items()}
        expected = {t: service_predictions(database, t, rows) for t in TARGETS}

        def by_hand(target: str, folder: Path) -> None:
            estimator = estimators[target]
            signature = infer_signature(rows, estimator.predict(rows))
            mlflow.sklearn.save_model(estimator, str(folder), serialization_format="pickle", signature=signature)

        # one warm-up of each path (imports, the model cache, MLflow's requirement inference)
        for target, ref in TARGETS.items():
            registry.export_mlflow(database, ref, Path(tmp) / f"warm-ours-{target}")
            by_hand(target, Path(tmp) / f"warm-mlflow-{target}")
            for method in METHODS:
                mlflow.pyfunc.load_model(str(Path(tmp) / f"warm-{method}-{target}")).predict(rows)
        rng = random.Random(5)
        for r in range(args.rounds):
            order = [(t, m) for t in TARGETS for m in METHODS]
            rng.shuffle(order)
            for target, method in order:
                folder = Path(tmp) / f"r{r}-{method}-{target}"
                t0 = time.perf_counter()
                if method == "ours":
                    registry.export_mlflow(database, TARGETS[target], folder)
                else:
                    by_hand(target, folder)
                t1 = time.perf_counter()
                got = mlflow.pyfunc.load_model(str(folder)).predict(rows)
                t2 = time.perf_counter()
                times.setdefault((target, method, "export"), []).append(t1 - t0)
                times.setdefault((target, method, "load"), []).append(t2 - t1)
                same = bool(np.array_equal(np.asarray(got), expected[target]))
                equal[(target, method)] = equal.get((target, method), True) and same
        sizes = {
            (t, m): (Path(tmp) / f"r0-{m}-{t}" / "model.pkl").stat().st_size for t in TARGETS for m in METHODS
        }
    print(
        "predictions equal to the service's (every round): "
        + ", ".join(f"{t}/{m} {'yes' if equal[(t, m)] else 'NO'}" for t in TARGETS for m in METHODS)
    )
    print(
        f"{'target':9} {'method':7} {'export ms':>10} {'load+predict ms':>16} {'model.pkl':>10}   (each round: export/load ms)"
    )
    med = {key: statistics.median(v) * 1000 for key, v in times.items()}
    for target in TARGETS:
        for method in METHODS:
            rounds = ", ".join(
                f"{e * 1000:.0f}/{lo * 1000:.0f}"
                for e, lo in zip(times[(target, method, "export")], times[(target, method, "load")], strict=True)
            )
            print(
                f"{target:9} {method:7} {med[(target, method, 'export')]:10.1f} "
                f"{med[(target, method, 'load')]:16.1f} {sizes[(target, method)] / 1024:8.0f} KB   ({rounds})"
            )
    print(f"load average {_load()} after the run")
    print("ratios (medians; ours / mlflow.sklearn.save_model):")
    for target in TARGETS:
        export = med[(target, "ours", "export")] / med[(target, "mlflow", "export")]
        loads = med[(target, "ours", "load")] / med[(target, "mlflow", "load")]
        print(f"  {target:9} export {export:.2f}x, load + predict {loads:.2f}x")
    return 0 if all(equal.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
