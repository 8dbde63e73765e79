"""The registry in the web app and /api/registry: search with filters and thresholds, best, compare (best per
row), lifecycle with history, delete (refused while an ensemble uses the run), export download."""

from __future__ import annotations

import html
import io
import json
import re
import tarfile
from typing import Any

import pytest
from helpers import cls_config

from models.ensembles.build import create_ensemble
from models.store.configs import ConfigStore
from models.training.train import train_config
from web.testing import csrf_token


@pytest.fixture
def runs(database, games_csv) -> dict[str, dict[str, Any]]:
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv, tags=["nba", "linear"]))
    store.create(
        cls_config(
            "rf", games_csv, "random_forest", hyperparameters={"n_estimators": 15, "max_depth": 4}, tags=["nba"]
        )
    )
    return {"lr": train_config(database, "lr"), "rf": train_config(database, "rf")}


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_search_filters_thresholds_and_sort(api, runs):
    body = api("GET", "/api/registry/runs").get_json()
    assert body["total"] == 2 and {r["run_id"] for r in body["items"]} == {r["run_id"] for r in runs.values()}
    assert [r["name"] for r in api("GET", "/api/registry/runs?name=rf").get_json()["items"]] == ["rf"]
    assert api("GET", "/api/registry/runs?tag=linear").get_json()["total"] == 1
    assert api("GET", "/api/registry/runs?model_type=random_forest&task=classification").get_json()["total"] == 1
    lo = min(r["metrics"]["accuracy"] for r in runs.values())
    hi = max(r["metrics"]["accuracy"] for r in runs.values())
    if lo < hi:
        found = api("GET", f"/api/registry/runs?min=accuracy:{hi}").get_json()["items"]
        assert [r["metrics"]["accuracy"] for r in found] == [hi]
    ordered = api("GET", "/api/registry/runs?sort=accuracy").get_json()["items"]
    assert [r["metrics"]["accuracy"] for r in ordered] == sorted((lo, hi), reverse=True)
    ordered = api("GET", "/api/registry/runs?sort=accuracy&order=asc").get_json()["items"]
    assert [r["metrics"]["accuracy"] for r in ordered] == sorted((lo, hi))
    assert api("GET", "/api/registry/runs?max=log_loss=0").get_json()["total"] == 0
    json.dumps(body)


@pytest.mark.parametrize(
    "query, field",
    [
        ("min=accuracy", "min"),
        ("min=accuracy:high", "min_metrics.accuracy"),
        ("status=gone", "status"),
        ("order=up", "order"),
        ("page=0", "page"),
        ("per_page=x", "per_page"),
        ("sort=a-b", "sort"),
    ],
)
def test_search_bad_parameters_are_422(api, runs, query, field):
    response = api("GET", f"/api/registry/runs?{query}")
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["field"] == field


def test_best_and_empty_registry(api, database, runs):
    best = api("GET", "/api/registry/best?metric=accuracy").get_json()["run"]
    assert best["metrics"]["accuracy"] == max(r["metrics"]["accuracy"] for r in runs.values())
    assert api("GET", "/api/registry/best?metric=accuracy&name=nobody").get_json() == {"run": None}
    response = api("GET", "/api/registry/best")
    assert response.status_code == 422 and response.get_json()["error"]["field"] == "metric"
    assert api("GET", "/api/registry/best?metric=accuracy", auth=False).status_code == 401


def test_compare_api_and_page_highlight_the_best(api, page, runs):
    ids = [runs["lr"]["run_id"], runs["rf"]["run_id"]]
    table = api("GET", f"/api/registry/compare?run_id={ids[0]}&run_id={ids[1]}").get_json()
    assert [r["run_id"] for r in table["runs"]] == ids
    metrics = next(s for s in table["sections"] if s["title"] == "metrics")
    acc = next(r for r in metrics["rows"] if r["key"] == "accuracy")
    html_text = text(page.get(f"/registry/compare?run_id={ids[0]}&run_id={ids[1]}"))
    row = re.search(r'<tr class="[^"]*" data-key="accuracy">(.*?)</tr>', html_text, re.S).group(1)
    cells = re.findall(r'<td class="num ?(best)?">', row)
    assert [i for i, c in enumerate(cells) if c == "best"] == acc["best"]
    assert api("GET", f"/api/registry/compare?run_id={ids[0]}").status_code == 422
    assert api("GET", f"/api/registry/compare?run_id={ids[0]},nope").status_code == 404
    response = page.get(f"/registry/compare?run_id={ids[0]}")
    assert response.status_code == 302  # back to the search with a message


def test_search_page_filters_and_bad_input(page, runs):
    html_text = text(page.get("/registry/?name=lr"))
    assert runs["lr"]["run_id"] in html_text and runs["rf"]["run_id"] not in html_text
    assert 'id="compare-button"' in html_text
    response = page.get("/registry/?min=accuracy")
    assert response.status_code == 422 and "write thresholds as metric=value" in text(response)


