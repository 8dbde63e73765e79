"""Every page, with real content (long names, many runs, a job, a stacked and a suggested ensemble), at
1280 px and at 390 px (a phone): no page scrolls sideways; at 1280 px every table shows all its columns
without scrolling inside its box; at 390 px every table is either stacked cards or fits whole (the configs
table keeps name, status, model type and metric); names wrap only after "_", never inside a word; every
chart label is at least 11 px as drawn. The top bar wraps so Registry and Log out stay reachable, Delete is
on screen, SHA-256 values are truncated with the full value in a title. Screenshots of each page at both
widths go to test-output/screenshots/ (width-<device>-<page>.png).

``layout_problems`` does all the checks on the page that is open; ``test_the_checker_sees_a_wide_page``
shows it reports an element that makes the page scroll sideways, a mid-word break and a small label."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from models.ensembles.build import create_ensemble
from models.ensembles.suggest import suggest_ensemble
from models.registry.lifecycle import set_status
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.browser.conftest import SCREENSHOTS
from tests.helpers import cls_config

pytestmark = pytest.mark.browser

WIDTHS = {"desktop": 1280, "phone": 390}
MIN_CHART_FONT_PX = 11
API_TOKEN = "b" * 32  # the live_server fixture's API token

LR = "home_win_logistic_regression_with_a_long_name"
RF = "home_win_random_forest_baseline_model"
NB = "home_win_naive_bayes_elo_and_rest_days"
STACK = "stack_of_three_models_with_a_long_name"
SUGGESTED = "suggested_greedy_blend_of_three"

# Runs in the page (one call, no eval: the pages' Content-Security-Policy forbids it) and returns
# {"overflow": [...], "tables": [...], "breaks": [...], "fonts": [...]}: an empty list each when the
# page is right. ``phone`` is true below 640 px, where every table must be stacked cards or fit whole.
CHECKS = r"""(phone) => {
  const vw = document.documentElement.clientWidth;
  const describe = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
    (typeof e.className === 'string' && e.className ? '.' + e.className.trim().split(/\s+/).join('.') : '');
  const visible = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const out = {overflow: [], tables: [], breaks: [], fonts: []};
  // 1. the page itself does not scroll sideways, and no element sticks out of the viewport
  const doc = document.documentElement;
  if (doc.scrollWidth > vw || document.body.scrollWidth > vw) {
    out.overflow.push('page ' + Math.max(doc.scrollWidth, document.body.scrollWidth) + ' px wide, viewport ' + vw);
  }
  for (const e of document.querySelectorAll('body *')) {
    if (e.parentElement.closest('svg, pre') || !visible(e)) continue;
    const r = e.getBoundingClientRect();
    if (r.right > vw + 0.5 || r.left < -0.5) {
      out.overflow.push(describe(e) + ' spans ' + Math.round(r.left) + '..' + Math.round(r.right));
    }
    const cs = getComputedStyle(e);
    if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1 && cs.overflowX === 'visible' && cs.display !== 'inline') {
      out.overflow.push('the content of ' + describe(e) + ' is ' + e.scrollWidth + ' px wide in ' + e.clientWidth + ' px');
    }
    if (out.overflow.length > 6) break;
  }
  // 2. tables: no scrolling inside their box; on a phone stacked (rows are blocks or grids) or whole in view
  for (const t of document.querySelectorAll('table')) {
    if (!visible(t)) continue;
    const box = t.parentElement;
    const name = describe(t);
    if (box.scrollWidth > box.clientWidth + 1) {
      out.tables.push(name + ': ' + box.scrollWidth + ' px wide in a ' + box.clientWidth + ' px box');
    }
    const row = t.querySelector('tbody tr');
    const stacked = row !== null && getComputedStyle(row).display !== 'table-row';
    const r = t.getBoundingClientRect();
    if (phone && !stacked && (r.right > vw + 0.5 || t.scrollWidth > t.clientWidth + 1)) {
      out.tables.push(name + ': neither stacked nor inside the viewport (right edge ' + Math.round(r.right) + ')');
    }
    for (const cell of t.querySelectorAll('td, th')) {
      if (visible(cell) && cell.getBoundingClientRect().right > Math.min(r.right, vw) + 0.5) {
        out.tables.push(name + ': a cell sticks out: ' + cell.textContent.trim().slice(0, 30));
        break;
      }
    }
  }
  // 3. names (cells of class "name", tags, headings) break lines only after "_", "-", "/", "." or a space
  const chars = (e) => {
    // [character, top, bottom] of each drawn character; a <br> or a space at a line's end counts as a space
    const walker = document.createTreeWalker(e, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
    const found = [];
    const space = () => found.push([' ', ...(found.length ? found[found.length - 1].slice(1) : [0, 0])]);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (n.nodeType === Node.ELEMENT_NODE) {
        if (n.tagName === 'BR') space();
        continue;
      }
      for (let i = 0; i < n.data.length; i++) {
        const range = document.createRange();
        range.setStart(n, i);
        range.setEnd(n, i + 1);
        const rect = Array.from(range.getClientRects()).find((q) => q.width > 0);
        if (rect) found.push([n.data[i], rect.top, rect.bottom]);
        else if (/\s/.test(n.data[i])) space();
      }
    }
    return found;
  };
  for (const e of document.querySelectorAll('td.name, th.name, .tag.name, h1, #configs-table td:first-child')) {
    if (!visible(e)) continue;
    const cs = chars(e);
    for (let i = 1; i < cs.length; i++) {
      const [prev, , prevBottom] = cs[i - 1];
      const [ch, top] = cs[i];
      if (top >= prevBottom - 2 && !/[\s_\-\/.,·(]/.test(prev) && !/\s/.test(ch)) {
        const text = cs.map((c) => c[0]).join('');
        out.breaks.push(describe(e) + ': "' + text.slice(Math.max(0, i - 12), i) + '|' + text.slice(i, i + 12) + '"');
        break;
      }
    }
  }
  // 4. chart text as drawn: its font size times the SVG's scale (drawn width / viewBox width)
  for (const svg of document.querySelectorAll('svg')) {
    if (svg.parentElement.closest('svg') || !visible(svg)) continue;
    const vb = svg.viewBox && svg.viewBox.baseVal;
    const scale = vb && vb.width ? svg.getBoundingClientRect().width / vb.width : 1;
    for (const text of svg.querySelectorAll('text')) {
      const px = parseFloat(getComputedStyle(text).fontSize) * scale;
      if (px < 11 - 0.01) {
        out.fonts.push(describe(svg) + ' "' + text.textContent.slice(0, 30) + '" ' + px.toFixed(1) + ' px');
      }
      const t = text.getBoundingClientRect();
      const s = svg.getBoundingClientRect();
      if (t.width > 0 && (t.right > s.right + 1 || t.left < s.left - 1)) {
        out.fonts.push(describe(svg) + ' "' + text.textContent.slice(0, 30) + '" is cut at the chart edge');
      }
    }
  }
  return out;
}"""


def layout_problems(page, width: int) -> dict[str, list[str]]:
    """What is wrong with the open page's layout at ``width`` (see ``CHECKS``); only non-empty entries."""
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    found = page.evaluate(CHECKS, width < 640)
    return {kind: problems for kind, problems in found.items() if problems}


