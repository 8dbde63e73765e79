"""Ensembles from the web: which configs can be stacked together, and creation as a background job.

Adapter over :mod:`models.ensembles` (their compatibility rules; nothing is
re-implemented here): the form groups trained configs by what stacking needs
them to share (task, target, training data fingerprint, fold split) and says
why the others cannot be picked. ``create`` checks the request up front (bad
input is refused before a job exists), then runs
:func:`models.ensembles.create_ensemble` as a job keyed ``ensemble:<name>``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from models import jobs
from models.ensembles.base_models import base_documents
from models.ensembles.build import create_ensemble
from models.ensembles.compat import (
    EnsembleRequest,
    check_compatible,
    check_request,
    config_fingerprint,
    config_fold_spec,
    with_default_meta_model,
)
from models.ensembles.plan import plan_summary, retrain_plan, retrain_reason
from models.errors import ConflictError, DataError, ValidationError
from models.jobs.remote import RemoteWork
from models.jsonable import to_json
from models.progress import Progress
from models.store.configs import ConfigStore
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from models.store.runs import RunStore
from models.training.metrics import higher_is_better
from models.training.service import TRAIN_KIND, submit_training

ENSEMBLE_KIND = "ensemble"
REQUEST_FIELDS = (
    "name",
    "base_models",
    "meta_model",
    "passthrough",
    "stack_method",
    "meta_params",
    "description",
    "new_version",
)
# What stacked models must share, in the order a difference is reported.
SIGNATURE = (
    ("task", "different task"),
    ("target", "different target"),
    ("data", "different training data"),
    ("folds", "different fold split"),
)


def ensemble_key(name: str) -> str:
    """The job key of an ensemble's creation (one active job per name)."""
    return f"{ENSEMBLE_KIND}:{name}"


@dataclass
class Candidate:
    """A config as a possible base model: selectable or not, and why not."""

    config: dict[str, Any]
    group: str | None = None  # compatibility group id (configs whose data can be read)
    reason: str | None = None  # why it cannot be picked; None when it can
    train_first: str | None = None  # picked, it is trained first: why ("not trained yet") and the estimate

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def selectable(self) -> bool:
        return self.reason is None


def _signature(config: dict[str, Any], fingerprint: str | None) -> dict[str, str]:
    spec = config_fold_spec(config)
    return {
        "task": str(config.get("task")),
        "target": str(config.get("target")),
        "data": str(fingerprint),
        "folds": json.dumps(spec, sort_keys=True, default=str),
    }


def _group_id(signature: dict[str, str]) -> str:
    return "g" + hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:10]


def _difference(a: dict[str, str], b: dict[str, str]) -> str:
    for key, reason in SIGNATURE:
        if a[key] != b[key]:
            return reason
    return "not compatible"


def _group_label(config: dict[str, Any], fingerprint: str) -> str:
    spec = config_fold_spec(config)
    csv = str(config.get("training_csv") or "")
    file_name = csv.replace("\\", "/").rsplit("/", 1)[-1] or "?"
    return (
        f"{config.get('task')} · target {config.get('target')} · data {file_name} ({fingerprint[:8]}…) · "
        f"{spec.get('n_splits')}-fold, seed {spec.get('random_state')}"
    )


