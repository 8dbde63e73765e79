"""Findings of the outside attack run (issue 24), each reproduced and now failing to get through: idle
sockets, open redirects, formula cells in every CSV the service writes, server paths in errors."""

from __future__ import annotations

import io
import socket
import threading
import time
import urllib.request

import pandas as pd
import pytest

from models.ensembles.build import create_ensemble
from models.errors import DataError, ValidationError
from models.store.configs import ConfigStore
from models.training.train import train_config
from tests.helpers import FEATS, TOKEN, cls_config, poll
from web.redirects import is_same_site_path
from web.server import create_server
from web.testing import csrf_token, login

FORMULA = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture
def served(app):
    """The app under waitress as ``cli serve`` runs it, with a short idle timeout."""
    server = create_server(app, host="127.0.0.1", port=0, threads=2, connection_limit=1500, channel_timeout=3)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield server
    server.close()
    thread.join(timeout=5)


def test_a_thousand_idle_sockets_leave_healthz_answering_within_a_second(served):
    port = served.effective_port
    idle = []
    try:
        for _ in range(1000):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            idle.append(s)
        poll(lambda: len(served._map) > 1000, timeout=30)  # the server holds them all (and its listener)
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
        assert time.perf_counter() - t0 < 1.0
        # an idle socket is closed by the server after its channel timeout (3 s here, 30 s by default)
        idle[0].settimeout(15)
        assert idle[0].recv(1) == b""
    finally:
        for s in idle:
            s.close()


def queued_job(database):
    from models.store import jobs as job_store

    job, _ = job_store.insert_job(database, "test", "redirect-test")
    return job["_id"]


