"""Hardening found by an attacker's run (issue 14): security headers, server-side logout, refused
service-written fields, hyperparameter bounds, huge numbers answered 400/422 (never 500), escaped
prediction CSVs, cancel from the API and the page, short error causes and the stale-training repair."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import FEATS, cls_config
from pymongo.errors import ServerSelectionTimeoutError

from models import jobs
from models.artifacts.prediction_csv import escape_cell
from models.ensembles.build import create_ensemble
from models.errors import ValidationError, describe_exception
from models.processes import current_owner
from models.settings import Settings
from models.store import jobs as job_store
from models.store.configs import ConfigStore, recover_interrupted_trainings
from models.store.schema import validate_config
from models.training.train import train_config
from tests.helpers import PASSWORD, TOKEN
from web import create_app
from web.headers import HEADERS
from web.testing import csrf_from, login

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "name": "c1",
    "task": "classification",
    "model_type": "random_forest",
    "features": ["a", "b"],
    "target": "y",
    "training_csv": str(ROOT / "tests" / "fixtures" / "columns.csv"),
}  # a header to check


# --- headers and cookies -------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(app, page):
    anonymous = app.test_client()
    responses = [
        page.get("/configs/"),
        page.get("/static/style.css"),
        anonymous.get("/configs/"),
        anonymous.get("/api/configs"),
        anonymous.get("/healthz"),
        anonymous.get("/no-such-page"),
        anonymous.get("/login"),
    ]
    for response in responses:
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (response.request.path, name)
    csp = HEADERS["Content-Security-Policy"]
    assert (
        "script-src 'self'" in csp
        and "frame-ancestors 'none'" in csp
        and "'unsafe-inline'" not in csp.replace("style-src-attr 'unsafe-inline'", "")
    )


def test_pages_have_no_inline_scripts(page, database, games_csv):
    ConfigStore(database).create(cls_config("m", games_csv))
    for path in ("/configs/", "/configs/new", "/configs/m", "/configs/m/edit", "/jobs/", "/ensembles/new"):
        html = page.get(path).get_data(as_text=True)
        for tag in html.split("<script")[1:]:
            head = tag.split(">", 1)[0]
            assert "src=" in head or 'type="application/json"' in head, (path, head)


@pytest.mark.parametrize("secure", [True, False])
def test_session_cookie_secure_setting(settings, database, secure):
    env = {"SESSION_COOKIE_SECURE": "1" if secure else "0"}
    assert Settings.from_env(env).session_cookie_secure is secure
    app = create_app(
        settings.with_(admin_password=PASSWORD, api_token=TOKEN, session_cookie_secure=secure), database
    )
    client = app.test_client()
    cookies = login(client, PASSWORD).headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("ensemble_cache_session="))
    device_cookie = next(c for c in cookies if c.startswith("ensemble_cache_device="))  # a known browser
    assert ("; Secure" in session_cookie) is secure and ("; Secure" in device_cookie) is secure


def test_session_cookie_secure_must_be_a_boolean():
    with pytest.raises(ValueError, match="SESSION_COOKIE_SECURE"):
        Settings.from_env({"SESSION_COOKIE_SECURE": "maybe"})


# --- logout ends the session on the server -------------------------------------------------------


def test_a_copied_cookie_stops_working_after_logout(app):
    client = app.test_client()
    assert login(client, PASSWORD).status_code == 302
    stolen = client.get_cookie("ensemble_cache_session").value
    thief = app.test_client()
    thief.set_cookie("ensemble_cache_session", stolen)
    assert thief.get("/configs/").status_code == 200  # the copy works while the session lives
    token = csrf_from(client.get("/configs/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    again = thief.get("/configs/")
    assert again.status_code == 302 and again.headers["Location"].startswith("/login")
    assert thief.get("/api/configs", headers={"Accept": "application/json"}).status_code == 401
    # a fresh login still works
    assert login(client, PASSWORD).status_code == 302 and client.get("/configs/").status_code == 200


# --- service-written fields are refused on create ------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("status", "trained"),
        ("version", "9.9.9"),
        ("metrics", {"accuracy": 1}),
        ("run_id", "20240101_000000_deadbeef"),
        ("model_artifact_path", "cli/models/x_model.pkl"),
        ("checksums", {"model": "0" * 64}),
    ],
)
def test_post_configs_refuses_fields_only_training_writes(api, database, field, value):
    response = api("POST", "/api/configs", {**CONFIG, field: value})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == field and "written by the service" in error["message"]
    assert database.configs.count_documents({}) == 0


def test_configs_add_refuses_fields_only_training_writes(settings, database, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({**CONFIG, "run_id": "20240101_000000_deadbeef", "version": "1.0.0"}))
    env = {**os.environ, "MONGO_URI": settings.mongo_uri, "MONGO_DB": settings.mongo_db}
    out = subprocess.run(
        [sys.executable, "-m", "cli", "configs", "add", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "run_id" in out.stderr and "written by the service" in out.stderr
    assert database.configs.count_documents({}) == 0


# --- hyperparameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params,field,needle",
    [
        (
            {"n_estimators": 1_000_000_000},
            "hyperparameters.n_estimators",
            "n_estimators = 1000000000 is above the limit of 2000",
        ),
        ({"max_depth": 5000}, "hyperparameters.max_depth", "limit of 100"),
        ({"n_jobs": -1}, "hyperparameters.n_jobs", "set by the service"),
        ({"verbose": 100}, "hyperparameters.verbose", "set by the service"),
    ],
)
def test_size_and_server_hyperparameters_are_refused_by_name(api, database, params, field, needle):
    response = api("POST", "/api/configs", {**CONFIG, "hyperparameters": params})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == field and needle in error["message"]
    assert database.configs.count_documents({}) == 0


def test_mlp_layers_and_iterations_are_bounded():
    base = {**CONFIG, "model_type": "mlp"}
    with pytest.raises(ValidationError, match=r"layer of 1000000 units, above the limit of 4096") as caught:
        validate_config({**base, "hyperparameters": {"hidden_layer_sizes": [1_000_000]}})
    assert caught.value.field == "hyperparameters.hidden_layer_sizes"
    with pytest.raises(ValidationError, match="max_iter = -1"):
        validate_config({**base, "model_type": "svm", "hyperparameters": {"max_iter": -1}})
    assert validate_config({**base, "hyperparameters": {"hidden_layer_sizes": [64, 32], "max_iter": 300}})


def test_bounds_are_configurable(settings, database):
    with pytest.raises(ValueError, match="HYPERPARAMETER_LIMITS"):
        Settings.from_env({"HYPERPARAMETER_LIMITS": "n_trees=5"})
    small = Settings.from_env({"HYPERPARAMETER_LIMITS": "n_estimators=10"}).hyperparameter_limit
    assert small["n_estimators"] == 10 and small["max_depth"] == 100
    database.settings = settings.with_(hyperparameter_limits=tuple(sorted(small.items())))
    with pytest.raises(ValidationError, match=r"limit of 10 \(HYPERPARAMETER_LIMITS n_estimators\)"):
        ConfigStore(database).create({**CONFIG, "hyperparameters": {"n_estimators": 11}})
    assert database.configs.count_documents({}) == 0


def test_ensemble_meta_params_are_bounded_too(api, database, games_csv):
    store = ConfigStore(database)
    for name in ("lr", "lr2"):
        store.create(cls_config(name, games_csv, random_state=7))
        train_config(database, name)
    response = api(
        "POST",
        "/api/ensembles",
        {
            "name": "e",
            "base_models": ["lr", "lr2"],
            "meta_model": "random_forest",
            "meta_params": {"n_estimators": 10**7},
        },
    )
    assert response.status_code == 422
    assert "limit of 2000" in response.get_json()["error"]["message"]
    assert database.jobs.count_documents({}) == 0


# --- huge numbers: 400/422, never 500 -------------------------------------------------------------

JSON_ROUTES = [
    ("POST", "/api/configs"),
    ("PUT", "/api/configs/keep"),
    ("PATCH", "/api/configs/keep"),
    ("POST", "/api/ensembles"),
    ("POST", "/api/predict/model/keep"),
    ("POST", "/api/predict/ensemble/e"),
    ("POST", "/api/registry/runs/20240101_000000_deadbeef/status"),
]


@pytest.mark.parametrize("number", ["9" * 4301, "-" + "1" * 5000, "1e999", "-1e400"])
@pytest.mark.parametrize("method,path", JSON_ROUTES)
def test_huge_numbers_in_any_json_body_are_400(api, database, games_csv, method, path, number):
    ConfigStore(database).create(cls_config("keep", games_csv))
    before = database.configs.find_one({"name": "keep"})
    body = f'{{"rows": [{{"a": {number}}}], "name": {number}}}'
    response = api(method, path, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert "too long" in error["message"] or "too large" in error["message"]
    assert database.configs.find_one({"name": "keep"}) == before and database.jobs.count_documents({}) == 0


@pytest.fixture
def ensemble(database, games_csv):
    store = ConfigStore(database)
    store.create(cls_config("lr", games_csv))
    store.create(
        cls_config("rf", games_csv, "random_forest", hyperparameters={"n_estimators": 10, "max_depth": 3})
    )
    for name in ("lr", "rf"):
        train_config(database, name)
    create_ensemble(database, "e", ["lr", "rf"])
    row = pd.read_csv(games_csv).head(3)[FEATS].to_dict(orient="records")
    return row


def test_ensemble_predict_with_1e308_is_422_naming_row_and_column(api, ensemble):
    rows = [dict(r) for r in ensemble]
    rows[1][FEATS[2]] = 1e308
    response = api("POST", "/api/predict/ensemble/e", {"rows": rows})
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert "row 1" in error["message"] and FEATS[2] in error["message"]
    assert error["field"] == FEATS[2]
    for path in ("/api/predict/model/lr", "/api/predict/model/rf"):  # single models: never a 500
        assert api("POST", path, {"rows": rows}).status_code in (200, 422)
    fine = api("POST", "/api/predict/ensemble/e", {"rows": ensemble})
    assert fine.status_code == 200 and fine.get_json()["count"] == 3


# --- CSV output escapes formula-like cells --------------------------------------------------------


def test_escape_cell_rule():
    for bad in ('=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert escape_cell(bad) == "'" + bad
    for fine in ("ok", "-1.5", "+3", "1e5", 12, -3.5, None):
        assert escape_cell(fine) == fine


def test_web_csv_download_escapes_formulas(api, ensemble):
    rows = [{**r, "note": '=HYPERLINK("http://evil")'} for r in ensemble]
    response = api("POST", "/api/predict/model/lr?format=csv", {"rows": rows})
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    frame = pd.read_csv(io.StringIO(response.get_data(as_text=True)))
    assert list(frame["note"]) == ['\'=HYPERLINK("http://evil")'] * 3
    assert "prediction" in frame.columns and len(frame) == 3
    bad = api("POST", "/api/predict/model/lr?format=xml", {"rows": rows})
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "format"


def test_cli_predict_csv_escapes_formulas(settings, database, ensemble, games_csv, tmp_path):
    source = pd.read_csv(games_csv).head(4)
    source["note"] = ["=1+1", "@cmd", "plain", "-5"]
    source.to_csv(tmp_path / "in.csv", index=False)
    env = {
        **os.environ,
        "MONGO_URI": settings.mongo_uri,
        "MONGO_DB": settings.mongo_db,
        "ARTIFACT_DIR": str(settings.artifact_dir),
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "predict",
            "lr",
            "--csv",
            str(tmp_path / "in.csv"),
            "--out",
            str(tmp_path / "out.csv"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    written = pd.read_csv(tmp_path / "out.csv", dtype={"note": str})
    assert list(written["note"]) == ["'=1+1", "'@cmd", "plain", "-5"]


# --- cancel from the API and the page -------------------------------------------------------------


def test_api_cancel_needs_auth_and_ends_the_job(api, database):
    job, _ = job_store.insert_job(database, "train", "train:x", params={"config": "x"})
    path = f"/api/jobs/{job['_id']}/cancel"
    assert api("POST", path, auth=False).status_code == 401
    assert jobs.get_job(database, job["_id"])["status"] == "queued"
    response = api("POST", path)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "cancelled"
    again = api("POST", path)
    assert again.status_code == 409 and "already failed" in again.get_json()["error"]["message"]
    assert api("POST", "/api/jobs/nope/cancel").status_code == 404


def test_cancel_button_on_the_job_page(page, database):
    job, _ = job_store.insert_job(database, "train", "train:x", params={"config": "x"})
    html = page.get(f"/jobs/{job['_id']}").get_data(as_text=True)
    assert 'id="cancel-job-button"' in html
    response = page.post(f"/jobs/{job['_id']}/cancel", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 302
    assert jobs.get_job(database, job["_id"])["error"]["code"] == "cancelled"
    after = page.get(f"/jobs/{job['_id']}").get_data(as_text=True)
    assert 'id="cancel-job-button"' not in after and "cancelled" in after
    # without the CSRF token: refused, nothing changes
    other, _ = job_store.insert_job(database, "train", "train:y", params={"config": "y"})
    assert page.post(f"/jobs/{other['_id']}/cancel").status_code == 400
    assert jobs.get_job(database, other["_id"])["status"] == "queued"


# --- stale training state and short causes --------------------------------------------------------


def test_a_config_left_training_by_this_process_is_repaired(database, games_csv):
    ConfigStore(database).create(cls_config("m", games_csv))
    database.configs.update_one({"name": "m"}, {"$set": {"status": "training", "training_owner": current_owner()}})
    changed = recover_interrupted_trainings(database)
    assert [c["name"] for c in changed] == ["m"]
    doc = ConfigStore(database).get("m")
    assert doc["status"] == "failed" and "could not be recorded" in doc["error"]["message"]
    assert "training_owner" not in doc


def test_database_errors_carry_a_short_cause_not_the_topology():
    exc = ServerSelectionTimeoutError(
        "db.internal:27017: timed out, Timeout: 30s, Topology Description: "
        "<TopologyDescription id: 1, topology_type: Unknown>"
    )
    text = describe_exception(exc)
    assert text == "ServerSelectionTimeoutError: the database did not answer"
    assert job_store.error_of(exc) == {"code": "database_unavailable", "message": text}


@pytest.mark.parametrize("body", [{"\u0000": False}, {"hyperparameters": {"a\u0000b": 1}}])
def test_field_names_with_nul_are_422_not_500(api, database, body):
    """Found by the property test: BSON cannot store a NUL in a key; it used to reach MongoDB and answer 500."""
    ConfigStore(database).create({**CONFIG, "name": "keep"})
    before = database.configs.find_one({"name": "keep"})
    for method, path, payload in (
        ("PATCH", "/api/configs/keep", body),
        ("POST", "/api/configs", {**CONFIG, **body}),
    ):
        response = api(method, path, payload)
        assert response.status_code == 422, response.get_data(as_text=True)
        assert "NUL" in response.get_json()["error"]["message"]
    assert database.configs.find_one({"name": "keep"}) == before and database.configs.count_documents({}) == 1
