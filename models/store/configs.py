"""Model config documents: CRUD validated on every write, and their training lifecycle.

Updates are compare-and-swap on a revision counter (``rev``), so two writers
never silently overwrite each other's changes.

Who writes a config's ``status``: only :class:`ConfigStore` (and the two recovery functions at the
end of this module). The lifecycle is ``new`` -> ``training`` (:meth:`ConfigStore.mark_training`) ->
``trained`` (:meth:`ConfigStore.record_run`, the commit point of a training) or ``failed``
(:meth:`ConfigStore.mark_failed`, the previous run kept); deleting a config's current run repoints
it (:meth:`ConfigStore.point_at_run`) or clears it back to ``new`` (:meth:`ConfigStore.clear_run`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models.errors import ConflictError, NotFoundError, ValidationError
from models.processes import current_owner, owner_is_dead
from models.store.columns import DATA_FIELDS, check_training_columns
from models.store.data_roots import check_data_root
from models.store.datarefs import to_stored
from models.store.db import Database
from models.store.schema import SERVER_FIELDS, TRAINING_FIELDS, refuse_service_fields, validate_config
from models.timeutil import now

log = logging.getLogger(__name__)

SORTABLE = ("name", "task", "model_type", "status", "created_at", "updated_at", "trained_at")


def config_filter(name_or_id: str | ObjectId) -> dict[str, Any]:
    """Match a config by ``_id`` (ObjectId or its hex) or by name."""
    if isinstance(name_or_id, ObjectId):
        return {"_id": name_or_id}
    if isinstance(name_or_id, str) and len(name_or_id) == 24:
        try:
            return {"$or": [{"_id": ObjectId(name_or_id)}, {"name": name_or_id}]}
        except InvalidId:
            pass
    return {"name": name_or_id}


def user_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields of a config document that its user owns (not written by training or the server)."""
    return {k: v for k, v in doc.items() if k not in TRAINING_FIELDS and k not in SERVER_FIELDS}


