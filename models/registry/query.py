"""Registry reads: find a run (by id, name + version, latest, production), load its model,
search runs with filters and metric thresholds, pick the best run, compare runs side by side.

Everything here reads the runs collection only; results are plain dicts (run documents with
their MongoDB types), ready for :func:`models.jsonable.to_json`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING

from models.artifacts.loading import load_model
from models.artifacts.predictor import TrainedModel
from models.errors import NotFoundError, ValidationError
from models.store.columns import closest_column
from models.store.db import Database
from models.store.references import RUN_ID_RE
from models.store.runs import RunStore
from models.store.versioning import VERSION_RE
from models.training.metrics import RUN_METRICS, higher_is_better

log = logging.getLogger(__name__)

STATUSES = ("trained", "staging", "production", "archived")
METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SORT_FIELDS = ("created_at", "name", "version", "model_type", "task", "status", "run_id")
SUMMARY_EXCLUDE = ("feature_importance", "config")
MAX_PER_PAGE = 500
MAX_COMPARE = 20


# ---------------------------------------------------------------- lookup and load


def _require_str(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    return value.strip()


def get_run(database: Database, run_id: str) -> dict[str, Any]:
    """The run document with this id; :class:`NotFoundError` naming the id otherwise."""
    return RunStore(database).get(_require_str(run_id, "run_id"))


def get_version(database: Database, name: str, version: str) -> dict[str, Any]:
    """The run of ``name`` with exactly this semantic version."""
    name = _require_str(name, "name")
    if not VERSION_RE.match(version or ""):
        raise ValidationError(f"version {version!r} is not MAJOR.MINOR.PATCH (e.g. 1.2.0)", field="version")
    doc = RunStore(database).find_version(name, version)
    if doc is None:
        raise NotFoundError(f"{name} has no version {version}", field="version")
    return doc


def get_latest(database: Database, name: str) -> dict[str, Any]:
    """The run of ``name`` with the highest semantic version (not necessarily the newest by time)."""
    doc = RunStore(database).latest(_require_str(name, "name"))
    if doc is None:
        raise NotFoundError(f"no runs of {name!r} in the registry", field="name")
    return doc


def find_production(database: Database, name: str) -> dict[str, Any] | None:
    """The run of ``name`` in ``production``, or None."""
    return RunStore(database).find_production(_require_str(name, "name"))


def get_production(database: Database, name: str) -> dict[str, Any]:
    doc = find_production(database, name)
    if doc is None:
        raise NotFoundError(f"{name!r} has no run in production", field="name")
    return doc


def resolve(database: Database, ref: str) -> dict[str, Any]:
    """A run from a reference: ``RUN_ID``, ``NAME`` (latest), ``NAME@VERSION``, ``NAME@latest``,
    ``NAME@production``, ``NAME@staging`` (highest version in staging), or ``latest`` (the newest run of any name, unless a config is named so).

    The one resolver of run references: every command, route and function that takes a run uses it.
    """
    ref = _require_str(ref, "ref")
    if "@" in ref:
        name, _, selector = ref.rpartition("@")
        if not name:
            raise ValidationError(f"reference {ref!r} has no name before '@'", field="ref")
        if selector == "latest":
            return get_latest(database, name)
        if selector == "production":
            return get_production(database, name)
        if selector == "staging":
            staged = RunStore(database).highest_with_status(name, "staging")
            if staged is None:
                raise NotFoundError(f"{name!r} has no run in staging", field="ref")
            return staged
        if VERSION_RE.match(selector):
            return get_version(database, name, selector)
        raise ValidationError(
            f"reference {ref!r}: after '@' give a version (1.2.0), 'latest', 'staging' or 'production'",
            field="ref",
        )
    if RUN_ID_RE.match(ref):
        doc = RunStore(database).find(ref)
        if doc is not None:
            return doc
    if RunStore(database).has_name(ref):
        return get_latest(database, ref)
    if ref == "latest":
        newest = RunStore(database).newest()
        if newest is not None:
            return newest
        raise NotFoundError("the registry has no runs yet", field="ref")
    if RUN_ID_RE.match(ref):
        raise NotFoundError(f"no run with id {ref!r}", field="ref")
    raise NotFoundError(f"no run with id or name {ref!r}", field="ref")


def resolve_many(database: Database, refs: list[str], field: str = "run_ids") -> list[dict[str, Any]]:
    """Runs for several references (see :func:`resolve`); every unknown one named at once."""
    runs, missing = [], []
    for ref in refs:
        try:
            runs.append(resolve(database, ref))
        except NotFoundError:
            missing.append(str(ref))
    if missing:
        raise NotFoundError(f"no run with id or name {', '.join(map(repr, missing))}", field=field)
    return runs


@dataclass
class LoadedRun:
    """A run document and its loaded model (``source`` is ``"cache"`` or ``"artifacts"``)."""

    run: dict[str, Any]
    model: TrainedModel
    source: str
    seconds: float


def load(database: Database, ref: str | dict[str, Any], *, use_cache: bool = True) -> LoadedRun:
    """Resolve ``ref`` (see :func:`resolve`, or a run document) and load its verified model."""
    run = ref if isinstance(ref, dict) else resolve(database, ref)
    result = load_model(database.settings, run, use_cache=use_cache)
    return LoadedRun(run=run, model=result.model, source=result.source, seconds=result.seconds)


# ---------------------------------------------------------------- search


def _parse_time(value: datetime | str | None, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise ValidationError(
                f"{field} must be an ISO date or date-time (e.g. 2026-01-31 or "
                f"2026-01-31T12:00:00Z), got {text!r}",
                field=field,
            ) from None
    if not isinstance(value, datetime):
        raise ValidationError(f"{field} must be a date-time", field=field)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _thresholds(values: dict[str, Any] | None, field: str) -> dict[str, float]:
    if not values:
        return {}
    if not isinstance(values, dict):
        raise ValidationError(f'{field} must map metric names to numbers, e.g. {{"f1": 0.8}}', field=field)
    out = {}
    for metric, raw in values.items():
        metric = metric_name(metric, field)
        try:
            number = float(raw) if not isinstance(raw, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValidationError(
                f"{field}: threshold for {metric!r} must be a number, got {raw!r}", field=f"{field}.{metric}"
            )
        out[metric] = number
    return out


def metric_name(metric: Any, field: str = "metric") -> str:
    """A validated metric name (``f1``, ``rmse``...; a ``metrics.`` prefix is accepted and dropped)."""
    if not isinstance(metric, str):
        raise ValidationError(f"{field} must be a metric name", field=field)
    metric = metric.strip().removeprefix("metrics.")
    if not METRIC_RE.match(metric):
        raise ValidationError(f"{field}: {metric!r} is not a metric name (letters, digits and '_')", field=field)
    if metric not in RUN_METRICS:
        close = closest_column(metric, list(RUN_METRICS))  # any case first: ROC_AUC -> roc_auc
        hint = f"did you mean {close!r}? " if close else ""
        raise ValidationError(
            f"{field}: unknown metric {metric!r}; {hint}valid metrics: {', '.join(RUN_METRICS)}", field=field
        )
    return metric


def build_filter(
    *,
    name: str | None = None,
    model_type: str | None = None,
    task: str | None = None,
    status: str | None = None,
    tags: Iterable[str] | str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    min_metrics: dict[str, Any] | None = None,
    max_metrics: dict[str, Any] | None = None,
    q: str | None = None,
    target: str | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """The MongoDB filter for :func:`search` (validated; every bad parameter is named).

    ``name`` is exact; ``q`` is a part of the name (any case); ``target`` the exact target column;
    ``data`` a part of the training file's name (any case), e.g. ``penguins`` or ``games.csv``."""
    flt: dict[str, Any] = {}
    for field, value in (("name", name), ("model_type", model_type), ("task", task)):
        if value is not None and value != "":
            flt[field] = _require_str(value, field)
    if q:
        flt.setdefault("name", {"$regex": re.escape(_require_str(q, "q")), "$options": "i"})
    if target:
        flt["config.target"] = _require_str(target, "target")
    if data:
        flt["data.training_csv"] = {"$regex": re.escape(_require_str(data, "data")), "$options": "i"}
    if status:
        if status not in STATUSES:
            raise ValidationError(f"status {status!r} is not one of: {', '.join(STATUSES)}", field="status")
        flt["status"] = status
    if tags:
        tag_list = [tags] if isinstance(tags, str) else list(tags)
        if not all(isinstance(t, str) and t for t in tag_list):
            raise ValidationError("tags must be non-empty strings", field="tags")
        flt["tags"] = {"$all": tag_list}
    start, end = _parse_time(since, "since"), _parse_time(until, "until")
    if start and end and start > end:
        raise ValidationError("since must not be after until", field="since")
    if start or end:
        flt["created_at"] = {**({"$gte": start} if start else {}), **({"$lte": end} if end else {})}
    lows, highs = _thresholds(min_metrics, "min_metrics"), _thresholds(max_metrics, "max_metrics")
    for metric in set(lows) | set(highs):
        cond: dict[str, Any] = {}
        if metric in lows:
            cond["$gte"] = lows[metric]
        if metric in highs:
            cond["$lte"] = highs[metric]
        flt[f"metrics.{metric}"] = cond
    return flt


