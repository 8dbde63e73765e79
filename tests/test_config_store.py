import json
from pathlib import Path

import pytest

from models.errors import ConflictError, NotFoundError, ValidationError
from models.store.configs import ConfigStore
from models.store.schema import validate_config

# copies of ../shared/examples: the config documents as the seed system left them
EXAMPLES = Path(__file__).resolve().parent / "fixtures"


def legacy() -> dict:
    return json.loads((EXAMPLES / "legacy_config.json").read_text())


def good(**changes) -> dict:
    doc = {
        "name": "cfg_a",
        "task": "classification",
        "model_type": "random_forest",
        "hyperparameters": {"n_estimators": 10},
        "features": ["a", "b"],
        "target": "y",
        "training_csv": "tests/fixtures/columns.csv",
    }
    doc.update(changes)
    return doc


BAD_CASES = [
    ({"target": None}, "target"),
    ({"model_type": "catboost"}, "model_type"),
    ({"hyperparameters": {"n_estimators": "many"}}, "hyperparameters.n_estimators"),
    ({"hyperparameters": {"no_such_param": 1}}, "hyperparameters.no_such_param"),
    ({"features": "a,b"}, "features"),
    ({"features": ["a", 3]}, "features.1"),
    ({"features": []}, "features"),
    ({"cv_folds": -1}, "cv_folds"),
    ({"cv_folds": 2.5}, "cv_folds"),
    ({"task": "clustering"}, "task"),
    ({"scaler": "log"}, "scaler"),
    ({"name": "../etc"}, "name"),
    ({"features": ["a", "y"]}, "target"),
    ({"task": "regression", "model_type": "ridge", "calibration": "sigmoid"}, "calibration"),
]


@pytest.mark.parametrize("changes,field", BAD_CASES)
def test_bad_config_names_the_field_and_writes_nothing(database, changes, field):
    doc = good(**changes)
    if changes.get("target", "") is None:
        del doc["target"]
    store = ConfigStore(database)
    with pytest.raises(ValidationError) as info:
        store.create(doc)
    fields = [e["field"] for e in info.value.errors]
    assert field in fields, info.value.errors
    assert field in str(info.value)
    assert database.configs.count_documents({}) == 0


def test_every_problem_is_reported_at_once():
    with pytest.raises(ValidationError) as info:
        validate_config(good(cv_folds=0, scaler="log", features=[]))
    assert {e["field"] for e in info.value.errors} == {"cv_folds", "scaler", "features"}


def test_legacy_config_validates_and_keeps_user_fields(database):
    store = ConfigStore(database)
    doc = store.create(legacy())
    again = store.get("home_win_rf_v2")
    assert again["season_range"] == "2015-2024"
    assert again["status"] == "new"
    assert again["_id"] == doc["_id"]
    assert again["cv_folds"] == 5 and again["scaler"] == "standard"


def test_trained_example_keeps_artifact_fields(database):
    doc = json.loads((EXAMPLES / "trained_config.json").read_text())
    saved = ConfigStore(database).create(doc)
    for key in ("run_id", "model_artifact_path", "scaler_artifact_path", "features_path", "artifacts_saved_at"):
        assert saved[key] == doc[key]
    assert database.configs.find_one({"name": doc["name"]})["model_artifact_path"] == doc["model_artifact_path"]


def test_crud_roundtrip(database):
    store = ConfigStore(database)
    store.create(good())
    store.create(good(name="cfg_b", task="regression", model_type="ridge", hyperparameters={}, tags=["x"]))
    assert [d["name"] for d in store.list()] == ["cfg_a", "cfg_b"]
    assert [d["name"] for d in store.list(task="regression")] == ["cfg_b"]
    assert [d["name"] for d in store.list(model_type="random_forest")] == ["cfg_a"]
    assert [d["name"] for d in store.list(tag="x")] == ["cfg_b"]
    assert [d["name"] for d in store.list(q="B")] == ["cfg_b"]
    assert [d["name"] for d in store.list(status="new")] == ["cfg_a", "cfg_b"]
    updated = store.update("cfg_a", {"cv_folds": 3, "my_note": "kept"})
    assert updated["cv_folds"] == 3 and updated["rev"] == 2 and updated["my_note"] == "kept"
    store.delete("cfg_a")
    with pytest.raises(NotFoundError, match="cfg_a"):
        store.get("cfg_a")


def test_duplicate_name_refused(database):
    store = ConfigStore(database)
    store.create(good())
    with pytest.raises(ConflictError, match="cfg_a"):
        store.create(good())
    assert database.configs.count_documents({}) == 1


def test_invalid_update_writes_nothing(database):
    store = ConfigStore(database)
    store.create(good())
    before = store.get("cfg_a")
    with pytest.raises(ValidationError, match="cv_folds"):
        store.update("cfg_a", {"cv_folds": 0})
    with pytest.raises(ValidationError, match="run_id"):
        store.update("cfg_a", {"run_id": "x"})
    assert store.get("cfg_a") == before


def test_unique_index_exists(database):
    indexes = database.configs.index_information()
    assert indexes["name_unique"]["unique"] is True
    assert database.runs.index_information()["run_id_unique"]["unique"] is True


def test_custom_collection_works_on_legacy_documents(settings, database):
    """CONFIG_COLLECTION=model_config_nba on a collection written by the seed system."""
    from models.store.db import Database

    other = Database(database.client, settings.with_(config_collection="model_config_nba"))
    other.configs.insert_one(legacy())  # as the seed system left it: no artifact fields, no status
    other.ensure_indexes()
    store = ConfigStore(other)
    assert [d["name"] for d in store.list()] == ["home_win_rf_v2"]
    assert [d["name"] for d in store.list(status="new")] == ["home_win_rf_v2"]
    assert store.update("home_win_rf_v2", {"cv_folds": 4})["season_range"] == "2015-2024"


def test_replace_removes_user_fields_left_out_and_keeps_training_fields(database):
    store = ConfigStore(database)
    store.create(good(note="old", tags=["a"]))
    database.configs.update_one({"name": "cfg_a"}, {"$set": {"run_id": "r1"}})
    after = store.replace("cfg_a", {k: v for k, v in good(cv_folds=3).items() if k != "name"})
    assert after["cv_folds"] == 3 and "note" not in after and after["tags"] == []
    assert after["name"] == "cfg_a" and after["run_id"] == "r1"