class ConfigStore:
    """Model configs in ``CONFIG_COLLECTION``."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.col = database.configs

    def create(self, doc: dict[str, Any], *, from_user: bool = False, check_data: bool = True) -> dict[str, Any]:
        """Insert a new config. ``from_user`` (the API, the form, ``configs add``): fields only training
        or the server writes are refused, as in updates; without it (imports of existing documents,
        e.g. a seed-system config with its artifact paths) they are kept. ``training_csv`` must lie
        inside a data root (``DATA_ROOTS``), always. ``check_data`` (the default) also refuses a training
        CSV that does not exist or lacks a named column; only an imported, already trained run skips it."""
        if from_user:
            refuse_service_fields(doc)
        clean = validate_config(
            {k: v for k, v in doc.items() if k not in SERVER_FIELDS},
            limits=self.database.settings.hyperparameter_limit,
        )
        check_data_root(clean["training_csv"], self.database.settings)
        if check_data:  # on the path as given, so that messages name it as the user wrote it
            check_training_columns(clean, self.database.settings)
        clean = self._portable(clean)
        stamp = now()
        clean.setdefault("status", "trained" if clean.get("run_id") else "new")
        clean.update(created_at=stamp, updated_at=stamp, rev=1)
        try:
            result = self.col.insert_one(clean)
        except DuplicateKeyError:
            raise ConflictError(f"a config named {clean['name']!r} already exists", field="name") from None
        clean["_id"] = result.inserted_id
        log.info("config %s created", clean["name"])
        return clean

    def _portable(self, clean: dict[str, Any]) -> dict[str, Any]:
        """``training_csv`` inside a named data root is stored as ``@root/path`` (see :mod:`models.store.datarefs`)."""
        if clean.get("training_csv"):
            clean["training_csv"] = to_stored(clean["training_csv"], self.database.settings)
        return clean

    def get(self, name_or_id: str | ObjectId) -> dict[str, Any]:
        doc = self.col.find_one(config_filter(name_or_id))
        if doc is None:
            raise NotFoundError(f"no config named {name_or_id!r}", field="name")
        return doc

    def find(self, name_or_id: str | ObjectId) -> dict[str, Any] | None:
        return self.col.find_one(config_filter(name_or_id))

    def list(
        self,
        *,
        task: str | None = None,
        model_type: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        q: str | None = None,
        sort: str = "name",
        descending: bool = False,
        limit: int = 0,
        skip: int = 0,
    ) -> list[dict[str, Any]]:
        flt: dict[str, Any] = {}
        if task:
            flt["task"] = task
        if model_type:
            flt["model_type"] = model_type
        if status:
            flt["status"] = status if status != "new" else {"$in": ["new", None]}
        if tag:
            flt["tags"] = tag
        if q:
            flt["name"] = {"$regex": re.escape(q), "$options": "i"}
        if sort not in SORTABLE:
            raise ValidationError(f"cannot sort by {sort!r}; choose from: {', '.join(SORTABLE)}", field="sort")
        cursor = self.col.find(flt).sort([(sort, DESCENDING if descending else ASCENDING), ("_id", ASCENDING)])
        if skip:
            cursor = cursor.skip(skip)
        if limit:
            cursor = cursor.limit(limit)
        return list(cursor)

    def update(
        self, name_or_id: str | ObjectId, changes: dict[str, Any], *, unset: Iterable[str] = (), retries: int = 5
    ) -> dict[str, Any]:
        """Apply user changes (validated against the whole merged document)."""
        refuse_service_fields([*changes, *unset])
        for _ in range(retries):
            current = self.get(name_or_id)
            merged = {**current, **changes}
            for key in unset:
                merged.pop(key, None)
            if "features" in changes and "feature_types" not in changes and merged.get("feature_types"):
                # the types detected for columns that are no longer features go; new ones are detected
                kept = set(merged.get("features") or [])
                merged["feature_types"] = {k: v for k, v in merged["feature_types"].items() if k in kept}
            clean = validate_config(merged, limits=self.database.settings.hyperparameter_limit)
            if "training_csv" in changes:
                check_data_root(clean["training_csv"], self.database.settings)
            if any(clean.get(k) != current.get(k) for k in DATA_FIELDS):
                check_training_columns(clean, self.database.settings)
            if "training_csv" in changes:  # an unchanged path keeps its form (the run's definition holds it)
                clean = self._portable(clean)
            to_set = {k: v for k, v in clean.items() if k not in SERVER_FIELDS and current.get(k) != v}
            to_unset = {k: "" for k in current if k not in clean and k not in SERVER_FIELDS}
            if not to_set and not to_unset:
                return current
            update: dict[str, Any] = {"$set": {**to_set, "updated_at": now()}, "$inc": {"rev": 1}}
            if to_unset:
                update["$unset"] = to_unset
            try:
                doc = self.col.find_one_and_update(
                    {"_id": current["_id"], "rev": current.get("rev")},
                    update,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                raise ConflictError(
                    f"a config named {changes.get('name')!r} already exists", field="name"
                ) from None
            if doc is not None:
                return doc
        raise ConflictError(f"config {name_or_id!r} kept changing while it was being updated; try again")

    def replace(self, name_or_id: str | ObjectId, fields: dict[str, Any]) -> dict[str, Any]:
        """Replace the user's fields with ``fields``: user fields left out are removed (the name stays
        unless given); fields written by training are kept."""
        current = self.get(name_or_id)
        unset = [k for k in user_fields(current) if k not in fields and k != "name"]
        return self.update(current["_id"], fields, unset=unset)

    def delete(self, name_or_id: str | ObjectId) -> dict[str, Any]:
        doc = self.get(name_or_id)
        self.col.delete_one({"_id": doc["_id"]})
        log.info("config %s deleted", doc["name"])
        return doc

    def count(self) -> int:
        return self.col.count_documents({})

    # ---- reads beyond one config

    def find_many(self, names_or_ids: list[Any]) -> dict[Any, dict[str, Any] | None]:
        """``ref -> document or None`` for each name or id (unknown ones map to None)."""
        return {ref: self.col.find_one(config_filter(ref)) for ref in names_or_ids}

    def find_by_run(self, run_id: str) -> dict[str, Any] | None:
        """The config whose current run is ``run_id``, or None."""
        return self.col.find_one({"run_id": run_id})

    def taken_names(self, names: list[str]) -> list[str]:
        """Those of ``names`` that configs already have, sorted."""
        return sorted(d["name"] for d in self.col.find({"name": {"$in": list(names)}}, {"name": 1}))

    def current_run_ids(self) -> set[str]:
        """The current run id of every config that has one."""
        return {d["run_id"] for d in self.col.find({}, {"run_id": 1}) if d.get("run_id")}

    def artifact_documents(self) -> list[dict[str, Any]]:
        """Every config (for garbage collection and migration), in insertion order."""
        return list(self.col.find({}).sort("_id", ASCENDING))

    def replace_paths(self, config_id: Any, old: dict[str, str], new: dict[str, str]) -> bool:
        """Swap artifact path fields ``old`` for ``new`` if they still hold ``old`` (a migration)."""
        return bool(self.col.update_one({"_id": config_id, **old}, {"$set": new}).matched_count)

    def restore_fields(self, previous: dict[str, Any]) -> None:
        """Put back the document ``previous`` exactly (undoing a repoint of an import that could not finish)."""
        self.col.replace_one({"_id": previous["_id"]}, previous)

    def remove(self, config_id: Any) -> None:
        """Delete by id without the checks of :meth:`delete` (undoing a create that could not finish)."""
        self.col.delete_one({"_id": config_id})

    # ---- the training lifecycle (the only writers of ``status`` besides the recovery functions below)

    def mark_training(self, config_id: Any, started_at: Any) -> None:
        """``status: training``, by this process (so a restart can tell a training that died)."""
        self.col.update_one(
            {"_id": config_id},
            {"$set": {"status": "training", "training_started_at": started_at, "training_owner": current_owner()}},
        )

    def record_run(self, config_id: Any, fields: dict[str, Any], stamp: Any) -> None:
        """Point the config at its new run (``fields``: :func:`models.store.runs.config_fields_for_run`,
        plus extras): ``status: trained``, the error and the training marks removed."""
        self.col.update_one(
            {"_id": config_id},
            {
                "$set": {**fields, "status": "trained", "updated_at": stamp},
                "$unset": {"error": "", "training_started_at": "", "training_owner": ""},
                "$inc": {"rev": 1, "runs_count": 1},
            },
        )

    def mark_failed(self, config_id: Any, error: dict[str, Any]) -> None:
        """``status: failed`` with ``error``; the previous run's fields stay as they are."""
        self.col.update_one(
            {"_id": config_id},
            {
                "$set": {"status": "failed", "error": error},
                "$unset": {"training_started_at": "", "training_owner": ""},
            },
        )

    def point_at_run(self, config_id: Any, from_run_id: str, fields: dict[str, Any]) -> None:
        """Point the config at another run if it still points at ``from_run_id`` (its run was deleted)."""
        self.col.update_one(
            {"_id": config_id, "run_id": from_run_id},
            {"$set": {**fields, "updated_at": now()}, "$inc": {"rev": 1}},
        )

    def clear_run(self, config_id: Any, from_run_id: str, run_fields: Iterable[str]) -> None:
        """Remove the run fields and go back to ``status: new`` if the config still points at ``from_run_id``."""
        self.col.update_one(
            {"_id": config_id, "run_id": from_run_id},
            {
                "$unset": {k: "" for k in run_fields},
                "$set": {"status": "new", "updated_at": now()},
                "$inc": {"rev": 1},
            },
        )


