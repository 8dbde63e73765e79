"""Suggested ensembles: Caruana selection on stored OOF predictions, honest nested scores, weighted ensembles."""

import numpy as np
import pandas as pd
import pytest

from models.ensembles.build import delete_ensemble, get_ensemble, load_ensemble
from models.ensembles.compat import IncompatibleBaseModelsError
from models.ensembles.selection import _BatchScorer, greedy_select, nested_greedy, score, single_scores
from models.ensembles.suggest import suggest_ensemble
from models.errors import ConflictError, NotFoundError, ValidationError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import cls_config, reg_config

CLS = [
    ("lr", "logistic_regression", {"C": 0.5}),
    ("rf", "random_forest", {"n_estimators": 15, "max_depth": 4}),
    ("nb", "naive_bayes", {}),
    ("knn", "knn", {"n_neighbors": 25}),
]
REG = [
    ("ridge", "ridge", {}),
    ("gbr", "gradient_boosting", {"n_estimators": 20, "max_depth": 2}),
    ("rfr", "random_forest", {"n_estimators": 15, "max_depth": 4}),
]


def make(database, csv, builder, specs):
    store = ConfigStore(database)
    for name, model_type, params in specs:
        store.create(builder(name, csv, model_type=model_type, hyperparameters=params))
        train_config(database, name)


def files(settings):
    return sorted(p.name for p in settings.artifact_dir.glob("*")) if settings.artifact_dir.exists() else []


# ------------------------------------------------------------------ math


@pytest.mark.parametrize(
    "metric,k",
    [
        ("log_loss", 3),
        ("brier", 3),
        ("accuracy", 3),
        ("roc_auc", 3),
        ("log_loss", 2),
        ("brier", 2),
        ("accuracy", 2),
        ("roc_auc", 2),
    ],
)
def test_batch_scores_equal_exact_scores(metric, k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 400)
    P = rng.dirichlet(np.ones(k), size=(6, 400))
    scorer = _BatchScorer(metric, P, y)
    S = scorer.add(scorer.add(scorer.state(), 1), 4)
    exact = [score(metric, y, (P[1] + P[4] + P[j]) / 3) for j in range(6)]
    assert np.allclose(scorer.scores(S, 2), exact, atol=1e-6)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_greedy_regression_starts_at_best_single_and_never_ends_worse(metric):
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    P = y + rng.normal(scale=[[0.5], [0.8], [1.0], [1.2]], size=(4, 500))
    sel = greedy_select(P, y, metric, 12)
    singles = single_scores(metric, P, y)
    best = int(np.argmax(singles) if metric == "r2" else np.argmin(singles))
    assert sel.steps[0]["index"] == best and sel.steps[0]["score"] == pytest.approx(singles[best])
    assert sel.weights.sum() == pytest.approx(1.0) and set(np.nonzero(sel.counts)[0]) == set(sel.chosen)
    # independent noise: averaging must beat the best single model
    assert (sel.score > singles[best]) if metric == "r2" else (sel.score < singles[best])
    assert sel.counts.sum() == sel.best_step
    avg = (P * sel.weights[:, None]).sum(axis=0)
    assert score(metric, y, avg) == pytest.approx(sel.score)


def test_nested_selection_never_sees_the_rows_it_scores():
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    P = y + rng.normal(size=(3, 300))
    folds = np.repeat([0, 1, 2], 100)
    # candidate 2 is perfect on fold 0 only: a selection that peeked at fold 0 would weight it there
    P[2, :100] = y[:100]
    nested = nested_greedy(P, y, folds, "rmse", 10)
    fold0 = nested.per_fold[0]
    assert fold0["selected_on"] == 200 and fold0["rows"] == 100
    assert fold0["score"] > 0.3  # what was chosen on folds 1-2 is not perfect on fold 0
    with pytest.raises(ValidationError, match="at least two folds"):
        nested_greedy(P, y, np.zeros(300, dtype=int), "rmse", 5)


# ------------------------------------------------------------ stored ensembles


