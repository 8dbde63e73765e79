"""Registry from the web: query-string parsing shared by the registry pages and ``/api/registry``,
and the archive download. The registry itself is :mod:`models.registry`.

Metric thresholds come as ``min=f1:0.8`` / ``max=rmse=3.5`` (repeatable, or
comma-separated), the same notation as the CLI's ``--min f1=0.8``.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
from pathlib import Path
from typing import Any

from werkzeug.datastructures import MultiDict

from models import registry
from models.errors import ValidationError
from models.store.db import Database
from web.services import refuse_trust_over_http

PER_PAGE = 25
MAX_PER_PAGE = 500
SEARCH_FILTERS = ("name", "q", "target", "data", "model_type", "task", "status", "since", "until")


def parse_thresholds(values: list[str], field: str) -> dict[str, str]:
    """``["f1:0.8", "roc_auc=0.7,accuracy:0.6"]`` -> ``{"f1": "0.8", ...}`` (numbers are checked by the registry)."""
    out: dict[str, str] = {}
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            sep = "=" if "=" in part else ":"
            metric, found, number = part.partition(sep)
            if not found or not metric.strip() or not number.strip():
                raise ValidationError(
                    f"{field}: write thresholds as metric=value (e.g. f1=0.8), got {part!r}", field=field
                )
            out[metric.strip()] = number.strip()
    return out


def _int(args: MultiDict, name: str, default: int, maximum: int) -> int:
    raw = (args.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be a whole number, got {raw!r}", field=name) from None
    if not 1 <= value <= maximum:
        raise ValidationError(f"{name} must be between 1 and {maximum}", field=name)
    return value


def search_args(args: MultiDict) -> dict[str, Any]:
    """Keyword arguments for :func:`models.registry.search` from a query string (ValidationError naming the field)."""
    kwargs: dict[str, Any] = {k: (args.get(k) or "").strip() or None for k in SEARCH_FILTERS}
    tags = [t.strip() for t in args.getlist("tag") for t in t.split(",") if t.strip()]
    kwargs["tags"] = tags or None
    kwargs["min_metrics"] = parse_thresholds(args.getlist("min"), "min") or None
    kwargs["max_metrics"] = parse_thresholds(args.getlist("max"), "max") or None
    kwargs["sort"] = (args.get("sort") or "").strip() or "created_at"
    order = (args.get("order") or "").strip()
    if order not in ("", "asc", "desc"):
        raise ValidationError("order must be 'asc' or 'desc'", field="order")
    kwargs["descending"] = None if not order else order == "desc"
    kwargs["page"] = _int(args, "page", 1, 10**6)
    kwargs["per_page"] = _int(args, "per_page", PER_PAGE, MAX_PER_PAGE)
    return kwargs


def best_args(args: MultiDict) -> dict[str, Any]:
    """Arguments for :func:`models.registry.best`: ``metric`` (required) and optional scope filters."""
    metric = (args.get("metric") or "").strip()
    if not metric:
        raise ValidationError("metric is required (e.g. metric=roc_auc)", field="metric")
    scope = {
        k: (args.get(k) or "").strip() or None
        for k in ("name", "q", "target", "data", "model_type", "task", "status")
    }
    return {"metric": metric, **scope}


def compare_ids(args: MultiDict) -> list[str]:
    """The run ids to compare: ``run_id`` repeated, or comma-separated."""
    return [r.strip() for value in args.getlist("run_id") for r in value.split(",") if r.strip()]


def export_archive(database: Database, run_id: str) -> tuple[bytes, str, dict[str, Any]]:
    """The run's export archive (``.tar.gz``) as bytes, its file name and the export summary.

    Written to a private temporary folder by :func:`models.registry.export_run` (which verifies
    every artifact) and read back; nothing stays on disk.
    """
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        run = registry.resolve(database, run_id)
        filename = f"{run['name']}-{run.get('version') or run['run_id']}.tar.gz"
        out = Path(tmp) / filename
        summary = registry.export_run(database, run["run_id"], out)
        data = out.read_bytes()
    summary = {k: v for k, v in summary.items() if k != "path"}  # no server paths in answers
    return data, filename, summary


def export_ensemble_archive(database: Database, ref: str) -> tuple[bytes, str, dict[str, Any]]:
    """The ensemble version ``ref`` serves with its base runs as one signed archive (bytes, file name,
    summary), written by :func:`models.registry.export_ensemble` to a private temporary folder."""
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        served = registry.export_ensemble(database, ref, Path(tmp) / "ensemble.tar.gz")
        filename = f"{served['name']}-ensemble-{served['version']}.tar.gz"
        data = Path(served["path"]).read_bytes()
    return data, filename, {k: v for k, v in served.items() if k != "path"}


IMPORT_FIELDS = ("archive_base64", "filename", "on_conflict", "trust")


def import_archive(database: Database, body: dict[str, Any], by: str | None) -> dict[str, Any]:
    """Import a run or ensemble archive sent as ``{"archive_base64", "filename"?, "on_conflict"?, "trust"?}``
    (:func:`models.registry.import_archive`: the answer's ``kind`` says which).

    ``trust`` must be an explicit ``true`` to import an archive no known key signed (see
    :func:`models.registry.import_run`). The bytes go to a private temporary folder; nothing stays.
    """
    unknown = sorted(set(body) - set(IMPORT_FIELDS))
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    encoded = body.get("archive_base64")
    if not isinstance(encoded, str) or not encoded:
        raise ValidationError(
            "archive_base64 is required: the .tar.gz export, base64-encoded", field="archive_base64"
        )
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("archive_base64 is not valid base64", field="archive_base64") from None
    trust = body.get("trust", False)
    if not isinstance(trust, bool):
        raise ValidationError("trust must be true or false", field="trust")
    if trust:
        refuse_trust_over_http("import")
    on_conflict = body.get("on_conflict", "refuse")
    if not isinstance(on_conflict, str):
        raise ValidationError("on_conflict must be text", field="on_conflict")
    filename = body.get("filename") or "upload.tar.gz"
    if not isinstance(filename, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,120}", filename):
        raise ValidationError("filename must be a plain file name", field="filename")
    with tempfile.TemporaryDirectory(prefix="import-") as tmp:
        path = Path(tmp) / filename
        path.write_bytes(data)
        return registry.import_archive(database, path, on_conflict=on_conflict, by=by, trust=trust)
