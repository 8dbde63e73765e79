import json

import numpy as np
import pandas as pd
import pytest

from models.artifacts.loading import load_model
from models.errors import DataError, ValidationError
from models.estimators import REGISTRY
from models.store.configs import ConfigStore
from models.store.schema import SEED_ARTIFACT_FIELDS
from models.training.data import load_training_data
from models.training.train import fit_config, make_pipeline, train_config
from tests.helpers import FEATS, cls_config, create_then_change_csv, reg_config
from tests.test_config_store import legacy


def artifact_files(settings):
    return sorted(p.name for p in settings.artifact_dir.glob("*")) if settings.artifact_dir.exists() else []


@pytest.mark.parametrize(
    "make,calibration",
    [(cls_config, "none"), (cls_config, "sigmoid"), (cls_config, "isotonic"), (reg_config, "none")],
)
def test_loaded_model_predicts_exactly_like_the_in_memory_one(database, settings, games_csv, make, calibration):
    extra = {"calibration": calibration} if make is cls_config else {}
    config = ConfigStore(database).create(make("m", games_csv, **extra))
    data = load_training_data(config)
    in_memory = fit_config(config, data)
    run = train_config(database, "m")
    loaded = load_model(settings, ConfigStore(database).get("m"), use_cache=False).model
    frame = pd.read_csv(games_csv).head(200)
    X = frame[FEATS].to_numpy(float)
    assert np.array_equal(loaded.predict(frame), in_memory.pipeline.predict(X))
    if make is cls_config:
        assert np.array_equal(loaded.predict_proba(frame), in_memory.pipeline.predict_proba(X))
    assert run["run_id"] == loaded.run_id


def test_config_document_gets_the_seed_fields(database, settings, games_csv):
    ConfigStore(database).create(cls_config("c", games_csv))
    run = train_config(database, "c")
    doc = ConfigStore(database).get("c")
    for f in SEED_ARTIFACT_FIELDS:
        assert doc[f], f
    assert doc["run_id"] == run["run_id"]
    assert doc["model_artifact_path"] == f"{run['run_id']}_model.pkl"
    assert doc["scaler_artifact_path"].endswith("_scaler.pkl") and doc["features_path"].endswith("_features.json")
    assert "/" not in doc["model_artifact_path"] and not doc["model_artifact_path"].startswith("..")
    assert doc["status"] == "trained" and doc["version"] == "1.0.0"
    assert set(doc["checksums"]) == {"model", "scaler", "features", "metrics", "oof"}
    assert sorted(artifact_files(settings)) == sorted(
        f"{run['run_id']}_{k}" for k in ("model.pkl", "scaler.pkl", "features.json", "metrics.json", "oof.npz")
    )
    assert json.loads((settings.artifact_dir / doc["features_path"]).read_text()) == FEATS
    stored = database.runs.find_one({"run_id": run["run_id"]})
    assert stored["data"]["rows_used"] == stored["data"]["n_train"] + stored["data"]["n_test"]
    assert len(stored["data"]["fingerprint"]) == 64
    assert set(stored["metrics"]) >= {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "log_loss",
        "brier",
        "confusion_matrix",
    }
    assert len(stored["cv"]["scores"]) == 3 and stored["cv"]["metric"] == "roc_auc"
    assert stored["versions"]["sklearn"] and stored["durations"]["total_s"] > 0
    assert [f["feature"] for f in stored["feature_importance"]] and stored["feature_importance"][0]["method"]


def test_regression_metrics(database, games_csv):
    ConfigStore(database).create(reg_config("r", games_csv))
    run = train_config(database, "r")
    assert set(run["metrics"]) == {"mse", "rmse", "mae", "r2"}
    assert run["metrics"]["rmse"] == pytest.approx(np.sqrt(run["metrics"]["mse"]))
    assert run["cv"]["metric"] == "rmse"


def test_oof_predictions_cover_every_training_row(database, settings, games_csv):
    ConfigStore(database).create(cls_config("o", games_csv))
    run = train_config(database, "o")
    with np.load(settings.artifact_dir / run["artifacts"]["oof"]["path"]) as npz:
        assert npz["oof"].shape == (run["data"]["n_train"], 2)
        assert set(npz["fold_ids"].tolist()) == {0, 1, 2}
        assert np.allclose(npz["oof"].sum(axis=1), 1.0)
        assert len(npz["test_pred"]) == run["data"]["n_test"]


