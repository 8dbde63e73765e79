"""What views reach for: the app's Database, Settings and service objects from ``models``.

Everything hangs off ``app.extensions["ensemble_cache"]`` (a :class:`WebState`),
so several apps (tests) can live in one process. Later features (job runner,
ensembles) add their objects to ``WebState.services`` by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from models import jobs
from models.errors import ForbiddenError
from models.settings import Settings
from models.store.configs import ConfigStore
from models.store.db import Database
from web.credentials import Credentials
from web.ratelimit import RateLimiter

EXTENSION = "ensemble_cache"
JOB_RUNNER = "job_runner"


@dataclass
class WebState:
    """Per-app state: the connection, settings, credentials and the login limiter."""

    database: Database
    settings: Settings
    credentials: Credentials
    login_limiter: RateLimiter
    account_limiter: RateLimiter | None = None  # wrong passwords from anywhere (browsers not known)
    token_limiter: RateLimiter | None = None  # wrong API tokens per address
    services: dict[str, Any] = field(default_factory=dict)


def init_state(app: Flask, state: WebState) -> None:
    app.extensions[EXTENSION] = state


def get_state(app: Flask | None = None) -> WebState:
    """The :class:`WebState` of ``app`` (default: the current app)."""
    return (app or current_app).extensions[EXTENSION]


def get_db() -> Database:
    """The app's :class:`Database` (one pymongo client per app, thread-safe)."""
    return get_state().database


def get_settings() -> Settings:
    """The app's :class:`Settings`."""
    return get_state().settings


def config_store() -> ConfigStore:
    """A :class:`ConfigStore` over the app's database (cheap to build per request)."""
    return ConfigStore(get_db())


def job_runner() -> jobs.JobRunner:
    """The runner the app hands background jobs to (the process's in-process pool by default)."""
    state = get_state()
    runner = state.services.get(JOB_RUNNER)
    if runner is None:
        runner = state.services[JOB_RUNNER] = jobs.get_default_runner(state.settings)
    return runner


def current_runner() -> jobs.JobRunner | None:
    """The runner the app has handed jobs to so far, or None before the first job."""
    return get_state().services.get(JOB_RUNNER)


def requested_by() -> str:
    """Who asked, for job and lifecycle records: the admin (session) or a script (API token)."""
    from flask import g  # local: keeps this module importable outside a request

    return "api-token" if getattr(g, "auth", None) == "token" else "admin"


def refuse_trust_over_http(what: str) -> None:
    """ForbiddenError unless ``ALLOW_HTTP_TRUST`` says this deployment takes trust decisions over HTTP.

    Trusting unverified bytes unpickles them (runs code): with the web app's credentials alone, that would
    let whoever holds an admin session or the token run code on the server. The CLI keeps it.
    """
    if not get_settings().allow_http_trust:
        raise ForbiddenError(
            f"{what} with trust loads unverified pickles, which runs code from them; over HTTP that is off "
            "(set ALLOW_HTTP_TRUST=1 to allow it). On the server: python -m cli " + TRUST_COMMANDS[what],
            field="trust",
        )


TRUST_COMMANDS = {
    "import": "models import ARCHIVE --trust",
    "adoption": "artifacts adopt NAME --trust",
}
