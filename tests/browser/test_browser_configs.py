"""Log in, create a config through the form, find it in the table, open its page: in a real browser."""

from __future__ import annotations

import re

import pytest

from models.store.datarefs import to_stored

pytestmark = pytest.mark.browser


def test_login_create_config_and_open_it(live_server, page, screenshot, games_csv, database, admin_password):
    page.goto(f"{live_server}/")
    assert page.url.startswith(f"{live_server}/login")
    screenshot("01-login")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    assert page.locator(".flash-error").inner_text() == "Wrong password."
    page.fill("#password", admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/configs/")
    assert "No configs yet" in page.content()

    page.click("text=New config")
    page.wait_for_url(f"{live_server}/configs/new")
    page.fill("#name", "browser_rf")
    page.select_option("#task", "classification")
    page.select_option("#model_type", "random_forest")
    page.fill("#target", "home_win")
    page.fill("#training_csv", str(games_csv))
    page.fill("#features", "home_elo, away_elo\nhome_rest_days")
    page.fill("#hyperparameters", "{not json")
    page.fill("#tags", "nba, browser")
    page.click("button:has-text('Create config')")
    assert page.locator("#hyperparameters-error").inner_text().startswith("malformed JSON")
    assert database.configs.count_documents({}) == 0
    screenshot("02-form-errors")

    page.fill("#hyperparameters", '{"n_estimators": 25, "max_depth": 5}')
    page.click("button:has-text('Create config')")
    page.wait_for_url(f"{live_server}/configs/browser_rf")
    assert "Config browser_rf created." in page.locator(".flash-success").inner_text()
    screenshot("03-config-detail")

    doc = database.configs.find_one({"name": "browser_rf"})
    assert doc["features"] == ["home_elo", "away_elo", "home_rest_days"]
    assert doc["hyperparameters"] == {"n_estimators": 25, "max_depth": 5}
    # stored portable (@<root>/<path>, see README: Two machines)
    assert doc["training_csv"] == to_stored(str(games_csv), database.settings) and doc["tags"] == [
        "nba",
        "browser",
    ]

    page.click("nav >> text=Configs")
    page.wait_for_url(re.compile(r".*/configs/$"))
    row = page.locator("#configs-table tbody tr")
    assert row.count() == 1
    cells = [c.strip() for c in row.first.locator("td").all_inner_texts()]
    assert cells[:4] == ["browser_rf", "new", "random_forest", "classification"]
    screenshot("04-configs-table")

    page.click("#configs-table >> text=browser_rf")
    page.wait_for_url(f"{live_server}/configs/browser_rf")
    fields = page.locator("#config-fields").inner_text()
    assert (
        "random_forest" in fields
        and "home_win" in fields
        and to_stored(str(games_csv), database.settings) in fields
    )
    assert page.locator("#training").is_visible()