def test_same_random_state_same_predictions(database, settings, games_csv):
    ConfigStore(database).create(
        cls_config("rf", games_csv, model_type="random_forest", hyperparameters={"n_estimators": 15})
    )
    first = train_config(database, "rf")
    second = train_config(database, "rf")
    assert first["run_id"] != second["run_id"]
    assert second["version"] == "1.0.1"
    a = load_model(settings, first, use_cache=False).model
    b = load_model(settings, second, use_cache=False).model
    frame = pd.read_csv(games_csv).head(300)
    assert np.array_equal(a.predict_proba(frame), b.predict_proba(frame))


@pytest.mark.parametrize("task,model_type", [(t, m) for t in REGISTRY for m in REGISTRY[t]])
def test_every_model_type_trains(database, games_csv, task, model_type):
    make = cls_config if task == "classification" else reg_config
    params = {
        "random_forest": {"n_estimators": 10},
        "extra_trees": {"n_estimators": 10},
        "gradient_boosting": {"n_estimators": 10},
        "hist_gradient_boosting": {"max_iter": 10},
        "mlp": {"max_iter": 50, "hidden_layer_sizes": [8]},
    }.get(model_type, {})
    ConfigStore(database).create(make("t", games_csv, model_type=model_type, hyperparameters=params, cv_folds=2))
    run = train_config(database, "t")
    assert run["status"] == "trained" and run["metrics"]


def test_failed_training_keeps_previous_run_and_writes_nothing(database, settings, games_csv, tmp_path):
    store = ConfigStore(database)
    store.create(cls_config("f", games_csv))
    good = train_config(database, "f")
    before_files = artifact_files(settings)
    before = store.get("f")
    broken = tmp_path / "broken.csv"
    broken.write_bytes(games_csv.read_bytes())
    store.update("f", {"training_csv": str(broken)})
    broken.write_text("a,b\n1,2\n")  # the file changed after the config was saved
    with pytest.raises(DataError, match="lacks columns: " + ", ".join(FEATS)):
        train_config(database, "f")
    after = store.get("f")
    assert after["status"] == "failed"
    assert "lacks columns" in after["error"]["message"] and after["error"]["code"] == "data_error"
    for f in (*SEED_ARTIFACT_FIELDS, "checksums", "version"):
        assert after[f] == before[f]
    assert artifact_files(settings) == before_files
    assert load_model(settings, after, use_cache=False).model.run_id == good["run_id"]
    assert database.runs.count_documents({"name": "f"}) == 1


def test_failure_during_fit_leaves_no_files(database, settings, games_csv, monkeypatch):
    ConfigStore(database).create(cls_config("boom", games_csv))
    import models.training.train as training

    def explode(*a, **k):
        raise RuntimeError("simulated crash in fit")

    monkeypatch.setattr(training, "fit_config", explode)
    with pytest.raises(Exception, match="simulated crash"):
        train_config(database, "boom")
    assert artifact_files(settings) == []
    doc = ConfigStore(database).get("boom")
    assert doc["status"] == "failed" and "simulated crash" in doc["error"]["message"]
    assert "run_id" not in doc


def test_failure_while_writing_artifacts_removes_partial_run(database, settings, games_csv, monkeypatch):
    ConfigStore(database).create(cls_config("w", games_csv))
    import models.training.train as training

    real = training.npz_writer

    def failing_npz(arrays):
        def write(fh):
            fh.write(b"partial")
            raise OSError(28, "No space left on device")

        return write

    monkeypatch.setattr(training, "npz_writer", failing_npz)
    with pytest.raises(Exception, match="No space left"):
        train_config(database, "w")
    monkeypatch.setattr(training, "npz_writer", real)
    assert artifact_files(settings) == []  # no finished file, no temp file
    assert database.runs.count_documents({}) == 0
    assert ConfigStore(database).get("w")["status"] == "failed"


def test_legacy_config_trains(database, settings, games_csv):
    doc = legacy()
    doc.update(training_csv=str(games_csv), hyperparameters={"n_estimators": 10, "max_depth": 4}, cv_folds=3)
    ConfigStore(database).create(doc)
    run = train_config(database, "home_win_rf_v2")
    after = ConfigStore(database).get("home_win_rf_v2")
    assert after["season_range"] == "2015-2024" and after["run_id"] == run["run_id"]