def test_lifecycle_api_promote_demotes_and_records_history(api, database, runs):
    lr, rf = runs["lr"]["run_id"], runs["rf"]["run_id"]
    response = api("POST", f"/api/registry/runs/{lr}/status", {"status": "production", "reason": "best"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["to"] == "production"
    run = api("GET", f"/api/registry/runs/{lr}").get_json()
    assert run["status"] == "production" and run["history"][-1]["by"] == "api-token"
    assert run["history"][-1]["reason"] == "best"
    bad = api("POST", f"/api/registry/runs/{lr}/status", {"status": "trained"})
    assert bad.status_code == 422 and "cannot move" in bad.get_json()["error"]["message"]
    assert api("POST", f"/api/registry/runs/{lr}/status", {}).status_code == 422
    assert api("POST", f"/api/registry/runs/{lr}/status", {"status": "staging", "x": 1}).status_code == 422
    assert api("POST", "/api/registry/runs/nope/status", {"status": "staging"}).status_code == 404
    assert api("POST", f"/api/registry/runs/{rf}/status", {"status": "staging"}, auth=False).status_code == 401
    assert database.runs.find_one({"run_id": lr})["status"] == "production"


def test_lifecycle_and_history_on_the_run_page(page, database, runs):
    lr = runs["lr"]["run_id"]
    html_text = text(page.get(f"/registry/runs/{lr}"))
    assert 'id="to-production"' in html_text and 'id="to-staging"' in html_text
    response = page.post(f"/registry/runs/{lr}/status", data={"to": "staging", "csrf_token": csrf_token(page)})
    assert response.status_code == 302
    html_text = text(page.get(f"/registry/runs/{lr}"))
    assert f"Run {lr} moved from trained to staging." in html_text
    history = html_text.split('id="history-table"', 1)[1].split("</table>", 1)[0]
    assert "<td>trained</td><td>staging</td><td>admin</td>" in history
    response = page.post(f"/registry/runs/{lr}/status", data={"to": "bogus", "csrf_token": csrf_token(page)})
    assert "Status not changed" in text(page.get(f"/registry/runs/{lr}"))
    assert database.runs.find_one({"run_id": lr})["status"] == "staging"
    assert page.post(f"/registry/runs/{lr}/status", data={"to": "production"}).status_code == 400  # no CSRF


def test_delete_refused_while_an_ensemble_uses_the_run(api, page, database, runs):
    create_ensemble(database, "ens", ["lr", "rf"])
    lr = runs["lr"]["run_id"]
    response = api("DELETE", f"/api/registry/runs/{lr}")
    assert response.status_code == 409 and "ens" in response.get_json()["error"]["message"]
    confirm = text(page.get(f"/registry/runs/{lr}/delete"))
    assert 'id="delete-blocked"' in confirm and "ens" in confirm
    response = page.post(f"/registry/runs/{lr}/delete", data={"confirm": lr, "csrf_token": csrf_token(page)})
    assert response.status_code == 409 and "Run not deleted" in text(response) and "ens" in text(response)
    assert database.runs.count_documents({"run_id": lr}) == 1
    assert api("DELETE", f"/api/registry/runs/{lr}?force=maybe").status_code == 422
    assert api("DELETE", f"/api/registry/runs/{lr}", auth=False).status_code == 401
    assert database.runs.count_documents({"run_id": lr}) == 1 and database.ensembles.count_documents({}) == 1


def test_delete_with_confirmation(api, page, database, runs, settings):
    rf = runs["rf"]["run_id"]
    response = page.post(f"/registry/runs/{rf}/delete", data={"confirm": "wrong", "csrf_token": csrf_token(page)})
    assert response.status_code == 422 and database.runs.count_documents({"run_id": rf}) == 1
    response = page.post(f"/registry/runs/{rf}/delete", data={"confirm": rf, "csrf_token": csrf_token(page)})
    assert response.status_code == 302
    assert database.runs.count_documents({"run_id": rf}) == 0
    assert not list(settings.artifact_dir.glob(f"{rf}_*"))
    assert database.configs.find_one({"name": "rf"}).get("run_id") is None
    lr = runs["lr"]["run_id"]
    body = api("DELETE", f"/api/registry/runs/{lr}").get_json()
    assert body["run_id"] == lr and body["config"]["action"] == "cleared"
    assert api("DELETE", f"/api/registry/runs/{lr}").status_code == 404


def test_export_download_is_a_verified_archive(api, page, runs):
    lr = runs["lr"]["run_id"]
    response = api("GET", f"/api/registry/runs/{lr}/export")
    assert response.status_code == 200 and response.mimetype == "application/gzip"
    assert 'filename="lr-1.0.0.tar.gz"' in response.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(response.data), mode="r:gz") as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["run_id"] == lr and any(n.endswith("_model.pkl") for n in names)
    assert page.get(f"/api/registry/runs/{lr}/export").status_code == 200  # the page's link (session)
    assert api("GET", "/api/registry/runs/nope/export").status_code == 404
    assert api("GET", f"/api/registry/runs/{lr}/export", auth=False).status_code == 401
