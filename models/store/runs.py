"""The runs collection: one document per training, the registry's source of truth.

Every read and write of ``RUNS_COLLECTION`` goes through :class:`RunStore`, including the lifecycle
status changes (:meth:`RunStore.transition`: a promotion and the demotion it causes in one
transaction where the server has them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from models.errors import ConflictError, NotFoundError
from models.store.db import Database
from models.store.versioning import change_kind, highest, next_version, parse_version
from models.timeutil import iso, now

log = logging.getLogger(__name__)

TRANSITION_ATTEMPTS = 5


class _Changed(Exception):
    """The run's status changed between reading and writing: read again."""


def supports_transactions(database: Database) -> bool:
    """True when the server is a replica set member or mongos (multi-document transactions work)."""
    try:
        hello = database.client.admin.command("hello")
    except PyMongoError:
        return False
    return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"


def in_transaction(database: Database, work: Callable[[Any], Any]) -> Any:
    """``work(session)`` in a transaction when possible, else ``work(None)``."""
    if supports_transactions(database):
        try:
            with database.client.start_session() as session:
                return session.with_transaction(work)
        except OperationFailure as exc:
            if exc.code not in (20, 263):  # IllegalOperation / not supported here: fall back
                raise
            log.info("transactions not available (%s); using ordered updates", exc)
    return work(None)


def duplicate_key_fields(exc: DuplicateKeyError) -> set[str]:
    """The fields of the unique index a write collided with (from the server's ``keyPattern``).

    Falls back to the index name in the message for servers that send no details; never guesses
    from the duplicated values (a run *name* may well contain the text ``run_id``).
    """
    pattern = (exc.details or {}).get("keyPattern") or {}
    if pattern:
        return set(pattern)
    text = str(exc)
    if "run_id_unique" in text:
        return {"run_id"}
    if "name_version_unique" in text:
        return {"name", "version"}
    return set()


def _conflict(run: dict[str, Any], fields: set[str]) -> ConflictError:
    if "version" in fields:
        return ConflictError(f"{run['name']} version {run.get('version')} already exists", field="version")
    if "run_id" in fields:
        return ConflictError(f"a run with id {run.get('run_id')!r} already exists", field="run_id")
    if fields == {"name"}:
        return ConflictError(f"{run['name']} already has a run in production", field="status")
    return ConflictError(f"run {run.get('run_id')!r} conflicts with an existing run", field="run_id")