_training_here: set[ObjectId] = set()
_training_here_lock = threading.Lock()


def training_here(config_id: ObjectId, active: bool) -> None:
    """Note that this process starts (``active``) or ends training ``config_id``.

    :func:`recover_interrupted_trainings` uses it to tell a training this process still runs
    from a config it left ``training`` when the database went away as the training ended.
    """
    with _training_here_lock:
        if active:
            _training_here.add(config_id)
        else:
            _training_here.discard(config_id)


def _is_mine(owner: dict[str, Any]) -> bool:
    mine = current_owner()
    return owner.get("instance") == mine["instance"] and owner.get("pid") == mine["pid"]


def recover_interrupted_trainings(database: Database) -> list[dict[str, Any]]:
    """Mark ``failed`` the configs left ``training`` by a training that is no longer running.

    That is: its process died (kill -9, power loss, a stopped worker process), or it is this
    process but the training already ended (the database was unreachable when it wanted to
    record the outcome). Such a training never reached its commit point, so the config still
    points at its previous run (if any); only its status is wrong. Called at service start
    and whenever a job ends failed. Only owners on this host can be judged; returns the
    configs it changed.
    """
    changed = []
    for doc in database.configs.find(
        {"status": "training", "training_owner": {"$exists": True}}, {"name": 1, "training_owner": 1}
    ):
        owner = doc["training_owner"]
        if _is_mine(owner):
            with _training_here_lock:
                if doc["_id"] in _training_here:
                    continue
            message = (
                "training did not finish: its outcome could not be recorded (the database was "
                "unreachable); the previous run, if any, is unchanged"
            )
        elif owner_is_dead(owner):
            message = (
                f"training was interrupted: the process running it stopped (pid {owner.get('pid')} "
                f"on host {owner.get('host')}); the previous run, if any, is unchanged"
            )
        else:
            continue
        error = {"code": "process_died", "at": now(), "message": message}
        done = database.configs.find_one_and_update(
            {"_id": doc["_id"], "status": "training", "training_owner": owner},
            {
                "$set": {"status": "failed", "error": error},
                "$unset": {"training_started_at": "", "training_owner": ""},
            },
            return_document=True,
        )
        if done is not None:
            log.warning(
                "config %s was left training by a training that no longer runs; marked failed", doc["name"]
            )
            changed.append(done)
    return changed


def fail_trainings_of(database: Database, owner: dict[str, Any], error: dict[str, Any]) -> list[str]:
    """Mark ``failed`` with ``error`` the configs that process ``owner`` left ``training``.

    Used when a training is stopped from outside (cancel, time limit): it never reached its
    commit point, so the previous run, if any, is untouched. Returns the names it changed.
    """
    changed = []
    query = {
        "status": "training",
        "training_owner.instance": owner.get("instance"),
        "training_owner.pid": owner.get("pid"),
    }
    for doc in database.configs.find(query, {"name": 1}):
        done = database.configs.find_one_and_update(
            {**query, "_id": doc["_id"]},
            {
                "$set": {"status": "failed", "error": {**error, "at": now()}},
                "$unset": {"training_started_at": "", "training_owner": ""},
            },
        )
        if done is not None:
            log.warning("config %s: training stopped (%s)", doc["name"], error.get("code"))
            changed.append(doc["name"])
    return changed
