"""Server-side login sessions: logout (or expiry) ends a session even if someone kept a copy of its cookie.

The signed cookie carries a random session id; MongoDB (the secrets collection) holds the SHA-256 of
each live id with its expiry. A request counts as logged in only while that record exists, so a
cookie copied before logout stops working the moment the user logs out, on every web process.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from pymongo.errors import PyMongoError

from models.store.db import Database
from models.timeutil import now

log = logging.getLogger(__name__)

PREFIX = "session:"


def _key(sid: str) -> str:
    return PREFIX + hashlib.sha256(sid.encode()).hexdigest()


def open_session(database: Database, lifetime: timedelta) -> str:
    """Record a new session valid for ``lifetime``; returns its id (for the cookie). Drops expired ones.

    With the database unreachable the id is returned unrecorded: every page then answers 503 until
    the database is back, and after that the session is not live (log in again).
    """
    col = database.db[database.settings.secrets_collection]
    stamp = now()
    sid = secrets.token_urlsafe(32)
    try:
        col.delete_many({"kind": "session", "expires_at": {"$lt": stamp}})
        col.insert_one({"_id": _key(sid), "kind": "session", "created_at": stamp, "expires_at": stamp + lifetime})
    except PyMongoError as exc:
        log.warning(
            "could not record a new login session (%s); it ends when the database is back", exc.__class__.__name__
        )
    return sid


def session_live(database: Database, sid: object) -> bool:
    """Whether ``sid`` names a session that was opened, not revoked, and has not expired."""
    if not isinstance(sid, str) or not sid:
        return False
    doc = database.db[database.settings.secrets_collection].find_one({"_id": _key(sid)}, {"expires_at": 1})
    return doc is not None and doc["expires_at"] > now()


def revoke_session(database: Database, sid: object) -> None:
    """End session ``sid`` on the server (logout)."""
    if isinstance(sid, str) and sid:
        database.db[database.settings.secrets_collection].delete_one({"_id": _key(sid)})
