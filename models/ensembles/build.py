"""Stacking ensembles over trained configs: base models fast from artifacts, retrained only when needed.

Creating an ensemble:

1. check the options and the base configs up front (unknown names, task,
   target, fold spec, training data) and report every problem at once;
2. obtain each base model: the cache, else its verified artifacts, else
   (slow path) retrain it from its training CSV under a MongoDB claim so
   that concurrent callers train it once (:func:`~models.ensembles.base_models.obtain_base_model`);
3. fit the meta-model on the base runs' stored out-of-fold predictions
   (:mod:`models.ensembles.stacking`) and score it and each base model on the same
   held-out rows;
4. write the meta-model and a JSON spec atomically, with checksums, then
   insert the ensemble document (the commit point). A failure at any step
   leaves no ensemble document and no ensemble files.

Versions: with ``new_version`` an existing name gets version N+1 (the older versions keep their documents
and files, and stay loadable by reference); without it a taken name is refused. Base models are given by
model reference (``NAME``, ``NAME@production``, ``NAME@1.2.0``, a run id;
:func:`~models.ensembles.base_models.base_documents`) and each version records the base runs it used.
Reading takes an ensemble reference (``NAME``: production version, else the highest; ``NAME@3``,
``NAME@production``, ``NAME@staging``, ``NAME@latest``, a version's run id;
:func:`models.store.references.resolve_ensemble`).

The steps are separate functions so that the async driver
(:mod:`models.ensembles.aio`) reuses them with ``AsyncMongoClient``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.artifacts.base import ArtifactInfo, ArtifactStore, artifact_name, json_writer, pickle_writer
from models.artifacts.cache import ModelCache, get_model_cache
from models.artifacts.lease import ArtifactLease, recheck_files
from models.artifacts.loading import load_model
from models.artifacts.routing import get_store
from models.artifacts.verified import load_verified
from models.ensembles.base_models import BaseModelResult, base_documents, load_base_models
from models.ensembles.compat import (
    EnsembleRequest,
    IncompatibleBaseModelsError,
    check_compatible,
    check_request,
    config_fingerprint,
    config_fold_spec,
    with_default_meta_model,
)
from models.ensembles.selection import WeightedAverage
from models.ensembles.stacking import MetaFit, StackedEnsemble, fit_meta_model
from models.errors import ArtifactError, DataError, ValidationError
from models.jobs.context import commit_point
from models.progress import Progress, no_progress, scaled
from models.store.db import Database
from models.store.ensembles import EnsembleStore
from models.store.references import RUN_ID_RE, find_ensemble_reference, resolve_ensemble
from models.store.runs import RunStore
from models.timeutil import now
from models.training.data import TrainingData, load_training_data
from models.training.train import environment_versions, new_run_id

log = logging.getLogger(__name__)

META_KIND, SPEC_KIND = "ensemble", "ensemble_spec"
STACKED_KIND, WEIGHTED_KIND = "stacked", "weighted"  # a document without ``kind`` is stacked


@dataclass
class BuiltEnsemble:
    """An ensemble fitted in memory, before anything is written."""

    run_id: str
    meta: MetaFit
    record: dict[str, Any]
    spec: dict[str, Any]


def training_targets(
    results: list[BaseModelResult], passthrough: bool, settings: Any = None
) -> tuple[TrainingData, list[str] | None]:
    """The training data the base runs saw (targets, and raw features for passthrough), checked by fingerprint."""
    ref = results[0].config
    features = None
    if passthrough:
        features = []
        for r in results:
            features.extend(f for f in r.config["features"] if f not in features)
    data = load_training_data({**ref, "features": features or ref["features"]}, settings)
    if passthrough and data.feature_types and any(k != "numeric" for k in data.feature_types.values()):
        other = sorted(f for f, k in data.feature_types.items() if k != "numeric")
        raise ValidationError(
            f"passthrough hands the raw features to the meta-model, numbers only; {', '.join(other)} "
            "are categorical or text: build it without passthrough",
            field="passthrough",
        )
    fp = data.fingerprint(ref["target"])
    if fp != ref.get("data_fingerprint"):
        raise DataError(
            f"training CSV {ref['training_csv']!r} no longer holds the rows the base runs were "
            f"trained on (data fingerprint {fp[:12]}..., runs have "
            f"{str(ref.get('data_fingerprint'))[:12]}...)"
            + (
                "; with passthrough the union of the base models' features must not drop extra rows"
                if passthrough
                else "; retrain the base models"
            ),
            field="training_csv",
        )
    return data, features


def stored_targets(results: list[BaseModelResult]) -> tuple[np.ndarray, np.ndarray] | None:
    """The training and held-out targets stored with the base runs' out-of-fold predictions, when every
    run stored them for the data fingerprint the runs were trained on; None for older runs (read the CSV)."""
    fingerprint = results[0].config.get("data_fingerprint")
    for r in results:
        oof = r.oof or {}
        if not fingerprint or any(k not in oof for k in ("y_train", "y_test", "fingerprint")):
            return None
        if (
            oof["fingerprint"].item() != fingerprint
            or len(oof["y_train"]) != len(oof["train_idx"])
            or len(oof["y_test"]) != len(oof["test_idx"])
        ):
            return None
    first = results[0].oof
    return first["y_train"], first["y_test"]


def rows_with_oof(oofs: list[dict[str, np.ndarray]]) -> np.ndarray | None:
    """The training rows every base has an out-of-fold prediction for (a mask), or None when that is all
    of them (a random or group split: every row lands in one validation fold)."""
    masks = [np.asarray(o["fold_ids"]) >= 0 for o in oofs if o.get("fold_ids") is not None]
    if not masks:
        return None
    rows = np.logical_and.reduce(masks)
    return None if rows.all() else rows


def check_same_split(results: list[BaseModelResult]) -> None:
    """IncompatibleBaseModelsError unless every run's OOF archive has the same training/held-out rows and classes."""
    assert all(r.oof is not None for r in results)
    first = results[0].oof
    for r in results[1:]:
        o = r.oof
        if not (
            np.array_equal(o["train_idx"], first["train_idx"])
            and np.array_equal(o["test_idx"], first["test_idx"])
            and np.array_equal(o["classes"], first["classes"])
        ):
            raise IncompatibleBaseModelsError(
                f"run {r.run_id} of {r.name!r} was split into different training/"
                f"held-out rows than run {results[0].run_id} of {results[0].name!r}",
                field="base_models",
            )


