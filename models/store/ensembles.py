"""The ensembles collection: one document per stored ensemble (stacked or weighted), by unique name.

Every read and write of ``ENSEMBLES_COLLECTION`` goes through :class:`EnsembleStore`. Inserting the
document is an ensemble's commit point (its files are written before it); deleting the document comes
before deleting its files.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from models.errors import ConflictError, NotFoundError
from models.store.db import Database


def ensemble_exists(name: str) -> ConflictError:
    """The error for an ensemble name that is taken."""
    return ConflictError(f"an ensemble named {name!r} already exists", field="name")


class EnsembleStore:
    """Ensemble documents in ``ENSEMBLES_COLLECTION``."""

    def __init__(self, database: Database) -> None:
        self.col = database.ensembles

    def get(self, name: str) -> dict[str, Any]:
        """The ensemble named ``name``, or NotFoundError naming it."""
        doc = self.col.find_one({"name": name})
        if doc is None:
            raise NotFoundError(f"no ensemble named {name!r}", field="name")
        return doc

    def find(self, name: str) -> dict[str, Any] | None:
        return self.col.find_one({"name": name})

    def find_by_run(self, run_id: str) -> dict[str, Any] | None:
        """The ensemble whose own run id is ``run_id``, or None."""
        return self.col.find_one({"run_id": run_id})

    def exists(self, name: str) -> bool:
        return self.col.find_one({"name": name}, {"_id": 1}) is not None

    def refuse_taken(self, name: str) -> None:
        """ConflictError when an ensemble named ``name`` exists (checked before any work starts)."""
        if self.exists(name):
            raise ensemble_exists(name)

    def list(self) -> list[dict[str, Any]]:
        """Every ensemble, by name."""
        return list(self.col.find({}).sort("name", ASCENDING))

    def insert(self, record: dict[str, Any]) -> dict[str, Any]:
        """Insert ``record`` (the commit point); ConflictError when the name was taken meanwhile."""
        try:
            self.col.insert_one(record)
        except DuplicateKeyError:
            record.pop("_id", None)
            raise ensemble_exists(record["name"]) from None
        return record

    def set_fields(self, ensemble_id: Any, fields: dict[str, Any]) -> None:
        self.col.update_one({"_id": ensemble_id}, {"$set": fields})

    def delete(self, ensemble_id: Any) -> None:
        self.col.delete_one({"_id": ensemble_id})

    def delete_using_run(self, name: str, run_id: str) -> dict[str, Any] | None:
        """Delete ensemble ``name`` if it is still built on ``run_id``; returns the deleted document."""
        return self.col.find_one_and_delete({"name": name, "base_run_ids": run_id})

    def using_run(self, run_id: str) -> list[dict[str, Any]]:
        """``[{"name", "run_id"}]`` of the ensembles built on ``run_id``, by name."""
        docs = self.col.find({"base_run_ids": run_id}, {"name": 1, "run_id": 1}).sort("name", ASCENDING)
        return [{"name": d.get("name"), "run_id": d.get("run_id")} for d in docs]

    def base_run_ids(self) -> set[str]:
        """Every run id some ensemble is built on."""
        return {rid for d in self.col.find({}, {"base_run_ids": 1}) for rid in d.get("base_run_ids", [])}

    def artifact_documents(self) -> list[dict[str, Any]]:
        """Every ensemble (for garbage collection and migration), in insertion order."""
        return list(self.col.find({}).sort("_id", ASCENDING))

    def replace_paths(self, ensemble_id: Any, old: dict[str, str], new: dict[str, str]) -> bool:
        """Swap artifact path fields ``old`` for ``new`` if they still hold ``old`` (a migration)."""
        return bool(self.col.update_one({"_id": ensemble_id, **old}, {"$set": new}).matched_count)

    def count(self) -> int:
        return self.col.count_documents({})
