"""Lease documents in ``LOCKS_COLLECTION``: artifact file names a writer has not committed yet.

::

    {"_id": "artifact-lease:<run_id>", "kind": "artifact_lease", "names": [...], "owner": {...},
     "expires_at": <date>}

``expires_at`` is set by the MongoDB server (``$$NOW`` in an update pipeline) and compared with the
server's own time (:func:`server_now`), so no two machines' clocks are ever compared. The collection's
TTL index removes expired leases. What a lease is for: :mod:`models.artifacts.lease`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from models.processes import current_owner
from models.store.db import Database

KIND = "artifact_lease"
PREFIX = "artifact-lease:"


def server_now(database: Database) -> datetime:
    """The MongoDB server's current time (UTC), the one clock every machine shares."""
    stamp = database.client.admin.command("hello")["localTime"]
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


class LeaseStore:
    """Artifact leases in ``LOCKS_COLLECTION`` (``kind: artifact_lease``)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.col = database.locks

    def add(self, lease_id: str, names: Iterable[str], ttl_ms: int) -> None:
        """Add ``names`` to lease ``lease_id`` (created if needed) and push its expiry to server time + ttl."""
        self.col.update_one(
            {"_id": lease_id},
            [
                {
                    "$set": {
                        "kind": KIND,
                        "owner": {"$literal": current_owner()},
                        "names": {"$setUnion": [{"$ifNull": ["$names", []]}, sorted(set(names))]},
                        "expires_at": {"$add": ["$$NOW", ttl_ms]},
                    }
                }
            ],
            upsert=True,
        )

    def renew(self, lease_id: str, ttl_ms: int) -> bool:
        """Push the expiry forward; False when the lease is gone (it had expired)."""
        done = self.col.update_one(
            {"_id": lease_id, "kind": KIND}, [{"$set": {"expires_at": {"$add": ["$$NOW", ttl_ms]}}}]
        )
        return bool(done.matched_count)

    def release(self, lease_id: str) -> None:
        self.col.delete_one({"_id": lease_id, "kind": KIND})

    def live(self, projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The leases that have not expired by the server's clock."""
        return list(self.col.find({"kind": KIND, "expires_at": {"$gt": server_now(self.database)}}, projection))

    def remove(self, lease_id: str, owner: dict[str, Any]) -> None:
        """Remove lease ``lease_id`` if ``owner`` still holds it (a stopped process's lease)."""
        self.col.delete_one({"_id": lease_id, "owner": owner})
