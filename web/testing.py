"""Helpers for tests that drive the app with Flask's test client (log in, read the CSRF token)."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    """The CSRF token in a rendered page."""
    match = _META.search(html) or _FIELD.search(html)
    if match is None:
        raise AssertionError("no CSRF token in the page")
    return match.group(1)


def csrf_token(client: FlaskClient) -> str:
    """A CSRF token valid for the client's session."""
    return csrf_from(client.get("/login", follow_redirects=True).get_data(as_text=True))


def login(client: FlaskClient, password: str) -> TestResponse:
    """Log the client in through the login form (CSRF included)."""
    return client.post("/login", data={"password": password, "csrf_token": csrf_token(client)})
