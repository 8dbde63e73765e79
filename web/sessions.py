"""Server-side login sessions: logout (or expiry) ends a session even if someone kept a copy of its cookie.

The cookie, signed with the app's secret key (never in the database), carries a random session id;
MongoDB holds a record per live session keyed by ``HMAC(secret key, id)``, with its expiry. A request
counts as logged in only with a cookie that verifies *and* a live record, so a cookie copied before
logout stops working the moment the user logs out, on every web process, while a record forged by a
database writer names no cookie anyone can sign.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from pymongo.errors import PyMongoError

from models.store.db import Database
from models.store.sessions import SessionStore

log = logging.getLogger(__name__)

PREFIX = "session:"


def _key(secret_key: str, sid: str) -> str:
    return PREFIX + hmac.new(secret_key.encode(), sid.encode(), hashlib.sha256).hexdigest()


def open_session(database: Database, lifetime: timedelta, secret_key: str) -> str:
    """Record a new session valid for ``lifetime``; returns its id (for the cookie). Drops expired ones.

    With the database unreachable the id is returned unrecorded: every page then answers 503 until
    the database is back, and after that the session is not live (log in again).
    """
    sid = secrets.token_urlsafe(32)
    try:
        SessionStore(database).open(_key(secret_key, sid), lifetime)
    except PyMongoError as exc:
        log.warning(
            "could not record a new login session (%s); it ends when the database is back", exc.__class__.__name__
        )
    return sid


def session_live(database: Database, sid: object, secret_key: str) -> bool:
    """Whether ``sid`` names a session that was opened, not revoked, and has not expired."""
    if not isinstance(sid, str) or not sid:
        return False
    return SessionStore(database).live(_key(secret_key, sid))


def revoke_session(database: Database, sid: object, secret_key: str) -> None:
    """End session ``sid`` on the server (logout)."""
    if isinstance(sid, str) and sid:
        SessionStore(database).revoke(_key(secret_key, sid))