def sort_key(sort: str) -> tuple[str, bool]:
    """``(document key, is_metric)`` for a sort name: a run field or a metric name."""
    if not isinstance(sort, str) or not sort.strip():
        raise ValidationError("sort must name a field or a metric", field="sort")
    sort = sort.strip()
    if sort in SORT_FIELDS:
        return sort, False
    return f"metrics.{metric_name(sort, 'sort')}", True


def search(
    database: Database,
    *,
    name: str | None = None,
    model_type: str | None = None,
    task: str | None = None,
    status: str | None = None,
    tags: Iterable[str] | str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    min_metrics: dict[str, Any] | None = None,
    max_metrics: dict[str, Any] | None = None,
    q: str | None = None,
    target: str | None = None,
    data: str | None = None,
    sort: str = "created_at",
    descending: bool | None = None,
    page: int = 1,
    per_page: int = 20,
    full: bool = False,
) -> dict[str, Any]:
    """Runs matching every filter, one page of them, with the total count.

    ``sort`` is a run field (``created_at``, ``name``, ``version``...) or a metric name. Direction:
    ``descending`` if given; otherwise best first for a metric, newest first for ``created_at``,
    ascending for other fields. Runs lacking the sort metric come after all runs that have it.
    Returns ``{"items", "total", "page", "per_page", "pages", "sort", "descending"}``; items leave
    out the bulky ``feature_importance`` and ``config`` unless ``full``.
    """
    flt = build_filter(
        name=name,
        model_type=model_type,
        task=task,
        status=status,
        tags=tags,
        since=since,
        until=until,
        min_metrics=min_metrics,
        max_metrics=max_metrics,
        q=q,
        target=target,
        data=data,
    )
    key, is_metric = sort_key(sort)
    if descending is None:
        descending = higher_is_better(key) if is_metric else key == "created_at"
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValidationError("page must be a whole number >= 1", field="page")
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        raise ValidationError(f"per_page must be between 1 and {MAX_PER_PAGE}", field="per_page")
    projection = None if full else {k: 0 for k in SUMMARY_EXCLUDE}
    order = [(key, DESCENDING if descending else ASCENDING), ("created_at", DESCENDING), ("run_id", ASCENDING)]
    if key == "created_at":
        order = order[:1] + order[2:]
    # Two ordered parts (runs with the sort key, then runs without) so missing values always go last.
    parts = [{**flt, key: {"$ne": None}}, {**flt, key: None}] if key not in flt else [flt]
    runs = RunStore(database)
    counts = [runs.count(p) for p in parts]
    skip, want, items = (page - 1) * per_page, per_page, []
    for part, count in zip(parts, counts):
        if want == 0:
            break
        if skip >= count:
            skip -= count
            continue
        items.extend(runs.search(part, projection=projection, order=order, skip=skip, limit=want))
        want -= min(want, count - skip)
        skip = 0
    total = sum(counts)
    return {
        "items": items,
        "total": total,
        "page": page,
        "per_page": per_page,
        "pages": max(1, math.ceil(total / per_page)),
        "sort": sort,
        "descending": descending,
    }


