"""Sweeps: one config per combination of hyperparameter values, from a base config.

Every new config copies the base's data, target, features, folds and options; only the swept
hyperparameters change, and its name is derived from the base's and the values
(``home_win_rf__max_depth-4__n_estimators-100``). All combinations are validated with the
config schema (the same hyperparameter checks as any config) before anything is written; one bad
combination refuses the whole sweep, naming the parameter and value, and creates nothing. A sweep is
bounded in size (``MAX_COMBINATIONS``) and in estimated cost: the base's estimated training time
(past runs; with none, the TRAIN_TIMEOUT_SECONDS each job may take), scaled per combination by its
``n_estimators``/``max_iter`` against the base's, summed, must stay within MAX_SWEEP_JOB_HOURS.
Training them is :func:`models.training.service.submit_training` per config (parallel through
the job runner, on Dask when configured).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
from typing import Any

from models import jobs
from models.errors import ConflictError, ValidationError
from models.estimators import REGISTRY, load_class
from models.store.configs import ConfigStore, user_fields
from models.store.db import Database
from models.store.schema import NAME_RE, validate_config
from models.training.estimate import estimate_training, format_seconds
from models.training.service import submit_training

log = logging.getLogger(__name__)

MAX_COMBINATIONS = 100
SCALING = ("n_estimators", "max_iter")  # a training's time grows about linearly with these
NO_LIMIT_GUESS_SECONDS = 3600  # a training with no past run and no TRAIN_TIMEOUT_SECONDS
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def parse_value(text: str) -> Any:
    """``4`` -> 4, ``0.5`` -> 0.5, ``true``/``false``/``null``/``none`` -> bool/None, anything else as text."""
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
        if math.isfinite(value):
            return value
    except ValueError:
        pass
    return text


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """``["max_depth=4,8,16", "n_estimators=100,300"]`` -> ``{"max_depth": [4, 8, 16], ...}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = str(item).partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ValidationError(f"grid entry {item!r} must look like name=value1,value2", field="grid")
        if key in grid:
            raise ValidationError(f"grid names {key!r} more than once", field="grid")
        parsed = [parse_value(v) for v in values.split(",") if v.strip()]
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValidationError(f"grid entry {key!r} repeats a value", field="grid")
        grid[key] = parsed
    return check_grid(grid)


def check_grid(grid: Any) -> dict[str, list[Any]]:
    """A mapping of hyperparameter name to a non-empty list of values; ValidationError naming ``grid``."""
    if not isinstance(grid, dict) or not grid:
        raise ValidationError("grid must map at least one hyperparameter to a list of values", field="grid")
    for key, values in grid.items():
        if not isinstance(key, str) or not key or "." in key or key.startswith("$"):
            raise ValidationError(f"grid holds an invalid hyperparameter name {key!r}", field="grid")
        if not isinstance(values, list) or not values:
            raise ValidationError(f"grid.{key} must be a non-empty list of values", field=f"grid.{key}")
    count = 1
    for values in grid.values():
        count *= len(values)
    if count > MAX_COMBINATIONS:
        raise ValidationError(
            f"the grid makes {count} combinations; at most {MAX_COMBINATIONS} per sweep", field="grid"
        )
    return grid


def sweep_tag(base_name: str) -> str:
    """The tag every config of a sweep of ``base_name`` carries."""
    return f"sweep:{base_name}"


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def sweep_name(base: str, combo: dict[str, Any]) -> str:
    """``base__key-value__key-value`` with unsafe characters as ``_``; shortened with a hash past 100 characters."""
    parts = [f"{_UNSAFE.sub('_', k)}-{_UNSAFE.sub('_', _show(v))}" for k, v in combo.items()]
    name = "__".join([base, *parts])
    if len(name) > 100 or not NAME_RE.match(name):
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{base[:80]}__sweep-{digest}"
    return name