def _api(live_server: str, method: str, path: str) -> dict:
    request = urllib.request.Request(
        f"{live_server}{path}",
        method=method,
        data=b"" if method == "POST" else None,
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def world(database, games_csv, live_server):
    """Trained configs with long names and many runs, a job started from the API, a stacked ensemble and
    a suggested (greedy) one, a run in production: every page has content."""
    store = ConfigStore(database)
    store.create(cls_config(LR, games_csv, description="a config whose name is long on purpose"))
    store.create(cls_config(RF, games_csv, "random_forest", hyperparameters={"n_estimators": 8, "max_depth": 3}))
    store.create(cls_config(NB, games_csv, "naive_bayes"))
    runs = [train_config(database, n)["run_id"] for n in (LR, RF, NB)]
    for _ in range(3):  # retrained: the registry lists 7 runs with the one below
        runs.append(train_config(database, LR)["run_id"])
    set_status(database, runs[0], "production")
    job_id = _api(live_server, "POST", f"/api/configs/{RF}/train")["job_id"]
    deadline = time.monotonic() + 60
    while _api(live_server, "GET", f"/api/jobs/{job_id}")["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "the training job did not finish"
        time.sleep(0.2)
    create_ensemble(database, STACK, [LR, RF, NB], "logistic_regression")
    suggest_ensemble(database, SUGGESTED, [LR, RF, NB], size=6)
    return {"runs": runs, "job_id": job_id}


def pages(world) -> dict[str, str]:
    r1, r2, r3 = world["runs"][:3]
    return {
        "configs": "/configs/",
        "config-new": "/configs/new",
        "config-edit": f"/configs/{LR}/edit",
        "config-detail": f"/configs/{LR}",  # the training result: metrics, charts, artifacts, run history
        "config-delete": f"/configs/{LR}/delete",
        "ensembles": "/ensembles/",
        "ensemble-new": "/ensembles/new",
        "ensemble-suggest": "/ensembles/suggest",
        "ensemble-detail": f"/ensembles/{STACK}",
        "ensemble-suggested": f"/ensembles/{SUGGESTED}",  # weights, score by step, the step table
        "ensemble-predict": f"/ensembles/{STACK}#predict",
        "ensemble-delete": f"/ensembles/{STACK}/delete",
        "jobs": "/jobs/",
        "job": f"/jobs/{world['job_id']}",
        "registry": "/registry/",
        "registry-run": f"/registry/runs/{r1}",
        "registry-compare": f"/registry/compare?run_id={r1}&run_id={r2}&run_id={r3}",
        "registry-delete": f"/registry/runs/{r2}/delete",
    }


def _login(page, live_server: str, password: str) -> None:
    page.goto(f"{live_server}/login")
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/configs/")


@pytest.mark.parametrize("device", list(WIDTHS))
def test_every_page_fits(browser, live_server, admin_password, world, device):
    width = WIDTHS[device]
    context = browser.new_context(viewport={"width": width, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{live_server}/login")
        page.screenshot(path=str(SCREENSHOTS / f"width-{device}-login.png"), full_page=True)
        problems = {}
        if found := layout_problems(page, width):
            problems["login"] = found
        _login(page, live_server, admin_password)
        for label, path in pages(world).items():
            page.goto(f"{live_server}{path}")
            page.wait_for_load_state("load")
            assert page.locator(".error-page").count() == 0, (label, path)
            if found := layout_problems(page, width):
                problems[label] = found
            page.screenshot(path=str(SCREENSHOTS / f"width-{device}-{label}.png"), full_page=True)
            # the top bar: every link and Log out inside the viewport
            for box in page.locator(".topbar a, .topbar button").evaluate_all(
                "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.textContent.trim(), "
                "r.left, r.right, r.width]; })"
            ):
                assert box[3] > 0 and box[1] >= 0 and box[2] <= width, (label, box)
        assert problems == {}, json.dumps(problems, indent=1)

        # real content: many runs in the registry, the suggested ensemble's step table
        page.goto(f"{live_server}/registry/")
        assert page.locator("#runs-table tbody tr").count() >= 6
        if width >= 640:  # rows of one or two lines, not ~107 px
            heights = page.locator("#runs-table tbody tr").evaluate_all(
                "rows => rows.map(r => r.getBoundingClientRect().height)"
            )
            assert max(heights) < 70, heights
        page.goto(f"{live_server}/ensembles/{SUGGESTED}")
        assert page.locator("#selection-steps tbody tr").count() == 6
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
        page.goto(f"{live_server}/configs/{LR}")
        delete = page.locator("a:has-text('Delete')").first.bounding_box()
        assert delete and delete["x"] >= 0 and delete["x"] + delete["width"] <= width
        checksum = page.locator("code.checksum").first
        assert len(checksum.get_attribute("title")) == 64 and len(checksum.inner_text()) <= 13
    finally:
        context.close()


def test_the_checker_sees_a_wide_page(browser, live_server, admin_password):
    """``layout_problems`` is not blind: a too-wide element, a table scrolling in its box, a name broken
    inside a word and a small chart label are each reported; the same page without them passes."""
    context = browser.new_context(viewport={"width": 390, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _login(page, live_server, admin_password)
        page.goto(f"{live_server}/jobs/")
        assert layout_problems(page, 390) == {}
        page.evaluate(
            """() => {
              const main = document.querySelector('main') || document.body;
              const wide = document.createElement('div');
              wide.id = 'too-wide';
              wide.style.width = '700px';
              wide.textContent = 'wide';
              main.appendChild(wide);
            }"""
        )
        found = layout_problems(page, 390)
        assert any("too-wide" in p for p in found["overflow"]), found
        assert any("page" in p for p in found["overflow"]), found
        page.evaluate("document.getElementById('too-wide').remove()")
        page.evaluate(
            """() => {
              const main = document.querySelector('main') || document.body;
              const box = document.createElement('div');
              box.className = 'table-scroll';
              box.innerHTML = '<table class="table" id="wide-table"><tbody><tr>' +
                '<td>one_long_cell_value_that_is_wide</td>'.repeat(6) + '</tr></tbody></table>' +
                '<table class="table" style="width: 120px"><tbody><tr><td class="name" id="mid-word" style="' +
                'overflow-wrap: anywhere">hist_gradient_boosting</td></tr></tbody></table>' +
                '<svg id="tiny-chart" width="100" height="20" viewBox="0 0 400 80">' +
                '<text x="0" y="40" style="font-size: 12px">small</text></svg>';
              main.appendChild(box);
            }"""
        )
        found = layout_problems(page, 390)
        assert any("wide-table" in p for p in found["tables"]), found
        assert any("mid-word" in p for p in found["breaks"]), found
        assert any("tiny-chart" in p and "3.0 px" in p for p in found["fonts"]), found
    finally:
        context.close()
