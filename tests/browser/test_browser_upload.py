"""The config form's Upload a CSV and feature picker, in a real browser: upload a file, pick features and the
target from its header (with their detected types), save; and the picker for a path typed by hand."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TEAMS = ("BOS", "LAL", "NYK")
CSV = "elo,team,notes,home_win\n" + "".join(
    f"{1400 + i},{TEAMS[i % 3]},a long free text note about game {i},{i % 2}\n" for i in range(40)
)


def log_in(page, live_server, admin_password):
    page.goto(f"{live_server}/login")
    page.fill("#password", admin_password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/configs/")


def test_upload_a_csv_pick_features_and_save(live_server, page, screenshot, database, admin_password):
    log_in(page, live_server, admin_password)
    page.goto(f"{live_server}/configs/new")
    assert page.locator("#feature-picker").is_hidden()
    page.fill("#name", "uploaded_lr")
    page.select_option("#task", "classification")
    page.select_option("#model_type", "logistic_regression")
    page.set_input_files(
        "#upload_file", files=[{"name": "games.csv", "mimeType": "text/csv", "buffer": CSV.encode()}]
    )
    page.click("#upload-button")
    expect(page.locator("#training_csv")).to_have_value("@data/uploads/games.csv")
    assert "Uploaded @data/uploads/games.csv" in page.locator("#upload-status").inner_text()
    assert page.locator("#feature-picker").is_visible()
    columns = page.locator("#picker-columns label.picker-column")
    assert columns.count() == 4
    types = dict(
        zip(
            columns.locator(".picker-name").all_inner_texts(),
            columns.locator(".picker-type").all_inner_texts(),
            strict=True,
        )
    )
    assert types == {"elo": "numeric", "team": "categorical", "notes": "text", "home_win": "numeric"}
    assert "40 rows" in page.locator("#picker-rows").inner_text()
    assert (database.settings.data_dir / "uploads" / "games.csv").read_text() == CSV

    page.check("#picker-columns input[value=elo]")
    page.check("#picker-columns input[value=team]")
    page.select_option("#target_pick", "home_win")
    assert page.input_value("#target") == "home_win"
    assert page.input_value("#features") == "elo\nteam"
    assert page.locator("#picker-columns input[value=home_win]").is_disabled()  # the target is no feature
    screenshot("upload-01-feature-picker")

    page.click("button:has-text('Create config')")
    page.wait_for_url(f"{live_server}/configs/uploaded_lr")
    doc = database.configs.find_one({"name": "uploaded_lr"})
    assert doc["training_csv"] == "@data/uploads/games.csv"
    assert doc["features"] == ["elo", "team"] and doc["target"] == "home_win"
    assert doc["feature_types"] == {"elo": "numeric", "team": "categorical"}


def test_picker_follows_a_typed_path_and_names_the_roots_when_outside(
    live_server, page, games_csv, admin_password
):
    log_in(page, live_server, admin_password)
    page.goto(f"{live_server}/configs/new")
    page.fill("#training_csv", "/etc/passwd")
    page.locator("#training_csv").dispatch_event("change")
    error = page.locator("#picker-error")
    error.wait_for(state="visible")
    assert "DATA_ROOTS" in error.inner_text() and page.locator("#feature-picker").is_hidden()

    page.fill("#features", "home_elo")
    page.fill("#training_csv", str(games_csv))
    page.locator("#training_csv").dispatch_event("change")
    page.locator("#feature-picker").wait_for(state="visible")
    assert page.locator("#picker-error").is_hidden()
    assert page.locator("#picker-columns input[value=home_elo]").is_checked()  # what was typed stays picked
    page.check("#picker-columns input[value=away_elo]")
    assert page.input_value("#features") == "home_elo\naway_elo"
    page.uncheck("#picker-columns input[value=home_elo]")
    assert page.input_value("#features") == "away_elo"


def test_upload_refusal_is_shown_and_nothing_is_filled(live_server, page, admin_password, database):
    log_in(page, live_server, admin_password)
    page.goto(f"{live_server}/configs/new")
    page.set_input_files(
        "#upload_file", files=[{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}]
    )
    page.click("#upload-button")
    status = page.locator("#upload-status.is-error")
    status.wait_for(state="visible")
    assert "must end in .csv, .parquet or .pq" in status.inner_text()
    assert page.input_value("#training_csv") == ""
    assert not (database.settings.data_dir / "uploads" / "tool.exe").exists()
