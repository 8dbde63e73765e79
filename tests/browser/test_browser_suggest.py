"""In a real browser: press Suggest ensemble on the ensembles page, pick the compatible group, follow the job
to the ensemble's page and see the chosen models, their weights and the score by step."""

from __future__ import annotations

import pytest

from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.browser.test_browser_training import login
from tests.helpers import cls_config

pytestmark = pytest.mark.browser


def test_suggest_ensemble_from_the_ensembles_page(
    live_server, page, screenshot, games_csv, database, admin_password
):
    store = ConfigStore(database)
    store.create(cls_config("s_lr", games_csv, hyperparameters={"C": 0.2}))
    store.create(
        cls_config("s_rf", games_csv, "random_forest", hyperparameters={"n_estimators": 15, "max_depth": 4})
    )
    store.create(cls_config("s_nb", games_csv, "naive_bayes"))
    for name in ("s_lr", "s_rf", "s_nb"):
        train_config(database, name)
    login(page, live_server, admin_password)
    page.goto(f"{live_server}/ensembles/")
    page.click("#suggest-ensemble")
    page.wait_for_url(f"{live_server}/ensembles/suggest")
    assert page.locator("label.group-choice").count() == 1
    assert "s_lr, s_nb, s_rf" in page.locator("label.group-choice").inner_text()
    page.fill("#name", "b_auto")
    page.fill("#size", "8")
    screenshot("suggest_form")
    page.click("#suggest-submit")
    page.wait_for_url(f"{live_server}/ensembles/b_auto")
    page.wait_for_selector("#selection-weights", timeout=60_000)  # the pending page turns into the ensemble
    doc = database.ensembles.find_one({"name": "b_auto"})
    assert doc["kind"] == "weighted"
    rows = page.locator("#selection-weights tbody tr")
    assert rows.count() == len(doc["base_names"])
    shown = {
        rows.nth(i).get_attribute("data-name"): float(rows.nth(i).locator("td.num").inner_text())
        for i in range(rows.count())
    }
    assert shown == pytest.approx(dict(zip(doc["base_names"], doc["weights"])), abs=5e-4)
    assert page.locator("#selection-steps tbody tr").count() == 8
    assert page.locator("#selection-chart g.bar").count() == 8
    assert (
        "kept"
        in page.locator(f"#selection-steps tr[data-step='{doc['selection']['greedy']['best_step']}']").inner_text()
    )
    honest = page.locator("#honest-score").inner_text()
    assert "best single model" in honest and doc["selection"]["honest"]["best_single_name"] in honest
    screenshot("suggest_result")
