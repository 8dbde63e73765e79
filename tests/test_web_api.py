"""The JSON API under /api: configs CRUD, the error shape, status codes, nothing written on failure."""

from __future__ import annotations

import json

import pytest

from models.store.configs import ConfigStore
from web import create_app

TOKEN = "api-test-token-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = {
    "name": "rf1",
    "task": "classification",
    "model_type": "random_forest",
    "hyperparameters": {"n_estimators": 20, "max_depth": 4},
    "features": ["a", "b", "c"],
    "target": "y",
    "training_csv": "tests/fixtures/columns.csv",
    "tags": ["nba"],
    "owner": "ana",
}


@pytest.fixture
def app(settings, database):
    return create_app(settings.with_(admin_password="pw", api_token=TOKEN, max_content_length=4096), database)


@pytest.fixture
def api(app):
    client = app.test_client()

    def call(method: str, path: str, body=None, raw: bytes | str | None = None, **kw):
        headers = {**AUTH, **kw.pop("headers", {})}
        if raw is not None:
            return client.open(
                path, method=method, data=raw, headers=headers, content_type="application/json", **kw
            )
        return client.open(path, method=method, json=body, headers=headers, **kw)

    return call


@pytest.fixture
def store(database):
    return ConfigStore(database)


def assert_error(response, status: int, code: str, field: str | None = None, message: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert error.get("field") == field
    if message is not None:
        assert message in error["message"]
    return error


def test_create_get_list_delete(api, database):
    response = api("POST", "/api/configs", CONFIG)
    assert response.status_code == 201
    created = response.get_json()
    assert response.headers["Location"] == "/api/configs/rf1"
    assert created["name"] == "rf1" and created["owner"] == "ana" and created["status"] == "new"
    assert created["cv_folds"] == 5 and isinstance(created["id"], str) and created["created_at"].endswith("Z")
    assert "_id" not in created

    assert api("GET", "/api/configs/rf1").get_json() == created
    assert api("GET", f"/api/configs/{created['id']}").get_json()["name"] == "rf1"
    listed = api("GET", "/api/configs").get_json()
    assert listed["count"] == 1 and listed["configs"][0]["id"] == created["id"]
    json.dumps(listed)  # JSON-safe all the way down

    response = api("DELETE", "/api/configs/rf1")
    assert response.status_code == 200 and response.get_json() == {"deleted": "rf1", "id": created["id"]}
    assert database.configs.count_documents({}) == 0
    assert_error(api("GET", "/api/configs/rf1"), 404, "not_found", message="rf1")


def test_list_filters_sort_and_paging(api, store):
    store.create(CONFIG)
    store.create(
        {
            **CONFIG,
            "name": "ridge1",
            "task": "regression",
            "model_type": "ridge",
            "hyperparameters": {},
            "tags": ["other"],
        }
    )
    store.create({**CONFIG, "name": "lr1", "model_type": "logistic_regression", "hyperparameters": {}})
    names = lambda r: [c["name"] for c in r.get_json()["configs"]]  # noqa: E731
    assert names(api("GET", "/api/configs?task=regression")) == ["ridge1"]
    assert names(api("GET", "/api/configs?model_type=random_forest")) == ["rf1"]
    assert names(api("GET", "/api/configs?tag=nba")) == ["lr1", "rf1"]
    assert names(api("GET", "/api/configs?q=IDGE")) == ["ridge1"]
    assert names(api("GET", "/api/configs?status=new")) == ["lr1", "rf1", "ridge1"]
    assert names(api("GET", "/api/configs?status=trained")) == []
    assert names(api("GET", "/api/configs?sort=name&order=desc")) == ["ridge1", "rf1", "lr1"]
    assert names(api("GET", "/api/configs?limit=1&skip=1")) == ["rf1"]


@pytest.mark.parametrize(
    "query,field",
    [
        ("sort=owner", "sort"),
        ("order=up", "order"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("skip=1.5", "skip"),
    ],
)
def test_list_bad_parameters_are_422(api, query, field):
    assert_error(api("GET", f"/api/configs?{query}"), 422, "validation_error", field=field)


def test_invalid_config_is_422_with_every_field_and_writes_nothing(api, database):
    bad = {**CONFIG, "cv_folds": 1, "hyperparameters": {"max_depth": "deep"}}
    del bad["target"]
    error = assert_error(api("POST", "/api/configs", bad), 422, "validation_error")
    fields = {d["field"] for d in error["details"]}
    assert {"target", "cv_folds"} <= fields
    assert database.configs.count_documents({}) == 0


def test_duplicate_name_is_409(api, database):
    assert api("POST", "/api/configs", CONFIG).status_code == 201
    assert_error(api("POST", "/api/configs", CONFIG), 409, "conflict", field="name", message="already exists")
    assert database.configs.count_documents({}) == 1


@pytest.mark.parametrize(
    "raw,message",
    [
        ("{not json", "malformed JSON at line 1"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"text"', "must be a JSON object, got str"),
        ("", "body is empty"),
        ('{"name": NaN}', "NaN is not allowed"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[" * 3000, "nested too deeply"),
    ],
)
def test_malformed_bodies_are_400_and_write_nothing(api, database, store, raw, message):
    assert_error(api("POST", "/api/configs", raw=raw), 400, "bad_request", message=message)
    store.create(CONFIG)
    for method in ("PUT", "PATCH"):
        assert_error(api(method, "/api/configs/rf1", raw=raw), 400, "bad_request", message=message)
    assert database.configs.count_documents({}) == 1
    assert database.configs.find_one({"name": "rf1"})["rev"] == 1


def test_too_large_body_is_413(api, database):
    response = api("POST", "/api/configs", {**CONFIG, "description": "x" * 5000})
    assert_error(response, 413, "request_entity_too_large")
    assert database.configs.count_documents({}) == 0


def test_unknown_config_is_404_for_every_method(api):
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        body = None if method in ("GET", "DELETE") else {"description": "x"}
        assert_error(api(method, "/api/configs/nope", body), 404, "not_found", message="nope")


def test_unknown_route_and_wrong_method_use_the_error_shape(api):
    assert_error(api("GET", "/api/nothing-here"), 404, "not_found")
    response = api("DELETE", "/api/configs")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_put_replaces_user_fields_and_accepts_its_own_get_output(api, database):
    created = api("POST", "/api/configs", CONFIG).get_json()
    doc = dict(created, description="updated", hyperparameters={"n_estimators": 50})
    del doc["owner"]
    response = api("PUT", "/api/configs/rf1", doc)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["description"] == "updated" and body["hyperparameters"] == {"n_estimators": 50}
    assert "owner" not in body and body["rev"] == 2
    stored = database.configs.find_one({"name": "rf1"})
    assert "owner" not in stored and stored["rev"] == 2


def test_put_with_a_stale_rev_is_409_and_changes_nothing(api, database):
    api("POST", "/api/configs", CONFIG)
    api("PATCH", "/api/configs/rf1", {"description": "first"})
    assert_error(
        api("PUT", "/api/configs/rf1", {**CONFIG, "rev": 1, "description": "second"}), 409, "conflict", field="rev"
    )
    assert database.configs.find_one({"name": "rf1"})["description"] == "first"


def test_put_can_rename(api, database):
    api("POST", "/api/configs", CONFIG)
    response = api("PUT", "/api/configs/rf1", {**CONFIG, "name": "rf2"})
    assert response.status_code == 200 and response.get_json()["name"] == "rf2"
    assert database.configs.distinct("name") == ["rf2"]


def test_patch_merges_and_null_removes(api, database):
    api("POST", "/api/configs", CONFIG)
    response = api(
        "PATCH",
        "/api/configs/rf1",
        {"hyperparameters": {"max_depth": None, "min_samples_leaf": 2}, "owner": None, "tags": ["a", "b"]},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["hyperparameters"] == {"n_estimators": 20, "min_samples_leaf": 2}
    assert "owner" not in body and body["tags"] == ["a", "b"]
    stored = database.configs.find_one({"name": "rf1"})
    assert stored["hyperparameters"] == body["hyperparameters"] and "owner" not in stored


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"cv_folds": 0}, "cv_folds"),
        ({"target": "a"}, "target"),
        ({"name": None}, "name"),
        ({"model_type": "ridge"}, "model_type"),
        ({"run_id": "20250101_000000_deadbeef"}, "run_id"),
        ({"status": "trained"}, "status"),
    ],
)
def test_patch_rejections_are_422_and_change_nothing(api, database, patch, field):
    api("POST", "/api/configs", CONFIG)
    before = database.configs.find_one({"name": "rf1"})
    assert_error(api("PATCH", "/api/configs/rf1", patch), 422, "validation_error", field=field)
    assert database.configs.find_one({"_id": before["_id"]}) == before


def test_api_index_lists_areas(api):
    response = api("GET", "/api/")
    assert response.status_code == 200 and "configs" in response.get_json()["areas"]