def build_ensemble(
    request: EnsembleRequest,
    results: list[BaseModelResult],
    settings: Any = None,
    *,
    progress: Progress = no_progress,
) -> BuiltEnsemble:
    """Fit the meta-model on stored out-of-fold predictions and describe the ensemble (CPU only, no writes)."""
    t0 = time.perf_counter()
    configs = [r.config for r in results]
    check_compatible(configs, [c.get("data_fingerprint") for c in configs], request)
    task = configs[0]["task"]
    oofs = [r.oof for r in results]
    check_same_split(results)
    first = oofs[0]
    train_idx, test_idx = first["train_idx"], first["test_idx"]
    stored = None if request.passthrough else stored_targets(results)
    passthrough_train = passthrough_test = passthrough_features = None
    if stored is not None:  # the verified oof files hold the targets: the CSV is not read
        y_train, y_test = stored
    else:  # older runs (no stored targets), or passthrough (needs the raw features): the CSV, by fingerprint
        progress(0.1, "reading training targets")
        data, passthrough_features = training_targets(results, request.passthrough, settings)
        y_train, y_test = data.y[train_idx], data.y[test_idx]
        if request.passthrough:
            passthrough_train, passthrough_test = data.X[train_idx], data.X[test_idx]
    classes = first["classes"] if task == "classification" else None
    progress(0.3, f"fitting meta-model {request.meta_model}")
    t_fit = time.perf_counter()
    spec_ = config_fold_spec(configs[0])
    with_oof = rows_with_oof(oofs)
    meta = fit_meta_model(
        task,
        request.meta_model,
        request.stack_method,
        oof=[o["oof"] for o in oofs],
        test_pred=[o["test_pred"] for o in oofs],
        y_train=y_train,
        y_test=y_test,
        classes=classes,
        passthrough_train=passthrough_train,
        passthrough_test=passthrough_test,
        random_state=int(spec_["random_state"]),
        params=request.meta_params or None,
        rows=with_oof,
    )
    fit_s = time.perf_counter() - t_fit
    run_id = new_run_id()
    bases = []
    for r, metrics in zip(results, meta.base_metrics):
        bases.append({**r.to_record(), "metrics": metrics})
    class_list = None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]
    spec = {
        "name": request.name,
        "run_id": run_id,
        "task": task,
        "target": configs[0]["target"],
        "base_names": [r.name for r in results],
        "base_run_ids": [r.run_id for r in results],
        "meta_model": request.meta_model,
        "meta_params": request.meta_params,
        "stack_method": meta.stack_method,
        "passthrough": request.passthrough,
        "passthrough_features": passthrough_features,
        "classes": class_list,
        "n_meta_features": meta.n_meta_features,
    }
    record = {
        "name": request.name,
        "run_id": run_id,
        "kind": STACKED_KIND,
        "description": request.description,
        "task": task,
        "target": configs[0]["target"],
        "base_config_ids": [r.config_id for r in results],
        "base_names": [r.name for r in results],
        "base_run_ids": [r.run_id for r in results],
        "base_versions": [r.config.get("version") for r in results],  # of the pinned base runs
        "base_refs": [(r.config.get("pinned") or {}).get("ref", r.name) for r in results],
        "base_models": bases,
        "meta_model": request.meta_model,
        # set when no meta-model was asked for: which default was used and why
        **({"meta_model_default": request.meta_model_default} if request.meta_model_default else {}),
        "meta_params": request.meta_params,
        "options": {
            "passthrough": request.passthrough,
            "stack_method": request.stack_method,
            "stack_method_used": meta.stack_method,
        },
        "passthrough_features": passthrough_features,
        "classes": class_list,
        "data_fingerprint": configs[0]["data_fingerprint"],
        "fold_spec": spec_,
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
        **({} if with_oof is None else {"n_meta_rows": int(with_oof.sum())}),
        "metrics": meta.metrics,
        "base_metrics": {r.name: m for r, m in zip(results, meta.base_metrics)},
        "trained": [r.name for r in results if r.source == "trained"],  # first trainings
        "retrained": [r.name for r in results if r.source == "retrained"],  # replaced an earlier run
        "durations": {"build_s": round(time.perf_counter() - t0, 4), "meta_fit_s": round(fit_s, 4)},
        "targets_from": "artifacts" if stored is not None else "training_csv",
        "versions": environment_versions(),
        "status": "ready",
    }
    progress(1.0, "meta-model fitted")
    return BuiltEnsemble(run_id, meta, record, spec)