def best(
    database: Database,
    metric: str,
    *,
    name: str | None = None,
    model_type: str | None = None,
    task: str | None = None,
    status: str | None = None,
    q: str | None = None,
    target: str | None = None,
    data: str | None = None,
) -> dict[str, Any] | None:
    """The run with the best value of ``metric`` (direction aware), optionally within a name (exact, or
    ``q``: a part of it), model type, task, status, target or data set (``data``: a part of the training
    file's name); runs lacking the metric are ignored. None when nothing qualifies."""
    metric = metric_name(metric)
    flt = build_filter(name=name, model_type=model_type, task=task, status=status, q=q, target=target, data=data)
    flt[f"metrics.{metric}"] = {"$type": "number"}
    direction = DESCENDING if higher_is_better(metric) else ASCENDING
    docs = RunStore(database).search(
        flt, order=[(f"metrics.{metric}", direction), ("created_at", DESCENDING)], limit=1
    )
    return docs[0] if docs else None


# ---------------------------------------------------------------- compare


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _best_indices(values: list[Any], higher: bool) -> list[int]:
    numbers = [(i, _number(v)) for i, v in enumerate(values)]
    numbers = [(i, v) for i, v in numbers if v is not None]
    if not numbers:
        return []
    target = (max if higher else min)(v for _, v in numbers)
    return [i for i, v in numbers if v == target]


