"""Login, logout, the API token, CSRF, generated credentials, and the guard on every mutating route."""

from __future__ import annotations

import json
import re

import pytest
from pymongo import MongoClient

from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.embedded import free_port
from web import create_app
from web.services import get_state
from web.testing import csrf_token, login

PASSWORD = "correct horse battery"
TOKEN = "test-token-0123456789"
CONFIG = {
    "name": "keep_me",
    "task": "regression",
    "model_type": "ridge",
    "features": ["a", "b"],
    "target": "t",
    "training_csv": "tests/fixtures/columns.csv",
}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# The only routes that change something without a login. Adding one here must be a decision.
PUBLIC_MUTATING = {"auth.login"}


@pytest.fixture
def app(settings, database):
    return create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database)


@pytest.fixture
def client(app):
    return app.test_client()


def test_pages_redirect_to_login_when_not_logged_in(client):
    response = client.get("/configs/?task=regression")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=/configs/")
    assert client.get("/").status_code == 302


def test_login_page_and_successful_login_returns_to_next(client):
    page = client.get("/login?next=/configs/")
    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)
    response = client.post(
        "/login", data={"password": PASSWORD, "csrf_token": csrf_token(client), "next": "/configs/new"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/configs/new"
    assert client.get("/configs/").status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client, target):
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": csrf_token(client), "next": target})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_wrong_password_is_refused(client):
    response = client.post("/login", data={"password": "nope", "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "Wrong password." in response.get_data(as_text=True)
    assert client.get("/configs/").status_code == 302


def test_login_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"password": PASSWORD})
    assert response.status_code == 400
    assert "security token is missing" in response.get_data(as_text=True)
    assert client.get("/configs/").status_code == 302


def test_failed_logins_are_rate_limited_per_client(client, app):
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit):
        assert (
            client.post("/login", data={"password": "guess", "csrf_token": csrf_token(client)}).status_code == 401
        )
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": csrf_token(client)})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in response.get_data(as_text=True)
    assert client.get("/configs/").status_code == 302
    other = app.test_client()  # another address is not affected
    assert (
        other.post(
            "/login",
            data={"password": PASSWORD, "csrf_token": csrf_token(other)},
            environ_base={"REMOTE_ADDR": "10.0.0.9"},
        ).status_code
        == 302
    )


def test_logout_needs_post_with_csrf(client):
    login(client, PASSWORD)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.get("/configs/").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/configs/").status_code == 302


def test_api_needs_the_bearer_token(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.get("/api/configs", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    response = client.get("/api/configs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.get_json() == {"configs": [], "count": 0}


def test_api_with_a_session_needs_the_csrf_header(client, database):
    login(client, PASSWORD)
    assert client.get("/api/configs").status_code == 200
    response = client.post("/api/configs", json=CONFIG)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "csrf_failed"
    assert database.configs.count_documents({}) == 0
    response = client.post("/api/configs", json=CONFIG, headers={"X-CSRFToken": csrf_token(client)})
    assert response.status_code == 201


def test_bearer_token_requests_need_no_csrf(client, database):
    response = client.post("/api/configs", json=CONFIG, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 201 and database.configs.count_documents({}) == 1


def test_healthz_is_public(client):
    response = client.get("/healthz")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["runner"] == {"runner": "in-process", "workers": 2}


def test_generated_credentials_are_kept_as_hashes_in_a_private_file_and_shown_once(settings, database):
    app = create_app(settings, database)
    generated = get_state(app).credentials.pop_generated()
    assert set(generated) == {"admin_password", "api_token"}
    assert get_state(app).credentials.pop_generated() == {}  # once only
    path = settings.web_secrets_path
    assert path.stat().st_mode & 0o777 == 0o600
    stored = json.loads(path.read_text())
    assert set(stored) == {"admin_password_hash", "api_token_sha256", "secret_key"}
    assert generated["admin_password"] not in path.read_text() and generated["api_token"] not in path.read_text()
    assert stored["admin_password_hash"].startswith(("scrypt:", "pbkdf2:"))
    assert database.db[settings.secrets_collection].count_documents({"kind": {"$ne": "session"}}) == 0

    client = app.test_client()
    assert login(client, generated["admin_password"]).status_code == 302
    assert (
        client.get("/api/configs", headers={"Authorization": f"Bearer {generated['api_token']}"}).status_code
        == 200
    )

    again = create_app(settings, database)  # a restart: same secrets, nothing new to print
    assert get_state(again).credentials.pop_generated() == {}
    assert again.secret_key == app.secret_key
    other = again.test_client()
    assert login(other, generated["admin_password"]).status_code == 302
    # the session cookie of the first app is valid in the second (same secret key from the file)
    other.set_cookie(app.config["SESSION_COOKIE_NAME"], client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value)
    assert other.get("/configs/").status_code == 200


def test_credentials_from_settings_write_nothing(settings, database):
    app = create_app(settings.with_(admin_password="pw", api_token="tok", secret_key="k" * 32), database)
    assert get_state(app).credentials.pop_generated() == {}
    assert database.db[settings.secrets_collection].count_documents({}) == 0
    assert "pw" not in repr(get_state(app).credentials)


def _sample(converter) -> object:
    name = type(converter).__name__
    return {
        "IntegerConverter": 1,
        "FloatConverter": 1.0,
        "UUIDConverter": "00000000-0000-0000-0000-000000000000",
    }.get(name, "keep_me")


def test_every_mutating_route_refuses_unauthenticated_requests(app, database):
    """Walks the URL map, so routes added later are covered without touching this test."""
    ConfigStore(database).create(CONFIG)
    before = database.configs.find_one({"name": "keep_me"})
    client = app.test_client()
    adapter = app.url_map.bind("localhost")
    checked = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) & MUTATING):
            if rule.endpoint in PUBLIC_MUTATING:
                continue
            path = adapter.build(
                rule.endpoint, {a: _sample(rule._converters[a]) for a in rule.arguments}, method=method
            )
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                response = client.open(path, method=method, json={"name": "x"}, headers=headers)
                if path.startswith("/api"):
                    assert response.status_code == 401, (method, path, response.status_code)
                    assert response.get_json()["error"]["code"] == "unauthorized"
                else:
                    assert response.status_code in (302, 401, 403), (method, path, response.status_code)
                    if response.status_code == 302:
                        assert re.match(r"^/login(\?|$)", response.headers["Location"]), (method, path)
            checked.append((method, rule.endpoint))
    endpoints = {e for _, e in checked}
    assert {
        "api.configs.create_config",
        "api.configs.replace_config",
        "api.configs.patch_config",
        "api.configs.delete_config",
        "pages.configs.create",
        "pages.configs.edit",
        "pages.configs.delete",
        "auth.logout",
    } <= endpoints
    assert database.configs.find_one({"name": "keep_me"}) == before
    assert database.configs.count_documents({}) == 1


def test_database_unavailable_gives_503_not_500(settings):
    dead = settings.with_(
        mongo_uri=f"mongodb://127.0.0.1:{free_port()}",
        admin_password=PASSWORD,
        api_token=TOKEN,
        secret_key="s" * 32,
    )
    database = Database(MongoClient(dead.mongo_uri, serverSelectionTimeoutMS=200, connectTimeoutMS=200), dead)
    try:
        app = create_app(dead, database)
        client = app.test_client()
        response = client.get("/healthz")
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "database_unavailable"
        response = client.get("/api/configs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "database_unavailable"
        assert login(client, PASSWORD).status_code == 302
        page = client.get("/configs/")
        assert page.status_code == 503 and "Database unavailable" in page.get_data(as_text=True)
    finally:
        database.close()
