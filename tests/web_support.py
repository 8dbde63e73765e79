"""Fixtures shared by the web tests: an app with known credentials, an API caller, a logged-in client.

Import the fixtures into a test module (``from tests.web_support import app, api, page``).
"""

from __future__ import annotations

from typing import Any

import pytest

from web import create_app
from web.testing import login

TOKEN = "web-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "web-test-page-password"


@pytest.fixture
def app(settings, database):
    return create_app(settings.with_(admin_password=PASSWORD, api_token=TOKEN), database)


@pytest.fixture
def api(app):
    client = app.test_client()

    def call(method: str, path: str, body: Any = None, auth: bool = True, **kw):
        return client.open(path, method=method, json=body, headers=AUTH if auth else {}, **kw)

    return call


@pytest.fixture
def page(app):
    client = app.test_client()
    assert login(client, PASSWORD).status_code == 302
    return client
