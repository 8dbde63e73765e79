"""Registry writes: lifecycle statuses and their history, and deleting runs.

Lifecycle: ``trained`` -> ``staging`` -> ``production`` -> ``archived`` (see ``TRANSITIONS``).
At most one run per name is in ``production``; the partial unique index
``one_production_per_name`` (models/store/db.py) makes that hold even when two
promotions race. A promotion demotes the current production run (to ``staging``
by default, or ``archived``) inside a transaction when the server supports
them; otherwise it demotes first and promotes second, so the invariant never
breaks (a crash in between leaves no production run rather than two).

Delete: refused while an ensemble uses the run; ``force=True`` deletes those
ensembles (documents, then files) first. When the deleted run is its config's
current run, the config is pointed at the config's most recent remaining run
(what it pointed at before that training), or, when none remains, its artifact
fields are removed and its status set back to ``new``; the config never points
at files that no longer exist.
"""

from __future__ import annotations

import logging
from typing import Any

from models.artifacts.base import ArtifactStore
from models.artifacts.cache import get_model_cache
from models.artifacts.routing import get_store
from models.errors import ArtifactError, ConflictError, ValidationError
from models.registry.query import STATUSES, resolve
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from models.store.runs import RunStore, config_fields_for_run
from models.timeutil import now

log = logging.getLogger(__name__)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "trained": ("staging", "production", "archived"),
    "staging": ("production", "archived", "trained"),
    "production": ("staging", "archived"),
    "archived": ("staging", "trained"),
}
DEMOTE_TO = ("staging", "archived")
CONFIG_RUN_FIELDS = (
    "run_id",
    "model_artifact_path",
    "scaler_artifact_path",
    "features_path",
    "artifacts_saved_at",
    "artifacts",
    "checksums",
    "metrics",
    "version",
    "trained_at",
    "data_fingerprint",
    "fold_spec",
    "versions",
)


def allowed_transitions(status: str) -> list[str]:
    """The statuses a run in ``status`` may move to."""
    if status not in TRANSITIONS:
        raise ValidationError(f"status {status!r} is not one of: {', '.join(STATUSES)}", field="status")
    return list(TRANSITIONS[status])


def check_transition(current: str, to: str) -> None:
    """:class:`ValidationError` with the allowed choices unless ``current -> to`` is allowed."""
    if to not in STATUSES:
        raise ValidationError(f"status {to!r} is not one of: {', '.join(STATUSES)}", field="to")
    if current == to:
        raise ValidationError(f"the run is already in {to}", field="to")
    allowed = TRANSITIONS.get(current, ())
    if to not in allowed:
        raise ValidationError(
            f"cannot move a run from {current} to {to}; from {current} it can go to: "
            f"{', '.join(allowed) or 'nothing'}",
            field="to",
        )


def history_entry(previous: str | None, to: str, by: str | None, reason: str | None = None) -> dict[str, Any]:
    """One ``status_history`` entry (``status`` repeats ``to`` for entries written by training)."""
    entry = {"from": previous, "to": to, "status": to, "at": now(), "by": by}
    if reason:
        entry["reason"] = reason
    return entry


def set_status(
    database: Database,
    run_id: str,
    to: str,
    *,
    by: str | None = None,
    reason: str | None = None,
    demote_to: str = "staging",
) -> dict[str, Any]:
    """Move a run to another lifecycle status, recording who and when.

    Promoting to ``production`` moves the name's current production run to ``demote_to``
    (``staging`` or ``archived``) in the same transaction. Returns ``{"run_id", "from", "to",
    "demoted": {"run_id", "from", "to"} | None, "run": updated document}``.
    """
    run = resolve(database, run_id)
    if demote_to not in DEMOTE_TO:
        raise ValidationError(f"demote_to must be one of: {', '.join(DEMOTE_TO)}", field="demote_to")
    if by is not None and not isinstance(by, str):
        raise ValidationError("by must be a string", field="by")
    check_transition(run.get("status", "trained"), to)
    outcome = RunStore(database).transition(
        run["run_id"], to, demote_to=demote_to, check=check_transition, entry=history_entry, by=by, reason=reason
    )
    log.info(
        "run %s: %s -> %s%s",
        run["run_id"],
        outcome["from"],
        to,
        f" (demoted {outcome['demoted']['run_id']})" if outcome["demoted"] else "",
    )
    return {
        "run_id": run["run_id"],
        "from": outcome["from"],
        "to": to,
        "demoted": outcome["demoted"],
        "run": outcome["run"],
    }


def promote(
    database: Database,
    run_id: str,
    *,
    by: str | None = None,
    demote_to: str = "staging",
    reason: str | None = None,
) -> dict[str, Any]:
    """Put a run in production (see :func:`set_status`)."""
    return set_status(database, run_id, "production", by=by, reason=reason, demote_to=demote_to)