class RunStore:
    """Run documents in ``RUNS_COLLECTION``."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.col = database.runs

    def get(self, run_id: str) -> dict[str, Any]:
        doc = self.col.find_one({"run_id": run_id})
        if doc is None:
            raise NotFoundError(f"no run with id {run_id!r}", field="run_id")
        return doc

    def find(self, run_id: str) -> dict[str, Any] | None:
        return self.col.find_one({"run_id": run_id})

    def find_many(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """``run_id -> document`` for those of ``run_ids`` that exist, in one query."""
        return {doc["run_id"]: doc for doc in self.col.find({"run_id": {"$in": list(run_ids)}})}

    def for_name(self, name: str, limit: int = 0) -> list[dict[str, Any]]:
        return list(self.col.find({"name": name}).sort("created_at", DESCENDING).limit(limit))

    def latest(self, name: str) -> dict[str, Any] | None:
        versions = [d["version"] for d in self.col.find({"name": name}, {"version": 1})]
        top = highest(versions)
        return self.col.find_one({"name": name, "version": top}) if top else None

    def insert_versioned(
        self, run: dict[str, Any], version: str | None = None, retries: int = 20
    ) -> dict[str, Any]:
        """Insert ``run`` with the next version for its name (or ``version`` if given and free).

        The unique ``(name, version)`` index decides races: a loser recomputes and tries again.
        """
        if version is not None:
            parse_version(version)
            run["version"] = version
            run["version_change"] = "manual"
            try:
                self.col.insert_one(run)
            except DuplicateKeyError as exc:
                run.pop("_id", None)
                raise _conflict(run, duplicate_key_fields(exc)) from None
            return run
        for _ in range(retries):
            latest = self.latest(run["name"])
            kind = change_kind(latest.get("definition") if latest else None, run["definition"])
            run["version"] = next_version(latest["version"] if latest else None, kind)
            run["version_change"] = kind if latest else "initial"
            try:
                self.col.insert_one(run)
                return run
            except DuplicateKeyError as exc:
                run.pop("_id", None)
                fields = duplicate_key_fields(exc)
                if "version" not in fields:  # not a version race: retrying cannot help
                    raise _conflict(run, fields) from None
        raise ConflictError(f"could not assign a version to {run['name']}: too many concurrent saves")

    def replace_run(
        self, current: dict[str, Any], run: dict[str, Any], version: str | None = None, retries: int = 20
    ) -> dict[str, Any]:
        """Put ``run`` in place of the document ``current`` (same ``_id`` and ``run_id``) in one write, if
        ``current`` did not change meanwhile (:class:`ConflictError` if it did). It keeps ``version`` when
        that is free for its name (or ``current``'s own), else gets the next version by the usual rules."""
        for _ in range(retries):
            if version is not None:
                parse_version(version)
                run["version"], run["version_change"] = version, "imported"
            else:
                latest = self.latest(run["name"])
                kind = change_kind(latest.get("definition") if latest else None, run["definition"])
                run["version"] = next_version(latest["version"] if latest else None, kind)
                run["version_change"] = kind if latest else "initial"
            run.pop("_id", None)
            try:
                result = self.col.replace_one(
                    {"_id": current["_id"], "run_id": current["run_id"], "status": current.get("status")}, run
                )
            except DuplicateKeyError as exc:
                fields = duplicate_key_fields(exc)
                if "version" not in fields:
                    raise _conflict(run, fields) from None
                version = None  # taken by another run of the name: the next one
                continue
            if result.matched_count != 1:
                raise ConflictError(
                    f"run {current['run_id']} changed or was deleted while it was being replaced; nothing "
                    "was replaced, try again",
                    field="run_id",
                )
            run["_id"] = current["_id"]
            return run
        raise ConflictError(f"could not assign a version to {run['name']}: too many concurrent saves")

    def restore_run(self, previous: dict[str, Any]) -> None:
        """Put back the document ``previous`` exactly (undoing :meth:`replace_run` that could not finish)."""
        self.col.replace_one({"_id": previous["_id"]}, previous)

    # ---- reads for the registry

    def find_version(self, name: str, version: str) -> dict[str, Any] | None:
        return self.col.find_one({"name": name, "version": version})

    def find_production(self, name: str) -> dict[str, Any] | None:
        return self.col.find_one({"name": name, "status": "production"})

    def highest_with_status(self, name: str, status: str) -> dict[str, Any] | None:
        """The run of ``name`` with the highest version among those in ``status`` (e.g. ``staging``)."""
        top = highest([d["version"] for d in self.col.find({"name": name, "status": status}, {"version": 1})])
        return self.col.find_one({"name": name, "version": top}) if top else None

    def has_name(self, name: str) -> bool:
        return bool(self.col.count_documents({"name": name}, limit=1))

    def newest(self) -> dict[str, Any] | None:
        """The most recently created run of any name."""
        return self.col.find_one({}, sort=[("created_at", -1), ("_id", -1)])

    def exists(self, run_id: str) -> bool:
        return self.col.find_one({"run_id": run_id}, {"_id": 1}) is not None

    def previous_of_config(self, config_id: Any, excluding: str) -> dict[str, Any] | None:
        """The newest run of config ``config_id`` other than ``excluding``."""
        return self.col.find_one({"config_id": config_id, "run_id": {"$ne": excluding}}, sort=[("created_at", -1)])

    def names(self) -> list[str]:
        return list(self.col.distinct("name"))

    def summaries_for_name(self, name: str) -> list[dict[str, Any]]:
        """``run_id``, ``version`` and ``status`` of every run of ``name``, newest first."""
        return list(self.col.find({"name": name}, {"run_id": 1, "version": 1, "status": 1}).sort("created_at", -1))

    def count(self, query: dict[str, Any]) -> int:
        return self.col.count_documents(query)

    def search(
        self,
        query: dict[str, Any],
        *,
        projection: dict[str, Any] | None = None,
        order: list[tuple[str, int]] | None = None,
        skip: int = 0,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        """Runs matching ``query`` (a filter built by :mod:`models.registry.query`), ordered and paged."""
        cursor = self.col.find(query, projection)
        if order:
            cursor = cursor.sort(order)
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return list(cursor)

    def find_fields(self, run_id: str, fields: list[str]) -> dict[str, Any] | None:
        """Only ``fields`` of run ``run_id`` (and its ``_id``), or None."""
        return self.col.find_one({"run_id": run_id}, dict.fromkeys(fields, 1))

    def features_of(self, run_ids: list[str]) -> dict[str, list[str]]:
        """``run_id -> config.features`` of the runs, in one query."""
        docs = self.col.find({"run_id": {"$in": list(run_ids)}}, {"run_id": 1, "config.features": 1})
        return {d["run_id"]: list((d.get("config") or {}).get("features") or []) for d in docs}

    def artifact_documents(self) -> list[dict[str, Any]]:
        """Every run with its artifact fields (for garbage collection and migration)."""
        return list(self.col.find({}).sort("_id", ASCENDING))

    def replace_paths(self, run_doc_id: Any, old: dict[str, str], new: dict[str, str]) -> bool:
        """Swap artifact path fields ``old`` for ``new`` if they still hold ``old`` (a migration)."""
        return bool(self.col.update_one({"_id": run_doc_id, **old}, {"$set": new}).matched_count)

    # ---- writes

    def set_fields(self, run_doc_id: Any, fields: dict[str, Any]) -> None:
        self.col.update_one({"_id": run_doc_id}, {"$set": fields})

    def delete(self, run_doc_id: Any) -> None:
        self.col.delete_one({"_id": run_doc_id})

    def transition(
        self,
        run_id: str,
        to: str,
        *,
        demote_to: str,
        check: Callable[[str, str], None],
        entry: Callable[..., dict[str, Any]],
        by: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Move run ``run_id`` to status ``to`` (``check(previous, to)`` raises when not allowed), with a
        ``status_history`` entry ``entry(previous, to, by, reason)``. Moving to ``production`` moves the
        name's current production run to ``demote_to`` in the same transaction (the partial unique index
        ``one_production_per_name`` keeps at most one, even under races). Returns ``{"from", "demoted",
        "run"}``; ConflictError when the run keeps changing or was deleted."""
        outcome: dict[str, Any] = {}
        for _ in range(TRANSITION_ATTEMPTS):

            def work(session: Any) -> None:
                outcome.clear()
                current = self.col.find_one({"run_id": run_id}, session=session)
                if current is None:
                    raise ConflictError(f"run {run_id} was deleted meanwhile", field="run_id")
                previous = current.get("status", "trained")
                check(previous, to)
                demoted = None
                if to == "production":
                    other = self.col.find_one(
                        {"name": current["name"], "status": "production", "run_id": {"$ne": current["run_id"]}},
                        session=session,
                    )
                    if other is not None:
                        self.col.update_one(
                            {"_id": other["_id"], "status": "production"},
                            {
                                "$set": {"status": demote_to, "status_changed_at": now()},
                                "$push": {
                                    "status_history": entry(
                                        "production",
                                        demote_to,
                                        by,
                                        f"replaced in production by {current['run_id']}",
                                    )
                                },
                            },
                            session=session,
                        )
                        demoted = {
                            "run_id": other["run_id"],
                            "version": other.get("version"),
                            "from": "production",
                            "to": demote_to,
                        }
                result = self.col.update_one(
                    {"_id": current["_id"], "status": current.get("status")},
                    {
                        "$set": {"status": to, "status_changed_at": now()},
                        "$push": {"status_history": entry(previous, to, by, reason)},
                    },
                    session=session,
                )
                if result.modified_count != 1:
                    raise _Changed()
                outcome.update({"from": previous, "demoted": demoted})

            try:
                in_transaction(self.database, work)
            except (_Changed, DuplicateKeyError):
                continue  # a concurrent change won the race: read the new state and try again
            return {**outcome, "run": self.col.find_one({"run_id": run_id})}
        raise ConflictError(
            f"run {run_id} kept changing while its status was being set; try again", field="run_id"
        )


def config_fields_for_run(run: dict[str, Any]) -> dict[str, Any]:
    """The fields a config holds about its current run (the seed system's names, then ours)."""
    arts = run.get("artifacts") or {}
    return {
        "run_id": run["run_id"],
        "model_artifact_path": arts.get("model", {}).get("path"),
        "scaler_artifact_path": arts.get("scaler", {}).get("path"),
        "features_path": arts.get("features", {}).get("path"),
        "artifacts_saved_at": iso(run["created_at"]) if run.get("created_at") else None,
        "artifacts": arts,
        "checksums": {k: v.get("sha256") for k, v in arts.items()},
        "metrics": {**(run.get("metrics") or {}), "cv": run.get("cv")},
        "status": "trained",
        "version": run.get("version"),
        "trained_at": run.get("created_at"),
        "data_fingerprint": (run.get("data") or {}).get("fingerprint"),
        "fold_spec": run.get("fold_spec"),
        "versions": run.get("versions"),
    }
