"""Untrained base models in an ensemble: said beforehand (which, why in words, an estimate from past runs of
the same model type and data size), pickable in the web form ("train and include"), and the reasons shown
in words, not as internal codes."""

from __future__ import annotations

import html
import re

import pytest

from models.ensembles.plan import LEGACY, NO_OOF, NOT_TRAINED, plan_summary, retrain_plan, retrain_reason
from models.errors import describe_reason
from models.store.configs import ConfigStore
from models.training.estimate import count_rows, estimate_training, slow_warning
from models.training.train import train_config
from tests.helpers import cls_config
from tests.test_web_ensembles import wait_job
from web.testing import csrf_token


@pytest.fixture
def half_trained(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv))
    store.create(cls_config("lr2", games_csv))
    store.create(
        cls_config("rf", games_csv, "random_forest", hyperparameters={"n_estimators": 10, "max_depth": 3})
    )
    train_config(database, "lr")
    train_config(database, "rf")
    return store


def test_estimate_scales_past_runs_of_the_same_type_to_the_row_count(database, half_trained, games_csv, tmp_path):
    run = database.runs.find_one({"name": "lr"})
    rows = run["data"]["rows_used"]
    assert count_rows(str(games_csv)) == rows  # no missing values in the demo data
    doc = ConfigStore(database).get("lr2")
    same = estimate_training(database, doc)
    assert same.seconds == pytest.approx(run["durations"]["total_s"], rel=0.01)
    assert same.basis == f"from 1 past logistic_regression run scaled to {rows:,} rows"
    double = estimate_training(database, doc, rows=2 * rows)
    assert same.seconds < double.seconds < 2 * same.seconds  # evaluating and saving do not grow with the rows
    svm = estimate_training(database, {**doc, "model_type": "svm"})
    assert svm.seconds is None and svm.text() == "no estimate (no past svm runs to go by)"


def test_slow_model_types_are_warned_about():
    assert slow_warning({"name": "s", "model_type": "svm"}, 20_000).startswith(
        "s: svm on 20,000 rows may take a long time"
    )
    assert slow_warning({"name": "s", "model_type": "svm"}, 5_000) is None
    assert slow_warning({"name": "r", "model_type": "random_forest"}, 10**6) is None


def test_reasons_in_words(database, half_trained):
    store = ConfigStore(database)
    assert retrain_reason(store.get("lr2")) == NOT_TRAINED
    trained = store.get("lr")
    assert retrain_reason(trained) is None
    assert retrain_reason({k: v for k, v in trained.items() if k != "checksums"}) == LEGACY
    assert (
        retrain_reason({**trained, "artifacts": {k: v for k, v in trained["artifacts"].items() if k != "oof"}})
        == NO_OOF
    )
    assert describe_reason("field_missing") == "not trained yet"
    plan = retrain_plan(database, [store.get("lr"), store.get("lr2")])
    assert [p["name"] for p in plan] == ["lr2"] and plan[0]["reason"] == NOT_TRAINED
    assert plan_summary(plan).startswith("will train first: lr2 (not trained yet): about ")
    assert plan_summary([]).startswith("no base model needs training")


def test_api_says_beforehand_what_is_trained_first(api, database, half_trained):
    response = api("POST", "/api/ensembles", {"name": "e1", "base_models": ["lr", "lr2"]})
    assert response.status_code == 202
    body = response.get_json()
    assert [p["name"] for p in body["train_first"]] == ["lr2"]
    assert body["train_first"][0]["reason"] == "not trained yet"
    assert body["train_first"][0]["estimate"]["seconds"] > 0
    assert body["train_first_summary"].startswith("will train first: lr2 (not trained yet): about ")
    assert wait_job(api, body["job_id"])["status"] == "succeeded"


def test_web_form_trains_and_includes_an_untrained_model(page, api, database, half_trained):
    form = html.unescape(page.get("/ensembles/new").get_data(as_text=True))
    item = re.search(r'<li class="candidate[^"]*" data-name="lr2".*?</li>', form, re.S).group(0)
    assert "disabled" not in item and "train and include: not trained yet; about " in item
    data = {
        "name": "with_new",
        "base_models": ["lr", "lr2"],
        "meta_model": "logistic_regression",
        "stack_method": "auto",
        "csrf_token": csrf_token(page),
    }
    response = page.post("/ensembles/new", data=data, follow_redirects=True)
    shown = html.unescape(response.get_data(as_text=True))
    assert "will train first: lr2 (not trained yet): about " in shown
    job = database.jobs.find_one({"key": "ensemble:with_new"})
    assert wait_job(api, str(job["_id"]))["status"] == "succeeded"
    assert database.runs.count_documents({"name": "lr2"}) == 1
    detail = html.unescape(page.get("/ensembles/with_new").get_data(as_text=True))
    # lr2 was never trained: "trained" (its first training), not "retrained"
    row = re.search(r'<tr data-name="lr2" data-source="trained">(.*?)</tr>', detail, re.S).group(1)
    assert re.search(r"<dt>Trained \(first time\)</dt><dd>lr2</dd>\s*<dt>Retrained</dt><dd>none</dd>", detail)
    visible = re.sub(r"<[^>]+>", " ", row)  # the internal detail is only in the hover title
    assert "not trained yet" in visible and "field_missing" not in visible and "has no run_id" not in visible


def test_an_untrained_model_whose_data_is_gone_is_not_pickable(page, database, half_trained, games_csv, tmp_path):
    csv = tmp_path / "g.csv"
    csv.write_bytes(games_csv.read_bytes())
    ConfigStore(database).create(cls_config("gone", csv))
    csv.unlink()
    form = html.unescape(page.get("/ensembles/new").get_data(as_text=True))
    item = re.search(r'<li class="candidate[^"]*" data-name="gone".*?</li>', form, re.S).group(0)
    assert "disabled" in item and "not trained yet, and its training data cannot be used" in item


@pytest.mark.parametrize(
    "model_type,params", [("random_forest", {"n_estimators": 20}), ("logistic_regression", {})]
)
def test_an_estimate_is_close_to_the_duration_it_estimates(database, tmp_path, model_type, params):
    """Trained on 4,000 rows, the estimate for the same config on 16,000 rows is within 3x of how long that
    training then takes (a small run's fixed costs are not scaled up with the rows)."""
    from models.demo import write_games_csv

    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    write_games_csv(small, n_games=4_000)
    write_games_csv(large, n_games=16_000)
    store = ConfigStore(database)
    store.create(cls_config("est_small", small, model_type, hyperparameters=params))
    store.create(cls_config("est_large", large, model_type, hyperparameters=params))
    train_config(database, "est_large")  # once first: what a process loads on its first training is not timed
    database.runs.delete_many({"name": "est_large"})
    train_config(database, "est_small")
    estimate = estimate_training(database, store.get("est_large"))
    assert "1 past" in estimate.basis and estimate.rows == count_rows(str(large))
    actual = train_config(database, "est_large")["durations"]["total_s"]
    assert 1 / 3 <= estimate.seconds / actual <= 3, (estimate.seconds, actual)
