"""The ensembles collection: one document per version of a stored ensemble (stacked or weighted).

Every read and write of ``ENSEMBLES_COLLECTION`` goes through :class:`EnsembleStore`. Inserting the
document is an ensemble's commit point (its files are written before it); deleting the document comes
before deleting its files.

Versions: ``(name, version)`` is unique (index ``name_version_unique``); re-creating an ensemble with
``new_version`` adds version N+1 beside the older ones, which stay loadable with their files. Each version
has a lifecycle ``stage`` (``none``, ``staging``, ``production``, ``archived``; a document without one is
``none``) and a ``stage_history``; at most one version per name is in ``production`` (partial unique index
``one_production_per_name``). Reads by plain name (:meth:`EnsembleStore.get`, :meth:`EnsembleStore.find`)
give the version ``NAME`` serves: the production one if there is one, else the highest.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError

from models.errors import ConflictError, NotFoundError
from models.store.db import Database

STAGES = ("none", "staging", "production", "archived")


def ensemble_exists(name: str) -> ConflictError:
    """The error for an ensemble name that is taken (re-creating it as a new version needs the flag)."""
    return ConflictError(
        f"an ensemble named {name!r} already exists; to add a new version of it, create it again with "
        "new_version (CLI: --new-version; on the page: Add as a new version)",
        field="name",
    )


def stage_of(doc: dict[str, Any]) -> str:
    """The lifecycle stage of an ensemble version (``none`` for documents written before stages)."""
    return doc.get("stage") or "none"


class EnsembleStore:
    """Ensemble documents in ``ENSEMBLES_COLLECTION``."""

    def __init__(self, database: Database) -> None:
        self.col = database.ensembles

    def get(self, name: str) -> dict[str, Any]:
        """The version ``name`` serves (production, else the highest), or NotFoundError naming it."""
        doc = self.find(name)
        if doc is None:
            raise NotFoundError(f"no ensemble named {name!r}", field="name")
        return doc

    def find(self, name: str) -> dict[str, Any] | None:
        """The version ``name`` serves: its production version if there is one, else its highest; or None."""
        return self.find_production(name) or self.latest(name)

    def latest(self, name: str) -> dict[str, Any] | None:
        """The highest version of ``name`` (documents without a version count as version 1)."""
        return self.col.find_one({"name": name}, sort=[("version", DESCENDING), ("_id", DESCENDING)])

    def find_version(self, name: str, version: int) -> dict[str, Any] | None:
        query: dict[str, Any] = {"name": name, "version": version}
        if version == 1:  # written before versions: the only one there is
            query = {"name": name, "$or": [{"version": 1}, {"version": {"$exists": False}}]}
        return self.col.find_one(query)

    def find_production(self, name: str) -> dict[str, Any] | None:
        return self.col.find_one({"name": name, "stage": "production"})

    def highest_with_stage(self, name: str, stage: str) -> dict[str, Any] | None:
        """The highest version of ``name`` in lifecycle ``stage``."""
        query: dict[str, Any] = {"name": name, "stage": stage}
        if stage == "none":
            query = {"name": name, "$or": [{"stage": "none"}, {"stage": {"$exists": False}}]}
        return self.col.find_one(query, sort=[("version", DESCENDING), ("_id", DESCENDING)])

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name``, oldest first."""
        return list(self.col.find({"name": name}).sort([("version", ASCENDING), ("_id", ASCENDING)]))

    def next_version(self, name: str) -> int:
        """The version number a new version of ``name`` gets (1 for a new name)."""
        top = self.latest(name)
        return 1 if top is None else int(top.get("version") or 1) + 1

    def set_stage(self, ensemble_id: Any, expected: str, to: str, entry: dict[str, Any]) -> dict[str, Any] | None:
        """Move one version from stage ``expected`` to ``to`` (appending ``entry`` to its history) if it
        is still in ``expected``; the updated document, or None when it moved meanwhile. ConflictError
        when another version of the name took production meanwhile."""
        match: dict[str, Any] = {"_id": ensemble_id, "stage": expected}
        if expected == "none":
            match = {"_id": ensemble_id, "$or": [{"stage": "none"}, {"stage": {"$exists": False}}]}
        try:
            return self.col.find_one_and_update(
                match, {"$set": {"stage": to}, "$push": {"stage_history": entry}}, return_document=True
            )
        except DuplicateKeyError:
            raise ConflictError(
                "another version was put in production at the same time; try again", field="to"
            ) from None

    def find_by_run(self, run_id: str) -> dict[str, Any] | None:
        """The ensemble whose own run id is ``run_id``, or None."""
        return self.col.find_one({"run_id": run_id})

    def exists(self, name: str) -> bool:
        return self.col.find_one({"name": name}, {"_id": 1}) is not None

    def refuse_taken(self, name: str, *, new_version: bool = False) -> None:
        """ConflictError when an ensemble named ``name`` exists, unless the caller asks for ``new_version``
        (checked before any work starts)."""
        if not new_version and self.exists(name):
            raise ensemble_exists(name)

    def list(self) -> list[dict[str, Any]]:
        """Every ensemble name once, by name: the version the name serves (production, else the highest),
        with ``version_count`` (how many versions it has)."""
        by_name: dict[str, list[dict[str, Any]]] = {}
        for doc in self.col.find({}).sort([("name", ASCENDING), ("version", ASCENDING), ("_id", ASCENDING)]):
            by_name.setdefault(doc["name"], []).append(doc)
        out = []
        for docs in by_name.values():
            chosen = next((d for d in docs if d.get("stage") == "production"), docs[-1])
            out.append({**chosen, "version_count": len(docs)})
        return out

    def insert(
        self, record: dict[str, Any], *, new_version: bool = False, keep_version: int | None = None
    ) -> dict[str, Any]:
        """Insert ``record`` (the commit point) as version 1, or with ``new_version`` as the name's next
        version (``keep_version``: that number when it is free, as an import keeps its version);
        ConflictError when the name (without ``new_version``) was taken meanwhile."""
        record.setdefault("stage", "none")
        record.setdefault("stage_history", [{"from": None, "to": record["stage"], "at": record.get("created_at")}])
        for attempt in range(5):
            record["version"] = self.next_version(record["name"]) if new_version else 1
            if new_version and attempt == 0 and keep_version is not None:
                record["version"] = keep_version
            try:
                self.col.insert_one(record)
            except DuplicateKeyError:
                record.pop("_id", None)
                if not new_version:
                    raise ensemble_exists(record["name"]) from None
                continue  # another version landed at the same time: take the next number
            return record
        raise ConflictError(f"could not add a version of ensemble {record['name']!r}; try again", field="name")

    def set_fields(self, ensemble_id: Any, fields: dict[str, Any]) -> None:
        self.col.update_one({"_id": ensemble_id}, {"$set": fields})

    def delete(self, ensemble_id: Any) -> None:
        self.col.delete_one({"_id": ensemble_id})

    def delete_using_run(self, name: str, run_id: str) -> dict[str, Any] | None:
        """Delete a version of ensemble ``name`` still built on ``run_id``; returns the deleted document."""
        return self.col.find_one_and_delete({"name": name, "base_run_ids": run_id})

    def using_run(self, run_id: str) -> list[dict[str, Any]]:
        """``[{"name", "run_id", "version"}]`` of the ensemble versions built on ``run_id``, by name."""
        docs = self.col.find({"base_run_ids": run_id}, {"name": 1, "run_id": 1, "version": 1}).sort(
            [("name", ASCENDING), ("version", ASCENDING)]
        )
        return [{"name": d.get("name"), "run_id": d.get("run_id"), "version": d.get("version")} for d in docs]

    def base_run_ids(self) -> set[str]:
        """Every run id some ensemble is built on."""
        return {rid for d in self.col.find({}, {"base_run_ids": 1}) for rid in d.get("base_run_ids", [])}

    def artifact_documents(self) -> list[dict[str, Any]]:
        """Every version of every ensemble (for garbage collection, verification and migration: an older
        version's files are kept as long as its document is), in insertion order."""
        return list(self.col.find({}).sort("_id", ASCENDING))

    def replace_paths(self, ensemble_id: Any, old: dict[str, str], new: dict[str, str]) -> bool:
        """Swap artifact path fields ``old`` for ``new`` if they still hold ``old`` (a migration)."""
        return bool(self.col.update_one({"_id": ensemble_id, **old}, {"$set": new}).matched_count)

    def count(self) -> int:
        return self.col.count_documents({})