def candidates(database: Database, first: str | None = None) -> dict[str, Any]:
    """Every config as a :class:`Candidate`, with the compatibility groups and the reasons between them.

    A config that would be trained first (never trained, legacy artifacts, no out-of-fold predictions)
    is grouped by its data as it is now and can be picked ("train and include"); ``train_first`` says
    why and about how long, from past runs. With ``first`` (a config name), configs outside its group
    get the reason they differ from it; without it, a group of a single config is not selectable (it
    has nothing to be stacked with).
    Returns ``{"candidates", "groups": {id: label}, "reasons": {id: {id: reason}}, "first"}``.
    """
    out: list[Candidate] = []
    signatures: dict[str, dict[str, str]] = {}
    labels: dict[str, str] = {}
    configs = ConfigStore(database).list()
    plans = {p["name"]: p for p in retrain_plan(database, [c for c in configs if retrain_reason(c)])}
    for config in configs:
        cand = Candidate(config)
        fingerprint = config.get("data_fingerprint")
        if config.get("status") == "training":
            cand.reason = "training now"
            fingerprint = None
        elif config["name"] in plans:
            plan = plans[config["name"]]
            try:
                fingerprint = config_fingerprint(config, database.settings, strict=True)
            except DataError as exc:
                cand.reason = f"{plan['reason']}, and its training data cannot be used: {exc.message}"
                fingerprint = None
            else:
                cand.train_first = f"train and include: {plan['reason']}; {plan['estimate_text']}"
        if fingerprint:
            sig = _signature(config, fingerprint)
            cand.group = _group_id(sig)
            signatures.setdefault(cand.group, sig)
            labels.setdefault(cand.group, _group_label(config, fingerprint))
        out.append(cand)
    reasons = {g: {h: _difference(signatures[g], signatures[h]) for h in signatures if h != g} for g in signatures}
    anchor = next((c for c in out if c.name == first and c.group), None) if first else None
    sizes = {g: sum(1 for c in out if c.group == g) for g in signatures}
    for cand in out:
        if cand.group is None:
            continue
        if anchor is not None and cand.group != anchor.group:
            cand.reason = f"{reasons[anchor.group][cand.group]} from {anchor.name}"
        elif sizes[cand.group] < 2:
            cand.reason = "no other model shares its task, target, data and folds"
    return {"candidates": out, "groups": labels, "reasons": reasons, "first": anchor.name if anchor else None}


def check_create(database: Database, body: dict[str, Any]) -> tuple[EnsembleRequest, list[dict[str, Any]]]:
    """Every check that can run before the job: options, name free (unless ``new_version``: then a taken
    name gets its next version), base references resolve and are compatible. Returns the request and the
    base models' documents (:func:`models.ensembles.base_models.base_documents`).

    ValidationError (422, every problem listed), NotFoundError (404), ConflictError (409 name taken),
    IncompatibleBaseModelsError (422).
    """
    unknown = sorted(set(body) - set(REQUEST_FIELDS))
    if unknown:
        raise ValidationError(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(REQUEST_FIELDS)}", field=unknown[0]
        )
    request = check_request(
        body.get("name"),
        body.get("base_models"),
        body.get("meta_model"),  # None: the bases' task's default (with_default_meta_model)
        body.get("passthrough", False),
        body.get("stack_method", "auto"),
        body.get("meta_params"),
        body.get("description", ""),
    )
    new_version = body.get("new_version", False)
    if not isinstance(new_version, bool):
        raise ValidationError("new_version must be true or false", field="new_version")
    EnsembleStore(database).refuse_taken(request.name, new_version=new_version)
    configs = base_documents(database, request.base_models)
    request = with_default_meta_model(request, configs)
    check_compatible(configs, [config_fingerprint(c, database.settings) for c in configs], request)
    return request, configs


