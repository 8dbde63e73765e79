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
from tests.helpers import FEATS
from web import create_app

TOKEN = "property-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VALID = {
    "name": "p1",
    "task": "classification",
    "model_type": "logistic_regression",
    "hyperparameters": {"C": 1.0},
    "features": ["a", "b"],
    "target": "y",
    "training_csv": "tests/fixtures/columns.csv",
    "cv_folds": 3,
}
FIELDS = [
    *list(VALID),
    "scaler",
    "calibration",
    "random_state",
    "test_size",
    "description",
    "tags",
    "run_id",
    "status",
    "_id",
    "rev",
    "$set",
    "a.b",
    "",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
py_values = st.one_of(
    json_values, st.floats(), st.binary(max_size=8), st.tuples(st.integers()), st.sets(st.integers(), max_size=3)
)
# a valid config with some fields replaced, removed or added
mutated = st.builds(
    lambda repl, drop: {**{k: v for k, v in VALID.items() if k not in drop}, **repl},
    st.dictionaries(st.sampled_from(FIELDS), py_values, max_size=4),
    st.sets(st.sampled_from(list(VALID)), max_size=3),
)
documents = st.one_of(
    mutated, st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), py_values, max_size=6), py_values
)


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
def api_app(mongo_uri, tmp_path_factory, games_csv, data_roots, signing_key):
    import uuid

    from models.settings import Settings
    from models.store.db import Database

    tmp = tmp_path_factory.mktemp("prop")
    s = Settings.from_env({}).with_(
        mongo_uri=mongo_uri,
        mongo_db=f"prop_{uuid.uuid4().hex[:8]}",
        artifact_dir=tmp / "artifacts",
        var_dir=tmp / "var",
        admin_password="pw",
        api_token=TOKEN,
        secret_key="k" * 32,
        max_content_length=64 * 1024,
        data_roots=data_roots,
        artifact_signing_key=signing_key,
    )
    database = Database.connect(s)
    app = create_app(s, database)
    ConfigStore(database).create({**VALID, "name": "keep"})
    # a trained model and an ensemble, so predictions meet huge numbers too
    from models.ensembles.build import create_ensemble
    from models.training.train import train_config
    from tests.helpers import cls_config

    for name in ("m1", "m2"):
        ConfigStore(database).create(
            cls_config(
                name,
                games_csv,
                "random_forest" if name == "m2" else "logistic_regression",
                **({"hyperparameters": {"n_estimators": 5}} if name == "m2" else {}),
            )
        )
        train_config(database, name)
    create_ensemble(database, "ens", ["m1", "m2"])
    yield app, database
    database.client.drop_database(s.mongo_db)
    database.close()


ROUTES = [
    ("POST", "/api/configs"),
    ("PUT", "/api/configs/keep"),
    ("PATCH", "/api/configs/keep"),
    ("POST", "/api/predict/model/keep"),
    ("POST", "/api/predict/ensemble/nope"),
    ("POST", "/api/ensembles"),
    ("POST", "/api/predict/model/m2"),
    ("POST", "/api/predict/ensemble/ens"),
    ("POST", "/api/predict/model/m1?format=csv"),
    ("POST", "/api/registry/runs/nope/status"),
]
raw_bodies = st.one_of(
    json_values.map(json.dumps),
    mutated.map(lambda d: json.dumps(d, default=str)),
    st.binary(max_size=40),
    st.text(max_size=40),
)


@given(st.sampled_from(ROUTES), raw_bodies)
@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_answers_random_payloads_without_500_and_writes_nothing_on_refusal(api_app, route, body):
    app, database = api_app
    before = database.configs.find_one({"name": "keep"})
    count = database.configs.count_documents({})
    jobs = database.jobs.count_documents({})
    method, path = route
    response = app.test_client().open(
        path, method=method, data=body, headers=AUTH, content_type="application/json"
    )
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


