"""Ensembles in the core: leak-free stacking on stored out-of-fold predictions, persisted like a run."""

import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import StackingClassifier, StackingRegressor

import models.ensembles.base_models as base_models
import models.ensembles.build as ensembles
import models.jobs as jobs_service
import models.training.train as training
from models.ensembles.base_models import BaseModelsError
from models.ensembles.build import (
    create_ensemble,
    delete_ensemble,
    ensembles_using_run,
    list_ensembles,
    load_ensemble,
)
from models.ensembles.compat import IncompatibleBaseModelsError
from models.ensembles.stacking import make_meta_model
from models.errors import ConflictError, DataError, NotFoundError, ValidationError
from models.splits import holdout_split, make_splitter
from models.store.configs import ConfigStore
from models.training.data import load_training_data
from models.training.train import make_pipeline, train_config
from tests.helpers import FEATS, cls_config, create_then_change_csv, reg_config, spy_unpickling

CLS_BASES = [
    ("lr", "logistic_regression", {}),
    ("rf", "random_forest", {"n_estimators": 12, "max_depth": 5}),
    ("nb", "naive_bayes", {}),
]
REG_BASES = [("ridge", "ridge", {}), ("gbr", "gradient_boosting", {"n_estimators": 15, "max_depth": 2})]


def files(settings):
    return sorted(p.name for p in settings.artifact_dir.glob("*")) if settings.artifact_dir.exists() else []


def make_configs(database, games_csv, make, bases, train=True, **extra):
    store = ConfigStore(database)
    for name, model_type, params in bases:
        store.create(make(name, games_csv, model_type=model_type, hyperparameters=params, **extra))
        if train:
            train_config(database, name)
    return [store.get(name) for name, _, _ in bases]


def from_scratch(configs, games_csv, meta_model, passthrough):
    """scikit-learn's own stacking, trained from nothing on the same training rows and folds."""
    cfg = configs[0]
    data = load_training_data(cfg)
    spec = training.fold_spec(cfg)
    train_idx, _ = holdout_split(data.y, spec)
    estimators = [(c["name"], make_pipeline(c)) for c in configs]
    meta = make_meta_model(cfg["task"], meta_model, spec["random_state"])
    if cfg["task"] == "classification":
        stack = StackingClassifier(
            estimators,
            final_estimator=meta,
            cv=make_splitter(spec),
            stack_method="predict_proba",
            passthrough=passthrough,
        )
    else:
        stack = StackingRegressor(
            estimators, final_estimator=meta, cv=make_splitter(spec), passthrough=passthrough
        )
    return stack.fit(data.X[train_idx], data.y[train_idx])


# raw passthrough columns (Elo ~1500) make a logistic meta-model slow to converge: use boosting there
@pytest.mark.parametrize("passthrough,meta", [(False, "logistic_regression"), (True, "gradient_boosting")])
def test_classifier_matches_stacking_classifier_from_scratch(database, settings, games_csv, passthrough, meta):
    configs = make_configs(database, games_csv, cls_config, CLS_BASES)
    record = create_ensemble(database, "stack", [c["name"] for c in configs], meta, passthrough=passthrough)
    assert {b["source"] for b in record["base_models"]} <= {"artifacts", "cache"}
    assert record["retrained"] == []
    ensemble = load_ensemble(database, "stack")
    reference = from_scratch(configs, games_csv, meta, passthrough)
    frame = pd.read_csv(games_csv).sample(300, random_state=1)
    X = frame[FEATS].to_numpy(float)
    assert np.allclose(ensemble.predict_proba(frame), reference.predict_proba(X), rtol=1e-9, atol=1e-10)
    assert np.array_equal(ensemble.predict(frame), reference.predict(X))
    assert ensemble.transform(frame).shape[1] == 3 + (len(FEATS) if passthrough else 0)


@pytest.mark.parametrize("passthrough", [False, True])
def test_regressor_matches_stacking_regressor_from_scratch(database, settings, games_csv, passthrough):
    configs = make_configs(database, games_csv, reg_config, REG_BASES)
    create_ensemble(database, "reg", [c["name"] for c in configs], "ridge", passthrough=passthrough)
    ensemble = load_ensemble(database, "reg")
    reference = from_scratch(configs, games_csv, "ridge", passthrough)
    frame = pd.read_csv(games_csv).head(250)
    assert np.allclose(
        ensemble.predict(frame), reference.predict(frame[FEATS].to_numpy(float)), rtol=1e-9, atol=1e-8
    )
    with pytest.raises(ValidationError, match="regressor; predict_proba applies to classifiers only"):
        ensemble.predict_proba(frame)