def write_ensemble_files(
    store: ArtifactStore, built: BuiltEnsemble, lease: ArtifactLease | None = None
) -> dict[str, ArtifactInfo]:
    """The meta-model and spec files, atomically; on failure nothing of them remains.

    With ``lease``, the names are leased before they are written (``artifacts gc`` leaves them alone until
    the caller commits and closes the lease) and re-checked after writing."""
    written: dict[str, ArtifactInfo] = {}
    try:
        if lease is not None:
            lease.add(artifact_name(built.run_id, kind) for kind in (META_KIND, SPEC_KIND))
        written[META_KIND] = store.write(artifact_name(built.run_id, META_KIND), pickle_writer(built.meta.model))
        written[SPEC_KIND] = store.write(artifact_name(built.run_id, SPEC_KIND), json_writer(built.spec))
        if lease is not None:
            recheck_files(store, written.values())
    except BaseException:
        remove_files(store, written.values())
        raise
    return written


def remove_files(store: ArtifactStore, infos: Iterable[ArtifactInfo | dict[str, Any]]) -> None:
    for info in infos:
        path = info.path if isinstance(info, ArtifactInfo) else info.get("path")
        try:
            if path:
                store.delete(path)
        except Exception:  # best effort: a leftover file is reported, not fatal
            log.exception("could not remove %s", path)


