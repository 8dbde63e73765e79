"""The one place that opens MongoDB connections and names collections.

``Database.connect(settings)`` reaches ``MONGO_URI`` when it is set; otherwise
it starts (or reuses) the embedded server. Indexes are created once per
process per database.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, PyMongoError, ServerSelectionTimeoutError

from models.errors import DatabaseUnavailableError
from models.settings import Settings, get_settings
from models.store.embedded import EmbeddedServer

log = logging.getLogger(__name__)

_indexed: set[tuple[str, str]] = set()
_index_lock = threading.Lock()


_shared: dict[str, MongoClient] = {}
_shared_lock = threading.Lock()


def shared_client(settings: Settings) -> MongoClient:
    """One long-lived client per URI for this process (pymongo clients are thread-safe pools).

    For components that hold only Settings (e.g. the GridFS artifact store);
    request-scoped code uses :class:`Database`.
    """
    uri = settings.effective_mongo_uri
    with _shared_lock:
        if uri not in _shared:
            _shared[uri] = MongoClient(
                uri, tz_aware=True, serverSelectionTimeoutMS=settings.server_selection_timeout_ms
            )
        return _shared[uri]


def safe_uri(uri: str) -> str:
    """``uri`` without its credentials, for messages and logs."""
    if "@" in uri and "://" in uri:  # never print credentials
        scheme, rest = uri.split("://", 1)
        uri = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return uri


class Database:
    """A connected database with the project's collections as attributes."""

    def __init__(self, client: MongoClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.db = client[settings.mongo_db]
        self._indexes_pending = False

    def __reduce__(self) -> tuple:
        """A Database pickles as its settings (a client cannot cross processes) and reconnects on
        the other side through that process's shared client; no server is started there."""
        return reconnect, (self.settings,)

    @classmethod
    def connect(
        cls, settings: Settings | None = None, *, autostart: bool = True, require_server: bool = True
    ) -> Database:
        """Connect and create the indexes.

        ``require_server=False`` (a long-running service) accepts an unreachable server: the
        indexes are then created on the first use of a collection once the server answers, so
        the service recovers without a restart (until then each use raises DatabaseUnavailableError).
        """
        settings = settings or get_settings()
        if settings.uses_embedded and autostart:
            EmbeddedServer.from_settings(settings).start()
        client = MongoClient(
            settings.effective_mongo_uri,
            tz_aware=True,
            serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
        )
        database = cls(client, settings)
        try:
            database.ensure_indexes()
        except DatabaseUnavailableError as exc:
            if require_server:
                raise
            log.warning("%s; indexes will be created when it answers", exc.message)
            database._indexes_pending = True
        return database

    def _collection(self, name: str) -> Collection:
        if self._indexes_pending:  # started while the server was down: no unique index may be missing
            self.ensure_indexes()  # DatabaseUnavailableError while it is still down
            self._indexes_pending = False
        return self.db[name]

    @property
    def configs(self) -> Collection:
        return self._collection(self.settings.config_collection)

    @property
    def runs(self) -> Collection:
        return self._collection(self.settings.runs_collection)

    @property
    def ensembles(self) -> Collection:
        return self._collection(self.settings.ensembles_collection)

    @property
    def jobs(self) -> Collection:
        return self._collection(self.settings.jobs_collection)

    @property
    def locks(self) -> Collection:
        return self._collection(self.settings.locks_collection)

    def ping(self) -> None:
        """Raise :class:`DatabaseUnavailableError` unless the server answers."""
        try:
            self.client.admin.command("ping")
        except PyMongoError as exc:
            raise DatabaseUnavailableError(f"MongoDB is not reachable: {exc.__class__.__name__}") from exc

    def ensure_indexes(self, *, force: bool = False) -> None:
        """Create the indexes (once per process and database; ``force``: again, e.g. after the database
        was dropped: the unique indexes are what keep one active job per claim and one name per run)."""
        key = (self.settings.effective_mongo_uri, self.settings.mongo_db + "/" + self.settings.config_collection)
        with _index_lock:
            if key in _indexed and not force:
                return
            configs, runs, ensembles, jobs, locks = (
                self.db[n]
                for n in (
                    self.settings.config_collection,
                    self.settings.runs_collection,
                    self.settings.ensembles_collection,
                    self.settings.jobs_collection,
                    self.settings.locks_collection,
                )
            )
            try:
                configs.create_index([("name", ASCENDING)], unique=True, name="name_unique")
                configs.create_index([("task", ASCENDING), ("model_type", ASCENDING)])
                configs.create_index([("status", ASCENDING)])
                configs.create_index([("tags", ASCENDING)])
                runs.create_index([("run_id", ASCENDING)], unique=True, name="run_id_unique")
                runs.create_index(
                    [("name", ASCENDING), ("version", ASCENDING)], unique=True, name="name_version_unique"
                )
                runs.create_index([("config_id", ASCENDING), ("created_at", DESCENDING)])
                # the registry's lifecycle invariant, enforced by the server even under races:
                # at most one run per name is in production
                runs.create_index(
                    [("name", ASCENDING)],
                    unique=True,
                    name="one_production_per_name",
                    partialFilterExpression={"status": "production"},
                )
                runs.create_index([("status", ASCENDING), ("created_at", DESCENDING)])
                # one document per ensemble version (before versions: one per name, the index name_unique)
                if "name_unique" in ensembles.index_information():
                    ensembles.drop_index("name_unique")
                ensembles.update_many({"version": {"$exists": False}}, {"$set": {"version": 1}})
                ensembles.create_index(
                    [("name", ASCENDING), ("version", ASCENDING)], unique=True, name="name_version_unique"
                )
                ensembles.create_index(
                    [("name", ASCENDING)],
                    unique=True,
                    name="one_production_per_name",
                    partialFilterExpression={"stage": "production"},
                )
                ensembles.create_index([("run_id", ASCENDING)])
                jobs.create_index([("status", ASCENDING), ("created_at", DESCENDING)])
                jobs.create_index([("key", ASCENDING), ("status", ASCENDING)])
                # one queued/running job per key; the field exists only while the job is active
                jobs.create_index(
                    [("active_key", ASCENDING)],
                    unique=True,
                    name="active_key_unique",
                    partialFilterExpression={"active_key": {"$exists": True}},
                )
                jobs.create_index([("created_at", DESCENDING)])
                locks.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)
            except (ConnectionFailure, ServerSelectionTimeoutError) as exc:
                raise DatabaseUnavailableError(
                    f"MongoDB at {self._safe_uri()} is not reachable: {exc.__class__.__name__}"
                ) from exc
            _indexed.add(key)

    def _safe_uri(self) -> str:
        return safe_uri(self.settings.effective_mongo_uri)

    def close(self) -> None:
        self.client.close()

    def info(self) -> dict[str, Any]:
        return {
            "uri": self._safe_uri(),
            "database": self.settings.mongo_db,
            "embedded": self.settings.uses_embedded,
        }


def reconnect(settings: Settings) -> Database:
    """A :class:`Database` on this process's shared client for ``settings`` (never starts a server)."""
    return Database(shared_client(settings), settings)