def test_record_metrics_and_files(database, settings, games_csv):
    configs = make_configs(database, games_csv, cls_config, CLS_BASES[:2])
    record = create_ensemble(database, "e", ["lr", "rf"], "random_forest", meta_params={"n_estimators": 20})
    doc = database.ensembles.find_one({"name": "e"})
    assert doc["base_run_ids"] == [c["run_id"] for c in configs]
    assert doc["base_config_ids"] == [c["_id"] for c in configs]
    assert doc["meta_model"] == "random_forest" and doc["meta_params"] == {"n_estimators": 20}
    assert doc["options"] == {"passthrough": False, "stack_method": "auto", "stack_method_used": "predict_proba"}
    run = database.runs.find_one({"run_id": configs[0]["run_id"]})
    assert doc["n_test"] == run["data"]["n_test"] and doc["n_train"] == run["data"]["n_train"]
    # each base's metrics on the held-out rows equal the ones its training run recorded on them
    assert doc["base_metrics"]["lr"]["roc_auc"] == pytest.approx(run["metrics"]["roc_auc"])
    assert doc["base_metrics"]["lr"]["accuracy"] == pytest.approx(run["metrics"]["accuracy"])
    assert set(doc["metrics"]) >= {"accuracy", "roc_auc", "log_loss"}
    assert doc["seconds"] > 0 and doc["created_at"] is not None
    assert all(set(b) >= {"source", "reason", "seconds", "run_id", "metrics"} for b in doc["base_models"])
    run_id = record["run_id"]
    assert f"{run_id}_ensemble.pkl" in files(settings) and f"{run_id}_ensemble.json" in files(settings)
    assert set(doc["checksums"]) == {"ensemble", "ensemble_spec"}
    assert ensembles_using_run(database, configs[1]["run_id"]) == ["e"]
    assert [d["name"] for d in list_ensembles(database)] == ["e"]
    with pytest.raises(ConflictError, match="already exists"):
        create_ensemble(database, "e", ["lr", "rf"])
    delete_ensemble(database, "e")
    assert not any("ensemble" in f for f in files(settings))
    with pytest.raises(NotFoundError, match="no ensemble named 'e'"):
        load_ensemble(database, "e")


def test_ensemble_keeps_its_runs_after_a_base_is_retrained(database, settings, games_csv):
    make_configs(database, games_csv, cls_config, CLS_BASES[:2])
    create_ensemble(database, "e", ["lr", "rf"])
    frame = pd.read_csv(games_csv).head(50)
    before = load_ensemble(database, "e").predict_proba(frame)
    train_config(database, "lr")  # the config now points at a new run
    assert np.array_equal(load_ensemble(database, "e").predict_proba(frame), before)


def test_incompatible_bases_refused_with_every_difference(database, settings, games_csv, tmp_path):
    other = tmp_path / "other.csv"
    pd.read_csv(games_csv).head(900).to_csv(other, index=False)
    store = ConfigStore(database)
    store.create(cls_config("a", games_csv))
    store.create(cls_config("b", other))  # other data
    store.create(cls_config("c", games_csv, cv_folds=4))  # other folds
    store.create(reg_config("d", games_csv))  # other task and target
    for n in "abcd":
        train_config(database, n)
    before = files(settings)
    runs = database.runs.count_documents({})
    with pytest.raises(IncompatibleBaseModelsError) as info:
        create_ensemble(database, "bad", ["a", "b", "c", "d"])
    msg = info.value.message
    assert "task differs: a, b, c use 'classification'" not in msg  # values are shown as values
    assert "task differs: a, b, c use classification; d uses regression" in msg
    assert "target differs: a, b, c use 'home_win'; d uses 'point_diff'" in msg
    assert "fold spec differs" in msg and "n_splits=4" in msg and "n_splits=3" in msg
    assert "training data differs" in msg and "other.csv" in msg
    assert len(info.value.errors) == 4
    assert database.ensembles.count_documents({}) == 0 and files(settings) == before
    assert database.runs.count_documents({}) == runs


