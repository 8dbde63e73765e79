"""Login session records (for logout across processes) and the removal of secrets older versions kept.

The web app's secrets never live in MongoDB (see ``web/credentials.py``). What does is a record per live
login session, keyed by an HMAC of the session id under the app's secret key: a database writer can end
sessions, but a record it forges names no cookie anyone can sign.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from models.store.db import Database
from models.timeutil import now

SESSION_KIND = "session"
LEGACY_SECRET_IDS = ("admin_password", "api_token", "secret_key")


class SessionStore:
    """The ``secrets_collection``'s session records."""

    def __init__(self, database: Database) -> None:
        self.col = database.db[database.settings.secrets_collection]

    def open(self, record_id: str, lifetime: timedelta) -> None:
        """Record a live session until ``lifetime`` from now; expired records go."""
        stamp = now()
        self.col.delete_many({"kind": SESSION_KIND, "expires_at": {"$lt": stamp}})
        self.col.insert_one(
            {"_id": record_id, "kind": SESSION_KIND, "created_at": stamp, "expires_at": stamp + lifetime}
        )

    def live(self, record_id: str) -> bool:
        doc = self.col.find_one({"_id": record_id, "kind": SESSION_KIND}, {"expires_at": 1})
        return doc is not None and doc["expires_at"] > now()

    def revoke(self, record_id: str) -> None:
        self.col.delete_one({"_id": record_id, "kind": SESSION_KIND})

    def revoke_all(self) -> int:
        """End every session (the secret key changed: no old cookie verifies any more)."""
        return self.col.delete_many({"kind": SESSION_KIND}).deleted_count

    def take_legacy_secrets(self) -> dict[str, dict[str, Any]]:
        """The secrets documents older versions stored (password hash, token digest, secret key), removed
        from the database as they are read: they move to the secrets file."""
        found = {d["_id"]: d for d in self.col.find({"_id": {"$in": list(LEGACY_SECRET_IDS)}})}
        if found:
            self.col.delete_many({"_id": {"$in": list(found)}})
        return found