@pytest.mark.parametrize(
    "target",
    [
        "/\t/evil.example",
        "/\n/evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "/%09/evil.example",
        "/%2F/evil.example",
        "/%5Cevil.example",
        " /evil",
        "javascript:alert(1)",
    ],
)
def test_redirect_targets_off_the_site_are_refused(page, database, target):
    assert not is_same_site_path(target)
    response = page.post(
        f"/jobs/{queued_job(database)}/cancel", data={"next": target, "csrf_token": csrf_token(page)}
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/jobs/") and "evil" not in location
    login = page.get("/login", query_string={"next": target})  # logged in already: sent to next, if safe
    assert "evil" not in login.headers.get("Location", "") and "javascript" not in login.headers.get(
        "Location", ""
    )


def test_same_site_redirects_still_work(page, database):
    assert is_same_site_path("/configs/a?tab=runs")
    response = page.post(
        f"/jobs/{queued_job(database)}/cancel", data={"next": "/configs", "csrf_token": csrf_token(page)}
    )
    assert response.headers["Location"] == "/configs"


@pytest.fixture
def stacked(database, games_csv):
    store = ConfigStore(database)
    for name in ("a", "b"):
        store.create(
            cls_config(name, games_csv, model_type="naive_bayes" if name == "b" else "logistic_regression")
        )
        train_config(database, name)
    create_ensemble(database, "ab", ["a", "b"])
    return games_csv


def test_every_csv_the_service_writes_escapes_formula_cells(app, page, stacked, settings, tmp_path):
    rows = pd.read_csv(stacked).head(3)[FEATS].assign(note=[FORMULA, "@SUM(A1:A9)", "fine"])
    api = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = {
        "api model": api.post(
            "/api/predict/model/a?format=csv", json={"rows": rows.to_dict("records")}, headers=auth
        ),
        "api ensemble": api.post(
            "/api/predict/ensemble/ab?format=csv", json={"rows": rows.to_dict("records")}, headers=auth
        ),
        "ensemble page upload": page.post(
            "/ensembles/ab/predict",
            data={
                "csv": (io.BytesIO(rows.to_csv(index=False).encode()), "rows.csv"),
                "csrf_token": csrf_token(page),
            },
            content_type="multipart/form-data",
        ),
    }
    for route, answer in answers.items():
        assert answer.status_code == 200 and answer.mimetype == "text/csv", route
        text = answer.get_data(as_text=True)
        assert f"'{FORMULA}" in text.replace('""', '"') and "\n=" not in text and ",=" not in text, route
        assert "'@SUM(A1:A9)" in text and ",@SUM" not in text, (route, text)
    csv_routes = {r.rule for r in app.url_map.iter_rules() if "predict" in r.rule}
    assert csv_routes == {"/api/predict/model/<name>", "/api/predict/ensemble/<name>", "/ensembles/<name>/predict"}


def test_a_missing_csv_inside_a_data_root_does_not_reveal_the_servers_path(
    database, settings, games_csv, tmp_path, tmp_path_factory
):
    missing = "@pytest/" + (tmp_path / "gone.csv").relative_to(tmp_path_factory.getbasetemp()).as_posix()
    with pytest.raises(ValidationError) as caught:
        ConfigStore(database).create(cls_config("gone", missing))
    assert str(tmp_path) not in caught.value.message and "gone.csv" in caught.value.message
    assert "@pytest/" in caught.value.message
    csv = tmp_path / "later.csv"
    csv.write_bytes(games_csv.read_bytes())
    ConfigStore(database).create(cls_config("later", csv))
    csv.unlink()
    with pytest.raises(DataError) as trained:
        train_config(database, "later")
    assert str(tmp_path) not in trained.value.message and "later.csv" in trained.value.message


# ------------------------------------------------------------------ a database writer is not the admin


def forged_cookie(app, secret_key: str, sid: str) -> str:
    """A session cookie as Flask signs it, with ``secret_key`` (what the attacker knows)."""
    from flask import Flask

    from web.auth import SESSION_ID, SESSION_KEY

    forger = Flask("forger")
    forger.secret_key = secret_key
    forger.config.update(app.config)
    forger.secret_key = secret_key
    return forger.session_interface.get_signing_serializer(forger).dumps({SESSION_KEY: True, SESSION_ID: sid})


def test_a_database_writer_gets_no_admin_session_no_token_and_no_password(settings, database):
    import hashlib

    from werkzeug.security import generate_password_hash

    from web import create_app
    from web.services import get_state

    app = create_app(settings, database)
    real = get_state(app).credentials.pop_generated()
    secrets = database.db[settings.secrets_collection]
    # everything the old chain used, written by the attacker
    secrets.insert_many(
        [
            {"_id": "admin_password", "hash": generate_password_hash("attacker-password")},
            {"_id": "api_token", "sha256": hashlib.sha256(b"attacker-token").hexdigest()},
            {"_id": "secret_key", "value": "attacker-key"},
        ]
    )
    sid = "attacker-session"
    for record in (
        "session:" + hashlib.sha256(sid.encode()).hexdigest(),
        "session:" + __import__("hmac").new(b"attacker-key", sid.encode(), hashlib.sha256).hexdigest(),
    ):
        secrets.insert_one({"_id": record, "kind": "session", "expires_at": __import__("datetime").datetime.max})
    for current in (app, create_app(settings, database)):  # the running app, and after a restart
        client = current.test_client()
        assert login(client, "attacker-password").status_code == 401
        assert client.get("/api/configs", headers={"Authorization": "Bearer attacker-token"}).status_code == 401
        client.set_cookie(current.config["SESSION_COOKIE_NAME"], forged_cookie(current, "attacker-key", sid))
        assert client.get("/configs/").status_code == 302  # to the login page
        assert client.post("/api/configs", json={}).status_code in (401, 400)
        assert login(current.test_client(), real["admin_password"]).status_code == 302
    # the forgery itself works: with the key from the 0600 file (which the attacker lacks) it would get in
    from web.sessions import open_session

    genuine = open_session(database, __import__("datetime").timedelta(hours=1), app.secret_key)
    control = app.test_client()
    control.set_cookie(app.config["SESSION_COOKIE_NAME"], forged_cookie(app, app.secret_key, genuine))
    assert control.get("/configs/").status_code == 200


def test_secrets_an_older_version_kept_in_the_database_move_to_a_0600_file(settings, database):
    import hashlib

    from werkzeug.security import generate_password_hash

    from web import create_app

    database.db[settings.secrets_collection].insert_many(
        [
            {"_id": "admin_password", "hash": generate_password_hash("old-password-1")},
            {"_id": "api_token", "sha256": hashlib.sha256(b"old-token-" + b"x" * 32).hexdigest()},
            {"_id": "secret_key", "value": "old-key"},
        ]
    )
    app = create_app(settings, database)
    path = settings.web_secrets_path
    assert path.stat().st_mode & 0o777 == 0o600
    assert database.db[settings.secrets_collection].count_documents({}) == 0
    assert app.secret_key != "old-key"  # rotated: a database reader may have known it
    assert login(app.test_client(), "old-password-1").status_code == 302
    token = "old-token-" + "x" * 32
    assert app.test_client().get("/api/configs", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# ------------------------------------------------------------------ lock-out and brute force


def test_guessing_never_locks_out_a_browser_that_logged_in_before(app):
    from tests.helpers import PASSWORD

    admin = app.test_client()
    assert login(admin, PASSWORD).status_code == 302  # this browser is now a known device
    admin.post("/logout", data={"csrf_token": csrf_token(admin)})
    attacker = app.test_client()  # same address (a shared proxy), no device cookie
    codes = [
        attacker.post("/login", data={"password": f"guess{i}", "csrf_token": csrf_token(attacker)}).status_code
        for i in range(40)
    ]
    assert codes[:5] == [401] * 5 and 429 in codes  # the guesser is slowed down
    answer = admin.post("/login", data={"password": PASSWORD, "csrf_token": csrf_token(admin)})
    assert answer.status_code == 302  # the admin's own browser is not
    assert admin.get("/configs/").status_code == 200


def test_back_off_doubles_and_stays_short():
    from web.ratelimit import RateLimiter

    now = [1000.0]
    limiter = RateLimiter(5, 300, clock=lambda: now[0])
    for _ in range(5):
        assert limiter.backoff("k") == 0
        limiter.record("k")
    assert limiter.backoff("k") == 2
    now[0] += 2
    assert limiter.backoff("k") == 0  # one more try after the wait
    limiter.record("k")
    assert limiter.backoff("k") == 4
    for _ in range(20):
        limiter.record("k")
    assert limiter.backoff("k") == 300  # at most the window, never a longer lock-out


def test_wrong_api_tokens_are_throttled_and_the_right_one_is_not(app):
    from tests.helpers import TOKEN

    client = app.test_client()
    codes = [
        client.get("/api/configs", headers={"Authorization": f"Bearer wrong-{i}"}).status_code for i in range(200)
    ]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
    throttled = client.get("/api/configs", headers={"Authorization": "Bearer wrong"})
    assert int(throttled.headers["Retry-After"]) > 0 and "too many wrong API tokens" in throttled.get_data(
        as_text=True
    )
    assert client.get("/api/configs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