def history(database: Database, run_id: str) -> list[dict[str, Any]]:
    """The run's status transitions, oldest first: ``[{"from", "to", "at", "by", "reason"}]``."""
    run = resolve(database, run_id)
    out = []
    previous = None
    for entry in run.get("status_history") or []:
        to = entry.get("to") or entry.get("status")
        out.append(
            {
                "from": entry.get("from", previous),
                "to": to,
                "at": entry.get("at"),
                "by": entry.get("by"),
                "reason": entry.get("reason"),
            }
        )
        previous = to
    return out


# ---------------------------------------------------------------- delete


def ensembles_using(database: Database, run_id: str) -> list[dict[str, Any]]:
    """Ensembles whose ``base_run_ids`` contain ``run_id``: ``[{"name", "run_id"}]``, by name."""
    return EnsembleStore(database).using_run(run_id)


def _delete_files(
    store: ArtifactStore, artifacts: dict[str, Any] | None, owner: str
) -> tuple[list[str], list[str]]:
    deleted, missing = [], []
    for info in (artifacts or {}).values():
        path = (info or {}).get("path") if isinstance(info, dict) else None
        if not path:
            continue
        try:
            (deleted if store.delete(path) else missing).append(path)
        except (ArtifactError, OSError) as exc:  # a refused path is never touched; the document is gone anyway
            log.warning("%s: artifact %s not deleted: %s", owner, path, exc)
            missing.append(path)
    return deleted, missing


def _repoint_config(database: Database, run: dict[str, Any]) -> dict[str, Any] | None:
    """If ``run`` is its config's current run, point the config at its previous run (or clear it)."""
    configs = ConfigStore(database)
    config = configs.find_by_run(run["run_id"])
    if config is None:
        return None
    previous = RunStore(database).previous_of_config(config["_id"], run["run_id"])
    if previous is not None:
        configs.point_at_run(config["_id"], run["run_id"], config_fields_for_run(previous))
        return {
            "name": config.get("name"),
            "action": "repointed",
            "run_id": previous["run_id"],
            "version": previous.get("version"),
        }
    configs.clear_run(config["_id"], run["run_id"], CONFIG_RUN_FIELDS)
    return {"name": config.get("name"), "action": "cleared", "run_id": None, "version": None}


def delete_run(
    database: Database, run_id: str, *, force: bool = False, store: ArtifactStore | None = None
) -> dict[str, Any]:
    """Delete a run's document and files.

    Refused (:class:`ConflictError` naming the ensembles) while ensembles use the run, unless
    ``force``: then those ensembles are deleted first. Returns ``{"run_id", "name", "version",
    "deleted_files", "missing_files", "deleted_ensembles": [names], "config": {"name", "action",
    "run_id", "version"} | None}``.
    """
    run = resolve(database, run_id)
    store = store or get_store(database.settings)
    users = ensembles_using(database, run["run_id"])
    if users and not force:
        names = ", ".join(u["name"] for u in users)
        raise ConflictError(
            f"run {run['run_id']} is used by {len(users)} ensemble(s): {names}; delete them "
            "first or use force to delete them too",
            field="run_id",
        )
    deleted_ensembles = []
    for user in users:
        doc = EnsembleStore(database).delete_using_run(user["name"], run["run_id"])
        if doc is not None:
            _delete_files(store, doc.get("artifacts"), f"ensemble {doc.get('name')}")
            deleted_ensembles.append(doc.get("name"))
            log.info("ensemble %s deleted with run %s", doc.get("name"), run["run_id"])
    config = _repoint_config(database, run)
    RunStore(database).delete(run["_id"])  # the commit point: files go after the document
    deleted, missing = _delete_files(store, run.get("artifacts"), f"run {run['run_id']}")
    get_model_cache(database.settings).discard(lambda key: isinstance(key, tuple) and key[:1] == (run["run_id"],))
    log.info("run %s (%s %s) deleted", run["run_id"], run.get("name"), run.get("version"))
    return {
        "run_id": run["run_id"],
        "name": run.get("name"),
        "version": run.get("version"),
        "deleted_files": deleted,
        "missing_files": missing,
        "deleted_ensembles": deleted_ensembles,
        "config": config,
    }


def prune_runs(
    database: Database, *, keep: int, dry_run: bool = False, store: ArtifactStore | None = None
) -> list[dict[str, Any]]:
    """Delete runs beyond the newest ``keep`` per config name, with their files.

    Never deletes a config's current run, a ``production`` run, or a run an
    ensemble uses. Returns ``[{run_id, name, version}]`` of what was (or, with
    ``dry_run``, would be) deleted.
    """
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ValidationError(f"keep must be a whole number >= 1, got {keep!r}", field="keep")
    current = ConfigStore(database).current_run_ids()
    used = EnsembleStore(database).base_run_ids()
    runs_store = RunStore(database)
    doomed = []
    for name in runs_store.names():
        for run in runs_store.summaries_for_name(name)[keep:]:
            if run["run_id"] in current or run["run_id"] in used or run.get("status") == "production":
                continue
            doomed.append({"run_id": run["run_id"], "name": name, "version": run.get("version")})
    if not dry_run:
        for entry in doomed:
            delete_run(database, entry["run_id"], store=store)
    return doomed