def test_parameters_are_validated_before_any_work(database, settings, games_csv):
    make_configs(database, games_csv, reg_config, REG_BASES)
    with pytest.raises(ValidationError) as info:
        create_ensemble(database, "bad name!", ["ridge"], "magic", stack_method="sometimes", passthrough="yes")
    fields = {e["field"] for e in info.value.errors}
    assert fields == {"name", "base_models", "meta_model", "stack_method", "passthrough"}
    with pytest.raises(ValidationError, match="logistic regression is a classifier; for a regression ensemble"):
        create_ensemble(database, "r", ["ridge", "gbr"], "logistic_regression")
    with pytest.raises(ValidationError, match="'predict_proba' applies to classification only"):
        create_ensemble(database, "r", ["ridge", "gbr"], "ridge", stack_method="predict_proba")
    with pytest.raises(ValidationError, match="unknown parameter 'depth' for meta_model ridge"):
        create_ensemble(database, "r", ["ridge", "gbr"], "ridge", meta_params={"depth": 3})
    with pytest.raises(NotFoundError, match="no config named 'nope', 'nada'"):
        create_ensemble(database, "r", ["ridge", "nope", "nada"], "ridge")
    with pytest.raises(ValidationError, match="lists ridge more than once"):
        create_ensemble(database, "r", ["ridge", "ridge"], "ridge")
    assert database.ensembles.count_documents({}) == 0 and not any("ensemble" in f for f in files(settings))


def test_stack_method_predict_for_classifiers(database, settings, games_csv):
    configs = make_configs(database, games_csv, cls_config, CLS_BASES[:2])
    create_ensemble(database, "p", ["lr", "rf"], "logistic_regression", stack_method="predict")
    ensemble = load_ensemble(database, "p")
    data = load_training_data(configs[0])
    spec = training.fold_spec(configs[0])
    train_idx, _ = holdout_split(data.y, spec)
    reference = StackingClassifier(
        [(c["name"], make_pipeline(c)) for c in configs],
        final_estimator=make_meta_model("classification", "logistic_regression", 7),
        cv=make_splitter(spec),
        stack_method="predict",
    )
    reference.fit(data.X[train_idx], data.y[train_idx])
    frame = pd.read_csv(games_csv).head(200)
    assert np.allclose(ensemble.predict_proba(frame), reference.predict_proba(frame[FEATS].to_numpy(float)))


def test_failure_while_saving_leaves_nothing(database, settings, games_csv, monkeypatch):
    make_configs(database, games_csv, cls_config, CLS_BASES[:2])
    before = files(settings)

    def broken(obj):
        def write(fh):
            fh.write(b"half")
            raise OSError(28, "No space left on device")

        return write

    monkeypatch.setattr(ensembles, "json_writer", broken)
    with pytest.raises(Exception, match="No space left"):
        create_ensemble(database, "e", ["lr", "rf"])
    assert files(settings) == before and database.ensembles.count_documents({}) == 0


