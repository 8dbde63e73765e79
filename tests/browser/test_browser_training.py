"""In a real browser: create a config, press Train Model, watch the progress bar reach done, see the metrics;
train a second config; Create Ensemble from the two and see where each base model came from; the jobs page
and a registry comparison. Screenshots of each key page go to test-output/screenshots/."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser


def login(page, live_server: str, password: str) -> None:
    page.goto(f"{live_server}/login")
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/configs/")


def create_config(page, live_server: str, name: str, model_type: str, hyper: str, csv: str) -> None:
    page.goto(f"{live_server}/configs/new")
    page.fill("#name", name)
    page.select_option("#task", "classification")
    page.select_option("#model_type", model_type)
    page.fill("#target", "home_win")
    page.fill("#training_csv", csv)
    page.fill("#features", "home_elo, away_elo\nhome_rest_days, away_rest_days")
    page.fill("#hyperparameters", hyper)
    page.fill("#cv_folds", "3")
    page.click("button:has-text('Create config')")
    page.wait_for_url(f"{live_server}/configs/{name}")


def train(page) -> None:
    """Press Train Model and follow the live progress bar until the page shows the finished job."""
    page.click("#train-button")
    page.wait_for_selector("#train-progress")
    # the bar is live while the job runs, then the page reloads with the finished job
    page.wait_for_selector("#train-progress[data-status=succeeded]", timeout=60_000)
    page.wait_for_selector("#metrics-table")


def test_train_two_models_then_create_an_ensemble(
    live_server, page, screenshot, games_csv, database, admin_password
):
    login(page, live_server, admin_password)
    create_config(page, live_server, "b_logreg", "logistic_regression", '{"C": 0.5}', str(games_csv))
    assert page.locator("#train-button").inner_text().strip() == "Train Model"
    train(page)

    config = database.configs.find_one({"name": "b_logreg"})
    run = database.runs.find_one({"run_id": config["run_id"]})
    assert page.locator("#current-run-id").inner_text() == config["run_id"]
    assert page.locator("#current-version").inner_text().startswith(config["version"])
    assert page.locator("#train-progress .progress-pct").inner_text() == "100%"
    accuracy = page.locator("#metrics-table tr[data-metric=accuracy] td").inner_text()
    assert float(accuracy) == pytest.approx(run["metrics"]["accuracy"], abs=5e-4)
    assert page.locator("#confusion-chart g.cell").count() == 4
    assert page.locator("#cv-chart g.bar").count() == 3
    assert page.locator("#artifacts-table tbody tr").count() == 5
    assert page.locator("#artifacts-verified").inner_text() == "all verified"
    assert page.locator("#train-button").inner_text().strip() == "Retrain Model"
    screenshot("10-config-trained")

    create_config(
        page, live_server, "b_forest", "random_forest", '{"n_estimators": 20, "max_depth": 4}', str(games_csv)
    )
    train(page)

    page.click("nav >> text=Ensembles")
    page.click("text=Create Ensemble")
    page.wait_for_url(f"{live_server}/ensembles/new")
    page.fill("#name", "b_stack")
    page.check("input[name=base_models][value=b_logreg]")
    assert page.locator("input[name=base_models][value=b_forest]").is_enabled()
    page.check("input[name=base_models][value=b_forest]")
    page.select_option("#meta_model", "logistic_regression")
    screenshot("11-ensemble-form")
    page.click("#create-ensemble")
    page.wait_for_url(f"{live_server}/ensembles/b_stack")
    page.wait_for_selector("#base-models-table", timeout=60_000)

    doc = database.ensembles.find_one({"name": "b_stack"})
    for base in doc["base_models"]:
        row = page.locator(f"#base-models-table tr[data-name={base['name']}]")
        assert row.get_attribute("data-source") == base["source"]
        assert row.locator(".badge.source").inner_text() == base["source"]
        assert base["source"] in ("cache", "artifacts")
    assert page.locator("#ensemble-metrics tr[data-metric=accuracy] td").count() == 3
    assert page.locator("#ensemble-chart g.bar").count() == 3
    screenshot("12-ensemble-detail")

    page.click("nav >> text=Jobs")
    page.wait_for_url(re.compile(r".*/jobs/$"))
    statuses = page.locator("#jobs-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == ["succeeded", "succeeded", "succeeded"]
    screenshot("13-jobs")

    page.click("nav >> text=Registry")
    page.wait_for_url(re.compile(r".*/registry/$"))
    boxes = page.locator("#runs-table input[name=run_id]")
    assert boxes.count() == 2
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare-button")
    page.wait_for_url(re.compile(r".*/registry/compare\?.*"))
    assert page.locator("#compare-table td.best").count() >= 1
    screenshot("14-registry-compare")

    page.click("#compare-table thead a >> nth=0")
    page.wait_for_selector("#lifecycle")
    page.click("#to-production")
    assert "to production" in page.locator(".flash-success").inner_text()
    screenshot("15-registry-run")