def finish_record(
    built: BuiltEnsemble, written: dict[str, ArtifactInfo], started: float, durations: dict[str, float]
) -> dict[str, Any]:
    record = dict(built.record)
    record["artifacts"] = {k: v.to_dict() for k, v in written.items()}
    record["checksums"] = {k: v.sha256 for k, v in written.items()}
    total = time.perf_counter() - started
    record["durations"] = {
        **record["durations"],
        **{k: round(v, 4) for k, v in durations.items()},
        "total_s": round(total, 4),
    }
    record["seconds"] = round(total, 4)
    record["created_at"] = now()
    return record


def create_ensemble(
    database: Database,
    name: str,
    base_models: list[Any],
    meta_model: str | None = None,
    *,
    passthrough: bool = False,
    stack_method: str = "auto",
    meta_params: dict[str, Any] | None = None,
    description: str = "",
    progress: Progress = no_progress,
    store: ArtifactStore | None = None,
    cache: ModelCache | None = None,
    lock_timeout: float | None = None,
    concurrency: int = 1,
    new_version: bool = False,
) -> dict[str, Any]:
    """Create and store a stacking ensemble; return its document (with per-base source, reason, time).

    ``base_models`` are model references (see the module docstring); the runs used are recorded by run id.
    ``new_version``: when ``name`` exists, store version N+1 beside the older versions (refused otherwise).

    ``concurrency`` > 1 obtains that many base models at once (threads; same result). Without
    ``meta_model`` the bases' task's default is used, as scikit-learn's ``Stacking*`` (logistic
    regression for classification, RidgeCV for regression); the record's ``meta_model_default`` says so.

    Raises ValidationError / NotFoundError / ConflictError / IncompatibleBaseModelsError for bad
    input (nothing is trained or written), BaseModelsError when base models cannot be obtained.
    """
    started = time.perf_counter()
    request = check_request(name, base_models, meta_model, passthrough, stack_method, meta_params, description)
    store = store or get_store(database.settings)
    EnsembleStore(database).refuse_taken(request.name, new_version=new_version)
    progress(0.0, "checking base models")
    configs = base_documents(database, request.base_models)
    request = with_default_meta_model(request, configs)
    check_compatible(configs, [config_fingerprint(c, database.settings) for c in configs], request)
    check_s = time.perf_counter() - started
    t_load = time.perf_counter()
    results = load_base_models(
        database,
        [c["_id"] for c in configs],
        store=store,
        cache=cache,
        need_oof=True,
        progress=scaled(progress, 0.05, 0.85),
        lock_timeout=lock_timeout,
        load_model_object=False,
        concurrency=concurrency,
        documents=configs,
    )
    load_s = time.perf_counter() - t_load
    built = build_ensemble(request, results, database.settings, progress=scaled(progress, 0.85, 0.95))
    progress(0.95, "saving ensemble")
    t_save = time.perf_counter()
    with ArtifactLease(database, built.run_id) as lease:
        written = write_ensemble_files(store, built, lease)
        try:
            record = finish_record(
                built,
                written,
                started,
                {"check_s": check_s, "load_s": load_s, "save_s": time.perf_counter() - t_save},
            )
            commit_point({"run_id": record["run_id"]})  # inside a job: not cancelled, and now it cannot be
            EnsembleStore(database).insert(record, new_version=new_version)
        except BaseException:
            remove_files(store, written.values())
            raise
    progress(1.0, "done")
    log.info(
        "ensemble %s version %s (%s over %s) created in %.2fs; trained: %s; retrained: %s",
        request.name,
        record["version"],
        request.meta_model_default or request.meta_model,
        ", ".join(record["base_names"]),
        record["seconds"],
        record["trained"] or "none",
        record["retrained"] or "none",
    )
    return record


# --------------------------------------------------------------- reading


def get_ensemble(database: Database, ref: str) -> dict[str, Any]:
    """The ensemble version reference ``ref`` serves (NotFoundError / ValidationError otherwise)."""
    return resolve_ensemble(database, ref).doc


def find_ensemble(database: Database, ref: str) -> dict[str, Any] | None:
    """The ensemble version ``ref`` serves, or None when no ensemble has that name (or run id)."""
    served = find_ensemble_reference(database, ref)
    return None if served is None else served.doc


