"""``python -m cli artifacts relocate``: rewrite documents so that no path in them means one machine only.

Documents written before this release can hold a local artifact path with the
writer's folder (``cli/models/<name>``) and a ``training_csv`` relative to the
writer's checkout or absolute. Both keep working as they are (local paths are
read by file name, see :meth:`LocalArtifactStore.resolve`; old CSV paths as
before), so this command is a clean-up, not a precondition. It rewrites:

- local artifact paths in runs, ensembles and configs to the bare file name;
- ``training_csv`` of configs, and of runs (``definition``, ``config``,
  ``data``), to ``@<root>/<path>`` where the file lies inside one of this
  machine's named data roots (:mod:`models.store.datarefs`).

Each document changes in one update, conditional on the values read, so a
document edited meanwhile is left for the next run (reported in ``changed``).
"""

from __future__ import annotations

import logging
from typing import Any

from models.artifacts.gridfs import is_gridfs_path
from models.artifacts.loading import PATH_FIELDS
from models.artifacts.routing import canonical_path
from models.errors import ServiceError
from models.store.datarefs import to_stored
from models.store.db import Database

log = logging.getLogger(__name__)

RUN_CSV_FIELDS = ("definition.training_csv", "config.training_csv", "data.training_csv")


def _get(doc: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)  # type: ignore[assignment]
    return doc


def _changes(
    collection: str, doc: dict[str, Any], database: Database, errors: list[dict[str, str]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, ref in (doc.get("artifacts") or {}).items():
        path = ref.get("path") if isinstance(ref, dict) else None
        if path and not is_gridfs_path(path) and canonical_path(path) != path:
            out[f"artifacts.{kind}.path"] = canonical_path(path)
    if collection == "configs":
        for name in PATH_FIELDS.values():
            path = doc.get(name)
            if path and not is_gridfs_path(path) and canonical_path(path) != path:
                out[name] = canonical_path(path)
    csv_fields = ("training_csv",) if collection == "configs" else RUN_CSV_FIELDS if collection == "runs" else ()
    for name in csv_fields:
        value = _get(doc, name)
        if isinstance(value, str) and value:
            try:
                stored = to_stored(value, database.settings)
            except ServiceError as exc:
                errors.append(
                    {
                        "document": f"{collection[:-1]} {doc.get('name') or doc.get('run_id')}",
                        "field": name,
                        "message": exc.message,
                    }
                )
                continue
            if stored != value:
                out[name] = stored
    return out


def relocate_documents(database: Database, *, dry_run: bool = False) -> dict[str, Any]:
    """Rewrite machine-specific paths (see the module docstring); returns what changed (or would)."""
    report: dict[str, Any] = {"dry_run": dry_run, "documents": {}, "changes": [], "changed": [], "errors": []}
    for collection in ("runs", "ensembles", "configs"):
        col = getattr(database, collection)
        count = 0
        for doc in col.find({}).sort("_id", 1):
            changes = _changes(collection, doc, database, report["errors"])
            if not changes:
                continue
            label = f"{collection[:-1]} {doc.get('name') or doc.get('run_id')}"
            report["changes"].append({"document": label, "set": changes})
            if dry_run:
                count += 1
                continue
            query = {"_id": doc["_id"], **{k: _get(doc, k) for k in changes}}
            if col.update_one(query, {"$set": changes}).matched_count:
                count += 1
            else:
                report["changed"].append(label)
        report["documents"][collection] = count
    log.info("relocate%s: %s", " (dry run)" if dry_run else "", report["documents"])
    return report