def test_failure_while_inserting_the_document_removes_the_files(database, settings, games_csv, monkeypatch):
    make_configs(database, games_csv, cls_config, CLS_BASES[:2])
    before = files(settings)
    real = ensembles.finish_record

    def boom(*a, **k):
        real(*a, **k)
        raise RuntimeError("simulated crash before the commit")

    monkeypatch.setattr(ensembles, "finish_record", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        create_ensemble(database, "e", ["lr", "rf"])
    assert files(settings) == before and database.ensembles.count_documents({}) == 0


def test_unavailable_base_models_are_all_reported(database, settings, games_csv, tmp_path):
    store = ConfigStore(database)
    store.create(cls_config("ok", games_csv))
    train_config(database, "ok")
    create_then_change_csv(store, cls_config("x", tmp_path / "gone1.csv"))
    create_then_change_csv(store, cls_config("y", tmp_path / "gone2.csv"))
    with pytest.raises(BaseModelsError) as info:
        base_models.load_base_models(database, ["ok", "x", "y"])
    assert [f["name"] for f in info.value.failures] == ["x", "y"]
    msg = info.value.message
    assert "config 'x' cannot be loaded or retrained" in msg and "config 'y' cannot be loaded" in msg
    assert "Artifacts: config 'x' has no run_id" in msg and "gone1.csv" in msg and "not found" in msg


def test_two_threads_need_the_same_missing_model_train_it_once(database, settings, games_csv, monkeypatch):
    make_configs(database, games_csv, cls_config, CLS_BASES[:1])
    store = ConfigStore(database)
    store.create(
        cls_config(
            "slow", games_csv, model_type="random_forest", hyperparameters={"n_estimators": 10, "max_depth": 4}
        )
    )
    real = jobs_service.submit
    calls = []

    def counted(*a, **k):  # a training job that is created, not joined, is a training that runs
        job, created = real(*a, **k)
        if created and job["kind"] == "train":
            calls.append(1)
        return job, created

    monkeypatch.setattr(jobs_service, "submit", counted)
    barrier = threading.Barrier(2)
    out, errors = {}, []

    def build(name):
        try:
            barrier.wait()
            out[name] = create_ensemble(database, name, ["lr", "slow"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(n,)) for n in ("e1", "e2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(calls) == 1 and database.runs.count_documents({"name": "slow"}) == 1
    sources = sorted(r["base_models"][1]["source"] for r in out.values())
    # "slow" had never been trained: its training is a first one ("trained"), not a retraining
    assert sources[1] == "trained" and sources[0] in ("artifacts", "cache")
    assert all(r["base_models"][1]["reason"] == "field_missing" for r in out.values())
    assert out["e1"]["base_run_ids"] == out["e2"]["base_run_ids"]
    assert database.locks.count_documents({}) == 0


def test_creation_verifies_base_models_without_unpickling_them(database, settings, games_csv, monkeypatch):
    """Creating needs only the stored OOF predictions: base files are checked, loaded at first prediction."""
    make_configs(database, games_csv, cls_config, CLS_BASES[:2])
    calls = spy_unpickling(monkeypatch)
    record = create_ensemble(database, "lazy", ["lr", "rf"])
    assert calls == [] and [b["source"] for b in record["base_models"]] == ["artifacts", "artifacts"]
    frame = pd.read_csv(games_csv).head(20)
    assert load_ensemble(database, "lazy").predict_proba(frame).shape == (20, 2)
    assert len(calls) == 5  # two scalers, two models, the meta-model
    second = create_ensemble(database, "lazy2", ["lr", "rf"])
    assert [b["source"] for b in second["base_models"]] == ["cache", "cache"]


def test_creation_over_verified_runs_reads_no_csv(database, settings, games_csv, tmp_path):
    """The targets are stored with the out-of-fold predictions: the training CSV can be gone."""
    csv = tmp_path / "games_copy.csv"
    csv.write_bytes(games_csv.read_bytes())
    configs = make_configs(database, csv, cls_config, CLS_BASES)
    reference = from_scratch(configs, csv, "logistic_regression", False)
    frame = pd.read_csv(csv).sample(200, random_state=3)
    csv.unlink()
    record = create_ensemble(database, "no_csv", [c["name"] for c in configs])
    assert record["targets_from"] == "artifacts" and record["retrained"] == []
    ensemble = load_ensemble(database, "no_csv")
    X = frame[FEATS].to_numpy(float)
    assert np.allclose(ensemble.predict_proba(frame), reference.predict_proba(X), rtol=1e-9, atol=1e-10)
    assert np.array_equal(ensemble.predict(frame), reference.predict(X))
    run = database.runs.find_one({"run_id": configs[0]["run_id"]})
    assert record["base_metrics"]["lr"]["roc_auc"] == pytest.approx(run["metrics"]["roc_auc"], abs=1e-12)


def test_older_runs_without_stored_targets_read_the_csv(database, settings, games_csv, tmp_path, monkeypatch):
    """Runs trained before the targets were stored: the CSV is read (checked by fingerprint), same result."""
    csv = tmp_path / "games_copy.csv"
    csv.write_bytes(games_csv.read_bytes())
    old_keys = ("oof", "fold_ids", "train_idx", "test_idx", "test_pred", "classes")
    real = training.oof_arrays
    monkeypatch.setattr(
        training, "oof_arrays", lambda fit, fp: {k: v for k, v in real(fit, fp).items() if k in old_keys}
    )
    configs = make_configs(database, csv, cls_config, CLS_BASES[:2])
    monkeypatch.setattr(training, "oof_arrays", real)
    record = create_ensemble(database, "old", ["lr", "rf"])
    assert record["targets_from"] == "training_csv"
    reference = from_scratch(configs, csv, "logistic_regression", False)
    frame = pd.read_csv(csv).head(100)
    assert np.allclose(
        load_ensemble(database, "old").predict_proba(frame),
        reference.predict_proba(frame[FEATS].to_numpy(float)),
        rtol=1e-9,
        atol=1e-10,
    )
    # without the CSV an old run cannot give its targets: a clear error, and nothing is written
    csv.unlink()
    before = files(settings)
    with pytest.raises(DataError, match="training CSV .* not found") as info:
        create_ensemble(database, "old2", ["lr", "rf"])
    assert info.value.field == "training_csv"
    assert files(settings) == before and database.ensembles.count_documents({"name": "old2"}) == 0
