"""Who may do what: the admin login for pages, the bearer token for the API, CSRF.

Deny by default: :func:`init_auth` installs one ``before_request`` guard on the
app, so every route, including routes added later, needs a logged-in session
(pages) or the bearer token or a session (``/api/...``). Only views marked
:func:`public` (login, health check, static files) are open. Requests that
change something (POST/PUT/PATCH/DELETE) must also pass the CSRF check,
unless they carry a valid bearer token (scripts cannot be tricked by a
browser into sending one).
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFProtect
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pymongo.errors import PyMongoError
from werkzeug.wrappers import Response

from models.errors import DatabaseUnavailableError
from web.errors import json_error, wants_json
from web.limits import apply_body_limit
from web.redirects import safe_path
from web.services import get_state
from web.sessions import open_session, revoke_session, session_live

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)
csrf = CSRFProtect()

F = TypeVar("F", bound=Callable[..., Any])
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_KEY = "admin"
SESSION_ID = "sid"


def public(view: F) -> F:
    """Mark a view as open to anyone (the guard lets it through without login)."""
    view.is_public = True  # type: ignore[attr-defined]
    return view


def is_logged_in() -> bool:
    """True when the session belongs to a logged-in admin and is still live on the server
    (logout revokes it there: a copied cookie stops working). Checked once per request."""
    if session.get(SESSION_KEY) is not True:
        return False
    if "session_live" not in g:
        try:
            g.session_live = session_live(get_state().database, session.get(SESSION_ID), current_app.secret_key)
        except PyMongoError:
            raise DatabaseUnavailableError("the database is not reachable; sessions cannot be checked") from None
    return g.session_live


def bearer_token_valid() -> bool:
    """True when the request carries ``Authorization: Bearer <API token>`` with the right token."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and get_state().credentials.check_token(token.strip())


def _wrong_token_throttled() -> Response | None:
    """A request with a wrong bearer token: counted per address; past the limit, 429 with Retry-After
    (a right token is never throttled: it was checked first)."""
    if not request.headers.get("Authorization", "").lower().startswith("bearer "):
        return None
    limiter = get_state().token_limiter
    if limiter is None:
        return None
    key = request.remote_addr or "unknown"
    if limiter.blocked(key):
        response = json_error(
            429, "too_many_requests", "too many wrong API tokens from this address; wait and retry"
        )
        response.headers["Retry-After"] = str(limiter.retry_after(key))
        return response
    limiter.record(key)
    return None


def _login_redirect() -> Response:
    target = request.full_path if request.method == "GET" else request.path
    return redirect(url_for("auth.login", next=target.rstrip("?")))


def login_required(view: F) -> F:
    """Pages: redirect to the login page unless logged in. (The app-wide guard already does this for
    every non-public view; the decorator documents it and protects views in apps built without the guard.)"""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not is_logged_in():
            return _login_redirect()
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _guard() -> Any:
    """Authenticate every request before its view runs (see the module docstring)."""
    g.auth = None
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if view is None:  # 404/405: nothing will run; let the router answer
        return None
    apply_body_limit(view, get_state().settings)  # before the CSRF check reads the form
    if getattr(view, "is_public", False):
        if request.method in MUTATING:
            csrf.protect()
        return None
    if wants_json():
        if bearer_token_valid():
            g.auth = "token"
            return None
        throttled = _wrong_token_throttled()
        if throttled is not None:
            return throttled
        if is_logged_in():
            g.auth = "session"
            if request.method in MUTATING:
                csrf.protect()
            return None
        response = json_error(401, "unauthorized", "send the API token as 'Authorization: Bearer <token>'")
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if not is_logged_in():
        return _login_redirect()
    g.auth = "session"
    if request.method in MUTATING:
        csrf.protect()
    return None


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths; anything else goes home (no open redirects)."""
    return safe_path(target, url_for("pages.home"))


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    """The login form; failed attempts are counted per client address."""
    next_url = request.values.get("next")
    if request.method == "GET":
        if is_logged_in():
            return redirect(_safe_next(next_url))
        return render_template("auth/login.html", next=next_url)
    state = get_state()
    client = request.remote_addr or "unknown"
    device = known_device()
    # A browser that logged in before counts only its own failures: guesses from elsewhere (even behind
    # the same proxy, or for the same account) never lock it out. Others: per address and per account.
    limits = (
        [(state.login_limiter, f"device:{device}")]
        if device
        else [(state.login_limiter, f"addr:{client}"), (state.account_limiter, "account")]
    )
    wait = max((limiter.backoff(key) for limiter, key in limits if limiter is not None), default=0)
    if wait:
        log.warning("login refused: too many failed attempts (%s); back-off %d s", client, wait)
        flash(f"Too many failed attempts. Try again in {wait} seconds.", "error")
        response = current_app.make_response((render_template("auth/login.html", next=next_url), 429))
        response.headers["Retry-After"] = str(wait)
        return response
    if not state.credentials.check_password(request.form.get("password", "")):
        for limiter, key in limits:
            if limiter is not None:
                limiter.record(key)
        log.info("failed login from %s", client)
        flash("Wrong password.", "error")
        return render_template("auth/login.html", next=next_url), 401
    for limiter, key in limits:
        if limiter is not None and key != "account":
            limiter.reset(key)
    if session.get(SESSION_ID):  # logging in again ends the session this browser had
        try:
            revoke_session(state.database, session.get(SESSION_ID), current_app.secret_key)
        except PyMongoError:
            log.warning("could not revoke the previous session at login (database unreachable)")
    session.clear()  # a fresh session: nothing from before the login survives
    session[SESSION_KEY] = True
    session[SESSION_ID] = open_session(
        state.database, current_app.permanent_session_lifetime, current_app.secret_key
    )
    session.permanent = True
    log.info("admin logged in from %s", client)
    flash("Logged in.", "success")
    response = redirect(_safe_next(next_url))
    remember_device(response, device)
    return response


DEVICE_COOKIE = "ensemble_cache_device"
DEVICE_MAX_AGE = 90 * 24 * 3600


def _device_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="known-device")


def known_device() -> str | None:
    """The id of this browser if it logged in here before (a cookie signed with the secret key), else None."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return None
    try:
        value = _device_serializer().loads(raw, max_age=DEVICE_MAX_AGE)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


def remember_device(response: Response, device: str | None) -> None:
    """Mark this browser as one that logged in (its failures are counted apart from everyone else's)."""
    value = _device_serializer().dumps(device or secrets.token_urlsafe(16))
    response.set_cookie(
        DEVICE_COOKIE,
        value,
        max_age=DEVICE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config.get("SESSION_COOKIE_SECURE", False),
    )


@bp.route("/logout", methods=["POST"])
@login_required
def logout() -> Any:
    revoke_session(get_state().database, session.get(SESSION_ID), current_app.secret_key)
    session.clear()
    flash("Logged out.", "info")
    return redirect(url_for("auth.login"))


def init_auth(app: Flask) -> None:
    """Install CSRF and the guard on ``app`` and register the login blueprint."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # the guard decides when CSRF applies
    csrf.init_app(app)
    app.before_request(_guard)
    app.register_blueprint(bp)
    # static files are public
    static = app.view_functions.get("static")
    if static is not None:
        public(static)