def plan_sweep(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The validated config documents of the sweep (nothing written); every problem named at once."""
    grid = check_grid(grid)
    fields = {k: v for k, v in user_fields(base).items() if k not in ("name", "description", "tags")}
    docs, errors = [], []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        combo = dict(zip(keys, values))
        shown = ", ".join(f"{k}={_show(v)}" for k, v in combo.items())
        doc = {
            **fields,
            "name": sweep_name(base["name"], combo),
            "hyperparameters": {**(base.get("hyperparameters") or {}), **combo},
            "description": f"sweep of {base['name']}: {shown}",
            "tags": list(dict.fromkeys([*(base.get("tags") or []), sweep_tag(base["name"])])),
        }
        try:
            docs.append(validate_config(doc))
        except ValidationError as exc:
            for err in exc.errors or [{"field": exc.field, "message": exc.message}]:
                field = err.get("field") or "hyperparameters"
                param = field.split(".", 1)[1] if field.startswith("hyperparameters.") else field
                where = f"{param}={_show(combo[param])}" if param in combo else shown
                problem = {
                    "field": f"grid.{param}" if param in grid else field,
                    "message": f"sweep refused, nothing created: {where}: {err['message']}",
                }
                if problem not in errors:  # the same bad value in several combinations is one problem
                    errors.append(problem)
    if errors:
        raise ValidationError(
            f"the sweep of {base['name']!r} was refused (nothing created): "
            + "; ".join(e["message"].split(": ", 1)[1] for e in errors[:5])
            + (f"; and {len(errors) - 5} more" if len(errors) > 5 else ""),
            errors=errors,
        )
    return docs


def _scale(base: dict[str, Any], doc: dict[str, Any]) -> float:
    """How much longer ``doc`` trains than ``base``, from the hyperparameters a training's time grows with."""
    ref = REGISTRY.get(base.get("task"), {}).get(base.get("model_type"), (None, {}))[0]
    defaults = load_class(ref)().get_params() if ref is not None else {}
    factor = 1.0
    for key in SCALING:
        new = (doc.get("hyperparameters") or {}).get(key, defaults.get(key))
        old = (base.get("hyperparameters") or {}).get(key, defaults.get(key))
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (new, old)):
            factor *= new / old
    return factor


def check_sweep_cost(database: Database, base: dict[str, Any], docs: list[dict[str, Any]]) -> float:
    """The sweep's estimated training time in seconds; :class:`ValidationError` over MAX_SWEEP_JOB_HOURS."""
    settings = database.settings
    timeout = settings.train_timeout_seconds
    estimate = estimate_training(database, base)
    if estimate.seconds is None:
        each = timeout or NO_LIMIT_GUESS_SECONDS
        basis = (
            f"no past run to go by, so up to TRAIN_TIMEOUT_SECONDS ({timeout} s) each"
            if timeout
            else (f"no past run and no time limit, so {NO_LIMIT_GUESS_SECONDS} s each")
        )
        total = each * len(docs)
    else:
        per = [estimate.seconds * _scale(base, d) for d in docs]
        total = sum(min(p, timeout) if timeout else p for p in per)
        basis = f"{estimate.basis}, scaled by each one's n_estimators and max_iter"
    budget = settings.max_sweep_job_hours * 3600
    if total > budget:
        raise ValidationError(
            f"the sweep's {len(docs)} trainings would take about {format_seconds(total)} of job time ({basis}), "
            f"above MAX_SWEEP_JOB_HOURS ({settings.max_sweep_job_hours} h); nothing was created: sweep fewer "
            "or smaller combinations",
            field="grid",
        )
    return total


def create_sweep(database: Database, base_name: Any, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Create every config of the sweep, or none: names taken or a bad combination refuse the whole sweep."""
    store = ConfigStore(database)
    base = store.get(base_name)
    docs = plan_sweep(base, grid)
    check_sweep_cost(database, base, docs)
    names = [d["name"] for d in docs]
    taken = store.taken_names(names)
    if taken:
        raise ConflictError(f"config(s) {', '.join(taken)} already exist; nothing was created", field="name")
    created: list[dict[str, Any]] = []
    try:
        for doc in docs:
            created.append(store.create(doc))
    except BaseException:
        for doc in created:  # all or nothing
            store.remove(doc["_id"])
        raise
    log.info("sweep of %s: %d configs created", base["name"], len(created))
    return created


def submit_sweep_training(
    database: Database,
    configs: list[dict[str, Any]],
    *,
    runner: jobs.JobRunner | None = None,
    requested_by: str | None = None,
) -> list[dict[str, Any]]:
    """Queue the training of every config of a sweep; the job runner runs them in parallel."""
    return [submit_training(database, c["_id"], runner=runner, requested_by=requested_by)[0] for c in configs]