def list_ensembles(database: Database) -> list[dict[str, Any]]:
    return EnsembleStore(database).list()


def ensembles_using_run(database: Database, run_id: str) -> list[str]:
    """Names of the ensembles built on ``run_id`` (the registry refuses to delete such runs)."""
    return [d["name"] for d in EnsembleStore(database).using_run(run_id)]


def load_ensemble(
    database: Database, ref: str, *, store: ArtifactStore | None = None, cache: ModelCache | None = None
) -> StackedEnsemble:
    """The ensemble version reference ``ref`` serves as a predictor: the exact base runs it was built on,
    all verified. Its ``served`` says which version answered and how it was chosen (run id, version, served)."""
    served = resolve_ensemble(database, ref)
    doc = served.doc
    name = f"{doc['name']}@{served.version}"
    settings = database.settings
    store = store or get_store(settings)
    found = RunStore(database).find_many(doc["base_run_ids"])  # one round trip for every base run
    bases = []
    for base_name, run_id in zip(doc["base_names"], doc["base_run_ids"]):
        run = found.get(run_id)
        if run is None:
            raise ArtifactError(
                f"ensemble {name!r} needs run {run_id} of {base_name!r}, which no longer exists; "
                "create the ensemble again",
                reason="field_missing",
            )
        try:
            bases.append(load_model(settings, run, store=store, cache=cache).model)
        except ArtifactError as exc:
            raise ArtifactError(
                f"ensemble {name!r} cannot load base model {base_name!r} (run {run_id}): {exc.message}",
                reason=exc.reason,
                path=exc.path,
            ) from None
    classes = np.asarray(doc["classes"]) if doc.get("classes") is not None else None
    if doc.get("kind") == WEIGHTED_KIND:  # fixed weights kept in the document: no meta-model file to load
        weights = WeightedAverage(doc["weights"], doc["task"], 0 if classes is None else len(classes))
        return StackedEnsemble(
            name=doc["name"],
            run_id=doc["run_id"],
            task=doc["task"],
            bases=bases,
            base_names=list(doc["base_names"]),
            meta_model=weights,
            stack_method=doc["options"]["stack_method_used"],
            classes=classes,
            record=doc,
            served=served.describe(),
        )
    ref = doc["artifacts"][META_KIND]
    cache = cache or get_model_cache(settings)
    key = ("ensemble", doc["run_id"], ref["sha256"])
    meta = cache.get(key)
    if meta is None:
        meta, _notes = load_verified(store, ref)
        cache.put(key, meta, int(ref.get("size") or 0))
    return StackedEnsemble(
        name=doc["name"],
        run_id=doc["run_id"],
        task=doc["task"],
        bases=bases,
        base_names=list(doc["base_names"]),
        meta_model=meta,
        stack_method=doc["options"]["stack_method_used"],
        classes=classes,
        passthrough_features=doc.get("passthrough_features"),
        record=doc,
        served=served.describe(),
    )


def delete_ensemble(database: Database, ref: str, *, store: ArtifactStore | None = None) -> dict[str, Any]:
    """Remove ensemble documents (the commit point), then their files. Base runs are untouched.

    A plain name deletes every version of it; ``NAME@3`` (or another reference with ``@``) or a version's
    run id deletes that version only. Returns the document ``ref`` served, with ``deleted_versions``."""
    served = resolve_ensemble(database, ref)
    whole = isinstance(ref, str) and "@" not in ref and not RUN_ID_RE.match(ref.strip())
    docs = EnsembleStore(database).versions(served.name) if whole else [served.doc]
    store = store or get_store(database.settings)
    cache = get_model_cache(database.settings)
    for doc in docs:
        EnsembleStore(database).delete(doc["_id"])
        remove_files(store, (doc.get("artifacts") or {}).values())
        run_id = doc["run_id"]
        cache.discard(
            lambda k, r=run_id: isinstance(k, tuple) and len(k) == 3 and k[0] == "ensemble" and k[1] == r
        )
    log.info("ensemble %s deleted (versions %s)", served.name, ", ".join(str(d.get("version") or 1) for d in docs))
    return {**served.doc, "deleted_versions": [int(d.get("version") or 1) for d in docs]}
