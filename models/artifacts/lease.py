"""Leases on artifact files a writer has not committed yet, so ``artifacts gc`` never removes them.

Between writing a run's files and the MongoDB update that commits them, no
document references those files: to the garbage collector they look exactly
like the leftovers of a crashed training. So a writer first takes a lease, a
document in ``LOCKS_COLLECTION`` naming the files it is about to write::

    {"_id": "artifact-lease:<run_id>", "kind": "artifact_lease", "names": [...], "expires_at": <date>}

``expires_at`` is set by the MongoDB server (``$$NOW`` in an update
pipeline), and the collector compares it with the server's own time
(:func:`server_now`), so no two machines' clocks are ever compared. The
collection's TTL index removes expired leases. A writer that outlives its
lease (``ttl_s``) renews it before its commit point and re-checks its files
there (see :func:`models.training.train.train_config`): if the collector took
them meanwhile, the training fails instead of committing a run whose files
are gone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from models.artifacts.base import ArtifactInfo, ArtifactStore
from models.errors import ArtifactError
from models.processes import owner_is_dead
from models.store.db import Database
from models.store.leases import PREFIX, LeaseStore, server_now

log = logging.getLogger(__name__)

__all__ = ["LEASE_TTL_S", "ArtifactLease", "lease_info", "leased_names", "recheck_files", "server_now"]

LEASE_TTL_S = 3600  # far longer than a training's save step; renewed before the commit point


class ArtifactLease:
    """A lease on artifact file names (``<run_id>_<kind>``) held until :meth:`release`."""

    def __init__(self, database: Database, owner: str, *, ttl_s: float | None = None) -> None:
        ttl_s = LEASE_TTL_S if ttl_s is None else ttl_s
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0 seconds, got {ttl_s!r}")
        self.store = LeaseStore(database)
        self.id = PREFIX + owner
        self.ttl_ms = int(ttl_s * 1000)
        self.names: set[str] = set()

    def add(self, names: Iterable[str]) -> None:
        """Lease ``names`` (before writing them) and push the expiry to server time + ttl."""
        new = set(names)
        self.store.add(self.id, new, self.ttl_ms)
        self.names.update(new)

    def renew(self) -> bool:
        """Push the expiry forward; False if the lease had expired (it is taken again, but files may be gone)."""
        if self.store.renew(self.id, self.ttl_ms):
            return True
        log.warning("lease %s had expired; taking it again", self.id)
        self.add(self.names)
        return False

    def release(self) -> None:
        self.store.release(self.id)

    def __enter__(self) -> ArtifactLease:
        return self

    def close(self) -> None:
        """Release, never raising (the lease expires by itself; a failed release must not hide the outcome)."""
        try:
            self.release()
        except Exception:
            log.warning("could not release lease %s", self.id, exc_info=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


def leased_names(database: Database) -> set[str]:
    """Every file name under a lease that has not expired by the server's clock.

    A lease whose owner is a process on this host that no longer runs (kill -9) protects nothing and is
    removed; an owner on another host is judged by the expiry alone."""
    store = LeaseStore(database)
    names: set[str] = set()
    for doc in store.live({"names": 1, "owner": 1}):
        if owner_is_dead(doc.get("owner") or {}):
            store.remove(doc["_id"], doc["owner"])
            log.info("lease %s of a stopped process removed", doc["_id"])
            continue
        names.update(doc.get("names") or [])
    return names


def lease_info(database: Database) -> list[dict[str, Any]]:
    """The live leases (for reports)."""
    return LeaseStore(database).live()


def recheck_files(store: ArtifactStore, infos: Iterable[ArtifactInfo]) -> None:
    """Right before a commit point: every written file is still there with the bytes that were written
    (read from the backend itself, not a cache). ArtifactError naming the file otherwise."""
    for info in infos:
        try:
            data = store.read_bytes(info.path)
        except ArtifactError as exc:
            raise ArtifactError(
                f"artifact file {info.path} vanished between writing and the commit point "
                f"({exc.message}); nothing was committed",
                reason="file_missing",
                path=info.path,
            ) from None
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise ArtifactError(
                f"artifact file {info.path} changed between writing and the commit point; nothing was committed",
                reason="checksum_mismatch",
                path=info.path,
            )