def ensemble_summary(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON-safe summary of a created ensemble for a job's result."""
    return (
        to_json(
            {
                "name": record["name"],
                "run_id": record.get("run_id"),
                "version": record.get("version"),
                "meta_model": record.get("meta_model"),
                "meta_model_default": record.get("meta_model_default"),
                "metrics": record.get("metrics"),
                "seconds": record.get("seconds"),
                "trained": record.get("trained"),
                "retrained": record.get("retrained"),
                "base_models": [
                    {k: b.get(k) for k in ("name", "run_id", "source", "reason", "seconds")}
                    for b in record.get("base_models") or []
                ],
            }
        )
        or {}
    )


def run_ensemble(
    database: Database,
    progress: Progress,
    *,
    name: str,
    base_models: list[str],
    meta_model: str | None,
    passthrough: bool,
    stack_method: str,
    meta_params: dict[str, Any] | None,
    description: str,
    new_version: bool = False,
) -> dict[str, Any]:
    """An ensemble job's work (on a Dask worker: with the worker's own settings and database)."""
    record = create_ensemble(
        database,
        name,
        base_models,
        meta_model,
        passthrough=passthrough,
        stack_method=stack_method,
        meta_params=meta_params,
        description=description,
        progress=progress,
        new_version=new_version,
    )
    return ensemble_summary(record)


def submit_ensemble(
    database: Database,
    body: dict[str, Any],
    *,
    runner: jobs.JobRunner | None = None,
    requested_by: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Check the request (see :func:`check_create`) and queue the creation; returns ``(job, created)``.

    While a creation of the same name is queued or running, that job comes back with ``created=False``.
    The job's ``params.train_first`` says beforehand which base models will be trained first, why and
    about how long (:func:`models.ensembles.plan.retrain_plan`).
    """
    request, configs = check_create(database, body)
    new_version = bool(body.get("new_version", False))
    plan = retrain_plan(database, [c for c in configs if not c.get("pinned")])  # pinned runs only load
    work = RemoteWork(
        run_ensemble,
        {
            "name": request.name,
            "base_models": [str(b) for b in request.base_models],
            # not asked for: the worker picks the same default, and its record says so
            "meta_model": None if request.meta_model_default else request.meta_model,
            "passthrough": request.passthrough,
            "stack_method": request.stack_method,
            "meta_params": request.meta_params or None,
            "description": request.description,
            "new_version": new_version,
        },
        database=database,
    )

    params = {
        "name": request.name,
        "base_models": [str(b) for b in request.base_models],
        "meta_model": request.meta_model,
        "passthrough": request.passthrough,
        "stack_method": request.stack_method,
        "meta_params": request.meta_params or None,
        "description": request.description,
        "new_version": new_version,
        "meta_model_default": request.meta_model_default,  # set when none was asked for: which and why
        "train_first": plan,
        "train_first_summary": plan_summary(plan),
    }
    return jobs.submit(
        database,
        runner,
        ENSEMBLE_KIND,
        ensemble_key(request.name),
        work,
        params=params,
        requested_by=requested_by,
        bounded=True,
    )


RESUBMITTABLE = (TRAIN_KIND, ENSEMBLE_KIND)


def resubmit_job(
    database: Database, job_id: str, *, runner: jobs.JobRunner | None = None, requested_by: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Submit a failed training or ensemble job again with what it was asked (one click on its page).

    ConflictError unless the job failed (a running one is still running; a succeeded one is done);
    ValidationError for a kind that cannot be resubmitted. Returns ``(job, created)`` like the submitters
    (``created`` False: the same work is already queued or running, that job comes back).
    """
    job = jobs.get_job(database, job_id)
    if job["status"] != jobs.FAILED:
        raise ConflictError(
            f"job {job_id} has {job['status']}; only a failed job can be resubmitted", field="job_id"
        )
    params = job.get("params") or {}
    if job.get("kind") == TRAIN_KIND and params.get("config_id"):
        return submit_training(database, ObjectId(params["config_id"]), runner=runner, requested_by=requested_by)
    if job.get("kind") == ENSEMBLE_KIND and params.get("name"):
        body = {k: params[k] for k in REQUEST_FIELDS if params.get(k) is not None}
        if params.get("meta_model_default"):  # none was asked for: the default again (it says so again)
            body.pop("meta_model", None)
        return submit_ensemble(database, body, runner=runner, requested_by=requested_by)
    raise ValidationError(
        f"a {job.get('kind')} job cannot be resubmitted from here; start it again where it was started",
        field="job_id",
    )


def comparison_rows(ensemble: dict[str, Any]) -> dict[str, Any]:
    """The ensemble's metrics beside each base model's, with the best column of each metric marked.

    Returns ``{"columns": ["ensemble", base names...], "rows": [{"metric", "values", "best": [i...]}]}``.
    """
    bases = ensemble.get("base_models") or []
    columns = [ensemble["name"]] + [b.get("name") for b in bases]
    tables = [ensemble.get("metrics") or {}] + [b.get("metrics") or {} for b in bases]
    keys: list[str] = []
    for table in tables:
        keys.extend(
            k
            for k, v in table.items()
            if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool)
        )
    rows = []
    for key in keys:
        values = [t.get(key) for t in tables]
        numbers = [(i, v) for i, v in enumerate(values) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        best: list[int] = []
        if len(numbers) > 1:
            target = (max if higher_is_better(key) else min)(v for _, v in numbers)
            best = [i for i, v in numbers if v == target]
        rows.append(
            {
                "metric": key,
                "values": values,
                "best": best,
                "direction": "higher" if higher_is_better(key) else "lower",
            }
        )
    return {"columns": columns, "rows": rows}


def ensemble_features(database: Database, ensemble: dict[str, Any]) -> list[str]:
    """Every column a prediction with ``ensemble`` needs (its base runs' features, then passthrough ones),
    read from the run documents: nothing is loaded."""
    ids = list(ensemble.get("base_run_ids") or [])
    features = RunStore(database).features_of(ids)
    columns: list[str] = []
    for run_id in ids:
        columns.extend(f for f in features.get(run_id, []) if f not in columns)
    columns.extend(f for f in ensemble.get("passthrough_features") or [] if f not in columns)
    return columns