# Numbers as raw JSON text: integers past Python's 4,300-digit limit, floats that overflow (1e999),
# the largest and smallest doubles (1e308, 5e-324), 64-bit edges. json.dumps cannot write the first kind.
HOLE = "@@number@@"
huge_numbers = st.one_of(
    st.integers(min_value=4290, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=4290, max_value=5000).map(lambda n: "-" + "1" * n),
    st.sampled_from(
        [
            "1e308",
            "-1e308",
            "1.7976931348623157e308",
            "1e999",
            "-1e999",
            "1E400",
            "5e-324",
            "1e-400",
            str(2**63),
            str(-(2**63) - 1),
            str(2**64),
            "0.0",
            "-0",
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
with_hole = st.one_of(
    st.builds(
        lambda feats, n: {"rows": [{f: HOLE if f in feats else 0.5 for f in FEATS}] * n},
        st.sets(st.sampled_from(FEATS), min_size=1, max_size=3),
        st.integers(1, 3),
    ),
    st.builds(
        lambda key: {**VALID, "name": "huge", "hyperparameters": {key: HOLE}},
        st.sampled_from(["C", "max_iter", "n_estimators", "tol"]),
    ),
    st.builds(
        lambda key: {**VALID, key: HOLE}, st.sampled_from(["cv_folds", "random_state", "test_size", "name"])
    ),
    st.builds(
        lambda: {
            "name": "e2",
            "base_models": ["m1", "m2"],
            "meta_model": "logistic_regression",
            "meta_params": {"C": HOLE},
        }
    ),
    st.builds(lambda: {"status": HOLE}),
    st.just(HOLE),
)


def _with_number(doc, number: str) -> str:
    return json.dumps(doc).replace(json.dumps(HOLE), number)


@given(st.sampled_from(ROUTES), st.builds(_with_number, with_hole, huge_numbers))
@hsettings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_huge_integers_and_floats_on_every_json_route_are_never_500(api_app, route, body):
    app, database = api_app
    before = database.configs.find_one({"name": "keep"})
    count, jobs = database.configs.count_documents({}), database.jobs.count_documents({})
    method, path = route
    response = app.test_client().open(
        path, method=method, data=body, headers=AUTH, content_type="application/json"
    )
    assert response.status_code < 500, (method, path, body[:200], response.get_data(as_text=True)[:500])
    if response.status_code >= 400:
        error = response.get_json()["error"]
        assert error["code"] and error["message"]
        assert database.configs.find_one({"name": "keep"}) == before
        assert database.configs.count_documents({}) == count and database.jobs.count_documents({}) == jobs
    elif method == "POST" and path == "/api/configs":
        database.configs.delete_one({"name": response.get_json()["name"]})
    elif method in ("PUT", "PATCH"):
        database.configs.replace_one({"_id": before["_id"]}, before)
    elif path == "/api/ensembles":
        jobs_done = database.jobs.find_one({"key": "ensemble:e2"})
        if jobs_done is not None:
            from models.jobs import wait

            wait(database, jobs_done["_id"], timeout=60)
            database.ensembles.delete_many({"name": "e2"})
            database.jobs.delete_many({"key": "ensemble:e2"})


@pytest.mark.parametrize(
    "body,field",
    [
        ({"0": 2**63}, "0"),
        ({"meta": {"deep": [1, -(2**63) - 1]}}, "meta.deep.1"),
        ({"hyperparameters": {"C": 2**64}}, "hyperparameters.C"),
    ],
)
def test_integers_too_large_for_bson_are_422_not_500(api_app, body, field):
    """Found by the property test above: a 64-bit overflow used to reach MongoDB and answer 500."""
    app, database = api_app
    before = database.configs.find_one({"name": "keep"})
    for method, path, payload in (
        ("PATCH", "/api/configs/keep", body),
        ("POST", "/api/configs", {**VALID, "name": "big", **body}),
    ):
        response = app.test_client().open(path, method=method, json=payload, headers=AUTH)
        assert response.status_code == 422, response.get_data(as_text=True)
        error = response.get_json()["error"]
        assert error["field"] == field and "too large to store" in error["message"]
    assert database.configs.find_one({"name": "keep"}) == before
    assert database.configs.count_documents({"name": "big"}) == 0
