"""Every main page at 1280 px and at 390 px (a phone): no page scrolls sideways, the top bar wraps so
Registry and Log out stay reachable, Delete is on screen, SHA-256 values are truncated with the full value
in a title. Screenshots of each page at both widths go to test-output/screenshots/."""

from __future__ import annotations

import pytest

from models.ensembles.build import create_ensemble
from models.registry.lifecycle import set_status
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.browser.conftest import SCREENSHOTS
from tests.helpers import cls_config

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture
def world(database, games_csv):
    """Trained configs with long names, an ensemble, runs in the registry, jobs: every page has content."""
    store = ConfigStore(database)
    names = ["home_win_logistic_regression_with_a_long_name", "home_win_random_forest_baseline"]
    store.create(cls_config(names[0], games_csv, description="a config whose name is long on purpose"))
    store.create(cls_config(names[1], games_csv, "random_forest", hyperparameters={"n_estimators": 10}))
    runs = [train_config(database, n) for n in names]
    set_status(database, runs[0]["run_id"], "production")
    create_ensemble(database, "stack_of_two_models_with_a_long_name", names, "logistic_regression")
    return {"names": names, "runs": [r["run_id"] for r in runs]}


def pages(world) -> dict[str, str]:
    a, _b = world["names"]
    r1, r2 = world["runs"]
    return {
        "configs": "/configs/",
        "config-new": "/configs/new",
        "config-detail": f"/configs/{a}",
        "config-delete": f"/configs/{a}/delete",
        "ensembles": "/ensembles/",
        "ensemble-new": "/ensembles/new",
        "ensemble-detail": "/ensembles/stack_of_two_models_with_a_long_name",
        "jobs": "/jobs/",
        "registry": "/registry/",
        "registry-run": f"/registry/runs/{r1}",
        "registry-compare": f"/registry/compare?run_id={r1}&run_id={r2}",
    }


@pytest.mark.parametrize("device", list(WIDTHS))
def test_no_page_scrolls_sideways(browser, live_server, admin_password, world, device):
    width = WIDTHS[device]
    context = browser.new_context(viewport={"width": width, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{live_server}/login")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(SCREENSHOTS / f"width-{device}-login.png"), full_page=True)
        page.fill("#password", admin_password)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server}/configs/")
        too_wide = {}
        for label, path in pages(world).items():
            page.goto(f"{live_server}{path}")
            page.wait_for_load_state("load")
            page.screenshot(path=str(SCREENSHOTS / f"width-{device}-{label}.png"), full_page=True)
            sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            if sizes[0] > sizes[1]:
                too_wide[label] = [
                    *sizes,
                    page.evaluate(
                        "Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > "
                        "window.innerWidth && !e.closest('.table-scroll')).slice(0, 4).map(e => e.tagName + '.' + "
                        "e.className + '#' + e.id)"
                    ),
                ]
            # the top bar: every link and Log out inside the viewport
            for box in page.locator(".topbar a, .topbar button").evaluate_all(
                "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.textContent.trim(), "
                "r.left, r.right, r.width]; })"
            ):
                assert box[3] > 0 and box[1] >= 0 and box[2] <= width, (label, box)
        assert too_wide == {}, too_wide
        # the configs table: name, status, model type and metric on screen without scrolling inside it
        page.goto(f"{live_server}/configs/")
        cells = page.locator("#configs-table th").evaluate_all(
            "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.textContent.trim(), r.right, "
            "r.width]; })"
        )
        shown = {label.split()[0]: (right, w) for label, right, w in cells if w > 0}
        assert {"Name", "Status", "Model", "Primary"} <= set(shown), cells
        assert all(right <= width for right, _ in shown.values()), (width, cells)
        if width < 640:
            assert "Task" not in shown and "Last" not in shown, cells
        # Delete is reachable on a config's page, and SHA-256 values are short with the full value in a title
        page.goto(f"{live_server}/configs/{world['names'][0]}")
        delete = page.locator("a:has-text('Delete')").first.bounding_box()
        assert delete and delete["x"] >= 0 and delete["x"] + delete["width"] <= width
        checksum = page.locator("code.checksum").first
        assert len(checksum.get_attribute("title")) == 64 and len(checksum.inner_text()) <= 13
    finally:
        context.close()
