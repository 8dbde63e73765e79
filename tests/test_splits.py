"""Validation that respects time and groups (``split: time`` / ``split: group``).

The ensembles are checked against the definitions written with scikit-learn by hand (time: each base's
``TimeSeriesSplit`` validation predictions, the meta-model on their union, the bases refitted on all
training rows; group: scikit-learn's own ``StackingClassifier``/``StackingRegressor`` with the same group
folds), at 1e-9. Real server, real CSVs, no stand-ins.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import StackingClassifier, StackingRegressor
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold, TimeSeriesSplit

from agents.tools.stacking_tool import StackingTool
from models.demo import drifting_series
from models.ensembles.build import create_ensemble, load_ensemble
from models.ensembles.compat import IncompatibleBaseModelsError
from models.ensembles.stacking import make_meta_model
from models.ensembles.suggest import suggest_ensemble
from models.errors import ValidationError
from models.store.configs import ConfigStore
from models.store.runs import RunStore
from models.training.train import make_pipeline, train_config
from tests.helpers import FEATS, cls_config, reg_config, run_cli, wait_job
from web.testing import csrf_token

TIME = {"split": "time", "time_column": "game_date", "gap": 4}
GROUP = {"split": "group", "group_column": "home_team"}


def configs_for(database, games_csv, make, bases, **extra):
    store = ConfigStore(database)
    for name, model_type, params in bases:
        store.create(make(name, games_csv, model_type=model_type, hyperparameters=params, **extra))
        train_config(database, name)
    return [store.get(name) for name, _, _ in bases]


def proba_block(pred: np.ndarray) -> np.ndarray:
    """What a binary classifier contributes to the meta-features (scikit-learn drops the first column)."""
    return pred[:, 1:]


# ------------------------------------------------------------------ walk-forward stacking, by hand


def walk_forward_by_hand(configs, games_csv, meta_name, *, task, gap):
    """The definition: rows in time order (stable), the last ceil(test_size*n) held out, each base's
    TimeSeriesSplit(cv_folds, gap) validation predictions over the training rows, the meta-model on the
    rows that have them, the bases refitted on all training rows."""
    cfg = configs[0]
    frame = pd.read_csv(games_csv)
    X, y = frame[FEATS].to_numpy(float), frame[cfg["target"]].to_numpy()
    order = np.argsort(pd.to_datetime(frame["game_date"]).to_numpy(), kind="stable")
    n_test = math.ceil(0.2 * len(y))
    train = order[: len(y) - n_test]
    X_tr, y_tr = X[train], y[train]
    folds = list(TimeSeriesSplit(n_splits=cfg["cv_folds"], gap=gap).split(X_tr))
    covered = np.concatenate([val for _, val in folds])
    blocks, finals = [], []
    for c in configs:
        oof = {}
        for fit_rows, val_rows in folds:
            model = clone(make_pipeline(c)).fit(X_tr[fit_rows], y_tr[fit_rows])
            oof.update(
                zip(
                    val_rows, model.predict_proba(X_tr[val_rows]) if task == "c" else model.predict(X_tr[val_rows])
                )
            )
        pred = np.array([oof[i] for i in covered])
        blocks.append(proba_block(pred) if task == "c" else pred.reshape(-1, 1))
        finals.append(clone(make_pipeline(c)).fit(X_tr, y_tr))
    meta = make_meta_model(cfg["task"], meta_name, cfg["random_state"]).fit(np.hstack(blocks), y_tr[covered])

    def predict(X_new):
        if task == "c":
            return meta.predict_proba(np.hstack([proba_block(f.predict_proba(X_new)) for f in finals]))
        return meta.predict(np.hstack([f.predict(X_new).reshape(-1, 1) for f in finals]))

    return predict, len(covered)


CLS_BASES = [("lr", "logistic_regression", {}), ("rf", "random_forest", {"n_estimators": 12, "max_depth": 4})]
REG_BASES = [("ridge", "ridge", {}), ("gbr", "gradient_boosting", {"n_estimators": 15, "max_depth": 2})]


def test_walk_forward_stacking_equals_the_definition_by_hand(database, games_csv):
    configs = configs_for(database, games_csv, cls_config, CLS_BASES, **TIME)
    record = create_ensemble(database, "wf", [c["name"] for c in configs], "logistic_regression")
    by_hand, n_meta = walk_forward_by_hand(configs, games_csv, "logistic_regression", task="c", gap=4)
    assert record["n_meta_rows"] == n_meta < record["n_train"]
    frame = pd.read_csv(games_csv).sample(300, random_state=3)
    got = load_ensemble(database, "wf").predict_proba(frame)
    assert np.allclose(got, by_hand(frame[FEATS].to_numpy(float)), rtol=1e-9, atol=1e-10)


def test_walk_forward_regression_stacking_equals_the_definition_by_hand(database, games_csv):
    configs = configs_for(database, games_csv, reg_config, REG_BASES, **TIME)
    create_ensemble(database, "wfr", [c["name"] for c in configs], "ridge")
    by_hand, _ = walk_forward_by_hand(configs, games_csv, "ridge", task="r", gap=4)
    frame = pd.read_csv(games_csv).head(250)
    got = load_ensemble(database, "wfr").predict(frame)
    assert np.allclose(got, by_hand(frame[FEATS].to_numpy(float)), rtol=1e-9, atol=1e-8)


def test_a_time_run_records_its_order_its_ranges_and_the_rows_without_oof(database, games_csv):
    [config] = configs_for(database, games_csv, cls_config, CLS_BASES[:1], **TIME)
    run = RunStore(database).find(config["run_id"])
    frame = pd.read_csv(games_csv)
    dates = pd.to_datetime(frame["game_date"])
    n_test = math.ceil(0.2 * len(frame))
    last_train = dates.sort_values(kind="stable").iloc[len(frame) - n_test - 1]
    assert run["data"]["split"] == "time" and run["data"]["split_column"] == "game_date"
    assert run["data"]["train_range"][0] == dates.min().date().isoformat()
    assert run["data"]["test_range"][1] == dates.max().date().isoformat()
    assert run["data"]["train_range"][1] == last_train.date().isoformat() <= run["data"]["test_range"][0]
    n_train = len(frame) - n_test
    block = n_train // 4
    assert run["cv"]["rows_without_oof"] == n_train - 3 * block
    folds = run["cv"]["folds"]
    assert [f["n_validation"] for f in folds] == [block] * 3
    for f in folds:  # the gap rows sit between each fold's last fitting row and its first validation row
        assert f["fit"][1] <= f["validation"][0] and f["n_fit"] == n_train - (4 - f["fold"]) * block - 4
    assert config["fold_spec"]["split"] == "time" and config["fold_spec"]["gap"] == 4


# ------------------------------------------------------------------ group stacking = scikit-learn's


def group_reference(configs, games_csv, meta_name):
    cfg = configs[0]
    frame = pd.read_csv(games_csv)
    X, y, groups = frame[FEATS].to_numpy(float), frame[cfg["target"]].to_numpy(), frame["home_team"].astype(str)
    idx = np.arange(len(y))
    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=7).split(idx, y, groups))
    train = np.sort(train)
    assert not set(groups.iloc[train]) & set(groups.iloc[test])
    estimators = [(c["name"], make_pipeline(c)) for c in configs]
    meta = make_meta_model(cfg["task"], meta_name, cfg["random_state"])
    g_tr = groups.to_numpy()[train]
    if cfg["task"] == "classification":
        folds = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=7).split(X[train], y[train], g_tr)
        stack = StackingClassifier(estimators, final_estimator=meta, cv=list(folds), stack_method="predict_proba")
    else:
        folds = GroupKFold(n_splits=3).split(X[train], y[train], g_tr)
        stack = StackingRegressor(estimators, final_estimator=meta, cv=list(folds))
    return stack.fit(X[train], y[train])


def test_group_stacking_equals_stacking_classifier_with_the_same_group_folds(database, games_csv):
    configs = configs_for(database, games_csv, cls_config, CLS_BASES, **GROUP)
    create_ensemble(database, "grp", [c["name"] for c in configs], "logistic_regression")
    reference = group_reference(configs, games_csv, "logistic_regression")
    frame = pd.read_csv(games_csv).sample(300, random_state=5)
    got = load_ensemble(database, "grp").predict_proba(frame)
    assert np.allclose(got, reference.predict_proba(frame[FEATS].to_numpy(float)), rtol=1e-9, atol=1e-10)
    run = RunStore(database).find(configs[0]["run_id"])
    every_team = pd.read_csv(games_csv)["home_team"].nunique()
    assert run["data"]["groups"]["train"] + run["data"]["groups"]["test"] == every_team
    assert "rows_without_oof" not in run["cv"]


def test_group_stacking_equals_stacking_regressor_with_the_same_group_folds(database, games_csv):
    configs = configs_for(database, games_csv, reg_config, REG_BASES, **GROUP)
    create_ensemble(database, "grpr", [c["name"] for c in configs], "ridge")
    reference = group_reference(configs, games_csv, "ridge")
    frame = pd.read_csv(games_csv).head(250)
    got = load_ensemble(database, "grpr").predict(frame)
    assert np.allclose(got, reference.predict(frame[FEATS].to_numpy(float)), rtol=1e-9, atol=1e-8)


# ------------------------------------------------------------------ leakage, measured


def drifting_csv(path, n=600, seed=0):
    drifting_series(n, seed).to_csv(path, index=False)
    return path


def test_a_shuffled_split_hides_the_drift_that_walk_forward_folds_and_the_last_rows_show(database, tmp_path):
    csv = drifting_csv(tmp_path / "drift.csv")
    store = ConfigStore(database)
    base = {
        "task": "regression",
        "model_type": "knn",
        "hyperparameters": {"n_neighbors": 5},
        "features": ["t"],
        "target": "y",
        "training_csv": str(csv),
        "cv_folds": 4,
        "random_state": 1,
    }
    store.create({**base, "name": "shuffled"})
    store.create({**base, "name": "walk", "split": "time", "time_column": "day"})
    shuffled, walk = train_config(database, "shuffled"), train_config(database, "walk")
    assert shuffled["cv"]["metric"] == walk["cv"]["metric"] == "rmse"
    cv_shuffled, cv_walk, held_out = shuffled["cv"]["mean"], walk["cv"]["mean"], walk["metrics"]["rmse"]
    print(f"rmse: shuffled CV {cv_shuffled:.3f}, walk-forward CV {cv_walk:.3f}, last rows {held_out:.3f}")
    assert cv_shuffled < 0.6 * cv_walk  # the shuffled CV looks far better than it is
    assert abs(held_out - cv_walk) < abs(held_out - cv_shuffled)  # the last rows agree with walk-forward
    assert abs(held_out - cv_walk) / held_out < 0.35


def blocky_csv(path, n_train_blocks=5, block=100, run=5, seed=0):
    """A label that only rows of its own run (5 steps in time) can tell, the runs aligned to the
    walk-forward validation blocks: a fold that fitted on any row at or after its block's start would
    predict it; one that fitted on earlier rows only is at chance."""
    rng = np.random.default_rng(seed)
    n_train = n_train_blocks * block
    n = math.ceil(n_train / 0.8)
    labels = np.repeat(rng.integers(0, 2, size=-(-n // run)), run)[:n]
    frame = pd.DataFrame({"t": np.arange(n, dtype=float), "noise": rng.normal(size=n), "label": labels})
    frame.sample(frac=1.0, random_state=seed).to_csv(path, index=False)
    return path


def test_walk_forward_folds_never_use_a_future_row(database, tmp_path):
    csv = blocky_csv(tmp_path / "blocky.csv")
    base = {
        "task": "classification",
        "model_type": "random_forest",
        "hyperparameters": {"n_estimators": 30},
        "features": ["t"],
        "target": "label",
        "training_csv": str(csv),
        "cv_folds": 4,
        "random_state": 3,
        "test_size": 0.2,
    }
    store = ConfigStore(database)
    store.create({**base, "name": "future_time", "split": "time", "time_column": "t"})
    store.create({**base, "name": "future_shuffled"})
    timed, shuffled = train_config(database, "future_time"), train_config(database, "future_shuffled")
    arrays = RunStore(database).find(timed["run_id"])
    assert arrays["cv"]["rows_without_oof"] == 100
    # accuracy out of fold: the shuffled folds see each run's other rows, the walk-forward ones never do
    print("cv", timed["cv"]["metric"], timed["cv"]["mean"], shuffled["cv"]["mean"])
    assert shuffled["cv"]["mean"] > 0.75
    assert abs(timed["cv"]["mean"] - 0.5) < 0.1
    from models.ensembles.base_models import obtain_base_model

    res = obtain_base_model(database, store.get("future_time"), need_oof=True)
    fold_ids = np.asarray(res.oof["fold_ids"])
    covered = fold_ids >= 0
    oof = np.asarray(res.oof["oof"])
    assert np.isnan(oof[~covered]).all() and not np.isnan(oof[covered]).any()
    y = np.asarray(res.oof["y_train"])
    assert abs(accuracy_score(y[covered], oof[covered].argmax(axis=1)) - 0.5) < 0.1


# ------------------------------------------------------------------ refusals at save


@pytest.mark.parametrize(
    "extra,field,message",
    [
        ({"split": "walk_forward"}, "split", "random"),
        ({"split": "time"}, "time_column", "needs time_column"),
        ({"split": "time", "time_column": "game_dat"}, "time_column", "did you mean 'game_date'"),
        ({"split": "time", "time_column": "home_team"}, "time_column", "not a date"),
        ({"split": "time", "time_column": "game_date", "gap": 400}, "gap", "leaves a fold without rows"),
        ({"split": "time", "time_column": "game_date", "gap": -1}, "gap", "greater than or equal to 0"),
        ({"time_column": "game_date"}, "time_column", "applies to split 'time' only"),
        ({"split": "group"}, "group_column", "needs group_column"),
        ({"split": "group", "group_column": "season"}, "group_column", "distinct group(s)"),
        ({"split_kind": "time"}, "split_kind", "did you mean 'split'"),
        ({"cv_fold": 3}, "cv_fold", "did you mean 'cv_folds'"),
        ({"time_col": "game_date"}, "time_col", "did you mean 'time_column'"),
        ({"shuffle": False}, "shuffle", "did you mean 'split'"),
        ({"Split": "time"}, "Split", "did you mean 'split'"),
    ],
)
def test_bad_split_fields_are_refused_at_save_naming_the_field(database, games_csv, extra, field, message):
    with pytest.raises(ValidationError) as caught:
        ConfigStore(database).create(cls_config("bad", games_csv, **extra), from_user=True)
    fields = {e["field"] for e in caught.value.errors}
    assert field in fields and message in caught.value.message, caught.value.message
    assert database.configs.count_documents({}) == 0


def test_user_defined_extras_that_look_like_nothing_known_stay_allowed(database, games_csv):
    doc = ConfigStore(database).create(cls_config("extra", games_csv, owner_team="pricing", notes="x"))
    assert doc["owner_team"] == "pricing" and "split" not in doc


def test_a_random_split_leaves_no_trace(database, games_csv):
    doc = ConfigStore(database).create(cls_config("plain", games_csv, split="random"))
    assert not {"split", "time_column", "gap", "group_column"} & set(doc)
    run = train_config(database, "plain")
    assert "split" not in run["data"] and "folds" not in run["cv"]


def test_runs_with_different_splits_do_not_stack_and_the_reason_names_the_split(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("timed", games_csv, **TIME))
    store.create(cls_config("shuffled", games_csv))
    train_config(database, "timed")
    train_config(database, "shuffled")
    with pytest.raises(IncompatibleBaseModelsError) as caught:
        create_ensemble(database, "mixed", ["timed", "shuffled"])
    message = caught.value.message
    assert "split time: TimeSeriesSplit(n_splits=3, gap=4) on 'game_date'" in message
    assert "split random: StratifiedKFold" in message
    assert database.ensembles.count_documents({}) == 0


# ------------------------------------------------------------------ every entry point


def test_the_api_the_cli_and_the_stacking_tool_build_walk_forward_ensembles(api, database, settings, games_csv):
    for name, model_type in (("api_lr", "logistic_regression"), ("api_nb", "naive_bayes")):
        body = cls_config(name, games_csv, model_type=model_type, **TIME)
        assert api("POST", "/api/configs", body).status_code == 201
        job = api("POST", f"/api/configs/{name}/train").get_json()
        assert wait_job(api, job["job_id"])["status"] == "succeeded"
    made = api("POST", "/api/ensembles", {"name": "api_wf", "base_models": ["api_lr", "api_nb"]}).get_json()
    done = wait_job(api, made["job_id"])
    assert done["status"] == "succeeded", done
    doc = database.ensembles.find_one({"name": "api_wf"})
    assert doc["fold_spec"]["split"] == "time" and 0 < doc["n_meta_rows"] < doc["n_train"]

    out = run_cli(settings, "ensemble", "create", "cli_wf", "--base", "api_lr", "--base", "api_nb", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n_meta_rows"] == doc["n_meta_rows"]

    with StackingTool(database=database) as tool:
        tool.create_ensemble("tool_wf", ["api_lr", "api_nb"])
        frame = pd.read_csv(games_csv).head(50)
        same = [load_ensemble(database, n).predict_proba(frame) for n in ("api_wf", "cli_wf", "tool_wf")]
    assert np.allclose(same[0], same[1], rtol=1e-12) and np.allclose(same[0], same[2], rtol=1e-12)


def test_the_form_saves_a_time_split_and_the_pages_show_it(page, database, games_csv):
    form = {
        "name": "form_time",
        "task": "classification",
        "model_type": "logistic_regression",
        "target": "home_win",
        "training_csv": str(games_csv),
        "features": "\n".join(FEATS),
        "hyperparameters": "{}",
        "scaler": "standard",
        "calibration": "none",
        "cv_folds": "3",
        "random_state": "7",
        "test_size": "0.2",
        "split": "time",
        "time_column": "game_date",
        "gap": "2",
        "group_column": "home_team",  # another split's field, ignored for split time
    }
    response = page.post("/configs/new", data={**form, "csrf_token": csrf_token(page)})
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    doc = ConfigStore(database).get("form_time")
    assert doc["split"] == "time" and doc["time_column"] == "game_date" and doc["gap"] == 2
    assert "group_column" not in doc
    train_config(database, "form_time")
    html = page.get("/configs/form_time").get_data(as_text=True)
    assert "time on <code>game_date</code>, gap 2" in html
    assert "training rows" in html and "held out" in html and "Walk-forward folds in time order" in html

    bad = page.post(
        "/configs/new",
        data={**form, "name": "form_bad", "time_column": "game_dat", "csrf_token": csrf_token(page)},
    )
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and "did you mean &#39;game_date&#39;" in text
    assert ConfigStore(database).find("form_bad") is None


# ------------------------------------------------------------------ suggestions nest in time order


def test_forward_nesting_chooses_on_earlier_folds_only():
    from models.ensembles.selection import nested_greedy, outer_folds

    rng = np.random.default_rng(2)
    y = rng.normal(size=400)
    P = y + rng.normal(size=(3, 400))
    folds = np.repeat([0, 1, 2, 3], 100)
    P[2, 300:] = y[300:]  # perfect on the last fold only: only a selection that looked ahead would pick it
    assert [(k, int(a.sum()), int(b.sum())) for k, a, b in outer_folds(folds, forward=True)] == [
        (1, 100, 100),
        (2, 200, 100),
        (3, 300, 100),
    ]
    nested = nested_greedy(P, y, folds, "rmse", 10, forward=True)
    assert [f["fold"] for f in nested.per_fold] == [1, 2, 3]
    assert nested.per_fold[-1]["score"] > 0.3  # chosen on folds 0-2, where candidate 2 is as noisy as the rest
    assert not nested.scored[:100].any() and nested.scored[100:].all()


def test_suggestions_on_time_runs_nest_forward_on_the_rows_with_predictions(database, games_csv):
    bases = [*CLS_BASES, ("nb", "naive_bayes", {})]
    configs_for(database, games_csv, cls_config, bases, cv_folds=4, **TIME)
    record = suggest_ensemble(database, "wf_auto", [b[0] for b in bases], size=8, method="both")
    honest = record["selection"]["honest"]
    assert honest["nesting"] == "forward (time order)"
    assert [f["fold"] for f in honest["per_fold"]] == [1, 2, 3]
    run = RunStore(database).find(ConfigStore(database).get("lr")["run_id"])
    n_train, block = run["data"]["n_train"], run["data"]["n_train"] // 5
    assert honest["rows"] == 3 * block and n_train - 4 * block == run["cv"]["rows_without_oof"]
    assert all(f["chosen_on"] == f["fold"] * block for f in honest["per_fold"])
    frame = pd.read_csv(games_csv).head(40)
    assert load_ensemble(database, "wf_auto").predict_proba(frame).shape == (40, 2)
