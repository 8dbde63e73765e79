"""Train Model from the web: the API (202 -> poll -> succeeded), one job per config, the jobs API and pages,
the config page after training (equal to MongoDB), artifacts info, model/report downloads, predictions."""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pandas as pd
import pytest
from helpers import FEATS, cls_config, create_then_change_csv, reg_config

from models import jobs
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import PASSWORD, TOKEN, wait_job
from web import create_app
from web.formatting import format_number
from web.services import JOB_RUNNER, get_state
from web.testing import csrf_token


class GatedRunner(jobs.JobRunner):
    """Runs jobs on a real in-process pool, but only once ``gate`` is set (to catch a job while it is active)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.inner = jobs.InProcessRunner(1)

    def submit(self, job_id: str, fn: Callable[[], Any]) -> Future:
        def gated() -> Any:
            self.gate.wait(30)
            return fn()

        return self.inner.submit(job_id, gated)

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        self.gate.set()
        self.inner.shutdown(wait=wait, cancel_pending=cancel_pending)


@pytest.fixture
def configs(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv))
    store.create(
        cls_config("rf", games_csv, "random_forest", hyperparameters={"n_estimators": 15, "max_depth": 4})
    )
    return store


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# ------------------------------------------------------------------ train via the API


def test_train_api_202_then_poll_to_succeeded_and_page_equals_mongo(api, page, database, configs):
    response = api("POST", "/api/configs/lr/train")
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["created"] is True and body["kind"] == "train" and body["key"] == "train:lr"
    assert response.headers["Location"] == f"/api/jobs/{body['job_id']}" == body["job_url"]
    job = wait_job(api, body["job_id"])
    assert job["status"] == "succeeded", job.get("error")
    assert job["progress"] == 1.0 and job["message"] == "done" and job["requested_by"] == "api-token"
    assert any(s["message"].startswith("fold 1/3") for s in job["steps"])

    config = database.configs.find_one({"name": "lr"})
    run = database.runs.find_one({"run_id": config["run_id"]})
    assert job["result"]["run_id"] == config["run_id"] == run["run_id"]
    assert job["result"]["version"] == config["version"] == "1.0.0"
    json.dumps(job)  # JSON-safe

    html_text = text(page.get("/configs/lr"))
    assert re.search(r'id="current-run-id">' + config["run_id"] + "<", html_text)
    assert re.search(r'id="current-version">1\.0\.0', html_text)
    for name in ("accuracy", "f1", "roc_auc", "log_loss"):
        row = re.search(rf'<tr data-metric="{name}"><th>{name}</th><td class="num">([^<]+)</td>', html_text)
        assert row and row.group(1) == format_number(run["metrics"][name]), name
    for kind, sha in config["checksums"].items():
        assert re.search(
            rf'<tr data-kind="{kind}">.*?title="{sha}" data-copy="{sha}" tabindex="0">{sha[:12]}…</code>'
            r".*?verified",
            html_text,
            re.S,
        ), kind
    matrix = run["metrics"]["confusion_matrix"]
    counts = re.findall(r'<g class="cell" data-row="(\d)" data-col="(\d)" data-count="(\d+)"', html_text)
    assert {(int(r), int(c)): int(n) for r, c, n in counts} == {
        (i, j): matrix[i][j] for i in range(len(matrix)) for j in range(len(matrix))
    }
    folds = re.findall(r'id="cv-chart".*?</svg>', html_text, re.S)[0]
    assert re.findall(r'data-label="fold \d" data-value="([^"]+)"', folds) == [
        format_number(s) for s in run["cv"]["scores"]
    ]
    top = run["feature_importance"][0]
    sign = "+" if top["coefficient"] >= 0 else "-"  # a linear model: its bars carry the coefficient's sign
    assert f'data-label="{top["feature"]} ({sign})" data-value="{format_number(top["importance"])}"' in html_text
    assert 'id="train-progress"' in html_text and 'data-status="succeeded"' in html_text
    assert "data-job-url" not in html_text  # a finished job is not polled
    history = html_text.split('id="runs-table"', 1)[1]
    assert config["run_id"] in history and "current" in history


def test_train_twice_while_running_returns_the_same_job(app, api, page, database, configs):
    gated = GatedRunner()
    get_state(app).services[JOB_RUNNER] = gated
    try:
        first = api("POST", "/api/configs/lr/train")
        assert first.status_code == 202
        job_id = first.get_json()["job_id"]
        second = api("POST", "/api/configs/lr/train")
        assert second.status_code == 200
        assert second.get_json()["job_id"] == job_id and second.get_json()["created"] is False
        # the button on the page does the same, and the page shows the running job with a live bar
        response = page.post("/configs/lr/train", data={"csrf_token": csrf_token(page)})
        assert response.status_code == 302 and response.headers["Location"].endswith("/configs/lr#training")
        shown = text(page.get("/configs/lr"))
        assert f"lr is already being trained (job {job_id})" in shown
        assert f'data-job-url="/api/jobs/{job_id}"' in shown and "Training…" in shown
        assert database.jobs.count_documents({"key": "train:lr"}) == 1
        # another config is a different key: its own job
        other = api("POST", "/api/configs/rf/train")
        assert other.status_code == 202 and other.get_json()["job_id"] != job_id
    finally:
        gated.gate.set()
    assert wait_job(api, job_id)["status"] == "succeeded"
    gated.shutdown()
    assert database.runs.count_documents({"name": "lr"}) == 1


def test_train_button_on_the_page_starts_a_job(page, api, database, configs):
    response = page.post("/configs/rf/train", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
    job = database.jobs.find_one({"key": "train:rf"})
    assert job is not None and job["requested_by"] == "admin"
    assert wait_job(api, str(job["_id"]))["status"] == "succeeded"
    html_text = text(page.get("/configs/rf"))
    assert "Training of rf started." in html_text or "Retrain Model" in html_text
    assert database.configs.find_one({"name": "rf"})["run_id"] in html_text


def test_train_refusals(api, page, database, configs, games_csv):
    response = api("POST", "/api/configs/nope/train")
    assert response.status_code == 404 and "nope" in response.get_json()["error"]["message"]
    response = api("POST", "/api/configs/lr/train", auth=False)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    response = page.post("/configs/lr/train")  # no CSRF token
    assert response.status_code == 400
    anonymous = page.application.test_client().post("/configs/lr/train")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert database.jobs.count_documents({}) == 0


def test_a_failing_training_is_a_failed_job_shown_on_the_page(api, page, database, tmp_path):
    create_then_change_csv(ConfigStore(database), cls_config("broken", tmp_path / "missing.csv"))
    job = wait_job(api, api("POST", "/api/configs/broken/train").get_json()["job_id"])
    assert job["status"] == "failed" and "missing.csv" in job["error"]["message"]
    html_text = text(page.get("/configs/broken"))
    assert 'id="train-error"' in html_text and "missing.csv" in html_text
    assert html_text.count("missing.csv' not found") == 1  # the error once, not in three places
    assert database.runs.count_documents({}) == 0


# ------------------------------------------------------------------ jobs API and pages


def test_jobs_api_and_pages(api, page, database, configs):
    job_id = api("POST", "/api/configs/lr/train").get_json()["job_id"]
    wait_job(api, job_id)
    listed = api("GET", "/api/jobs").get_json()
    assert listed["count"] == 1 and listed["jobs"][0]["id"] == job_id
    assert api("GET", "/api/jobs?status=succeeded&kind=train").get_json()["count"] == 1
    assert api("GET", "/api/jobs?status=failed").get_json()["count"] == 0
    bad = api("GET", "/api/jobs?status=weird")
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "status"
    assert api("GET", "/api/jobs?limit=0").status_code == 422
    assert api("GET", "/api/jobs/not-an-id").status_code == 404
    assert api("GET", "/api/jobs/0123456789abcdef01234567").status_code == 404
    assert api("GET", "/api/jobs", auth=False).status_code == 401

    listing = text(page.get("/jobs/"))
    row = re.search(rf'<tr data-job-id="{job_id}" data-status="succeeded">(.*?)</tr>', listing, re.S)
    assert row and "train:lr" in row.group(1) and "100%" in row.group(1)
    detail = text(page.get(f"/jobs/{job_id}"))
    assert "train · train:lr" in detail and 'id="job-result"' in detail and "Open config lr" in detail
    assert page.get("/jobs/0123456789abcdef01234567").status_code == 404
    assert "Unknown status" in text(page.get("/jobs/?status=weird"))


def test_stale_jobs_are_failed_when_the_app_starts(settings, database):
    database.jobs.insert_one(
        {
            "kind": "train",
            "key": "train:x",
            "active_key": "train:x",
            "status": "running",
            "progress": 0.4,
            "message": "fold 1/3",
            "steps": [],
            "params": {},
            "owner": {"host": "elsewhere", "pid": 1, "instance": "gone"},
            "created_at": None,
            "heartbeat_at": None,
        }
    )
    create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database)
    job = database.jobs.find_one({"key": "train:x"})
    assert job["status"] == "failed" and job["error"]["code"] == "process_died"


# ------------------------------------------------------------------ artifacts, downloads, report


@pytest.fixture
def trained(database, configs):
    return train_config(database, "lr")


def test_artifacts_info_model_download_and_report(api, database, trained, settings):
    run_id = trained["run_id"]
    info = api("GET", f"/api/artifacts/{run_id}/info").get_json()
    assert info["run_id"] == run_id and info["all_verified"] is True
    assert set(info["files"]) == {"model", "scaler", "features", "metrics", "oof"}
    for kind, f in info["files"].items():
        assert f["sha256"] == trained["artifacts"][kind]["sha256"] and f["verified"] and f["exists"]
        assert not f["path"].startswith("/") and ".." not in f["path"]

    response = api("GET", f"/api/export/{run_id}/model")
    assert response.status_code == 200 and response.mimetype == "application/octet-stream"
    assert hashlib.sha256(response.data).hexdigest() == trained["artifacts"]["model"]["sha256"]
    assert f'filename="{run_id}_model.pkl"' in response.headers["Content-Disposition"]

    report = api("GET", f"/api/export/{run_id}/report").get_json()
    assert report["run_id"] == run_id and report["config"]["name"] == "lr"
    assert report["metrics"]["accuracy"] == trained["metrics"]["accuracy"]
    assert report["artifacts"]["all_verified"] is True
    json.dumps(report)

    for path in ("/api/artifacts/nope/info", "/api/export/nope/model", "/api/export/nope/report"):
        response = api("GET", path)
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found", path
        assert api("GET", path, auth=False).status_code == 401


def test_a_tampered_model_file_is_refused_not_served(api, database, trained, settings):
    path = settings.artifact_dir / trained["artifacts"]["model"]["path"].rsplit("/", 1)[-1]
    path.write_bytes(path.read_bytes() + b"tampered")
    response = api("GET", f"/api/export/{trained['run_id']}/model")
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "artifact_error"
    info = api("GET", f"/api/artifacts/{trained['run_id']}/info").get_json()
    assert info["all_verified"] is False and info["files"]["model"]["verified"] is False


# ------------------------------------------------------------------ predictions


def rows(games_csv, n: int = 3) -> list[dict[str, Any]]:
    return pd.read_csv(games_csv).head(n)[FEATS].to_dict(orient="records")


def test_predict_with_a_model(api, database, trained, games_csv):
    response = api("POST", "/api/predict/model/lr", {"rows": rows(games_csv)})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["run_id"] == trained["run_id"] and body["count"] == 3
    first = body["predictions"][0]
    assert set(first) == {"prediction", "proba_0", "proba_1"}
    assert abs(first["proba_0"] + first["proba_1"] - 1) < 1e-9 and first["prediction"] in (0, 1)


@pytest.mark.parametrize(
    "body, status, code, fragment",
    [
        ({"rows": [{"home_elo": 1}]}, 400, "missing_features", "missing features: home_win_pct_last10 (rows 0)"),
        ({}, 400, "bad_request", "rows"),
        ({"rows": []}, 400, "bad_request", "non-empty list"),
        ({"rows": [1, 2]}, 400, "bad_request", "rows [0, 1]"),
        ({"rows": [{}], "extra": 1}, 400, "bad_request", "unknown field"),
    ],
)
def test_predict_bad_input(api, trained, body, status, code, fragment):
    response = api("POST", "/api/predict/model/lr", body)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == code and fragment in error["message"]


def test_predict_missing_feature_names_each_and_non_numeric_is_422(api, trained, games_csv):
    data = rows(games_csv, 2)
    del data[1]["home_rest_days"]
    error = api("POST", "/api/predict/model/lr", {"rows": data}).get_json()["error"]
    assert error["code"] == "missing_features" and error["field"] == "home_rest_days"
    assert error["message"] == "missing features: home_rest_days (rows 1)"
    data = rows(games_csv, 1)
    data[0]["home_rest_days"] = "lots"
    response = api("POST", "/api/predict/model/lr", {"rows": data})
    assert response.status_code == 422 and "home_rest_days" in response.get_json()["error"]["message"]


def test_predict_unknown_untrained_and_unauthenticated(api, configs, games_csv):
    assert api("POST", "/api/predict/model/ghost", {"rows": rows(games_csv)}).status_code == 404
    response = api("POST", "/api/predict/model/rf", {"rows": rows(games_csv)})
    assert response.status_code == 409 and "not been trained" in response.get_json()["error"]["message"]
    assert api("POST", "/api/predict/ensemble/ghost", {"rows": rows(games_csv)}).status_code == 404
    assert api("POST", "/api/predict/model/rf", {"rows": rows(games_csv)}, auth=False).status_code == 401
    response = api("POST", "/api/predict/model/rf", data="{bad", content_type="application/json")
    assert response.status_code == 400


def test_regression_prediction_has_no_probabilities(api, database, games_csv):
    ConfigStore(database).create(reg_config("reg", games_csv))
    train_config(database, "reg")
    body = api("POST", "/api/predict/model/reg", {"rows": rows(games_csv, 2)}).get_json()
    assert list(body["predictions"][0]) == ["prediction"] and isinstance(
        body["predictions"][0]["prediction"], float
    )
