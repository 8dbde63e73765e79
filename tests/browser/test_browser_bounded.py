"""In a real browser under the Content-Security-Policy: no page breaks a CSP rule, the config form's
script still works, and the Cancel button stops a running training (the config keeps its previous run)."""

from __future__ import annotations

import time

import pytest
from helpers import cls_config

from models import jobs
from models.store.configs import ConfigStore
from models.training.train import train_config

pytestmark = pytest.mark.browser


def log_in(page, live_server, password):
    page.goto(f"{live_server}/login")
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/configs/")


def test_pages_break_no_csp_rule_and_cancel_stops_a_training(
    live_server, page, database, games_csv, admin_password
):
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: (
            violations.append(msg.text)
            if "Content Security Policy" in msg.text or "Refused to" in msg.text
            else None
        ),
    )
    store = ConfigStore(database)
    store.create(cls_config("slow", games_csv, "random_forest", hyperparameters={"n_estimators": 3}))
    previous = train_config(database, "slow")
    store.update("slow", {"hyperparameters": {"n_estimators": 2000}})
    log_in(page, live_server, admin_password)

    page.goto(f"{live_server}/configs/new")
    page.select_option("#task", "regression")  # the (now external) script hides classifier types
    assert page.locator('#model_type optgroup[data-task="classification"]').get_attribute("hidden") is not None
    page.select_option("#task", "classification")
    assert page.locator('#model_type optgroup[data-task="classification"]').get_attribute("hidden") is None

    page.goto(f"{live_server}/configs/slow")
    page.click("#train-button")
    page.wait_for_selector("#cancel-job-button")
    job = jobs.latest_job(database, "train:slow")
    deadline = time.monotonic() + 60  # until the worker process is inside the fit
    while store.get("slow")["status"] != "training" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert jobs.get_job(database, job["_id"])["status"] == "running"
    page.click("#cancel-job-button")
    page.wait_for_url(f"{live_server}/configs/slow")
    done = jobs.get_job(database, job["_id"])
    assert done["status"] == "failed" and done["error"]["code"] == "cancelled"
    assert "Job cancelled" in page.locator(".flash").first.inner_text()
    deadline = time.monotonic() + 10  # the worker process is stopped within seconds
    while store.get("slow")["status"] == "training" and time.monotonic() < deadline:
        time.sleep(0.1)
    config = store.get("slow")
    assert config["status"] == "failed" and config["error"]["code"] == "cancelled"
    assert config["run_id"] == previous["run_id"]
    page.goto(f"{live_server}/jobs/{job['_id']}")
    assert page.locator("#cancel-job-button").count() == 0
    assert "cancelled" in page.locator("#job-error").inner_text()
    assert violations == [], violations