def test_invalid_hyperparameter_fails_before_any_work(database, games_csv):
    database.configs.insert_one(cls_config("bad", games_csv, hyperparameters={"C": "lots"}))
    with pytest.raises(ValidationError, match="hyperparameters.C"):
        train_config(database, "bad")
    doc = database.configs.find_one({"name": "bad"})
    assert "status" not in doc  # not even marked as training


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "is empty"),
        ("home_win\n", "lacks columns"),
        (",".join([*FEATS, "home_win"]) + "\n", "header but no rows"),
    ],
)
def test_data_errors(database, tmp_path, content, message):
    create_then_change_csv(ConfigStore(database), cls_config("d", tmp_path / "d.csv"), content)
    with pytest.raises(DataError, match=message):
        train_config(database, "d")


def test_missing_csv(database, tmp_path):
    create_then_change_csv(ConfigStore(database), cls_config("d", tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="nope.csv.*not found"):
        train_config(database, "d")


def test_a_word_in_a_numeric_column_and_a_single_class(database, games_csv, tmp_path):
    frame = pd.read_csv(games_csv)
    frame["home_rest_days"] = frame["home_rest_days"].astype(object)
    frame.loc[7, "home_rest_days"] = "rested"  # one word among numbers: a typo, not a category
    frame.to_csv(tmp_path / "nn.csv", index=False)
    with pytest.raises(ValidationError, match="'home_rest_days' is numeric but line 9 holds 'rested'"):
        ConfigStore(database).create(cls_config("nn", tmp_path / "nn.csv"))
    assert database.configs.count_documents({}) == 0
    frame = pd.read_csv(games_csv)
    frame["home_win"] = 1
    frame.to_csv(tmp_path / "one.csv", index=False)
    ConfigStore(database).create(cls_config("one", tmp_path / "one.csv"))
    with pytest.raises(DataError, match="single class"):
        train_config(database, "one")


def test_blank_features_are_imputed_and_counted_rows_without_target_dropped(database, games_csv, tmp_path):
    frame = pd.read_csv(games_csv)
    frame.loc[[3, 10, 11], "home_off_rating"] = np.nan
    frame.loc[[5, 6], "home_win"] = np.nan
    frame.to_csv(tmp_path / "nan.csv", index=False)
    ConfigStore(database).create(cls_config("nan", tmp_path / "nan.csv"))
    run = train_config(database, "nan")
    assert run["data"]["rows_dropped"] == 2 and run["data"]["rows_used"] == len(frame) - 2
    assert run["data"]["blank_cells"] == {"home_off_rating": 3}
    assert run["data"]["imputation"] == {"numeric": "median", "categorical": "most_frequent"}
    model = load_model(database.settings, ConfigStore(database).get("nan")).model
    row = pd.read_csv(games_csv).head(1)[FEATS]
    blank = row.copy()
    blank.loc[0, "home_off_rating"] = np.nan  # a blank at predict time is imputed the same way
    rows = run_train_rows(database, "nan", tmp_path / "nan.csv")
    median = np.nanmedian(frame["home_off_rating"].to_numpy(dtype=float)[rows])
    filled = row.copy()
    filled.loc[0, "home_off_rating"] = median
    assert np.allclose(model.predict_proba(blank), model.predict_proba(filled), rtol=1e-12)


def run_train_rows(database, name, csv):
    """The CSV rows a config's run fitted its final model on (the training rows of its split)."""
    from models.splits import fold_spec, holdout_split

    config = ConfigStore(database).get(name)
    target = pd.read_csv(csv)["home_win"]
    kept = np.flatnonzero(target.notna())
    train_idx, _ = holdout_split(target.to_numpy()[kept].astype(int), fold_spec(config))
    return kept[train_idx]


def test_pipeline_keeps_scaler_inside_folds(games_csv):
    pipe = make_pipeline(cls_config("p", games_csv, scaler="robust", calibration="sigmoid"))
    assert [name for name, _ in pipe.steps] == ["scaler", "model"]
    assert [type(step).__name__ for _, step in pipe.named_steps["scaler"].steps] == [
        "SimpleImputer",
        "RobustScaler",
    ]
    assert type(pipe.named_steps["model"]).__name__ == "CalibratedClassifierCV"
