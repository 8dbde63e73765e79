"""The suggested ensemble's honest score is at least the best single candidate's (within 0.005): a small,
fast version of bench/bench_selection_quality.py on two scikit-learn data sets (nothing downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets

from bench.bench_selection_quality import TOLERANCE, build_library, evaluate, write_csv

SWEEPS = {
    "classification": [
        ("logistic_regression", {"max_iter": 2000}, {"C": [0.01, 0.1, 1.0, 10.0]}),
        ("knn", {}, {"n_neighbors": [3, 9, 27, 60]}),
    ],
    "regression": [
        ("ridge", {}, {"alpha": [0.1, 3.0, 30.0, 300.0]}),
        ("knn", {}, {"n_neighbors": [3, 9, 27, 60]}),
    ],
}


@pytest.mark.parametrize(
    "name,task,loader",
    [
        ("cancer", "classification", datasets.load_breast_cancer),
        ("diabetes", "regression", datasets.load_diabetes),
    ],
)
def test_suggestion_is_no_worse_than_the_best_single_candidate(database, tmp_path, name, task, loader):
    bunch = loader()
    csv, features = write_csv(tmp_path, name, bunch.data, bunch.target)
    names = build_library(database, name, task, csv, features, SWEEPS[task], cv_folds=4)
    assert len(names) == 8
    row = evaluate(database, name, names, method="greedy", size=20)
    assert row["candidates"] == 8
    assert row["ok"], {k: row[k] for k in ("ensemble", "best_single", "metric", "chosen")}
    doc = database.ensembles.find_one({"name": f"{name}_suggested"})
    per_fold = doc["selection"]["honest"]["by_method"]["greedy"]["per_fold"]
    assert len(per_fold) == 4 and sum(f["rows"] for f in per_fold) == doc["n_train"]
    assert all(f["selected_on"] + f["rows"] == doc["n_train"] for f in per_fold)
    diff = row["ensemble"] - row["best_single"]
    assert row["metric"] == {"classification": "log_loss", "regression": "r2"}[task]
    assert (diff if row["metric"] == "log_loss" else -diff) <= TOLERANCE
    assert np.isfinite(row["holdout_ensemble"])
