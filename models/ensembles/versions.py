"""Ensemble lifecycle: stages of an ensemble's versions and their history (as the registry does for runs).

Stages: ``none`` (a new version) -> ``staging`` -> ``production`` -> ``archived`` (see ``TRANSITIONS``, the
same moves as a model run's ``trained``/``staging``/``production``/``archived``). At most one version per
name is in ``production`` (the partial unique index ``one_production_per_name``, models/store/db.py):
promoting a version demotes the current production one first (to ``staging`` by default, as ``models
promote`` does, or ``archived``), so the invariant never breaks. Every move is appended to the version's
``stage_history`` with who, when and why.

A version is named by an ensemble reference (:func:`models.store.references.resolve_ensemble`); for a
lifecycle move a plain ``NAME`` means its highest version (as ``models promote NAME`` means the latest run).
"""

from __future__ import annotations

import logging
from typing import Any

from models.errors import ValidationError
from models.store.db import Database
from models.store.ensembles import STAGES, EnsembleStore, stage_of
from models.store.references import RUN_ID_RE, Served, resolve_ensemble
from models.store.runs import RunStore
from models.timeutil import now

log = logging.getLogger(__name__)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "none": ("staging", "production", "archived"),
    "staging": ("production", "archived", "none"),
    "production": ("staging", "archived"),
    "archived": ("staging", "none"),
}
DEMOTE_TO = ("staging", "archived")


def check_transition(current: str, to: str) -> None:
    """ValidationError with the allowed choices unless ``current -> to`` is allowed."""
    if to not in STAGES:
        raise ValidationError(f"stage {to!r} is not one of: {', '.join(STAGES)}", field="to")
    if current == to:
        raise ValidationError(f"the version is already in {to}", field="to")
    allowed = TRANSITIONS.get(current, ())
    if to not in allowed:
        raise ValidationError(
            f"cannot move an ensemble version from {current} to {to}; from {current} it can go to: "
            f"{', '.join(allowed) or 'nothing'}",
            field="to",
        )


def version_to_move(database: Database, ref: str) -> Served:
    """The version a lifecycle move of ``ref`` applies to: a plain name is its highest version."""
    if isinstance(ref, str) and "@" not in ref and not RUN_ID_RE.match(ref.strip()):
        return resolve_ensemble(database, f"{ref.strip()}@latest")
    return resolve_ensemble(database, ref)


def _entry(previous: str, to: str, by: str | None, reason: str | None) -> dict[str, Any]:
    entry = {"from": previous, "to": to, "at": now(), "by": by}
    if reason:
        entry["reason"] = reason
    return entry


def set_stage(
    database: Database,
    ref: str,
    to: str,
    *,
    by: str | None = None,
    reason: str | None = None,
    demote_to: str = "staging",
) -> dict[str, Any]:
    """Move ensemble version ``ref`` to stage ``to`` (``staging``, ``production``, ``archived``, ``none``).

    Promoting to ``production`` first moves the name's current production version to ``demote_to``.
    Returns ``{"name", "version", "run_id", "from", "to", "demoted": {"version", "run_id", "from", "to"} |
    None, "ensemble": updated document}``. Nothing changes when the move is refused.
    """
    if demote_to not in DEMOTE_TO:
        raise ValidationError(f"demote_to must be one of: {', '.join(DEMOTE_TO)}", field="demote_to")
    if by is not None and not isinstance(by, str):
        raise ValidationError("by must be a string", field="by")
    served = version_to_move(database, ref)
    doc = served.doc
    current = stage_of(doc)
    check_transition(current, to)
    store = EnsembleStore(database)
    demoted = None
    if to == "production":
        previous = store.find_production(served.name)
        if previous is not None and previous["_id"] != doc["_id"]:
            why = f"version {served.version} promoted" + (f": {reason}" if reason else "")
            if store.set_stage(previous["_id"], "production", demote_to, _entry("production", demote_to, by, why)):
                demoted = {
                    "version": previous.get("version"),
                    "run_id": previous["run_id"],
                    "from": "production",
                    "to": demote_to,
                }
    updated = store.set_stage(doc["_id"], current, to, _entry(current, to, by, reason))
    if updated is None:
        raise ValidationError(
            f"ensemble {served.name!r} version {served.version} changed stage meanwhile; look again", field="to"
        )
    log.info(
        "ensemble %s version %s: %s -> %s%s",
        served.name,
        served.version,
        current,
        to,
        f" (demoted version {demoted['version']})" if demoted else "",
    )
    return {
        "name": served.name,
        "version": served.version,
        "run_id": served.run_id,
        "from": current,
        "to": to,
        "demoted": demoted,
        "ensemble": updated,
    }


def promote(database: Database, ref: str, **options: Any) -> dict[str, Any]:
    """Put ensemble version ``ref`` in production (see :func:`set_stage`)."""
    return set_stage(database, ref, "production", **options)


def history(database: Database, name: str) -> dict[str, Any]:
    """Every version of ensemble ``name``, oldest first, and which version ``name`` serves.

    Returns ``{"name", "serves": {"version", "run_id", "served"}, "versions": [{"version", "run_id",
    "stage", "created_at", "description", "meta_model", "metrics", "bases": [{"name", "version", "run_id",
    "ref"}], "stage_history"}]}``. ``name`` may be any reference of the ensemble; its name is used.
    """
    served = resolve_ensemble(database, name)
    docs = EnsembleStore(database).versions(served.name)
    run_ids = sorted({rid for d in docs for rid in d.get("base_run_ids") or []})
    runs = RunStore(database).find_many(run_ids) if run_ids else {}
    versions = []
    for doc in docs:
        refs = doc.get("base_refs") or doc.get("base_names") or []
        recorded = doc.get("base_versions") or [None] * len(doc.get("base_run_ids") or [])
        bases = []
        for i, (base, run_id) in enumerate(zip(doc.get("base_names") or [], doc.get("base_run_ids") or [])):
            version = recorded[i] if i < len(recorded) and recorded[i] else (runs.get(run_id) or {}).get("version")
            bases.append(
                {"name": base, "version": version, "run_id": run_id, "ref": refs[i] if i < len(refs) else base}
            )
        versions.append(
            {
                "version": int(doc.get("version") or 1),
                "run_id": doc["run_id"],
                "stage": stage_of(doc),
                "created_at": doc.get("created_at"),
                "description": doc.get("description"),
                "kind": doc.get("kind") or "stacked",
                "meta_model": doc.get("meta_model"),
                "metrics": doc.get("metrics") or {},
                "bases": bases,
                "stage_history": doc.get("stage_history") or [],
            }
        )
    top = resolve_ensemble(database, served.name)
    return {"name": served.name, "serves": top.describe(), "versions": versions}
