"""The config pages: table (sort, filter), create / edit / duplicate with inline errors, detail, delete."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from models.store.configs import ConfigStore
from web import create_app
from web.testing import csrf_token, login

PASSWORD = "page-test-password"
BASE = {
    "task": "classification",
    "target": "y",
    "training_csv": "tests/fixtures/columns.csv",
    "features": ["a", "b"],
}


@pytest.fixture
def app(settings, database):
    return create_app(
        settings.with_(admin_password=PASSWORD, api_token="t" * 20, max_content_length=20_000), database
    )


@pytest.fixture
def client(app):
    client = app.test_client()
    assert login(client, PASSWORD).status_code == 302
    return client


@pytest.fixture
def store(database):
    return ConfigStore(database)


def form(client, **fields) -> dict[str, str]:
    data = {
        "name": "web1",
        "task": "classification",
        "model_type": "random_forest",
        "target": "y",
        "training_csv": "tests/fixtures/columns.csv",
        "features": "a, b\nc",
        "hyperparameters": '{"n_estimators": 30}',
        "scaler": "standard",
        "calibration": "none",
        "cv_folds": "3",
        "random_state": "7",
        "test_size": "0.25",
        "description": "from the form",
        "tags": "nba, web",
    }
    data.update(fields)
    data["csrf_token"] = csrf_token(client)
    return data


def table_names(html: str) -> list[str]:
    body = html.split('id="configs-table"', 1)[1]
    return re.findall(r'<td><a href="/configs/[^"]+">([^<]+)</a></td>', body)


def text(response) -> str:
    return response.get_data(as_text=True)


def seed(store, database):
    store.create({**BASE, "name": "alpha", "model_type": "random_forest", "tags": ["nba"]})
    store.create({**BASE, "name": "bravo", "model_type": "logistic_regression"})
    store.create(
        {**BASE, "name": "charlie", "task": "regression", "model_type": "ridge", "target": "t", "tags": ["nba"]}
    )
    # what training will write: metrics, status, trained_at (set directly: training is not part of this area)
    database.configs.update_one(
        {"name": "alpha"},
        {
            "$set": {
                "status": "trained",
                "metrics": {"cv": {"roc_auc": 0.71, "accuracy": 0.66}},
                "trained_at": datetime(2026, 1, 5, 10, 30, tzinfo=UTC),
                "run_id": "20260105_103000_0123abcd",
            }
        },
    )
    database.configs.update_one(
        {"name": "bravo"},
        {
            "$set": {
                "status": "trained",
                "metrics": {"roc_auc": 0.64},
                "artifacts_saved_at": "2026-01-04T09:00:00Z",
            }
        },
    )


def test_home_redirects_to_the_table(client):
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/configs/"


def test_table_shows_columns_and_primary_metric(client, store, database):
    seed(store, database)
    html = text(client.get("/configs/"))
    assert table_names(html) == ["alpha", "bravo", "charlie"]
    for header in ("Name", "Status", "Model type", "Task", "Primary metric", "Last trained"):
        assert header in html
    assert "roc_auc</span> 0.71" in html and "roc_auc</span> 0.64" in html
    assert "2026-01-05 10:30 UTC" in html and "2026-01-04T09:00:00Z" in html
    assert "badge-trained" in html and "3 configs." in html


@pytest.mark.parametrize(
    "query,expected",
    [
        ("sort=name&dir=desc", ["charlie", "bravo", "alpha"]),
        ("sort=metric&dir=desc", ["alpha", "bravo", "charlie"]),
        ("sort=metric&dir=asc", ["bravo", "alpha", "charlie"]),  # no metric: last either way
        ("sort=trained&dir=asc", ["bravo", "alpha", "charlie"]),
        ("sort=task", ["alpha", "bravo", "charlie"]),
        ("sort=model_type", ["bravo", "alpha", "charlie"]),
        ("sort=status&dir=desc", ["alpha", "bravo", "charlie"]),
    ],
)
def test_table_sorts_by_column(client, store, database, query, expected):
    seed(store, database)
    assert table_names(text(client.get(f"/configs/?{query}"))) == expected


@pytest.mark.parametrize(
    "query,expected",
    [
        ("task=regression", ["charlie"]),
        ("model_type=logistic_regression", ["bravo"]),
        ("status=trained", ["alpha", "bravo"]),
        ("status=new", ["charlie"]),
        ("tag=nba", ["alpha", "charlie"]),
        ("q=RAV", ["bravo"]),
        ("task=classification&tag=nba", ["alpha"]),
    ],
)
def test_table_filters(client, store, database, query, expected):
    seed(store, database)
    assert table_names(text(client.get(f"/configs/?{query}"))) == expected


def test_table_empty_states_and_bad_sort(client, store, database):
    assert "No configs yet" in text(client.get("/configs/"))
    seed(store, database)
    assert "No config matches these filters" in text(client.get("/configs/?q=zzz"))
    html = text(client.get("/configs/?sort=owner"))
    assert "Cannot sort by &#39;owner&#39;" in html and table_names(html) == ["alpha", "bravo", "charlie"]


def test_create_through_the_form(client, database):
    assert 'name="csrf_token"' in text(client.get("/configs/new"))
    response = client.post("/configs/new", data=form(client))
    assert response.status_code == 302 and response.headers["Location"] == "/configs/web1"
    doc = database.configs.find_one({"name": "web1"})
    assert doc["features"] == ["a", "b", "c"] and doc["tags"] == ["nba", "web"]
    assert doc["hyperparameters"] == {"n_estimators": 30}
    assert (doc["cv_folds"], doc["random_state"], doc["test_size"]) == (3, 7, 0.25)
    assert "Config web1 created." in text(client.get("/configs/web1"))


def test_create_with_bad_fields_shows_each_error_inline_and_writes_nothing(client, database):
    response = client.post(
        "/configs/new",
        data=form(
            client, hyperparameters="{bad json", cv_folds="three", target="", features="a, a", name="bad name!"
        ),
    )
    assert response.status_code == 422
    html = text(response)
    errors = dict(re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]+)</p>', html))
    assert errors["hyperparameters"].startswith("malformed JSON at line 1")
    assert errors["cv_folds"] == "must be a whole number"
    assert errors["target"] == "must not be empty"
    assert "duplicate columns: a" in errors["features"]
    assert "letters, digits" in errors["name"]
    assert "The config was not saved" in html
    assert 'value="bad name!"' in html  # what was typed stays in the form
    assert database.configs.count_documents({}) == 0


@pytest.mark.parametrize(
    "fields,field,message",
    [
        ({"hyperparameters": "[1]"}, "hyperparameters", "must be a JSON object"),
        ({"hyperparameters": '{"max_depth": "deep"}'}, "hyperparameters", "max_depth"),
        ({"model_type": "ridge"}, "model_type", "unknown model_type"),
        ({"test_size": "big"}, "test_size", "must be a number"),
        ({"features": ""}, "features", "at least one column"),
    ],
)
def test_create_rejections(client, database, fields, field, message):
    response = client.post("/configs/new", data=form(client, **fields))
    assert response.status_code == 422
    assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', text(response)), text(response)
    assert database.configs.count_documents({}) == 0


def test_create_duplicate_name_is_an_inline_error(client, store, database):
    store.create({**BASE, "name": "web1", "model_type": "random_forest"})
    response = client.post("/configs/new", data=form(client))
    assert response.status_code == 409
    assert re.search(r'id="name-error">[^<]*already exists', text(response))
    assert database.configs.count_documents({}) == 1


def test_create_without_csrf_is_refused(client, database):
    data = form(client)
    del data["csrf_token"]
    assert client.post("/configs/new", data=data).status_code == 400
    assert database.configs.count_documents({}) == 0


def test_too_large_form_is_413(client, database):
    response = client.post("/configs/new", data=form(client, description="x" * 30_000))
    assert response.status_code == 413
    assert database.configs.count_documents({}) == 0


def test_edit_keeps_extra_and_training_fields(client, store, database):
    store.create({**BASE, "name": "e1", "model_type": "random_forest", "owner": "ana", "cv_folds": 4})
    database.configs.update_one(
        {"name": "e1"}, {"$set": {"run_id": "20260101_000000_00000000", "status": "trained"}}
    )
    page = text(client.get("/configs/e1/edit"))
    assert "owner" in page and 'name="rev" value="1"' in page
    response = client.post(
        "/configs/e1/edit", data=form(client, name="e1", rev="1", description="edited", cv_folds="")
    )
    assert response.status_code == 302 and response.headers["Location"] == "/configs/e1"
    doc = database.configs.find_one({"name": "e1"})
    assert doc["owner"] == "ana" and doc["run_id"] == "20260101_000000_00000000" and doc["status"] == "trained"
    assert doc["description"] == "edited" and doc["cv_folds"] == 5 and doc["rev"] == 2


def test_edit_can_rename(client, store, database):
    store.create({**BASE, "name": "old", "model_type": "random_forest"})
    response = client.post("/configs/old/edit", data=form(client, name="new", rev="1"))
    assert response.headers["Location"] == "/configs/new"
    assert database.configs.distinct("name") == ["new"]


def test_edit_errors_are_inline_and_change_nothing(client, store, database):
    store.create({**BASE, "name": "e1", "model_type": "random_forest"})
    before = database.configs.find_one({"name": "e1"})
    response = client.post(
        "/configs/e1/edit", data=form(client, name="e1", rev="1", random_state="-3", cv_folds="30")
    )
    assert response.status_code == 422
    html = text(response)
    assert re.search(r'id="random_state-error">[^<]*greater than or equal to 0', html)
    assert re.search(r'id="cv_folds-error">[^<]*less than or equal to 20', html)
    response = client.post(
        "/configs/e1/edit",
        data=form(client, name="e1", rev="1", calibration="sigmoid", task="regression", model_type="ridge"),
    )
    assert response.status_code == 422
    assert re.search(r'id="calibration-error">[^<]*classification only', text(response))
    assert database.configs.find_one({"name": "e1"}) == before


def test_edit_with_a_stale_form_is_refused(client, store, database):
    store.create({**BASE, "name": "e1", "model_type": "random_forest"})
    store.update("e1", {"description": "someone else"})
    response = client.post("/configs/e1/edit", data=form(client, name="e1", rev="1", description="mine"))
    assert response.status_code == 409 and "Someone changed this config" in text(response)
    assert database.configs.find_one({"name": "e1"})["description"] == "someone else"


def test_duplicate_prefills_the_form_and_copies_extra_fields(client, store, database):
    store.create(
        {**BASE, "name": "src", "model_type": "random_forest", "owner": "ana", "hyperparameters": {"max_depth": 3}}
    )
    html = text(client.get("/configs/src/duplicate"))
    assert 'value="src_copy"' in html and 'name="duplicate_of" value="src"' in html
    assert "&#34;max_depth&#34;: 3" in html
    response = client.post(
        "/configs/new", data=form(client, name="src_copy", duplicate_of="src", hyperparameters='{"max_depth": 3}')
    )
    assert response.status_code == 302
    copy = database.configs.find_one({"name": "src_copy"})
    assert copy["owner"] == "ana" and copy["hyperparameters"] == {"max_depth": 3}
    assert database.configs.count_documents({}) == 2


def test_detail_shows_fields_extras_and_training_area(client, store, database):
    seed(store, database)
    database.configs.update_one({"name": "alpha"}, {"$set": {"owner": "ana"}})
    html = text(client.get("/configs/alpha"))
    for fragment in (
        "random_forest",
        "columns.csv",
        "<code>a</code>",
        "owner",
        "ana",
        'id="training"',
        "20260105_103000_0123abcd",
        "roc_auc 0.71",
        "Run history",
    ):
        assert fragment in html, fragment
    assert "Not trained yet." in text(client.get("/configs/charlie"))
    oid = str(database.configs.find_one({"name": "charlie"})["_id"])
    assert client.get(f"/configs/{oid}").status_code == 200


def test_unknown_config_pages_are_404(client):
    for path in ("/configs/nope", "/configs/nope/edit", "/configs/nope/duplicate", "/configs/nope/delete"):
        response = client.get(path)
        assert response.status_code == 404 and "no config named &#39;nope&#39;" in text(response)


def test_delete_asks_for_confirmation_first(client, store, database):
    store.create({**BASE, "name": "d1", "model_type": "random_forest"})
    page = client.get("/configs/d1/delete")
    assert page.status_code == 200 and "Delete d1?" in text(page)
    assert database.configs.count_documents({}) == 1
    response = client.post("/configs/d1/delete", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 422 and database.configs.count_documents({}) == 1
    response = client.post("/configs/d1/delete", data={"csrf_token": csrf_token(client), "confirm": "d1"})
    assert response.status_code == 302 and response.headers["Location"] == "/configs/"
    assert database.configs.count_documents({}) == 0
    assert "Config d1 deleted." in text(client.get("/configs/"))
