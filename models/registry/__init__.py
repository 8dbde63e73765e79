"""The model registry: every trained run, with versions, search, lifecycle and import/export.

One import for callers (CLI, JSON API, web pages)::

    from models import registry
    registry.search(database, name="home_win", min_metrics={"f1": 0.8}, sort="f1")
    registry.promote(database, run_id, by="alice")

Results are plain dicts holding run documents with their MongoDB types; pass
them through :func:`models.jsonable.to_json` for JSON. Errors are the core's
(:class:`~models.errors.ValidationError` for bad input, naming the parameter;
:class:`~models.errors.NotFoundError`; :class:`~models.errors.ConflictError`).

Versions are assigned by :meth:`models.store.runs.RunStore.insert_versioned` with the
rules in :mod:`models.store.versioning` (same definition -> patch; hyperparameters,
features, scaler or other training inputs -> minor; task, target or model type
-> major; a version given by hand is refused if it exists); the unique
``(name, version)`` index settles concurrent saves.

Holds: ``query`` (lookup, load, search, best, compare), ``serving`` (which run a model reference
serves: ``NAME`` is its production run, else its latest training), ``lifecycle`` (statuses, history,
delete), ``archive`` (export, import, deployment export) and ``mlflow_export`` (an MLflow model
directory, written without MLflow).

May import: every room below it: ``models.store``, ``models.artifacts``, ``models.jobs``,
``models.training``, ``models.ensembles``.

Public names: those in ``__all__`` below.
"""

from __future__ import annotations

from models.registry.archive import deploy_export, deployable, export_run, import_run, read_archive, verify_archive
from models.registry.ensemble_archive import export_archive, export_ensemble, import_archive
from models.registry.lifecycle import (
    TRANSITIONS,
    allowed_transitions,
    check_transition,
    delete_run,
    ensembles_using,
    history,
    promote,
    prune_runs,
    set_status,
)
from models.registry.mlflow_export import export_mlflow
from models.registry.query import (
    SORT_FIELDS,
    STATUSES,
    LoadedRun,
    best,
    build_filter,
    compare,
    find_production,
    get_latest,
    get_production,
    get_run,
    get_version,
    load,
    resolve,
    search,
)
from models.registry.serving import Served, resolve_model
from models.store.runs import config_fields_for_run, supports_transactions

__all__ = [
    "SORT_FIELDS",
    "STATUSES",
    "TRANSITIONS",
    "LoadedRun",
    "Served",
    "allowed_transitions",
    "best",
    "build_filter",
    "check_transition",
    "compare",
    "config_fields_for_run",
    "delete_run",
    "deploy_export",
    "deployable",
    "ensembles_using",
    "export_archive",
    "export_ensemble",
    "export_mlflow",
    "export_run",
    "find_production",
    "get_latest",
    "get_production",
    "get_run",
    "get_version",
    "history",
    "import_archive",
    "import_run",
    "load",
    "promote",
    "prune_runs",
    "read_archive",
    "resolve",
    "resolve_model",
    "search",
    "set_status",
    "supports_transactions",
    "verify_archive",
]
