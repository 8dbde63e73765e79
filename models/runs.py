"""The runs collection: one document per training, the registry's source of truth."""
from __future__ import annotations

from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from .db import Database
from .errors import ConflictError, NotFoundError
from .versioning import change_kind, highest, next_version, parse_version


class RunStore:
    def __init__(self, database: Database) -> None:
        self.col = database.runs

    def get(self, run_id: str) -> dict[str, Any]:
        doc = self.col.find_one({"run_id": run_id})
        if doc is None:
            raise NotFoundError(f"no run with id {run_id!r}", field="run_id")
        return doc

    def find(self, run_id: str) -> dict[str, Any] | None:
        return self.col.find_one({"run_id": run_id})

    def for_name(self, name: str, limit: int = 0) -> list[dict[str, Any]]:
        return list(self.col.find({"name": name}).sort("created_at", DESCENDING).limit(limit))

    def latest(self, name: str) -> dict[str, Any] | None:
        versions = [d["version"] for d in self.col.find({"name": name}, {"version": 1})]
        top = highest(versions)
        return self.col.find_one({"name": name, "version": top}) if top else None

    def insert_versioned(self, run: dict[str, Any], version: str | None = None, retries: int = 20) -> dict[str, Any]:
        """Insert ``run`` with the next version for its name (or ``version`` if given and free).

        The unique ``(name, version)`` index decides races: a loser recomputes and tries again.
        """
        if version is not None:
            parse_version(version)
            run["version"] = version
            run["version_change"] = "manual"
            try:
                self.col.insert_one(run)
            except DuplicateKeyError:
                run.pop("_id", None)
                raise ConflictError(f"{run['name']} version {version} already exists", field="version") from None
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
                if "run_id" in str(exc):
                    raise
        raise ConflictError(f"could not assign a version to {run['name']}: too many concurrent saves")

