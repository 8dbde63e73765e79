"""Property-based bad input (hypothesis): random and malformed config documents at the validation
layer and ConfigStore, random JSON payloads at the JSON API. Never a 500 or an unhandled exception,
and nothing written on refusal."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from models.errors import ServiceError, ValidationError
from models.store.configs import ConfigStore
from models.store.schema import validate_config
from web import create_app

TOKEN = "property-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VALID = {"name": "p1", "task": "classification", "model_type": "logistic_regression",
         "hyperparameters": {"C": 1.0}, "features": ["a", "b"], "target": "y", "training_csv": "tests/fixtures/columns.csv",
         "cv_folds": 3}
FIELDS = list(VALID) + ["scaler", "calibration", "random_state", "test_size", "description", "tags", "run_id",
                        "status", "_id", "rev", "$set", "a.b", ""]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
py_values = st.one_of(json_values, st.floats(), st.binary(max_size=8), st.tuples(st.integers()),
                      st.sets(st.integers(), max_size=3))
# a valid config with some fields replaced, removed or added
mutated = st.builds(
    lambda repl, drop: {**{k: v for k, v in VALID.items() if k not in drop}, **repl},
    st.dictionaries(st.sampled_from(FIELDS), py_values, max_size=4),
    st.sets(st.sampled_from(list(VALID)), max_size=3))
documents = st.one_of(mutated, st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), py_values,
                                               max_size=6), py_values)


@given(documents)
@hsettings(max_examples=300, deadline=None)
def test_validate_config_only_ever_raises_validation_error(doc):
    try:
        out = validate_config(doc)
    except ValidationError as exc:
        assert exc.message and exc.errors and all("field" in e and e["message"] for e in exc.errors)
        return
    assert isinstance(out, dict) and out["name"] and out["features"]


@given(mutated)
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_config_store_create_writes_nothing_on_refusal(database, doc):
    store = ConfigStore(database)
    try:
        created = store.create(doc)
    except ServiceError as exc:
        assert isinstance(exc, ValidationError), exc
        assert database.configs.count_documents({}) == 0
        return
    assert database.configs.count_documents({}) == 1
    database.configs.delete_one({"_id": created["_id"]})


@pytest.fixture(scope="module")
def api_app(mongo_uri, tmp_path_factory):
    import uuid

    from models.settings import Settings
    from models.store.db import Database
    tmp = tmp_path_factory.mktemp("prop")
    s = Settings.from_env({}).with_(mongo_uri=mongo_uri, mongo_db=f"prop_{uuid.uuid4().hex[:8]}",
                                    artifact_dir=tmp / "artifacts", var_dir=tmp / "var", admin_password="pw",
                                    api_token=TOKEN, secret_key="k" * 32, max_content_length=64 * 1024)
    database = Database.connect(s)
    app = create_app(s, database)
    ConfigStore(database).create({**VALID, "name": "keep"})
    yield app, database
    database.client.drop_database(s.mongo_db)
    database.close()


ROUTES = [("POST", "/api/configs"), ("PUT", "/api/configs/keep"), ("PATCH", "/api/configs/keep"),
          ("POST", "/api/predict/model/keep"), ("POST", "/api/predict/ensemble/nope"),
          ("POST", "/api/ensembles")]
raw_bodies = st.one_of(json_values.map(json.dumps), mutated.map(lambda d: json.dumps(d, default=str)),
                       st.binary(max_size=40), st.text(max_size=40))


@given(st.sampled_from(ROUTES), raw_bodies)
@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_answers_random_payloads_without_500_and_writes_nothing_on_refusal(api_app, route, body):
    app, database = api_app
    before = database.configs.find_one({"name": "keep"})
    count = database.configs.count_documents({})
    jobs = database.jobs.count_documents({})
    method, path = route
    response = app.test_client().open(path, method=method, data=body, headers=AUTH,
                                      content_type="application/json")
    assert response.status_code < 500, (method, path, body, response.get_data(as_text=True))
    if response.status_code >= 400:
        error = response.get_json()["error"]
        assert error["code"] and error["message"]
        assert database.configs.find_one({"name": "keep"}) == before
        assert database.configs.count_documents({}) == count and database.jobs.count_documents({}) == jobs
    elif method == "POST" and path == "/api/configs":  # a random body that happens to be a valid config
        database.configs.delete_one({"name": response.get_json()["name"]})
    elif method in ("PUT", "PATCH"):  # restore for the next example
        database.configs.replace_one({"_id": before["_id"]}, before)
        if database.configs.count_documents({"name": "keep"}) == 0:
            database.configs.delete_many({"_id": before["_id"]})
            database.configs.insert_one(before)


@pytest.mark.parametrize("body,field", [
    ({"0": 2**63}, "0"),
    ({"meta": {"deep": [1, -2**63 - 1]}}, "meta.deep.1"),
    ({"hyperparameters": {"C": 2**64}}, "hyperparameters.C"),
])
def test_integers_too_large_for_bson_are_422_not_500(api_app, body, field):
    """Found by the property test above: a 64-bit overflow used to reach MongoDB and answer 500."""
    app, database = api_app
    before = database.configs.find_one({"name": "keep"})
    for method, path, payload in (("PATCH", "/api/configs/keep", body),
                                  ("POST", "/api/configs", {**VALID, "name": "big", **body})):
        response = app.test_client().open(path, method=method, json=payload, headers=AUTH)
        assert response.status_code == 422, response.get_data(as_text=True)
        error = response.get_json()["error"]
        assert error["field"] == field and "too large to store" in error["message"]
    assert database.configs.find_one({"name": "keep"}) == before
    assert database.configs.count_documents({"name": "big"}) == 0