def _row(key: str, values: list[Any], higher: bool | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"key": key, "values": values, "differs": len({repr(v) for v in values}) > 1}
    if higher is not None:
        row["direction"] = "higher" if higher else "lower"
        row["best"] = _best_indices(values, higher) if len(values) > 1 else []
    return row


def compare(database: Database, run_ids: list[str]) -> dict[str, Any]:
    """A side-by-side table of runs (ids or references, see :func:`resolve`): metrics, hyperparameters,
    features, data, durations.

    Returns ``{"runs": [header per run], "sections": [{"title", "rows": [{"key", "values",
    "differs", ("direction", "best")}]}]}``; ``values`` are in the order of ``run_ids`` and ``best``
    lists the column indexes holding the best value of a metric or duration row (ties all marked).
    """
    if isinstance(run_ids, str) or not isinstance(run_ids, (list, tuple)) or len(run_ids) < 2:
        raise ValidationError("give at least two run ids to compare", field="run_ids")
    if len(run_ids) > MAX_COMPARE:
        raise ValidationError(f"compare at most {MAX_COMPARE} runs at once", field="run_ids")
    if not all(isinstance(r, str) and r.strip() for r in run_ids):
        raise ValidationError(
            "run_ids must be run ids or references (NAME, NAME@1.2.0, NAME@production)", field="run_ids"
        )
    runs = resolve_many(database, list(run_ids))
    ids = [r["run_id"] for r in runs]
    dupes = sorted(
        {f"{ref} ({rid})" if ref != rid else rid for ref, rid in zip(run_ids, ids) if ids.count(rid) > 1}
    )
    if dupes:
        raise ValidationError(f"run ids given more than once: {', '.join(dupes)}", field="run_ids")

    def union(getter) -> list[str]:
        keys: dict[str, None] = {}
        for run in runs:
            keys.update(dict.fromkeys(getter(run) or {}))
        return list(keys)

    metric_keys = [
        k
        for k in union(lambda r: r.get("metrics"))
        if any(_number((r.get("metrics") or {}).get(k)) is not None for r in runs)
    ]
    metrics = [_row(k, [(r.get("metrics") or {}).get(k) for r in runs], higher_is_better(k)) for k in metric_keys]
    cv_rows = []
    cv_metrics = {(r.get("cv") or {}).get("metric") for r in runs}
    if len(cv_metrics) == 1 and None not in cv_metrics:
        cv_metric = cv_metrics.pop()
        cv_rows = [
            _row(
                f"cv.{cv_metric}.mean",
                [(r.get("cv") or {}).get("mean") for r in runs],
                higher_is_better(cv_metric),
            ),
            _row(f"cv.{cv_metric}.std", [(r.get("cv") or {}).get("std") for r in runs], False),
        ]
    hyper = [
        _row(k, [((r.get("definition") or {}).get("hyperparameters") or {}).get(k) for r in runs])
        for k in sorted(union(lambda r: (r.get("definition") or {}).get("hyperparameters")))
    ]
    settings_rows = [
        _row(k, [(r.get("definition") or {}).get(k) for r in runs])
        for k in ("scaler", "calibration", "cv_folds", "random_state", "test_size", "target")
    ]
    features = union(lambda r: {f: None for f in (r.get("definition") or {}).get("features") or []})
    feature_rows = [
        _row(f, [f in ((r.get("definition") or {}).get("features") or []) for r in runs]) for f in features
    ]
    feature_rows.insert(0, _row("count", [len((r.get("definition") or {}).get("features") or []) for r in runs]))
    data_rows = [
        _row(k, [(r.get("data") or {}).get(k) for r in runs])
        for k in ("training_csv", "fingerprint", "file_sha256", "rows_used", "rows_dropped", "n_train", "n_test")
    ]
    durations = [
        _row(k, [(r.get("durations") or {}).get(k) for r in runs], False)
        for k in union(lambda r: r.get("durations"))
    ]
    header = [
        {k: r.get(k) for k in ("run_id", "name", "version", "status", "task", "model_type", "created_at")}
        for r in runs
    ]
    return {
        "runs": header,
        "sections": [
            {"title": "metrics", "rows": metrics + cv_rows},
            {"title": "hyperparameters", "rows": hyper},
            {"title": "training", "rows": settings_rows},
            {"title": "features", "rows": feature_rows},
            {"title": "data", "rows": data_rows},
            {"title": "durations", "rows": durations},
        ],
    }
