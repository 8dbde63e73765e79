"""The runs collection: one document per training, the registry's source of truth."""

from __future__ import annotations

from typing import Any

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from models.errors import ConflictError, NotFoundError
from models.store.db import Database
from models.store.versioning import change_kind, highest, next_version, parse_version
from models.timeutil import iso


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
    def __init__(self, database: Database) -> None:
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
