"""Ensembles from the web: the Create Ensemble form (compatible models only, reasons for the rest), the
creation job, the detail page (sources, reasons, times, metrics beside each base model), the JSON API and
ensemble predictions."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest
from helpers import FEATS, cls_config, reg_config

from models.ensembles.build import create_ensemble
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import wait_job
from web.formatting import format_number
from web.testing import csrf_token


@pytest.fixture
def trained(database, games_csv):
    """Two trained classifiers on the same data, one trained regressor, one untrained config."""
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv))
    store.create(
        cls_config("rf", games_csv, "random_forest", hyperparameters={"n_estimators": 15, "max_depth": 4})
    )
    store.create(reg_config("reg", games_csv))
    store.create(cls_config("fresh", games_csv))
    for name in ("lr", "rf", "reg"):
        train_config(database, name)
    return store


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def candidate(html_text: str, name: str) -> str:
    match = re.search(rf'<li class="candidate[^"]*" data-name="{name}".*?</li>', html_text, re.S)
    assert match, name
    return match.group(0)


def test_form_lists_compatible_models_and_greys_out_the_rest(page, trained):
    html_text = text(page.get("/ensembles/new"))
    for name in ("lr", "rf"):
        item = candidate(html_text, name)
        assert "disabled" not in item and 'class="reason" data-default=""' in item
    # an untrained config can be picked: it is trained first, with an estimate from past runs of its type
    fresh = candidate(html_text, "fresh")
    assert "disabled" not in fresh and 'data-group="' in fresh
    assert re.search(
        r"train and include: not trained yet; about [\d.]+ s \(from 1 past logistic_regression run "
        r"scaled to 1,500 rows\)",
        fresh,
    ), fresh
    reg = candidate(html_text, "reg")
    assert "disabled" in reg and "no other model shares" in reg
    assert '<script type="application/json" id="group-reasons">' in html_text
    # with a first choice, the others get the reason they differ from it
    narrowed = text(page.get("/ensembles/new?first=lr"))
    assert "different task from lr" in candidate(narrowed, "reg")
    assert "disabled" not in candidate(narrowed, "rf")


def test_create_through_the_form_runs_a_job_and_shows_sources(page, api, database, trained):
    data = {
        "name": "stack1",
        "base_models": ["lr", "rf"],
        "meta_model": "logistic_regression",
        "stack_method": "auto",
        "description": "web",
        "csrf_token": csrf_token(page),
    }
    response = page.post("/ensembles/new", data=data)
    assert response.status_code == 302 and response.headers["Location"].endswith("/ensembles/stack1")
    job = database.jobs.find_one({"key": "ensemble:stack1"})
    assert job["kind"] == "ensemble" and job["params"]["base_models"] == ["lr", "rf"]
    assert wait_job(api, str(job["_id"]))["status"] == "succeeded"

    doc = database.ensembles.find_one({"name": "stack1"})
    html_text = text(page.get("/ensembles/stack1"))
    for base in doc["base_models"]:
        row = re.search(rf'<tr data-name="{base["name"]}" data-source="([a-z]+)">(.*?)</tr>', html_text, re.S)
        assert row and row.group(1) == base["source"] and base["source"] in ("cache", "artifacts")
        assert base["run_id"] in row.group(2)
    table = html_text.split('id="ensemble-metrics"', 1)[1].split("</table>", 1)[0]
    acc = re.search(r'<tr data-metric="accuracy">(.*?)</tr>', table, re.S).group(1)
    values = re.findall(r'<td class="num[^"]*">([^<]*)</td>', acc)
    assert values == [format_number(doc["metrics"]["accuracy"])] + [
        format_number(b["metrics"]["accuracy"]) for b in doc["base_models"]
    ]
    assert 'class="num best"' in acc
    listing = text(page.get("/ensembles/"))
    assert "stack1" in listing and "logistic_regression" in listing


def test_form_errors_are_inline_and_queue_nothing(page, database, trained):
    token = csrf_token(page)
    response = page.post(
        "/ensembles/new",
        data={
            "name": "bad name!",
            "base_models": ["lr"],
            "meta_model": "logistic_regression",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    html_text = text(response)
    assert 'id="name-error"' in html_text and "at least two base models" in html_text
    response = page.post(
        "/ensembles/new",
        data={
            "name": "mixed",
            "base_models": ["lr", "reg"],
            "meta_model": "logistic_regression",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422 and "task differs" in text(response)
    response = page.post(
        "/ensembles/new",
        data={
            "name": "ghosts",
            "base_models": ["lr", "ghost"],
            "meta_model": "logistic_regression",
            "csrf_token": token,
        },
    )
    assert response.status_code == 404 and "ghost" in text(response)
    assert page.post("/ensembles/new", data={"name": "x", "base_models": ["lr", "rf"]}).status_code == 400  # CSRF
    assert database.jobs.count_documents({}) == 0 and database.ensembles.count_documents({}) == 0


def test_ensemble_api_create_list_get(api, database, trained):
    response = api("POST", "/api/ensembles", {"name": "e1", "base_models": ["lr", "rf"]})
    assert response.status_code == 202, response.get_data(as_text=True)
    # no meta_model: the answer says which default the task got, and why
    note = "logistic_regression (default for classification, as scikit-learn's StackingClassifier: LogisticRegression)"
    assert response.get_json()["meta_model"] == "logistic_regression"
    assert response.get_json()["meta_model_default"] == note
    job = wait_job(api, response.get_json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["result"]["meta_model"] == "logistic_regression" and job["result"]["meta_model_default"] == note
    assert {b["source"] for b in job["result"]["base_models"]} <= {"cache", "artifacts"}
    listed = api("GET", "/api/ensembles").get_json()
    assert listed["count"] == 1 and listed["ensembles"][0]["name"] == "e1"
    one = api("GET", "/api/ensembles/e1").get_json()
    assert one["base_names"] == ["lr", "rf"] and one["run_id"] == job["result"]["run_id"]
    assert all(not a["path"].startswith("/") for a in one["artifacts"].values())
    # the name is taken now
    again = api("POST", "/api/ensembles", {"name": "e1", "base_models": ["lr", "rf"]})
    assert again.status_code == 409 and again.get_json()["error"]["field"] == "name"


@pytest.mark.parametrize(
    "body, status, code, fragment",
    [
        ({"name": "e2", "base_models": ["lr"]}, 422, "validation_error", "at least two base models"),
        ({"name": "e2", "base_models": ["lr", "rf"], "meta_model": "magic"}, 422, "validation_error", "magic"),
        ({"name": "e2", "base_models": ["lr", "reg"]}, 422, "incompatible_base_models", "task differs"),
        ({"name": "e2", "base_models": ["lr", "ghost"]}, 404, "not_found", "ghost"),
        ({"name": "e2", "base_models": ["lr", "rf"], "colour": "red"}, 422, "validation_error", "colour"),
    ],
)
def test_ensemble_api_refusals_write_nothing(api, database, trained, body, status, code, fragment):
    response = api("POST", "/api/ensembles", body)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and fragment in error["message"]
    assert database.jobs.count_documents({}) == 0 and database.ensembles.count_documents({}) == 0


def test_ensemble_routes_need_auth_and_unknown_is_404(api, page, trained):
    assert api("GET", "/api/ensembles", auth=False).status_code == 401
    assert api("POST", "/api/ensembles", {"name": "x"}, auth=False).status_code == 401
    assert api("GET", "/api/ensembles/nope").status_code == 404
    assert page.get("/ensembles/nope").status_code == 404
    anonymous = page.application.test_client()
    assert anonymous.get("/ensembles/").status_code == 302


def test_pending_and_failed_creation_pages(page, database, trained):
    database.jobs.insert_one(
        {
            "kind": "ensemble",
            "key": "ensemble:late",
            "status": "failed",
            "progress": 0.3,
            "message": "failed: boom",
            "error": {"code": "x", "message": "base model exploded"},
            "params": {"name": "late"},
            "steps": [],
            "created_at": None,
            "duration_s": 1.0,
        }
    )
    html_text = text(page.get("/ensembles/late"))
    assert "could not be created" in html_text and "base model exploded" in html_text


def test_predict_with_an_ensemble(api, database, trained, games_csv):
    create_ensemble(database, "e3", ["lr", "rf"])
    rows = pd.read_csv(games_csv).head(4)[FEATS].to_dict(orient="records")
    body = api("POST", "/api/predict/ensemble/e3", {"rows": rows}).get_json()
    assert body["count"] == 4 and body["base_models"] == ["lr", "rf"]
    assert set(body["predictions"][0]) == {"prediction", "proba_0", "proba_1"}
    del rows[2]["away_def_rating"]
    response = api("POST", "/api/predict/ensemble/e3", {"rows": rows})
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "missing features: away_def_rating (rows 2)"


def test_api_regression_ensemble_without_meta_model_uses_ridge_cv(api, database, trained, games_csv):
    """Issue 25: over regression bases the default is StackingRegressor's (RidgeCV), not the classifier's."""
    trained.create(reg_config("reg2", games_csv, model_type="linear_regression"))
    train_config(database, "reg2")
    response = api("POST", "/api/ensembles", {"name": "r", "base_models": ["reg", "reg2"]})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["meta_model"] == "ridge_cv"
    assert (
        "default for regression, as scikit-learn's StackingRegressor" in response.get_json()["meta_model_default"]
    )
    assert wait_job(api, response.get_json()["job_id"])["status"] == "succeeded"
    doc = database.ensembles.find_one({"name": "r"})
    assert doc["meta_model"] == "ridge_cv" and doc["meta_model_default"].startswith(
        "ridge_cv (default for regression"
    )


def test_groups_name_their_data_set_by_file(page, trained, games_csv):
    html_text = text(page.get("/ensembles/new"))
    assert f"target home_win · data {games_csv.name} (" in html_text


def test_the_form_adds_a_new_version_and_the_list_shows_version_and_stage(page, api, database, trained):
    from models.ensembles.versions import promote

    def post(**extra):
        data = {
            "name": "verse",
            "base_models": ["lr", "rf"],
            "stack_method": "auto",
            "csrf_token": csrf_token(page),
        }
        return page.post("/ensembles/new", data={**data, **extra})

    assert post().status_code == 302
    assert wait_job(api, str(database.jobs.find_one({"key": "ensemble:verse"})["_id"]))["status"] == "succeeded"
    taken = post()
    assert taken.status_code == 409 and "Add as a new version" in text(taken)
    assert database.ensembles.count_documents({"name": "verse"}) == 1
    assert post(new_version="on").status_code == 302
    job = database.jobs.find_one({"key": "ensemble:verse"}, sort=[("created_at", -1)])
    assert wait_job(api, str(job["_id"]))["status"] == "succeeded"
    assert sorted(d["version"] for d in database.ensembles.find({"name": "verse"})) == [1, 2]
    promote(database, "verse@1")
    row = re.search(
        r'<td data-label="Version" class="ens-version">(.*?)</td>', text(page.get("/ensembles/")), re.S
    )
    assert row and re.sub(r"<[^>]+>", "", row.group(1)).split() == ["1", "production", "of", "2"]
