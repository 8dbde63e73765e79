"""Flask admin app and JSON API.

``create_app(settings, database)`` builds the app (Flask's application factory
pattern). Structure:

- ``web/auth.py``: login/logout, the deny-by-default guard, CSRF, ``@public``
- ``web/pages/``: HTML pages; each module with a ``bp`` Blueprint is mounted
  automatically (optional ``NAV = (label, endpoint)`` adds a menu entry)
- ``web/api/``: JSON API under ``/api``; each module with a ``bp`` is mounted
- ``web/health.py``: ``GET /healthz``
- ``web/headers.py``: security headers (CSP, X-Frame-Options, ...) on every response
- ``web/errors.py``: one error shape (``{"error": {"code", "message", "field"?}}``)
- ``web/services.py``: ``get_db()``, ``config_store()``, ``get_state()`` for views
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, Response, request
from pymongo.errors import PyMongoError

from models import jobs
from models.artifacts.signing import get_signer
from models.errors import ServiceError
from models.registry.serving import serving_cache
from models.settings import Settings, get_settings
from models.store.db import Database
from web import api, health, pages
from web.auth import init_auth
from web.charts import register_charts
from web.credentials import load_credentials
from web.errors import register_error_handlers
from web.formatting import register_filters
from web.headers import init_headers
from web.ratelimit import RateLimiter
from web.services import JOB_RUNNER, WebState, init_state

log = logging.getLogger(__name__)

LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_SECONDS = 300
ACCOUNT_MAX_FAILURES = 20  # wrong passwords from all unknown browsers together before back-off
TOKEN_MAX_FAILURES = 20  # wrong API tokens from one address per TOKEN_WINDOW_SECONDS before 429
TOKEN_WINDOW_SECONDS = 60


def create_app(
    settings: Settings | None = None, database: Database | None = None, config: Mapping[str, Any] | None = None
) -> Flask:
    """Build the admin app over ``database`` (connected from ``settings`` when not given).

    ``config`` overrides Flask config keys (tests). Credentials come from the
    settings or the secrets collection (generated on first start).
    """
    if database is None:
        database = Database.connect(settings or get_settings())
    settings = settings or database.settings
    credentials = load_credentials(database, settings)
    get_signer(settings)  # the artifact signing key: a bad ARTIFACT_SIGNING_KEY stops the start, not each request

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=credentials.secret_key,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,  # SESSION_COOKIE_SECURE=1 behind TLS
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="ensemble_cache_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's life: long-open pages keep working
        JSON_SORT_KEYS=False,
        LOGIN_MAX_FAILURES=LOGIN_MAX_FAILURES,
        LOGIN_WINDOW_SECONDS=LOGIN_WINDOW_SECONDS,
    )
    if config:
        app.config.update(config)
    app.json.sort_keys = False

    state = WebState(
        database=database,
        settings=settings,
        credentials=credentials,
        login_limiter=RateLimiter(app.config["LOGIN_MAX_FAILURES"], app.config["LOGIN_WINDOW_SECONDS"]),
        account_limiter=RateLimiter(ACCOUNT_MAX_FAILURES, app.config["LOGIN_WINDOW_SECONDS"]),
        token_limiter=RateLimiter(TOKEN_MAX_FAILURES, TOKEN_WINDOW_SECONDS),
    )
    state.services[JOB_RUNNER] = jobs.get_default_runner(settings)
    init_state(app, state)
    _recover_jobs(database)
    register_error_handlers(app)
    register_filters(app)
    register_charts(app)
    init_auth(app)
    init_headers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.create_blueprint())
    app.register_blueprint(api.create_blueprint())
    _forget_served_references_after_changes(app, settings)
    log.info("web app ready (database %s)", database.info()["database"])
    return app


def _forget_served_references_after_changes(app: Flask, settings: Settings) -> None:
    """After any successful change through this app (promote, train, delete, import, ...), predict routes
    resolve their references afresh (:class:`models.registry.serving.ServingCache`)."""

    @app.after_request
    def forget(response: Response) -> Response:
        changed = request.method not in ("GET", "HEAD", "OPTIONS") and response.status_code < 400
        if changed and "predict" not in (request.endpoint or ""):
            serving_cache(settings).clear()
        return response


def _recover_jobs(database: Database) -> None:
    """Jobs left queued/running by a process that died are marked failed (once, at start)."""
    try:
        recovered = jobs.recover_stale_jobs(database)
    except (PyMongoError, ServiceError) as exc:  # the app still starts; pages answer 503 until MongoDB is back
        log.warning("could not check for jobs left by a stopped process: %s", exc.__class__.__name__)
        return
    if recovered:
        log.warning("%d job(s) left running by a stopped process were marked failed", len(recovered))