def test_weighted_ensemble_predicts_the_weighted_average_by_hand(database, settings, games_csv):
    make(database, games_csv, cls_config, CLS)
    record = suggest_ensemble(database, "auto", ["lr", "rf", "nb", "knn"], size=15)
    assert record["kind"] == "weighted" and record["meta_model"] == "weighted_average"
    assert sum(record["weights"]) == pytest.approx(1.0)
    assert record["base_names"] == record["selection"]["greedy"]["chosen"]
    steps = record["selection"]["greedy"]["steps"]
    assert [s["step"] for s in steps] == list(range(1, 16))
    ensemble = load_ensemble(database, "auto")
    frame = pd.read_csv(games_csv).sample(200, random_state=3)
    runs = {b["name"]: b["run_id"] for b in record["base_models"]}
    from models.artifacts.loading import load_model

    by_hand = np.zeros((200, 2))
    for name, w in zip(record["base_names"], record["weights"]):
        run = database.runs.find_one({"run_id": runs[name]})
        by_hand += w * load_model(settings, run).model.predict_proba(frame)
    assert np.max(np.abs(ensemble.predict_proba(frame) - by_hand)) < 1e-12
    classes = np.asarray(record["classes"])
    assert np.array_equal(ensemble.predict(frame), classes[np.argmax(by_hand, axis=1)])
    assert ensemble.predict_table(frame).shape == (200, 3)
    honest = record["selection"]["honest"]
    assert honest["metric"] == "log_loss" and honest["rows"] == record["n_train"]
    assert honest["ensemble"] <= honest["best_single"] + 0.005
    assert record["selection"]["holdout"]["rows"] == record["n_test"]
    # the stored document and its spec file are the ensemble; delete removes both
    assert f"{record['run_id']}_ensemble.json" in files(settings)
    delete_ensemble(database, "auto")
    assert not any(record["run_id"] in f for f in files(settings))


def test_weighted_regression_by_hand_and_stack_and_both(database, settings, games_csv):
    make(database, games_csv, reg_config, REG)
    record = suggest_ensemble(database, "wreg", all_compatible=True, size=10, metric="rmse")
    ensemble = load_ensemble(database, "wreg")
    frame = pd.read_csv(games_csv).head(150)
    from models.artifacts.loading import load_model

    by_hand = np.zeros(150)
    for b in record["base_models"]:
        run = database.runs.find_one({"run_id": b["run_id"]})
        by_hand += b["weight"] * load_model(settings, run).model.predict(frame)
    assert np.max(np.abs(ensemble.predict(frame) - by_hand)) < 1e-12
    assert len(record["selection"]["candidates"]) == 3
    stacked = suggest_ensemble(database, "sreg", ["ridge", "gbr", "rfr"], method="stack", stack_top=2)
    assert stacked["kind"] == "stacked" and len(stacked["base_names"]) == 2
    assert get_ensemble(database, "sreg")["selection"]["method"] == "stack"
    assert load_ensemble(database, "sreg").predict(frame).shape == (150,)
    both = suggest_ensemble(database, "breg", ["ridge", "gbr", "rfr"], method="both", size=10)
    by = both["selection"]["honest"]["by_method"]
    kept = both["selection"]["method"]
    other = "stack" if kept == "greedy" else "greedy"
    assert by[kept]["score"] <= by[other]["score"]
    assert both["kind"] == ("weighted" if kept == "greedy" else "stacked")


def test_bad_requests_name_the_field_and_write_nothing(database, settings, games_csv, tmp_path):
    make(database, games_csv, cls_config, CLS[:2])
    cases = [
        (dict(from_configs=["lr", "rf"], metric="rmse"), ValidationError, "metric 'rmse' cannot drive selection"),
        (dict(from_configs=["lr", "rf"], metric="bogus"), ValidationError, "unknown metric 'bogus'"),
        (dict(from_configs=["lr", "rf"], size=0), ValidationError, "size must be a whole number"),
        (dict(from_configs=["lr", "rf"], method="magic"), ValidationError, "method must be one of"),
        (dict(from_configs=[]), ValidationError, "name the candidate configs"),
        (dict(from_configs=["lr", "nope"]), NotFoundError, "no config named 'nope'"),
        (
            dict(from_configs=["lr", "rf"], meta_model="linear_regression"),
            ValidationError,
            "not available for classification",
        ),
    ]
    for kwargs, exc, message in cases:
        with pytest.raises(exc, match=message):
            suggest_ensemble(database, "s", **kwargs)
    store = ConfigStore(database)
    store.create(reg_config("r1", games_csv))
    train_config(database, "r1")
    with pytest.raises(IncompatibleBaseModelsError, match="task differs"):
        suggest_ensemble(database, "s", ["lr", "r1"])
    suggest_ensemble(database, "taken", ["lr", "rf"], size=3)
    with pytest.raises(ConflictError, match="already exists"):
        suggest_ensemble(database, "taken", ["lr", "rf"])
    with pytest.raises(ValidationError, match="2 compatible groups"):
        store.create(reg_config("r2", games_csv, model_type="lasso"))
        train_config(database, "r2")
        suggest_ensemble(database, "s2", all_compatible=True)
    assert database.ensembles.count_documents({}) == 1
    assert len([f for f in files(settings) if "_ensemble" in f]) == 1  # only the one that was created


