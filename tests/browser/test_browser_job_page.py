"""In a real browser: while a training job runs, its page's step table, elapsed time and time left follow
the live bar (no reload)."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from models.store.configs import ConfigStore
from tests.helpers import cls_config

pytestmark = pytest.mark.browser


def test_step_table_keeps_up_with_the_live_bar(live_server, page, admin_password, database, games_csv):
    ConfigStore(database).create(
        cls_config("slow", games_csv, "random_forest", hyperparameters={"n_estimators": 500})
    )
    page.goto(f"{live_server}/login")
    page.fill("#password", admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/configs/")
    request = urllib.request.Request(
        f"{live_server}/api/configs/slow/train",
        method="POST",
        data=b"",
        headers={"Authorization": "Bearer " + "b" * 32},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        job_id = json.load(response)["job_id"]
    page.goto(f"{live_server}/jobs/{job_id}")
    first_rows = page.locator("#job-steps tbody tr").count()
    # without reloading, the table grows as the job reports new steps, and elapsed time counts up
    # (polled from here: the page's Content-Security-Policy forbids the eval that wait_for_function uses)
    rows = page.locator("#job-steps tbody tr")
    deadline = time.monotonic() + 60
    while rows.count() <= first_rows and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert rows.count() > first_rows, "the step table did not grow without a reload"
    deadline = time.monotonic() + 10
    while not page.locator("#job-elapsed").inner_text().endswith(" s") and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert page.locator("#job-elapsed").inner_text().endswith(" s")
    texts = page.locator("#job-steps tbody tr td:first-child").all_inner_texts()
    assert all(t.endswith(" UTC") and t.count(":") == 2 for t in texts), texts
    page.wait_for_selector(".job-progress[data-status=succeeded]", timeout=90_000)