def test_greedy_keeps_the_best_single_candidate_when_selection_scores_worse_honestly():
    """One good candidate among noise on few rows: selection picks up noise that fits the rows it sees, so
    its honest score is worse than taking the best single candidate, and that candidate is kept alone."""
    from models.ensembles.base_models import BaseModelResult
    from models.ensembles.suggest import Library, selection_report

    rng = np.random.default_rng(1)
    n, m, folds = 24, 40, 4
    y, y_test = rng.normal(size=n), rng.normal(size=10)
    P = rng.normal(size=(m, n)) * 0.8
    P[0] = y + rng.normal(size=n) * 0.3
    T = rng.normal(size=(m, 10))
    fold_ids = np.arange(n) % folds
    results = [
        BaseModelResult(f"c{i}", i, f"r{i}", None, "artifacts", 0.0, config={"model_type": "x"}) for i in range(m)
    ]
    lib = Library("regression", results, P, T, y, y_test, y_test, fold_ids, None)

    nested = nested_greedy(P, y, fold_ids, "rmse", 10)
    by_hand = np.zeros(n)
    for k in range(folds):
        inside = fold_ids != k
        best_inside = int(np.argmin([score("rmse", y[inside], p[inside]) for p in P]))
        by_hand[~inside] = P[best_inside, ~inside]
    assert np.array_equal(nested.single_pred, by_hand)

    report = selection_report(lib, "rmse", 10, "greedy", "ridge", 3, 0)
    greedy = report["honest"]["by_method"]["greedy"]
    assert greedy["kept"] == "best single" and greedy["single_score"] < greedy["selection_score"]
    assert greedy["single_score"] == pytest.approx(score("rmse", y, by_hand), abs=1e-6)
    assert report["greedy"]["weights"] == {"c0": 1.0} and report["greedy"]["best_step"] == 1
    assert report["honest"]["ensemble"] == greedy["single_score"]


def test_the_kept_line_names_what_was_kept_and_why():
    from models.ensembles.suggest import kept_line

    honest = {"metric": "accuracy", "ensemble": 0.5615, "best_single": 0.5593, "best_single_name": "knn"}
    single = {
        "method": "greedy",
        "best_single": {"name": "knn"},
        "greedy": {"chosen": ["knn"], "best_step": 1},
        "honest": {
            **honest,
            "by_method": {
                "greedy": {
                    "kept": "best single",
                    "score": 0.5615,
                    "single_score": 0.5615,
                    "selection_score": 0.5501,
                }
            },
        },
    }
    line = kept_line(single)
    assert line.startswith("kept: knn alone (step 1") and "0.5615 honestly and selecting 0.5501" in line
    chosen = {**single, "greedy": {"chosen": ["a", "b", "c"], "best_step": 7}}
    chosen["honest"] = {
        **honest,
        "by_method": {"greedy": {"kept": "selection", "score": 0.58, "single_score": 0.55}},
    }
    assert kept_line(chosen).startswith(
        "kept: the greedy selection of 3 models (its best step, 7) because it scored 0.5800"
    )
    stack = {**chosen, "method": "stack"}
    stack["honest"] = {
        **honest,
        "by_method": {
            **chosen["honest"]["by_method"],
            "stack": {"score": 0.6, "bases": ["a", "b"], "meta_model": "logistic_regression"},
        },
    }
    assert kept_line(stack).startswith(
        "kept: a stack of 2 models (logistic_regression) because stacking scored 0.6000, greedy selection 0.5800"
    )
    assert all("vs best single 0.5593 (knn)" in kept_line(r) for r in (single, chosen, stack))
